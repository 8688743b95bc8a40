"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Used wherever the course, the grader or the benchmark writes results that someone may be
reading at the same moment (leaderboards, ledgers, benchmark tables).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


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
