"""The results store: one row per (student, assignment) in ``<course>/grades.db``.

Each row is written in its own transaction, so a crash in the middle of a batch
never leaves a half-written row, and regrading a student replaces the row. A
database locked by another process is waited for (`WAIT_S`, retried with
back-off); if it stays unavailable the row is kept in
``<course>/.autograder/pending-rows.jsonl`` and written by the next save, so the
batch never stops for it. Databases of older versions gain the new columns on
first use (`_migrate`). The service's ledger of every run is kept beside the
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
    PRIMARY KEY (student, assignment)
)
"""
# columns added after the first release: name -> declaration (ALTER TABLE ... ADD COLUMN)
_ADDED = {
    "evaluations": "INTEGER",
    "submissions": "INTEGER",
    "review": "TEXT NOT NULL DEFAULT ''",
    "kind": "TEXT NOT NULL DEFAULT 'competition'",
}


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


COLUMNS = [f.name for f in fields(Row)]


def db_path(course_dir: Path) -> Path:
    return Path(course_dir) / DB_NAME


def ledger_path(course_dir: Path, assignment: str, student: str) -> Path:
    return Path(course_dir) / LEDGER_DIR / assignment / f"{student}.jsonl"


def _migrate(connection: sqlite3.Connection) -> None:
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
    values = asdict(row)
    values["passed"] = int(row.passed)
    values["student"] = clean.line(row.student, 200)
    values["detail"] = clean.line(row.detail, 500)  # always one clean line
    values["review"] = clean.line(row.review, 300)
    return values


def _insert(connection: sqlite3.Connection, values_list: list[dict]) -> None:
    with connection:  # commits, or rolls back on error
        for values in values_list:
            connection.execute(
                f"INSERT OR REPLACE INTO results ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join(':' + c for c in COLUMNS)})", values)


def save(course_dir: Path, row: Row, wait: float | None = None) -> None:
    """Insert or replace the row of (student, assignment) in one transaction (with earlier pending rows).

    Raises StoreUnavailable when the database stays locked for `wait` seconds; the row
    is then appended to the pending file and written by a later save.
    """
    values = _values(row)
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
    rows = []
    for line in path.read_text().splitlines():
        try:
            values = json.loads(line)
        except ValueError:
            continue
        rows.append({c: values.get(c) for c in COLUMNS} | {"review": values.get("review") or "",
                                                           "kind": values.get("kind") or "competition"})
    return rows


def load(course_dir: Path, assignment: str) -> list[Row]:
    """Every stored row of `assignment`, by student."""
    if not db_path(course_dir).is_file():
        return []

    def select(connection):
        cursor = connection.execute(
            f"SELECT {', '.join(COLUMNS)} FROM results WHERE assignment = ? ORDER BY student", (assignment,))
        return [dict(zip(COLUMNS, values)) for values in cursor]

    rows = _retrying(course_dir, select, WAIT_S)
    return [Row(**{**r, "passed": bool(r["passed"])}) for r in rows]


def save_ledger(course_dir: Path, assignment: str, student: str, text: str, suffix: str = ".jsonl") -> Path:
    """Keep a run's ledger (or, with `suffix`, a log) beside the database, atomically, never through a link."""
    relative = Path(LEDGER_DIR) / assignment / f"{student}{suffix}"
    return safefs.write_bytes(Path(course_dir), relative, text.encode("utf-8", errors="replace"))
