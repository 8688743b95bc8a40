"""The results store: one row per (student, assignment) in ``<course>/grades.db``.

Graded on several tracks (``autograder grade --tracks 7,1 2,5``, hidden tracks),
a submission has one row per track (``level = "track"``, ``track`` = that track)
plus its combined row (``level = "combined"``, ``track`` = "7,1 2,5"): passed on
every track, total annotations, mean accuracy. `load` returns the combined rows
(one per student, what the leaderboard ranks), `load_tracks` the per-track ones.
Graded on one track, the single row is the combined row, as before.

A submission's rows are written in one transaction, so a crash in the middle of a batch
never leaves a half-written row, and regrading a student replaces all its rows. A
database locked by another process is waited for (`WAIT_S`, retried with
back-off); if it stays unavailable the row is kept in
``<course>/.autograder/pending-rows.jsonl`` and written by the next save, so the
batch never stops for it. Databases of older versions gain the new columns on
first use (`_migrate`; a database keyed by (student, assignment) is rebuilt keyed
by (student, assignment, track)). The service's ledger of every run is kept beside the
database in ``<course>/ledgers/<assignment>/<student>.jsonl``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from autograder import clean, safefs

DB_NAME = "grades.db"
LEDGER_DIR = "ledgers"
PENDING = Path(".autograder") / "pending-rows.jsonl"
STATUSES = ("ok", "failed", "timeout", "error")
KINDS = ("competition", "points")  # points: an assignment without a submit cell
WAIT_S = float(os.environ.get("AUTOGRADER_DB_WAIT_S", "600"))  # total wait for a locked database per row

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS results (
    student     TEXT NOT NULL,
    assignment  TEXT NOT NULL,
    track       TEXT NOT NULL,
    accuracy    REAL,
    annotations INTEGER,
    passed      INTEGER NOT NULL,
    score       REAL,
    max_score   REAL,
    status      TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    detail      TEXT NOT NULL,
    runtime     REAL NOT NULL,
    graded_at   TEXT NOT NULL,
    PRIMARY KEY (student, assignment, track)
)
"""
# columns added after the first release: name -> declaration (ALTER TABLE ... ADD COLUMN)
_ADDED = {
    "evaluations": "INTEGER",
    "submissions": "INTEGER",
    "review": "TEXT NOT NULL DEFAULT ''",
    "kind": "TEXT NOT NULL DEFAULT 'competition'",
    "level": "TEXT NOT NULL DEFAULT 'combined'",
}
LEVELS = ("combined", "track")  # the row a submission is ranked by; one track's row (hidden tracks)


class StoreUnavailable(RuntimeError):
    """The results database stayed locked or unwritable; the row was kept as pending."""


@dataclass(frozen=True)
class Row:
    """The graded outcome of one submission. Numbers from the service, points from nbgrader."""

    student: str
    assignment: str
    track: str
    accuracy: float | None  # of the counted (first) submission on the private split; None without one
    annotations: int | None  # distinct annotations when the counted submission was made
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


COLUMNS = [f.name for f in fields(Row)]


def db_path(course_dir: Path) -> Path:
    return Path(course_dir) / DB_NAME


def ledger_path(course_dir: Path, assignment: str, student: str) -> Path:
    return Path(course_dir) / LEDGER_DIR / assignment / f"{student}.jsonl"


def _migrate(connection: sqlite3.Connection) -> None:
    table = connection.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'results'").fetchone()
    if table and "PRIMARY KEY (student, assignment)" in table[0]:  # before hidden tracks: rebuild with the new key
        old = [row[1] for row in connection.execute("PRAGMA table_info(results)")]
        connection.execute("ALTER TABLE results RENAME TO results_before_tracks")
        connection.execute(_SCHEMA)
        for name, declaration in _ADDED.items():
            connection.execute(f"ALTER TABLE results ADD COLUMN {name} {declaration}")
        kept = ", ".join(c for c in old if c in COLUMNS)
        connection.execute(f"INSERT INTO results ({kept}) SELECT {kept} FROM results_before_tracks")
        connection.execute("DROP TABLE results_before_tracks")
    present = {row[1] for row in connection.execute("PRAGMA table_info(results)")}
    for name, declaration in _ADDED.items():
        if name not in present:
            connection.execute(f"ALTER TABLE results ADD COLUMN {name} {declaration}")


def _connect(course_dir: Path, timeout: float) -> sqlite3.Connection:
    path = db_path(course_dir)
    if path.is_symlink():
        raise StoreUnavailable(f"{path} is a symlink; refusing to write through it")
    connection = sqlite3.connect(path, timeout=timeout)
    with connection:
        connection.execute(_SCHEMA)
        _migrate(connection)
    return connection


def _retrying(course_dir: Path, action, wait: float):
    """Run action(connection); a locked or busy database is retried until `wait` seconds passed."""
    deadline = time.monotonic() + wait
    delay = 0.2
    while True:
        left = deadline - time.monotonic()
        try:
            connection = _connect(course_dir, timeout=max(min(left, 30.0), 0.05))
            try:
                return action(connection)
            finally:
                connection.close()
        except sqlite3.OperationalError as exc:
            if time.monotonic() + delay >= deadline:
                raise StoreUnavailable(f"{db_path(course_dir)}: {exc}") from exc
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _values(row: Row) -> dict:
    if row.status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {row.status!r}.")
    if row.level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {row.level!r}.")
    values = asdict(row)
    values["passed"] = int(row.passed)
    values["student"] = clean.line(row.student, 200)
    values["detail"] = clean.line(row.detail, 500)  # always one clean line
    values["review"] = clean.line(row.review, 300)
    return values


def _insert(connection: sqlite3.Connection, groups: list[list[dict]]) -> None:
    """Write each group (the rows of one graded submission), replacing every earlier row of its submission."""
    with connection:  # commits, or rolls back on error
        for group in groups:
            for key in dict.fromkeys((v["student"], v["assignment"]) for v in group):
                connection.execute("DELETE FROM results WHERE student = ? AND assignment = ?", key)
            for values in group:
                connection.execute(
                    f"INSERT OR REPLACE INTO results ({', '.join(COLUMNS)}) "
                    f"VALUES ({', '.join(':' + c for c in COLUMNS)})", values)


def save(course_dir: Path, row: Row | list[Row], wait: float | None = None) -> None:
    """Store a submission's row (or its rows: one per track and the combined one) in one transaction.

    Every earlier row of the same (student, assignment) is replaced, and earlier pending
    rows are written first. Raises StoreUnavailable when the database stays locked for
    `wait` seconds; the rows are then appended to the pending file and written by a later save.
    """
    values = [_values(r) for r in (row if isinstance(row, list) else [row])]
    pending_file = Path(course_dir) / PENDING
    pending = _read_pending(pending_file)
    try:
        _retrying(course_dir, lambda c: _insert(c, pending + [values]), WAIT_S if wait is None else wait)
    except StoreUnavailable:
        pending_file.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(pending_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "a") as handle:
            handle.write(json.dumps(values) + "\n")
        raise
    if pending:
        pending_file.unlink(missing_ok=True)


def flush_pending(course_dir: Path, wait: float | None = None) -> int:
    """Write rows kept while the database was locked; return how many."""
    pending_file = Path(course_dir) / PENDING
    pending = _read_pending(pending_file)
    if pending:
        _retrying(course_dir, lambda c: _insert(c, pending), WAIT_S if wait is None else wait)
        pending_file.unlink(missing_ok=True)
    return len(pending)


def _read_pending(path: Path) -> list[dict]:
    if not path.is_file() or path.is_symlink():
        return []
    groups = []
    for line in path.read_text().splitlines():
        try:
            found = json.loads(line)
        except ValueError:
            continue
        group = []
        for values in (found if isinstance(found, list) else [found]):  # a line: one submission's rows
            if isinstance(values, dict):
                group.append({c: values.get(c) for c in COLUMNS} | {
                    "review": values.get("review") or "", "kind": values.get("kind") or "competition",
                    "level": values.get("level") or "combined"})
        if group:
            groups.append(group)
    return groups


def load(course_dir: Path, assignment: str, level: str = "combined") -> list[Row]:
    """The stored rows of `assignment` at `level` (default: one combined row per student), by student."""
    if not db_path(course_dir).is_file():
        return []

    def select(connection):
        cursor = connection.execute(
            f"SELECT {', '.join(COLUMNS)} FROM results WHERE assignment = ? AND level = ? ORDER BY student, track",
            (assignment, level))
        return [dict(zip(COLUMNS, values)) for values in cursor]

    rows = _retrying(course_dir, select, WAIT_S)
    return [Row(**{**r, "passed": bool(r["passed"])}) for r in rows]


def load_tracks(course_dir: Path, assignment: str) -> list[Row]:
    """The per-track rows of `assignment` (submissions graded on several tracks), by student and track."""
    return load(course_dir, assignment, level="track")


def save_ledger(course_dir: Path, assignment: str, student: str, text: str, suffix: str = ".jsonl") -> Path:
    """Keep a run's ledger (or, with `suffix`, a log) beside the database, atomically, never through a link."""
    relative = Path(LEDGER_DIR) / assignment / f"{student}{suffix}"
    return safefs.write_bytes(Path(course_dir), relative, text.encode("utf-8", errors="replace"))
