"""One batch per course at a time: ``<course>/.autograder/grading.lock`` (flock)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from course import files


class CourseBusy(RuntimeError):
    """Another `autograder grade` is grading this course."""


class CourseLock:
    """Held for a whole batch; released when the process ends, however it ends."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self, wait: float = 0.0) -> "CourseLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        if not files.lock_within(fd, wait):
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            raise CourseBusy(
                f"another `autograder grade` is running on this course ({holder or 'unknown process'}); "
                "wait for it to finish, or pass --wait SECONDS to queue behind it")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "CourseLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
