"""A throw-away PostgreSQL cluster for the store tests: initdb and pg_ctl under a temporary folder.

The server listens on a Unix socket in that folder only (no TCP port), trusts local connections, and
is stopped and removed when the tests end. PostgreSQL refuses to run as root, so under root (CI) the
cluster runs as the ``postgres`` user that Debian's ``postgresql`` package creates.

When the server binaries or the psycopg driver are missing, the tests that need the cluster are
skipped, unless ``COURSE_REQUIRE_POSTGRES=1`` (set by ``.ci/run``): then they fail, so CI cannot
pass without testing the store the docs recommend for a large course or event.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

REQUIRE_ENV = "COURSE_REQUIRE_POSTGRES"
_databases = itertools.count()


def binary(name: str) -> str | None:
    """`name` on PATH, else in the newest /usr/lib/postgresql/<version>/bin (Debian keeps them there)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: _version(p.parent.parent.name))
    return str(versions[-1]) if versions else None


def _version(text: str) -> tuple:
    return tuple(int(part) if part.isdigit() else 0 for part in text.split("."))


def missing() -> str | None:
    """Why no cluster can be started here, or None."""
    if importlib.util.find_spec("psycopg") is None:
        return "the psycopg driver is not installed (pip install -e '.[dev]' installs psycopg[binary])"
    if not (binary("initdb") and binary("pg_ctl")):
        return "PostgreSQL's server binaries (initdb, pg_ctl) are not installed (apt-get install postgresql)"
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            return "running as root without runuser (PostgreSQL refuses to run as root)"
        try:
            import pwd
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user (PostgreSQL refuses to run as root)"
    return None


def required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


@contextmanager
def cluster():
    """Start a cluster; yield the SQLAlchemy URL of its ``postgres`` database; stop and remove it."""
    initdb, pg_ctl = binary("initdb"), binary("pg_ctl")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="test-pg-"))
    if os.geteuid() == 0:
        import pwd
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    run = dict(check=True, capture_output=True, text=True, timeout=180)
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "grader", "--no-sync"], **run)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-w", "-t", "120", "-l", str(root / "log"), "-o",
                        f"-k {root} -c listen_addresses='' -p 5432 -F", "start"], **run)
    except subprocess.CalledProcessError as exc:
        log = (root / "log").read_text()[-2000:] if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"the test PostgreSQL cluster did not start: {exc.stderr}\n{log}") from exc
    try:
        yield f"postgresql+psycopg://grader@/postgres?host={root}&port=5432"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def new_database(server_url: str) -> str:
    """A new, empty database on the cluster at `server_url`: its URL (each test gets its own)."""
    import sqlalchemy as sa

    name = f"t{os.getpid()}_{next(_databases)}"
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    finally:
        engine.dispose()
    return server_url.replace("@/postgres?", f"@/{name}?")
