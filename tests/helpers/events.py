"""The live-event tests' one home: an event built once per test session, real uvicorn servers.

Building an event reads MNIST and shuffles it (tens of seconds on a busy machine), so it is
done once into a template database. A test module either uses the session's shared server
(`live`: one event per slot, so modules never see each other's participants) or starts its own
``autograder serve`` subprocess on a copy of the template (`own`), on 127.0.0.1 and a free port.
Both give the same dict: url, api, code, admin, truth, server, db, c (the pool indices of C).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from contextlib import contextmanager
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
TRACK = "7,1"
SEED = 1
SLOTS = ("api", "close", "participant", "restart", "roster", "board")  # one event each on one shuffle; board last (/board opens the newest)
_TEMPLATE: dict[str, object] = {}


SMALL_TRACK = (7, 1)


def small_event() -> tuple[bytes, bytes, dict]:
    """(pool blob, truth blob, truth) of a 300-image pool of track `SMALL_TRACK` (fixed seed); the private split
    has 40 images: an event's files without MNIST, for the store's and the workers' tests."""
    import numpy as np

    from autograder.event import pool

    rng = np.random.default_rng(0)
    truth = {"track": np.array(SMALL_TRACK), "pool_digits": rng.integers(0, 10, 300),
             "public_digits": rng.integers(0, 10, 50), "private_digits": rng.choice(SMALL_TRACK, 40)}
    blob = pool._npz({k: v.astype(np.int8) for k, v in truth.items()})
    return b"pool file", blob, pool.read_truth(blob)


def template(folder: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    """(database, {slot: (join code, admin token)}) of the session's events; built on first use.

    MNIST is read and shuffled once; every slot is an event of its own on that data, so the
    tests of one module never see another module's participants.
    """
    if "db" not in _TEMPLATE:
        from autograder.event import pool, store

        db = folder / "template.db"
        seed, pool_file, truth = pool.build(tuple(int(d) for d in TRACK.split(",")), SEED)
        events = store.Store(db)
        _TEMPLATE["events"] = {slot: events.create_event((7, 1), "03_clustering", str(seed), pool_file, truth)
                               for slot in SLOTS}
        events.dispose()
        _TEMPLATE["db"] = db
    return _TEMPLATE["db"], _TEMPLATE["events"]  # type: ignore[return-value]


def reuse_pool(monkeypatch, folder: Path) -> None:
    """Make `autograder event create` reuse the template's pool (MNIST read and shuffled once per session)."""
    from autograder.event import pool, store

    db, events = template(folder)
    code, _ = events["api"]
    template_store = store.Store(db)
    blobs = (7, template_store.blob(code, "pool"), template_store.blob(code, "truth"))
    template_store.dispose()
    monkeypatch.setattr(pool, "build", lambda track, seed=None: blobs)


def shared(folder: Path) -> tuple["Server", dict[str, tuple[str, str]]]:
    """One server for the session on a copy of the template (stopped when the tests end)."""
    if "server" not in _TEMPLATE:
        db, events = template(folder)
        (folder / "session-server").mkdir(exist_ok=True)
        server = Server(copy_db(db, folder / "session-server" / "events.db")).start()
        atexit.register(server.stop)
        _TEMPLATE["server"] = server
    return _TEMPLATE["server"], _TEMPLATE["events"]  # type: ignore[return-value]


def copy_db(source: Path, target: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """``autograder serve`` in a subprocess on 127.0.0.1."""

    db: Path
    rate: float = 20.0
    burst: int = 40
    port: int = 0
    process: subprocess.Popen | None = None
    args: tuple[str, ...] = ()  # more `autograder serve` options, e.g. ("--trusted-proxy", "127.0.0.1")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "Server":
        self.port = self.port or free_port()
        log = open(self.db.with_suffix(".log"), "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autograder.event.cli", "serve", "--db", str(self.db), "--host", "127.0.0.1",
             "--port", str(self.port), "--rate", str(self.rate), "--burst", str(self.burst), *self.args],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the event server exited: {self.db.with_suffix('.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the event server did not start in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def call(url: str, body=None, token: str | None = None, raw: bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict | bytes]:
    """One HTTP request; (status, JSON reply or bytes)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=all_headers, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            status, content, kind = r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, content, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    return status, (json.loads(content) if "json" in kind else content)


def _described(server: "Server", code: str, admin: str, db: Path) -> dict:
    from autograder.event import pool, store

    held = store.Store(db)
    try:
        truth = pool.read_truth(held.blob(code, "truth"))
    finally:
        held.dispose()
    import numpy as np

    return {"server": server, "url": server.url, "api": f"{server.url}/api/events/{code}", "code": code,
            "admin": admin, "truth": truth, "db": db,
            "c": np.flatnonzero(np.isin(truth["pool_digits"], truth["track"]))}


def live(tmp_path_factory, slot: str = "api") -> dict:
    """Event `slot` on the session's shared server (see `SLOTS`)."""
    server, events = shared(tmp_path_factory.getbasetemp())
    code, admin = events[slot]
    return _described(server, code, admin, server.db)


@contextmanager
def own(tmp_path_factory, slot: str = "api", name: str = "event", invites: list[str] | None = None,
        **limits):
    """A server of the test's own on a copy of the template (`limits`: rate, burst), stopped afterwards.

    `invites`: names given personal codes first (the dict's ``invites``: name -> code).
    """
    from autograder.event import store

    db, events = template(tmp_path_factory.getbasetemp())
    code, admin = events[slot]
    copy = copy_db(db, tmp_path_factory.mktemp(name) / "events.db")
    codes = {}
    if invites:
        held = store.Store(copy)
        codes = held.add_invites(code, invites)
        held.dispose()
    server = Server(copy, **limits).start()
    try:
        yield {**_described(server, code, admin, copy), "invites": codes}
    finally:
        server.stop()
