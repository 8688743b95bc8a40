"""The journal of a grading batch: a batch killed in the middle resumes where it stopped.

``<course>/.autograder/batch.json`` names the batch by its settings (assignment,
students, tracks, limits, results store, the shuffle seeds) and lists every student
whose rows are saved, with their ``graded_at``. It is rewritten atomically after
each saved submission (temporary file, fsync, rename), so a ``kill -9`` at any
moment leaves the previous or the next version, never half of one. Running the same
command again keeps those rows and grades only the others (``--jobs`` and
``--scheduler`` may differ: they do not change a row); a command with other
settings starts a new batch. The journal is removed when its batch is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

NAME = "batch.json"


class Journal:
    """Which students of a batch are done."""

    def __init__(self, path: Path, settings: dict):
        self.path = Path(path)
        self.key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
        self.settings = settings
        self.done: dict[str, str] = {}  # student -> graded_at of its saved rows
        self.resumed = False
        found = self._read()
        if found and found.get("key") == self.key and isinstance(found.get("done"), dict):
            self.done = {str(k): str(v) for k, v in found["done"].items()}
            self.resumed = True
        self.started = found.get("started") if self.resumed else time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._write()

    def _read(self) -> dict:
        try:
            if self.path.is_symlink():
                return {}
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _write(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.part")
        payload = json.dumps({"key": self.key, "settings": self.settings, "started": self.started,
                              "done": self.done}, indent=1, default=str)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def record(self, student: str, graded_at: str) -> None:
        """`student`'s rows are saved: keep them if this batch is run again."""
        self.done[student] = graded_at
        self._write()

    def finish(self) -> None:
        """The batch is complete: the next command starts a new one."""
        self.path.unlink(missing_ok=True)
