"""The results store on SQLAlchemy: one transaction per submission, concurrent writers, old files, URLs.

SQLite tests run everywhere; the PostgreSQL ones run on a throw-away local cluster (conftest.py's
`postgres_url`), skipped only where the server binaries or psycopg are missing, and never in CI
(COURSE_REQUIRE_POSTGRES=1 makes that a failure).
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from autograder.results import database, leaderboard, store
from helpers.rows import row as stored_row

A = "toy"


def row(student: str, track: str = "7,1", accuracy: float = .95, annotations: int = 3, **kw) -> store.Row:
    return stored_row(student, accuracy, annotations, assignment=A, track=track, **kw)


def graded_on_two_tracks(student: str, annotations: int = 3) -> list[store.Row]:
    parts = [row(student, "7,1", .95, annotations, level="track"), row(student, "2,5", .93, annotations + 1,
                                                                      level="track")]
    return parts + [row(student, "7,1 2,5", .94, 2 * annotations + 1)]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(store.ENV, raising=False)


# --- SQLite ------------------------------------------------------------------------------------


def test_round_trip_in_wal_mode_and_no_file_made_by_a_read(tmp_path):
    assert store.load(tmp_path, A) == [] and not (tmp_path / store.DB_NAME).exists()
    saved = row("ana", evaluations=2, submissions=1, review="look")
    store.save(tmp_path, saved)
    store.save(tmp_path, graded_on_two_tracks("bo"))
    assert store.load(tmp_path, A) == [saved, graded_on_two_tracks("bo")[2]]
    assert store.load_tracks(tmp_path, A) == sorted(graded_on_two_tracks("bo")[:2], key=lambda r: r.track)
    assert store.load(tmp_path, "other") == []
    with sqlite3.connect(tmp_path / store.DB_NAME) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_regrade_replaces_every_row_of_the_submission(tmp_path):
    store.save(tmp_path, graded_on_two_tracks("bo"))
    store.save(tmp_path, row("ana"))
    store.save(tmp_path, row("bo", accuracy=.5))  # regraded on one track: its per-track rows go
    assert [(r.student, r.track, r.accuracy) for r in store.load(tmp_path, A)] == [("ana", "7,1", .95),
                                                                                   ("bo", "7,1", .5)]
    assert store.load_tracks(tmp_path, A) == []
    store.save(tmp_path, graded_on_two_tracks("bo", annotations=9))
    assert [r.annotations for r in store.load_tracks(tmp_path, A)] == [10, 9]


def test_a_database_file_deleted_between_saves_is_made_anew(tmp_path):
    store.save(tmp_path, row("ana"))
    for name in (store.DB_NAME, store.DB_NAME + "-wal", store.DB_NAME + "-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    assert store.load(tmp_path, A) == []
    store.save(tmp_path, row("bo"))  # not into the deleted file through a pooled connection
    assert [r.student for r in store.load(tmp_path, A)] == ["bo"]
    with sqlite3.connect(tmp_path / store.DB_NAME) as connection:
        assert connection.execute("SELECT student FROM results").fetchall() == [("bo",)]


def test_an_exception_in_the_middle_of_a_transaction_writes_nothing(tmp_path):
    store.save(tmp_path, graded_on_two_tracks("bo"))
    engine = database._engine(store.resolve_url(tmp_path))
    seen = []

    def fail_on_insert(_conn, _cursor, statement, _parameters, _context, _many):
        seen.append(statement.split()[0])
        if statement.startswith("INSERT"):  # after the DELETE of the submission's earlier rows
            raise RuntimeError("the grader died here")

    sa.event.listen(engine, "before_cursor_execute", fail_on_insert)
    try:
        with pytest.raises(RuntimeError, match="died"):
            store.save(tmp_path, graded_on_two_tracks("bo", annotations=50))
    finally:
        sa.event.remove(engine, "before_cursor_execute", fail_on_insert)
    assert "DELETE" in seen and "INSERT" in seen
    assert [r.annotations for r in store.load(tmp_path, A)] == [7]  # the earlier rows, all of them
    assert len(store.load_tracks(tmp_path, A)) == 2
    assert not (tmp_path / store.PENDING).exists()  # not a store outage: nothing kept for later


def test_a_transaction_failing_on_a_transient_error_is_retried_whole(tmp_path):
    store.save(tmp_path, graded_on_two_tracks("bo"))
    engine = database._engine(store.resolve_url(tmp_path))
    statements = []

    def fail_once(_conn, _cursor, statement, _parameters, _context, _many):
        statements.append(statement.split()[0])
        if statement.startswith("INSERT") and statements.count("INSERT") == 1:
            raise sqlite3.OperationalError("database is locked")  # as a lost race would

    sa.event.listen(engine, "before_cursor_execute", fail_once)
    try:
        store.save(tmp_path, graded_on_two_tracks("bo", annotations=20), wait=30)
    finally:
        sa.event.remove(engine, "before_cursor_execute", fail_once)
    assert statements.count("DELETE") == 2 and statements.count("INSERT") == 2  # the whole transaction again
    assert [r.annotations for r in store.load_tracks(tmp_path, A)] == [21, 20]


def test_an_old_sqlite_file_is_migrated(tmp_path):
    # the format before hidden tracks: keyed by (student, assignment), none of the added columns,
    # a rollback journal
    connection = sqlite3.connect(tmp_path / store.DB_NAME)
    connection.execute(database._SCHEMA.replace("PRIMARY KEY (student, assignment, track)",
                                             "PRIMARY KEY (student, assignment)"))
    connection.executemany("INSERT INTO results VALUES (?, 'toy', '7,1', ?, 5, 1, 2, 2, 'ok', 'd', 1.0, 't')",
                           [("ana", .91), ("bo", .92)])
    connection.commit()
    connection.close()
    old = store.load(tmp_path, A)
    assert [(r.student, r.accuracy, r.review, r.kind, r.level, r.evaluations) for r in old] == [
        ("ana", .91, "", "competition", "combined", None), ("bo", .92, "", "competition", "combined", None)]
    store.save(tmp_path, graded_on_two_tracks("bo"))  # the new key holds a row per track
    assert [r.track for r in store.load_tracks(tmp_path, A)] == ["2,5", "7,1"]
    with sqlite3.connect(tmp_path / store.DB_NAME) as connection:
        assert [r[1] for r in connection.execute("PRAGMA table_info(results)")] == store.COLUMNS
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert not connection.execute("SELECT name FROM sqlite_master WHERE name LIKE '%before%'").fetchall()


def _write_many(course_dir: str, prefix: str, n: int, url: str | None) -> None:
    for i in range(n):
        store.save(Path(course_dir), graded_on_two_tracks(f"{prefix}{i:03d}") if i % 5 == 0
                   else row(f"{prefix}{i:03d}", annotations=i), url=url)


def _concurrent_writers(course_dir: Path, url: str | None) -> None:
    store.save(course_dir, row("before"), url=url)  # the parent has an open engine when it forks
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_write_many, args=(str(course_dir), p, 50, url)) for p in "pq"]
    for writer in writers:
        writer.start()
    reads = 0
    while any(w.is_alive() for w in writers):  # a reader (the leaderboard) meanwhile
        store.load(course_dir, A, url=url)
        reads += 1
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    students = {r.student for r in store.load(course_dir, A, url=url)}
    assert students == {"before", *(f"{p}{i:03d}" for p in "pq" for i in range(50))}
    assert len(store.load_tracks(course_dir, A, url=url)) == 2 * 2 * 10
    assert reads > 0


def test_two_processes_write_at_once_and_every_row_is_there(tmp_path):
    _concurrent_writers(tmp_path, None)
    with sqlite3.connect(tmp_path / store.DB_NAME) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_locked_store_is_waited_for_then_rows_are_kept_as_pending_and_flushed_later(tmp_path):
    store.save(tmp_path, row("ana"))
    holder = sqlite3.connect(tmp_path / store.DB_NAME, timeout=0, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    threading.Timer(0.7, holder.rollback).start()
    started = time.monotonic()
    store.save(tmp_path, row("bo"), wait=20)  # waited for the lock, then written
    assert 0.6 < time.monotonic() - started < 15
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(store.StoreUnavailable, match="locked"):
        store.save(tmp_path, graded_on_two_tracks("cy"), wait=0.5)
    assert (tmp_path / store.PENDING).is_file()
    assert [r.student for r in store.load(tmp_path, A)] == ["ana", "bo"]  # readers go on (WAL)
    with pytest.raises(store.StoreUnavailable):
        store.flush_pending(tmp_path, wait=0.3)
    holder.rollback()
    holder.close()
    assert store.flush_pending(tmp_path) == 1
    assert not (tmp_path / store.PENDING).exists()
    assert [r.student for r in store.load(tmp_path, A)] == ["ana", "bo", "cy"]
    assert len(store.load_tracks(tmp_path, A)) == 2
    assert store.flush_pending(tmp_path) == 0


def test_a_symlinked_sqlite_file_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere.db"
    sqlite3.connect(elsewhere).close()
    course = tmp_path / "course"
    course.mkdir()
    (course / store.DB_NAME).symlink_to(elsewhere)
    with pytest.raises(store.StoreUnavailable, match="symlink"):
        store.save(course, row("ana"), wait=1)
    assert (course / store.PENDING).is_file()  # the row is not lost
    assert elsewhere.stat().st_size == 0


def test_resolve_url_explicit_then_environment_then_the_course_file(tmp_path, monkeypatch):
    default = f"sqlite:///{tmp_path / store.DB_NAME}"
    assert store.resolve_url(tmp_path) == default
    monkeypatch.setenv(store.ENV, str(tmp_path / "env.db"))
    assert store.resolve_url(tmp_path) == f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv(store.ENV, f"sqlite+pysqlite:///{tmp_path / 'env-url.db'}")
    assert store.resolve_url(tmp_path) == f"sqlite+pysqlite:///{tmp_path / 'env-url.db'}"
    assert store.resolve_url(tmp_path, str(tmp_path / "x.db")) == f"sqlite:///{tmp_path / 'x.db'}"
    monkeypatch.chdir(tmp_path)
    assert store.resolve_url(tmp_path / "elsewhere", "rel.db") == f"sqlite:///{tmp_path / 'rel.db'}"
    monkeypatch.setenv(store.ENV, "")
    assert store.resolve_url(tmp_path) == default
    assert store.describe(tmp_path) == str(tmp_path / store.DB_NAME)
    assert store.describe(tmp_path, "postgresql+psycopg://me:secret@db.example/grades") == (
        "postgresql+psycopg://me:***@db.example/grades")


def test_bad_urls_and_missing_drivers_say_what_to_do(tmp_path):
    with pytest.raises(store.StoreConfigError, match="not a database URL"):
        store.resolve_url(tmp_path, "::grades://")
    with pytest.raises(store.StoreConfigError, match="knows no database 'nosuchdb'"):
        store.resolve_url(tmp_path, "nosuchdb://host/x")
    with pytest.raises(store.StoreConfigError, match="asyncio driver"):
        store.resolve_url(tmp_path, "sqlite+aiosqlite:///x.db")
    with pytest.raises(store.StoreConfigError, match="no such folder"):
        store.save(tmp_path, row("ana"), url=str(tmp_path / "missing" / "grades.db"))
    assert (tmp_path / store.PENDING).is_file()  # kept until the store is fixed
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        with pytest.raises(store.StoreConfigError, match=r"'psycopg2' is not installed; pip install 'psycopg2-binary'"):
            store.resolve_url(tmp_path, "postgresql+psycopg2://me@localhost/grades")
    else:
        pytest.skip("psycopg2 is installed: no missing driver to report")


def test_a_store_url_outside_the_course_through_the_environment_and_the_leaderboard(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    url = f"sqlite+pysqlite:///{shared / 'results.db'}"
    monkeypatch.setenv(store.ENV, url)
    for number, course in enumerate(("machine1", "machine2")):  # two copies of the course, one store
        (tmp_path / course).mkdir()
        store.save(tmp_path / course, row(f"s{number}", annotations=number + 1))
    monkeypatch.delenv(store.ENV)
    assert not (tmp_path / "machine1" / store.DB_NAME).exists()
    assert store.load(tmp_path / "machine1", A) == []
    paths = leaderboard.build(tmp_path / "machine1", A, url=url)
    assert paths["csv"].read_text().splitlines()[1].startswith("1,s0,")
    assert set(leaderboard.per_track_rows(tmp_path / "machine1", A, url=url)) == set()


# --- PostgreSQL (the store the docs recommend for a large course: a throw-away cluster, conftest.py) ----


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request):
    """The store's URL on each backend: None (the course's SQLite file) or a new PostgreSQL database."""
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def test_both_backends_round_trip_and_regrade(tmp_path, url):
    saved = row("ana", evaluations=2, submissions=1, review="look")
    store.save(tmp_path, saved, url=url)
    store.save(tmp_path, graded_on_two_tracks("bo"), url=url)
    assert store.load(tmp_path, A, url=url) == [saved, graded_on_two_tracks("bo")[2]]
    assert store.load_tracks(tmp_path, A, url=url) == sorted(graded_on_two_tracks("bo")[:2], key=lambda r: r.track)
    store.save(tmp_path, row("bo", accuracy=.5), url=url)  # regraded on one track: its per-track rows go
    assert [(r.student, r.accuracy) for r in store.load(tmp_path, A, url=url)] == [("ana", .95), ("bo", .5)]
    assert store.load_tracks(tmp_path, A, url=url) == [] and store.load(tmp_path, "other", url=url) == []
    assert (tmp_path / store.DB_NAME).exists() == (url is None)  # PostgreSQL: no file in the course


def test_both_backends_write_nothing_when_a_transaction_fails_midway(tmp_path, url):
    store.save(tmp_path, graded_on_two_tracks("bo"), url=url)
    engine = database._engine(store.resolve_url(tmp_path, url))
    seen = []

    def fail_on_insert(_conn, _cursor, statement, _parameters, _context, _many):
        seen.append(statement.split()[0])
        if statement.startswith("INSERT"):
            raise RuntimeError("the grader died here")

    sa.event.listen(engine, "before_cursor_execute", fail_on_insert)
    try:
        with pytest.raises(RuntimeError, match="died"):
            store.save(tmp_path, graded_on_two_tracks("bo", annotations=50), url=url)
    finally:
        sa.event.remove(engine, "before_cursor_execute", fail_on_insert)
    assert "DELETE" in seen and "INSERT" in seen
    assert [r.annotations for r in store.load(tmp_path, A, url=url)] == [7]  # the earlier rows, all of them
    assert len(store.load_tracks(tmp_path, A, url=url)) == 2


def test_postgresql_round_trip_regrade_migration_and_leaderboard(tmp_path, postgres_url):
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:  # a table of the first release: none of the added columns
        connection.exec_driver_sql("DROP TABLE IF EXISTS results")
        connection.exec_driver_sql(
            "CREATE TABLE results (student TEXT NOT NULL, assignment TEXT NOT NULL, track TEXT NOT NULL, "
            "accuracy REAL, annotations INTEGER, passed INTEGER NOT NULL, score REAL, max_score REAL, "
            "status TEXT NOT NULL, detail TEXT NOT NULL, runtime REAL NOT NULL, graded_at TEXT NOT NULL, "
            "PRIMARY KEY (student, assignment, track))")
        connection.exec_driver_sql(
            "INSERT INTO results VALUES ('old', 'toy', '7,1', .5, 9, 0, 0, 2, 'ok', 'd', 1, 't')")
    engine.dispose()
    database._forget_engines()  # this process checks the table again
    [old] = store.load(tmp_path, A, url=postgres_url)
    assert (old.student, old.passed, old.review, old.level) == ("old", False, "", "combined")
    store.save(tmp_path, graded_on_two_tracks("bo"), url=postgres_url)
    store.save(tmp_path, row("ana"), url=postgres_url)
    assert [r.student for r in store.load(tmp_path, A, url=postgres_url)] == ["ana", "bo", "old"]
    assert len(store.load_tracks(tmp_path, A, url=postgres_url)) == 2
    store.save(tmp_path, row("bo", accuracy=.97), url=postgres_url)  # regraded on one track
    assert store.load_tracks(tmp_path, A, url=postgres_url) == []
    paths = leaderboard.build(tmp_path, A, url=postgres_url)
    assert [line.split(",")[1] for line in paths["csv"].read_text().splitlines()[1:]] == ["bo", "ana", "old"]
    assert not (tmp_path / store.DB_NAME).exists()


def test_postgresql_two_processes_write_at_once(tmp_path, postgres_url):
    _concurrent_writers(tmp_path, postgres_url)


def test_no_student_id_names_another_students_kept_ledger(tmp_path):
    """A student folder named like another's hidden-track file ("memo.track25") keeps its own files."""
    runs = {".jsonl": "course ledger\n", ".nbgrader.log": "course log\n",
            ".track25.jsonl": "hidden ledger\n", ".track25.nbgrader.log": "hidden log\n"}
    for suffix, text in runs.items():
        store.save_ledger(tmp_path, A, "memo", text, suffix=suffix)
    for impostor in ("memo.track25", "memo.track25.nbgrader", "latest", "attempts", "course.jsonl"):
        for suffix in (".jsonl", ".nbgrader.log"):
            store.save_ledger(tmp_path, A, impostor, f"{impostor}{suffix}\n", suffix=suffix)
    memo = tmp_path / store.LEDGER_DIR / A / store.LATEST_LEDGERS / "memo"
    assert {p.name: p.read_text() for p in memo.iterdir()} == {
        "course.jsonl": "course ledger\n", "course.nbgrader.log": "course log\n",
        "track25.jsonl": "hidden ledger\n", "track25.nbgrader.log": "hidden log\n"}
    assert store.ledger_path(tmp_path, A, "memo", track="2,5").read_text() == "hidden ledger\n"
    assert store.ledger_path(tmp_path, A, "memo.track25").read_text() == "memo.track25.jsonl\n"
    for bad in ("", ".", "..", "a/b"):
        with pytest.raises(ValueError, match="one folder name"):
            store.save_ledger(tmp_path, A, bad, "x")
    with pytest.raises(ValueError, match="suffix"):
        store.save_ledger(tmp_path, A, "memo", "x", suffix="/../../x.jsonl")
