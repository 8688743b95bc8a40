"""File access for the grader (root) that never follows a link a participant could plant.

The grader reads submissions and writes into the course only through these
helpers: every path component is opened with ``O_NOFOLLOW`` relative to the
previous one, only regular files and folders are accepted, sizes are capped.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024


class UnsafePath(OSError):
    """A symlink, FIFO, device or socket where a regular file or folder was expected."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a regular file"


def problem_in_tree(root: Path, top: Path | None = None) -> str:
    """'' if `root` and everything under it are plain folders and regular files, else what is not.

    `top` (an ancestor of root) makes every folder between them checked as well.
    """
    root = Path(root)
    chain = []
    if top is not None:
        rel = root.relative_to(top)
        chain = [top.joinpath(*rel.parts[:i]) for i in range(1, len(rel.parts))]
    for path in chain + [root]:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return ""
        if not stat.S_ISDIR(mode):
            return f"{path.name} is {_kind(mode)}"
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            mode = os.lstat(os.path.join(folder, name)).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                rel = os.path.relpath(os.path.join(folder, name), root)
                return f"{rel} is {_kind(mode)}"
    return ""


def read_bytes(path: Path, limit: int = MAX_NOTEBOOK_BYTES) -> bytes:
    """The content of regular file `path` (never through a symlink), at most `limit` bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(f"{Path(path).name} is {_kind(info.st_mode)}")
        if info.st_size > limit:
            raise UnsafePath(f"{Path(path).name} is larger than {limit // 2**20} MB")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise UnsafePath(f"{Path(path).name} is larger than {limit // 2**20} MB")
        return data
    finally:
        os.close(fd)


def read_tail(path: Path, limit: int) -> str:
    """The last `limit` bytes of a regular file as text ('' when missing or not a regular file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return ""
        start = max(info.st_size - limit, 0)
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, limit)
        prefix = f"[{start} earlier bytes not kept]\n" if start else ""
        return prefix + data.decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def _open_dir(parent_fd: int, name: str, create: bool) -> int:
    if create:
        try:
            os.mkdir(name, 0o755, dir_fd=parent_fd)
        except FileExistsError:
            pass
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    return fd


def write_bytes(root: Path, relative: str | Path, data: bytes, replace_folder: bool = False) -> Path:
    """Write `data` to ``root/relative`` atomically; no folder on the way may be a symlink.

    With `replace_folder`, the file's folder is emptied first (whatever is in it,
    links included, is removed without being followed).
    """
    import shutil

    root = Path(root)
    parts = Path(relative).parts
    if not parts or any(p in ("", ".", "..") or "/" in p for p in parts):
        raise UnsafePath(f"bad relative path {relative!r}")
    folder_parts, name = parts[:-1], parts[-1]
    if replace_folder and folder_parts:
        target = root.joinpath(*folder_parts)
        if problem_in_tree(target.parent, root) == "":
            try:
                mode = os.lstat(target).st_mode
                if stat.S_ISDIR(mode):
                    shutil.rmtree(target)  # fd-based: never follows links inside
                else:
                    os.unlink(target)
            except FileNotFoundError:
                pass
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in folder_parts:
            new = _open_dir(fd, part, create=True)
            os.close(fd)
            fd = new
        tmp = f".{name}.{os.getpid()}.part"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=fd)
        try:
            with os.fdopen(out, "wb") as handle:
                handle.write(data)
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)  # replaces a link itself, never its target
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=fd)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)
    return root.joinpath(*parts)
