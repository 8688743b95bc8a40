"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Used wherever the course, the grader or the benchmark writes results that someone may be
reading at the same moment (leaderboards, ledgers, benchmark tables).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; `exclusive` then only does what it wraps
    fcntl = None


def temp_beside(path: str | Path) -> Path:
    """A fresh temp name beside `path`, unique per process and call: two processes writing the
    same file at once (parallel graders training one baseline) never write into each other's temp file."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")


def write_atomic(path: str | Path, content: str | bytes) -> Path:
    """Write `content` (text as UTF-8) to a temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    try:
        tmp.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


LOCK_WAIT_S = 1800.0  # the longest `exclusive` waits for another holder (a baseline trains in minutes)
LOCK_POLL_S = 0.5


def _open_lock(lock: Path) -> int | None:
    """A descriptor of the regular file `lock` (made if missing), or None where no safe lock can be had: a
    read-only folder, or something planted there (a symbolic link, a FIFO that would block the open)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, flags, 0o644)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def exclusive(path: str | Path, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` while the body runs: one process makes `path`, the others
    wait and then read it, instead of all making the same file at once (parallel graders, test workers).

    Best effort by design: where no lock can be had (a read-only folder, Windows, a lock path that is not
    a plain file) or another holder keeps it past `wait_s`, the body runs unlocked; the writes it guards
    are atomic anyway (`write_atomic`, `temp_beside`), so the worst case is work done twice.
    """
    lock = Path(path).with_name(Path(path).name + ".lock")
    fd = _open_lock(lock) if fcntl is not None else None
    if fd is None:
        yield
        return
    try:
        lock_within(fd, wait_s)  # not got in time: run unlocked rather than hang (a holder that never lets go)
        yield
    finally:
        os.close(fd)  # releases the lock


def lock_within(fd: int, wait_s: float, poll_s: float = LOCK_POLL_S) -> bool:
    """Take an exclusive ``flock`` on `fd`, waiting at most `wait_s` seconds; whether it was taken."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
