"""The results store: one row per (student, assignment) in ``<course>/grades.db``.

Each row is written in its own transaction, so a crash in the middle of a batch
never leaves a half-written row, and regrading a student replaces the row. The
service's ledger of every run is kept beside the database in
``<course>/ledgers/<assignment>/<student>.jsonl``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from course.files import write_atomic

DB_NAME = "grades.db"
LEDGER_DIR = "ledgers"
STATUSES = ("ok", "failed", "timeout", "error")

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


@dataclass(frozen=True)
class Row:
    """The graded outcome of one submission. Numbers from the service, points from nbgrader."""

    student: str
    assignment: str
    track: str
    accuracy: float | None  # on the private split; None without a submission
    annotations: int | None  # distinct annotations when the last submission was made
    passed: bool
    score: float | None  # nbgrader's points
    max_score: float | None
    status: str  # one of STATUSES
    detail: str  # one line
    runtime: float  # seconds, wall clock
    graded_at: str  # ISO 8601, UTC


COLUMNS = [f.name for f in fields(Row)]


def db_path(course_dir: Path) -> Path:
    return Path(course_dir) / DB_NAME


def ledger_path(course_dir: Path, assignment: str, student: str) -> Path:
    return Path(course_dir) / LEDGER_DIR / assignment / f"{student}.jsonl"


def _connect(course_dir: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(db_path(course_dir), timeout=30)
    connection.execute(_SCHEMA)
    return connection


def save(course_dir: Path, row: Row) -> None:
    """Insert or replace the row of (student, assignment) in one transaction."""
    if row.status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {row.status!r}.")
    values = asdict(row)
    values["passed"] = int(row.passed)
    values["detail"] = " ".join(row.detail.split())  # always one line
    connection = _connect(course_dir)
    try:
        with connection:  # commits, or rolls back on error
            connection.execute(
                f"INSERT OR REPLACE INTO results ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join(':' + c for c in COLUMNS)})", values)
    finally:
        connection.close()


def load(course_dir: Path, assignment: str) -> list[Row]:
    """Every stored row of `assignment`, by student."""
    if not db_path(course_dir).is_file():
        return []
    connection = _connect(course_dir)
    try:
        cursor = connection.execute(
            f"SELECT {', '.join(COLUMNS)} FROM results WHERE assignment = ? ORDER BY student", (assignment,))
        rows = [dict(zip(COLUMNS, values)) for values in cursor]
    finally:
        connection.close()
    return [Row(**{**r, "passed": bool(r["passed"])}) for r in rows]


def save_ledger(course_dir: Path, assignment: str, student: str, text: str, suffix: str = ".jsonl") -> Path:
    """Keep a run's ledger (or, with `suffix`, its nbgrader log) beside the database, atomically."""
    return write_atomic(ledger_path(course_dir, assignment, student).with_suffix(suffix), text)
