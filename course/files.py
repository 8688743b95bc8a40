"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Used wherever the course, the grader or the benchmark writes results that someone may be
reading at the same moment (leaderboards, ledgers, benchmark tables).
"""

from __future__ import annotations

import contextlib
import os
import secrets
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


@contextlib.contextmanager
def exclusive(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (waits for it): one process makes `path`, the others
    wait and then read it, instead of all making the same file at once (parallel graders, test workers)."""
    lock = Path(path).with_name(Path(path).name + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")
    except OSError:  # a read-only folder (the grader's sandbox binds the checkpoint read-only): nothing to guard
        handle = None
    if handle is None or fcntl is None:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
