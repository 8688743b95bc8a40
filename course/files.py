"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Used wherever the course, the grader or the benchmark writes results that someone may be
reading at the same moment (leaderboards, ledgers, benchmark tables).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: str | Path, content: str | bytes) -> Path:
    """Write `content` (text as UTF-8) to a temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    os.replace(tmp, path)
    return path
