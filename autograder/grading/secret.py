"""One secret per assignment, kept in the course: the same shuffle for everyone and every regrade.

``<course>/.autograder/secrets/<assignment>`` (mode 0600, git-ignored, outside every
sandbox) holds 32 random bytes in hex. The grading data of a run is shuffled with a
seed derived from it, so regrading an unchanged notebook gives the same row and
ties are not broken by noise. Rotate it (``autograder secret rotate <assignment>``)
when a shuffle may have leaked, e.g. after publishing executed notebooks; then
regrade everyone so the rows stay comparable.

**Rounds rotate the shuffle by default.** A competition grades each round into a store of
its own (``autograder grade ... --db round2.db``). The seed of a run graded into a store
other than the course's default one also mixes in that store's URL (`round_key`), so each
round has its own shuffle of every track without a command to remember: labels bought in
round 1 (shown in its feedback, or typed in from its ledger) point at other images in
round 2, while every regrade *within* a round keeps its shuffle. The default store keeps
the seed it always had.
"""

from __future__ import annotations

import hashlib
import os
import secrets as _secrets
from pathlib import Path

FOLDER = "secrets"


def _path(private_dir: Path, assignment: str) -> Path:
    folder = Path(private_dir) / FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder / assignment


def _write(path: Path, value: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    os.replace(tmp, path)


def read_or_create(private_dir: Path, assignment: str) -> str:
    path = _path(private_dir, assignment)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        _write(path, _secrets.token_hex(32))
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as handle:
        value = handle.read().strip()
    if len(value) < 32:
        raise ValueError(f"{path} does not hold a secret; delete it or run `autograder secret rotate`.")
    return value


def rotate(private_dir: Path, assignment: str, value: str | None = None) -> Path:
    """A new random secret for `assignment` (or `value`: a fixed shuffle, e.g. for a test course)."""
    if value is not None and len(value) < 32:
        raise ValueError("a secret needs at least 32 characters (e.g. secrets.token_hex(32))")
    path = _path(private_dir, assignment)
    _write(path, _secrets.token_hex(32) if value is None else value)
    return path


def round_key(course_dir: Path, db_url: str | None) -> str:
    """What makes a round's shuffle its own: '' for the course's default store (or none named), else the
    resolved URL of the store named with ``--db`` (a path is made absolute; the password is never in it)."""
    if not db_url:
        return ""
    from autograder.results import store  # SQLAlchemy: only when a store is named

    named, default = store.resolve_url(course_dir, db_url), store.resolve_url(course_dir, None)
    if named == default:
        return ""
    from sqlalchemy.engine import make_url

    return make_url(named).render_as_string(hide_password=True)


def seed(private_dir: Path, assignment: str, track_name: str, round_key: str = "") -> int:
    """The shuffle seed of `assignment` on `track_name` (64 bits), in the round of `round_key` (`round_key`)."""
    value = read_or_create(private_dir, assignment)
    text = f"{value}|{assignment}|{track_name}" + (f"|round|{round_key}" if round_key else "")
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big")
