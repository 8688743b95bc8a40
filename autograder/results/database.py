"""The results store's database (`autograder.results.store` reads and writes the rows): where it is (a
path or a SQLAlchemy URL: `resolve_url`, `describe`), one engine per store and process, a transaction
retried while the store is locked (`run`), the ``results`` table and its migrations from older versions
(`_ensure`)."""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from autograder.grading import attempts as attempts_
from autograder.results import clean

DB_NAME = "grades.db"
ENV = "AUTOGRADER_DB"  # a path or a SQLAlchemy URL; below an explicit url=, above <course>/grades.db
STATUSES = ("ok", "failed", "timeout", "error")

METADATA = sa.MetaData()
RESULTS = sa.Table(
    "results", METADATA,
    sa.Column("student", sa.String(255), primary_key=True),
    sa.Column("assignment", sa.String(255), primary_key=True),
    sa.Column("track", sa.String(255), primary_key=True),
    sa.Column("accuracy", sa.Float),
    sa.Column("annotations", sa.Integer),
    sa.Column("passed", sa.Integer, nullable=False),  # 0/1, as the first SQLite release stored it
    sa.Column("score", sa.Float),
    sa.Column("max_score", sa.Float),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("runtime", sa.Float, nullable=False),
    sa.Column("graded_at", sa.String(40), nullable=False),
    # added after the first release (old tables gain them: `_ensure`)
    sa.Column("evaluations", sa.Integer),
    sa.Column("submissions", sa.Integer),
    sa.Column("review", sa.Text, nullable=False, server_default=""),
    sa.Column("kind", sa.String(16), nullable=False, server_default="competition"),
    sa.Column("level", sa.String(16), nullable=False, server_default="combined"),
    # graded attempts (`autograder.grading.attempts`): the notebook's key, the attempt's number, the student's count
    sa.Column("notebook", sa.String(64), primary_key=True, server_default=attempts_.UNKNOWN),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    # when a regraded notebook first made a counted submission; no regrade clears it (`_insert`)
    sa.Column("counted_at", sa.String(40)),
    sa.CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})", name="results_status"),
)
KEY = ["student", "assignment", "track", "notebook"]
# The first release's SQLite table, what old course folders hold (tests build one from it).
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
# a driver SQLAlchemy names -> the package that provides it
_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "pg8000": "pg8000",
             "pymysql": "PyMySQL", "mysqldb": "mysqlclient", "oracledb": "oracledb", "pyodbc": "pyodbc"}


class StoreUnavailable(RuntimeError):
    """The results store stayed locked or unreachable; the rows were kept as pending."""


class StoreConfigError(ValueError):
    """The store's URL is not usable: not a URL, an unknown database, a missing driver, no such folder."""


def db_path(course_dir: Path) -> Path:
    """The default store: the course's SQLite file."""
    return Path(course_dir) / DB_NAME



# --- where the store is ----------------------------------------------------------------------------


def resolve_url(course_dir: Path, url: str | None = None) -> str:
    """The store's SQLAlchemy URL: `url` (a URL or a path), else $AUTOGRADER_DB, else <course>/grades.db.

    A path becomes ``sqlite:///<absolute path>``; a bare ``postgresql://`` uses psycopg (3) when
    psycopg2 is not installed. Raises StoreConfigError for something that is not a database URL,
    an unknown database, or a driver that is not installed (naming the package to install).
    """
    value = str(url or os.environ.get(ENV) or db_path(course_dir))
    if "://" not in value:  # a path (not resolved: a symlinked file must stay visible as one)
        return f"sqlite:///{Path(value).expanduser().absolute()}"
    return _checked(value)


@functools.lru_cache(maxsize=64)
def _checked(value: str) -> str:
    try:
        parsed = sa.engine.make_url(value)
    except sa.exc.ArgumentError as exc:
        raise StoreConfigError(f"not a database URL: {value!r} (e.g. sqlite:///path/grades.db, "
                               "postgresql+psycopg://user:password@host/database, or a path)") from exc
    if parsed.drivername == "postgresql" and not importlib.util.find_spec("psycopg2") \
            and importlib.util.find_spec("psycopg"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    shown = parsed.render_as_string(hide_password=True)
    try:
        dialect = parsed.get_dialect()
    except sa.exc.NoSuchModuleError as exc:
        raise StoreConfigError(f"{shown}: SQLAlchemy knows no database {parsed.drivername!r} "
                               "(e.g. sqlite, postgresql+psycopg)") from exc
    if getattr(dialect, "is_async", False):
        raise StoreConfigError(f"{shown}: {dialect.driver} is an asyncio driver; use a plain one "
                               "(e.g. postgresql+psycopg://)")
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        package = _PACKAGES.get(dialect.driver, dialect.driver)
        raise StoreConfigError(f"{shown}: the database driver {dialect.driver!r} is not installed; "
                               f"pip install '{package}'") from exc
    return parsed.render_as_string(hide_password=False)


def describe(course_dir: Path, url: str | None = None) -> str:
    """The store for a message: the SQLite file's path, or the URL without its password.

    Never raises and needs no driver: it also names a store that cannot be opened.
    """
    value = str(url or os.environ.get(ENV) or db_path(course_dir))
    if "://" not in value:
        return str(Path(value).expanduser().absolute())
    try:
        path = sqlite_file(value)
        return str(path) if path else sa.engine.make_url(value).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(not a database URL)"


def sqlite_file(url: str) -> Path | None:
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


# --- engines and transactions ----------------------------------------------------------------------

_ENGINES: dict[str, sa.Engine] = {}
_READY: set[str] = set()  # non-SQLite stores whose table is known to be current in this process
_LOCK = threading.Lock()


def _engine(url: str) -> sa.Engine:
    """The process's engine for `url` (one connection pool per store)."""
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = _new_engine(url)
        return engine


def _new_engine(url: str) -> sa.Engine:
    if sa.engine.make_url(url).get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    # a short busy timeout while connecting (switching an old file to WAL waits for its lock; `_run`
    # retries); each transaction sets its own from the time left (`_begin`)
    engine = sa.create_engine(url, connect_args={"timeout": 1.0})
    path = sqlite_file(url)

    def identity() -> tuple[int, int] | None:
        try:
            found = os.stat(path) if path else None
        except OSError:
            return None
        return found and (found.st_dev, found.st_ino)

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (below), sqlite3 does not
        dbapi_connection.execute("PRAGMA journal_mode=WAL")  # readers and one writer at a time, no waiting
        record.info["file"] = identity()

    @sa.event.listens_for(engine, "checkout")
    def _checkout(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.info.get("file") != identity():  # grades.db was deleted or replaced: a new connection
            raise sa.exc.DisconnectionError("the database file changed")

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        options = connection.get_execution_options()
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(options.get('busy_ms', 30_000))}")
        # a writer takes the lock up front: a deferred transaction that read first could not wait for it
        connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get("write") else "BEGIN")

    return engine


def _forget_engines() -> None:
    """In a forked child: never use the parent's pooled connections."""
    for engine in _ENGINES.values():
        engine.dispose(close=False)
    _ENGINES.clear()
    _READY.clear()


os.register_at_fork(after_in_child=_forget_engines)

T = TypeVar("T")


def _transient(exc: sa.exc.DBAPIError) -> bool:
    return isinstance(exc, sa.exc.OperationalError) or exc.connection_invalidated


def run(url: str, action: Callable[[sa.Connection], T], wait: float, write: bool) -> T:
    """Run action(connection) in one transaction; transient failures are retried for `wait` seconds."""
    engine = _engine(url)
    path = sqlite_file(url)
    shown = str(path) if path else sa.engine.make_url(url).render_as_string(hide_password=True)
    deadline = time.monotonic() + wait
    delay = 0.2
    while True:
        if path is not None and path.is_symlink():
            raise StoreUnavailable(f"{path} is a symlink; refusing to write through it")
        left = deadline - time.monotonic()
        try:
            with engine.connect() as connection:
                connection.execution_options(write=write, busy_ms=int(max(min(left, 30.0), 0.05) * 1000))
                with connection.begin():
                    _ensure(connection, url)
                    if write and connection.dialect.name == "postgresql":  # writers queue, readers go on
                        connection.exec_driver_sql("LOCK TABLE results IN SHARE ROW EXCLUSIVE MODE")
                    return action(connection)
        except sa.exc.DBAPIError as exc:
            if not _transient(exc):
                raise
            if time.monotonic() + delay >= deadline:
                raise StoreUnavailable(f"{shown}: {clean.first_line(exc.orig or exc)}") from exc
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


_OLD = "results_before_migration"  # the old table while its rows are copied


def _ensure(connection: sa.Connection, url: str) -> None:
    """Create the table, or bring an older one up to date, in the caller's transaction."""
    if url in _READY:
        return
    if connection.dialect.name == "postgresql":  # one process at a time creates or migrates the table
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": 0x67726164})
    if connection.dialect.name == "sqlite":  # one cheap query, every transaction (the file may be new)
        info = connection.exec_driver_sql("PRAGMA table_info(results)").all()  # cid, name, type, notnull, default, pk
        present = [r[1] for r in info]
        key = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
    else:
        inspector = sa.inspect(connection)
        exists = inspector.has_table("results")
        present = [c["name"] for c in inspector.get_columns("results")] if exists else []
        key = inspector.get_pk_constraint("results")["constrained_columns"] if exists else []
    if not present:
        RESULTS.create(connection, checkfirst=True)
    elif key != KEY:  # keyed by (student, assignment) or (student, assignment, track): rebuild with the new key
        connection.exec_driver_sql(f"ALTER TABLE results RENAME TO {_OLD}")
        if connection.dialect.name == "postgresql":  # its key's index keeps the name the new table's needs
            old_key = sa.inspect(connection).get_pk_constraint(_OLD).get("name")
            if old_key:
                connection.exec_driver_sql(f'ALTER TABLE {_OLD} DROP CONSTRAINT "{old_key}"')
        RESULTS.create(connection)
        kept = ", ".join(c for c in present if c in RESULTS.c)  # the added columns take their defaults
        connection.exec_driver_sql(f"INSERT INTO results ({kept}) SELECT {kept} FROM {_OLD}")
        connection.exec_driver_sql(f"DROP TABLE {_OLD}")
    else:
        for column in RESULTS.columns:
            if column.name not in present:
                declaration = sa.schema.CreateColumn(column).compile(dialect=connection.dialect)
                connection.exec_driver_sql(f"ALTER TABLE results ADD COLUMN {declaration}")
    if connection.dialect.name != "sqlite":
        _READY.add(url)
