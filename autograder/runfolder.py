"""The private folder of one graded submission, and the clean-up of folders left by a killed grader.

``<tmp>/autograder-run-<grader pid>-<random>/`` (mode 0711):

- ``data/``     this run's grading data (read-only in the kernel)
- ``runtime/``  connection file and ZMQ sockets (the only host folder the kernel may write;
                owned by the kernel's user, never read by the grader)
- ``sock/``     the annotation service's socket (the socket file alone is bound into the kernel)
- ``jupyter/``  the sandboxed kernelspec (JUPYTER_PATH of nbgrader)
- ``nbgrader/`` nbgrader's submitted/ and autograded/ trees (never visible to the kernel)
- ``private/``  truth file, ledger and logs (never visible to the kernel)
- ``etc/``      the kernel's /etc/passwd and /etc/group
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

PREFIX = "autograder-run-"


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def runtime(self) -> Path:
        return self.root / "runtime"

    @property
    def sock(self) -> Path:
        return self.root / "sock"

    @property
    def socket(self) -> Path:
        return self.sock / "service.sock"

    @property
    def jupyter(self) -> Path:
        return self.root / "jupyter"

    @property
    def nbgrader(self) -> Path:
        return self.root / "nbgrader"

    @property
    def private(self) -> Path:
        return self.root / "private"

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def truth(self) -> Path:
        return self.private / "truth.npz"

    @property
    def ledger(self) -> Path:
        return self.private / "ledger.jsonl"

    @property
    def nbgrader_log(self) -> Path:
        return self.private / "nbgrader.log"

    @property
    def kernel_log(self) -> Path:
        return self.private / "kernel.log"

    @property
    def service_log(self) -> Path:
        return self.private / "service.log"

    @classmethod
    def create(cls, kernel_uid: int | None = None, kernel_gid: int | None = None) -> "RunFolder":
        root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        os.chmod(root, 0o711)
        run = cls(root)
        for folder, mode in ((run.data, 0o755), (run.runtime, 0o700), (run.sock, 0o711), (run.jupyter, 0o700),
                             (run.nbgrader, 0o700), (run.private, 0o700), (run.etc, 0o755)):
            folder.mkdir(mode=mode)
            os.chmod(folder, mode)
        if kernel_uid is not None:
            os.chown(run.runtime, kernel_uid, kernel_gid if kernel_gid is not None else kernel_uid)
        return run

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)  # fd-based: links inside are removed, not followed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(tmp: Path | None = None) -> list[Path]:
    """Remove run folders whose grader is gone (killed with -9, power cut); return them."""
    tmp = Path(tmp or tempfile.gettempdir())
    removed = []
    for entry in tmp.glob(PREFIX + "*"):
        owner = entry.name[len(PREFIX):].split("-", 1)[0]
        if owner.isdigit() and (int(owner) == os.getpid() or _alive(int(owner))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed
