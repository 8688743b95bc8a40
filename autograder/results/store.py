"""The results store: the table ``results`` behind one SQLAlchemy URL.

By default an SQLite file, ``<course>/grades.db``; any SQLAlchemy URL instead (``url=``, or the
environment variable ``AUTOGRADER_DB``, a path or a URL; `resolve_url`), e.g. one PostgreSQL
database that every grading machine of a large course writes to, so there is nothing to merge
(an SQLite file wants a local disk: WAL mode shares memory between the processes of one host).

Graded on several tracks (``autograder grade --tracks 7,1 2,5``, hidden tracks), a submission
has one row per track (``level = "track"``, ``track`` = that track) plus its combined row
(``level = "combined"``, ``track`` = "7,1 2,5"): passed on every track, total annotations, mean
accuracy. `load` returns the combined rows (one per student, what the leaderboard ranks),
`load_tracks` the per-track ones. Graded on one track, the single row is the combined row.

Every graded attempt of a student is kept (`autograder.grading.attempts`): the caller names the
attempt by the key of the submitted notebook's bytes (``save(..., attempt=attempts.key(files))``),
the rows carry it (``notebook``) with the attempt's number (``attempt``, in the order the
notebooks were first graded) and the student's count (``attempts``). `load` returns the rows of
the attempt `attempts.RULE` ranks (the first with a counted submission or bought labels), so a resubmission after
a failed counted one shows on the row and cannot improve it. An attempt's rows are written in
one transaction that first deletes that attempt's earlier rows, so a crash in the middle never
leaves a half-written submission and a regrade of the same notebook replaces all of its rows
(rows saved without a key replace the latest attempt's, as before attempts were kept), except
that an attempt that counted (a counted submission, or labels bought) stays counted: a regrade of it that makes none
keeps the counted rows and notes itself in their ``review``, a regraded row keeps ``counted_at``
(its first counted grading), and a counted regrade whose accuracy changed is noted for review. Several
processes may write and read at once (parallel grading, the leaderboard): SQLite runs in WAL mode
(readers never wait for a writer) and each write transaction takes the write lock when it begins
(``BEGIN IMMEDIATE``, waiting up to a busy timeout); PostgreSQL write transactions take a table
lock, so writers queue there too. A transaction that fails on a transient error (database locked,
connection lost) is retried with back-off for up to `WAIT_S` seconds; if the store stays
unavailable the rows are kept in ``<course>/.autograder/pending-rows.jsonl`` and written by the
next save, so a grading batch never stops for the store. Tables of older versions are brought up to
date on first use (`_ensure`: added columns; a table keyed otherwise, by (student, assignment)
before hidden tracks or by (student, assignment, track) before attempts, is rebuilt keyed by
(student, assignment, track, notebook); its rows become each student's attempt 1 of an unknown
notebook, which the first keyed save of that student adopts). An SQLite file that is a symbolic
link is refused. The service's ledger of the latest run is kept beside the default database, in
``<course>/ledgers/<assignment>/latest/<student>/course.jsonl`` (a hidden track's ``track25.jsonl``,
nbgrader's log ``course.nbgrader.log``), and that of every attempt in
``<course>/ledgers/<assignment>/attempts/<student>/<notebook key>.jsonl``: one folder per student, so
no student id can name another student's file. (Before, the latest run's were
``ledgers/<assignment>/<student>[.track25].jsonl``, where a student folder named ``memo.track25`` wrote
over memo's hidden-track ledger; such files stay where they are, nothing reads them.)
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from autograder.grading import attempts as attempts_
from autograder.results import clean, database
from autograder.results.database import (DB_NAME, ENV, KEY, RESULTS, STATUSES, StoreConfigError,  # noqa: F401 (public names)
                                         StoreUnavailable, db_path, describe, resolve_url)
from autograder.sandbox import safefs

LEDGER_DIR = "ledgers"
# One folder per student under two fixed roots, so no student id can name another's file (a student
# folder "memo.track25" once wrote its ledger over memo's hidden-track one, ledgers/<a>/memo.track25.jsonl):
LATEST_LEDGERS = "latest"  # ledgers/<assignment>/latest/<student>/<run>.jsonl, <run>.nbgrader.log
ATTEMPT_LEDGERS = "attempts"  # ledgers/<assignment>/attempts/<student>/<notebook key><suffix>
COURSE_RUN = "course"  # <run> of the course track; a hidden track's is "track<digits>" (e.g. track25)
HIDDEN_TAG = ".track"  # how a hidden track's suffix begins (autograder.grading.tasks: ".track25.jsonl")
_SUFFIX = re.compile(r"(\.track\d+)?(\.[a-z]+)+")  # a kept file's suffix: [.track<digits>].jsonl, .nbgrader.log
PENDING = Path(".autograder") / "pending-rows.jsonl"
KINDS = ("competition", "points")  # points: an assignment without a submit cell
LEVELS = ("combined", "track")  # the row a submission is ranked by; one track's row (hidden tracks)
MAX_RUN_COPIES = 20  # kept ledgers of one attempt (its first run, then regrades that differ: `save_ledger`)
LEDGER_READ_LIMIT = 256 * 2**20  # bytes of a kept ledger read to compare it with a regrade's
WAIT_S = float(os.environ.get("AUTOGRADER_DB_WAIT_S", "600"))  # total wait for a locked store per save

@dataclass(frozen=True)
class Row:
    """The graded outcome of one submission. Numbers from the service, points from nbgrader."""

    student: str
    assignment: str
    track: str
    accuracy: float | None  # of the counted (first) submission on the private split; None without one
    annotations: int | None  # distinct annotations when the counted submission was made; without one, all bought
    passed: bool
    score: float | None  # nbgrader's points
    max_score: float | None
    status: str  # one of STATUSES
    detail: str  # one line
    runtime: float  # seconds, wall clock
    graded_at: str  # ISO 8601, UTC
    evaluations: int | None = None  # held-out (public) evaluations the run asked for
    submissions: int | None = None  # submissions (private scores) the run attempted
    review: str = ""  # why the instructor should look at this row ('' = nothing to review)
    kind: str = "competition"  # one of KINDS
    level: str = "combined"  # one of LEVELS: "track" = one track's row of a submission graded on several
    notebook: str = attempts_.UNKNOWN  # the attempt's key (`attempts.key` of the submitted bytes)
    attempt: int = 1  # this attempt's number: 1 = the student's first graded notebook
    attempts: int = 1  # the student's graded attempts (changed notebooks) of the assignment
    counted_at: str | None = None  # a regraded notebook's first counted grading (graded_at; None: not regraded)


COLUMNS = [f.name for f in fields(Row)]
assert COLUMNS == [c.name for c in RESULTS.columns]


def ledger_path(course_dir: Path, assignment: str, student: str, track: str | None = None) -> Path:
    """The kept ledger of a student's latest run on the course track, or on hidden `track` (e.g. "2,5")."""
    suffix = ".jsonl" if track is None else f"{HIDDEN_TAG}{''.join(c for c in track if c.isdigit())}.jsonl"
    return Path(course_dir) / LEDGER_DIR / assignment / LATEST_LEDGERS / _student_folder(student) / _run_file(suffix)


def _student_folder(student: str) -> str:
    """`student` as one folder name (a student id is a folder name of ``submitted/``)."""
    if student in ("", ".", "..") or "/" in student or "\0" in student:
        raise ValueError(f"a student id must be one folder name, got {student!r}.")
    return student


def _run_file(suffix: str) -> str:
    """The file of a run's text in its student's folder: ".jsonl" -> course.jsonl, ".track25.jsonl" -> track25.jsonl."""
    if not _SUFFIX.fullmatch(suffix):
        raise ValueError(f"a kept ledger's suffix is [.track<digits>].<ext>..., got {suffix!r}.")
    return suffix[1:] if suffix.startswith(HIDDEN_TAG) else COURSE_RUN + suffix


# --- writing -----------------------------------------------------------------------------------

Group = tuple[list[dict], "str | None"]  # the rows of one graded attempt, its notebook key (None: unknown)


def _values(row: Row) -> dict[str, Any]:
    if row.status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {row.status!r}.")
    if row.level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {row.level!r}.")
    values = asdict(row)
    values["passed"] = int(row.passed)
    values["student"] = clean.line(row.student, 200)
    values["detail"] = clean.line(row.detail, 500)  # always one clean line
    values["review"] = clean.line(row.review, 300)
    missing = [c.name for c in RESULTS.columns if not c.nullable and values[c.name] is None]
    if missing:
        raise ValueError(f"a row needs {', '.join(missing)}.")
    return values


def _checked_key(attempt: str | None) -> str | None:
    if attempt is None:
        return None
    if not isinstance(attempt, str) or not 0 < len(attempt) <= 64 or attempt.strip("0123456789abcdef"):
        raise ValueError(f"attempt must be a notebook key (attempts.key: lower-case hex), got {attempt!r}.")
    return attempt


def _target(connection: sa.Connection, student: str, assignment: str, key: str | None) -> tuple[str, str, int]:
    """(the notebook whose rows this save replaces, the key the rows get, their attempt number)."""
    found = connection.execute(sa.select(RESULTS.c.notebook, sa.func.min(RESULTS.c.attempt))
                               .where(RESULTS.c.student == student, RESULTS.c.assignment == assignment)
                               .group_by(RESULTS.c.notebook)).all()
    numbers = {notebook: number for notebook, number in found}
    latest = max(numbers, key=numbers.get) if numbers else None
    if key is None:  # an unknown notebook: a regrade of the latest attempt (the behaviour before attempts)
        return (latest, latest, numbers[latest]) if latest is not None else (attempts_.UNKNOWN, attempts_.UNKNOWN, 1)
    if key in numbers:  # the same notebook again: a regrade, not a new attempt
        return key, key, numbers[key]
    if latest == attempts_.UNKNOWN:  # rows from before attempts were kept: the first keyed grading takes them over
        return attempts_.UNKNOWN, key, numbers[latest]
    return key, key, max(numbers.values(), default=0) + 1


REGRADE_UNCOUNTED = "a regrade made no counted submission"  # the review note of a kept counted grading
REGRADE_CHANGED = "a regrade changed the counted accuracy"  # the review note of a counted regrade that differs


def _first_counted(rows: list[dict]) -> str | None:
    """When an attempt's stored rows first counted: a counted submission or bought labels (None: never)."""
    times = [r["counted_at"] or r["graded_at"] for r in rows
             if r["counted_at"] or attempts_.counts(r["accuracy"], r["annotations"])]
    return min(times) if times else None


def _noted(review: str, note: str, marker: str) -> str:
    """`review` with `note` first, replacing an earlier note of the same `marker` (one line, clipped)."""
    kept = [part for part in review.split("; ") if part and not part.startswith(marker)]
    return clean.line("; ".join([note] + kept), 300)


def _combined(rows: Iterable[dict]) -> dict | None:
    return next((r for r in rows if r["level"] == "combined"), None)


def _insert(connection: sa.Connection, groups: list[Group]) -> None:
    """Write each group (the rows of one graded attempt), replacing that attempt's earlier rows.

    Once an attempt has made a counted submission it stays counted (`attempts.RULE`): a regrade of
    it that makes none (a notebook that submits only before some date, a crash) keeps the counted
    rows, notes the regrade in their ``review``, and never clears ``counted_at``; a counted regrade
    replaces the rows, keeps ``counted_at``, and is noted for review when its accuracy changed.
    """
    for group, key in groups:
        for student, assignment in dict.fromkeys((v["student"], v["assignment"]) for v in group):
            replaced, notebook, number = _target(connection, student, assignment, key)
            mine = RESULTS.c.student == student, RESULTS.c.assignment == assignment
            earlier = [dict(r._mapping) for r in connection.execute(
                sa.select(RESULTS).where(*mine, RESULTS.c.notebook == replaced))]
            rows = {v["track"]: v | {"notebook": notebook, "attempt": number} for v in group
                    if (v["student"], v["assignment"]) == (student, assignment)}  # the last row of a key wins
            first = _first_counted(earlier)
            new = _combined(rows.values()) or next(iter(rows.values()))
            if first is not None and not any(attempts_.counts(v["accuracy"], v["annotations"]) for v in rows.values()):
                note = (f"{REGRADE_UNCOUNTED} at {new['graded_at']} (status {new['status']}), "
                        f"so the counted grading of {first} is kept")  # no '; ' (`_noted` splits on it)
                for old in earlier:
                    connection.execute(RESULTS.update().where(*mine, RESULTS.c.notebook == replaced,
                                                              RESULTS.c.track == old["track"])
                                       .values(notebook=notebook, counted_at=first,
                                               review=_noted(old["review"], note, REGRADE_UNCOUNTED)))
                continue
            before = _combined(earlier)
            for v in rows.values():  # a first grading shows its count by its accuracy; a regrade records when
                v["counted_at"] = first
            if (first is not None and before is not None and before["accuracy"] != new["accuracy"]
                    and before["track"] == new["track"]):  # another set of tracks: another accuracy, no change
                note = (f"{REGRADE_CHANGED} from {before['accuracy']} ({before['graded_at']}) to "
                        f"{new['accuracy']} ({new['graded_at']})")
                for v in rows.values():
                    v["review"] = _noted(v["review"], note, REGRADE_CHANGED)
            connection.execute(RESULTS.delete().where(*mine, RESULTS.c.notebook == replaced))
            connection.execute(RESULTS.insert(), list(rows.values()))
            count = connection.execute(sa.select(sa.func.count(sa.distinct(RESULTS.c.notebook))).where(*mine)).scalar()
            connection.execute(RESULTS.update().where(*mine).values(attempts=count))


@contextmanager
def _pending_lock(course_dir: Path) -> Iterator[None]:
    """One process at a time reads-and-clears or appends the pending file (a lock file beside it)."""
    lock = Path(course_dir) / PENDING.with_suffix(".lock")
    lock.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def save(course_dir: Path, row: Row | list[Row], wait: float | None = None, *, url: str | None = None,
         attempt: str | None = None) -> None:
    """Store a graded attempt's row (or its rows: one per track and the combined one) in one transaction.

    `attempt` is the key of the submitted notebook (`attempts.key` of its bytes): rows of a key
    already stored replace that attempt's rows (a regrade); a new key is the student's next
    attempt, and every earlier attempt is kept. Without it the rows replace the latest attempt's
    (callers that do not know the notebook). Earlier pending rows are written first. Raises
    StoreUnavailable when the store stays locked or unreachable for `wait` seconds
    (StoreConfigError for an unusable URL); the rows are then appended to the pending file and
    written by a later save.
    """
    group = ([_values(r) for r in (row if isinstance(row, list) else [row])], _checked_key(attempt))
    pending_file = Path(course_dir) / PENDING
    wait = WAIT_S if wait is None else wait
    try:
        target = _writable(course_dir, url)
        if pending_file.is_file():
            with _pending_lock(course_dir):
                pending = _read_pending(pending_file)
                database.run(target, lambda c: _insert(c, pending + [group]), wait, write=True)
                pending_file.unlink(missing_ok=True)
        else:
            database.run(target, lambda c: _insert(c, [group]), wait, write=True)
    except (StoreUnavailable, StoreConfigError):
        with _pending_lock(course_dir):
            fd = os.open(pending_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "a") as handle:
                handle.write(json.dumps({"attempt": group[1], "rows": group[0]}) + "\n")
        raise


def flush_pending(course_dir: Path, wait: float | None = None, *, url: str | None = None) -> int:
    """Write rows kept while the store was unavailable; return how many submissions."""
    pending_file = Path(course_dir) / PENDING
    if not pending_file.is_file():
        return 0
    target = _writable(course_dir, url)
    with _pending_lock(course_dir):
        pending = _read_pending(pending_file)
        if pending:
            database.run(target, lambda c: _insert(c, pending), WAIT_S if wait is None else wait, write=True)
        pending_file.unlink(missing_ok=True)
    return len(pending)


def _writable(course_dir: Path, url: str | None) -> str:
    target = resolve_url(course_dir, url)
    path = database.sqlite_file(target)
    if path is not None and not path.parent.is_dir():
        raise StoreConfigError(f"{path}: no such folder")
    return target


_DEFAULTS = {"review": "", "kind": "competition", "level": "combined", "notebook": attempts_.UNKNOWN,
             "attempt": 1, "attempts": 1}  # of columns a pending line of an older version may lack


def _read_pending(path: Path) -> list[Group]:
    if not path.is_file() or path.is_symlink():
        return []
    groups = []
    for line in path.read_text().splitlines():
        try:
            found = json.loads(line)
            key = _checked_key(found.get("attempt")) if isinstance(found, dict) and "rows" in found else None
        except (ValueError, AttributeError):
            continue
        if isinstance(found, dict) and "rows" in found:  # {"attempt": key, "rows": [...]}
            found = found["rows"]
        group = []
        for values in (found if isinstance(found, list) else [found]):  # older lines: the rows, or one row
            if isinstance(values, dict):
                values = {c: values.get(c) for c in COLUMNS} | {
                    c: values.get(c) or default for c, default in _DEFAULTS.items()}
                try:
                    group.append(_values(Row(**values)))
                except (TypeError, ValueError):  # not a row this version can store
                    continue
        if group:
            groups.append((group, key))
    return groups


# --- reading -----------------------------------------------------------------------------------


def _select(course_dir: Path, assignment: str, url: str | None, student: str | None = None) -> list[Row]:
    """Every stored row of `assignment` (every attempt, both levels), by student, attempt and track."""
    target = resolve_url(course_dir, url)
    path = database.sqlite_file(target)
    if path is not None and not path.is_file():
        return []

    def select(connection: sa.Connection) -> list[dict]:
        query = sa.select(RESULTS).where(RESULTS.c.assignment == assignment)
        if student is not None:
            query = query.where(RESULTS.c.student == student)
        query = query.order_by(RESULTS.c.student, RESULTS.c.attempt, RESULTS.c.track)
        return [dict(r._mapping) for r in connection.execute(query)]

    return [Row(**{**r, "passed": bool(r["passed"])}) for r in database.run(target, select, WAIT_S, write=False)]


def _by_attempt(rows: list[Row]) -> dict[str, dict[int, list[Row]]]:
    found: dict[str, dict[int, list[Row]]] = {}
    for row in rows:
        found.setdefault(row.student, {}).setdefault(row.attempt, []).append(row)
    return found


def _ranked_rows(mine: dict[int, list[Row]], level: str) -> list[Row]:
    """The rows at `level` of the attempt `attempts.RULE` ranks, with the count and, for several, a note."""
    chosen = attempts_.ranked(mine)
    latest = [r for r in mine[max(mine)] if r.level == "combined"]
    note = attempts_.note(chosen, mine, latest[0].passed if latest else None)
    shown = []
    for row in mine[chosen]:
        if row.level != level:
            continue
        detail = clean.line(f"{row.detail}; {note}", 500) if note else row.detail
        shown.append(replace(row, attempts=len(mine), detail=detail))
    return shown


def load(course_dir: Path, assignment: str, level: str = "combined", *, url: str | None = None) -> list[Row]:
    """The ranked rows of `assignment` at `level` (default: one combined row per student), by student.

    A student with several graded attempts is shown by the attempt `attempts.RULE` ranks, with
    ``attempts`` their count and a note in ``detail``; `load_attempts` returns every attempt.
    """
    found = []
    for mine in _by_attempt(_select(course_dir, assignment, url)).values():
        found += _ranked_rows(mine, level)
    return found


def load_tracks(course_dir: Path, assignment: str, *, url: str | None = None) -> list[Row]:
    """The per-track rows of `assignment` (submissions graded on several tracks), by student and track."""
    return load(course_dir, assignment, level="track", url=url)


def load_attempts(course_dir: Path, assignment: str, student: str | None = None, level: str = "combined", *,
                  url: str | None = None) -> list[Row]:
    """Every graded attempt's rows at `level` (of one student, or all), by student and attempt number."""
    return [r for r in _select(course_dir, assignment, url, student) if r.level == level]


def save_ledger(course_dir: Path, assignment: str, student: str, text: str, suffix: str = ".jsonl", *,
                attempt: str | None = None) -> Path:
    """Keep a run's ledger (or, with `suffix`, a log) in the course folder, atomically, never through a link.

    The latest run's is ``ledgers/<assignment>/latest/<student>/<run><ext>``: `suffix` ".jsonl" or
    ".nbgrader.log" is the course track's run (``course.jsonl``), ".track25.jsonl" hidden track 2,5's
    (``track25.jsonl``). Each student has a folder of their own, so no student id names another's file.
    With `attempt` (the notebook's key, as given to `save`) a copy is also kept per attempt, in
    ``ledgers/<assignment>/attempts/<student>/<key><suffix>``, which no later run overwrites: a
    regrade of the same notebook whose ledger differs is kept beside it as ``<key>.run<n><suffix>``
    (n = 2, 3, ... up to `MAX_RUN_COPIES`, the last then holding the latest), so the run whose
    submission counted stays on file whatever a regrade does.
    """
    data = text.encode("utf-8", errors="replace")
    folder = Path(LEDGER_DIR) / assignment
    key = _checked_key(attempt)
    latest = folder / LATEST_LEDGERS / _student_folder(student) / _run_file(suffix)
    if key is not None:
        kept = Path(course_dir) / folder / ATTEMPT_LEDGERS / student
        name = f"{key}{suffix}"
        if os.path.lexists(kept / name) and _read_or_none(kept / name) != data:
            names = [f"{key}.run{n}{suffix}" for n in range(2, MAX_RUN_COPIES + 1)]
            name = next((n for n in names if not os.path.lexists(kept / n)), names[-1])
        if _read_or_none(kept / name) != data:
            safefs.write_bytes(Path(course_dir), folder / ATTEMPT_LEDGERS / student / name, data)
    return safefs.write_bytes(Path(course_dir), latest, data)


def _read_or_none(path: Path) -> bytes | None:
    try:
        return safefs.read_bytes(path, limit=LEDGER_READ_LIMIT)
    except (OSError, safefs.UnsafePath):
        return None
