"""The private folder of one graded submission, and the clean-up of folders left by a killed grader.

``<tmp>/autograder-run-<grader pid>-<random>/`` (mode 0711):

- ``data/``     this run's grading data (read-only in the kernel)
- ``runtime/``  connection file and ZMQ sockets (the only host folder the kernel may write;
                owned by the kernel's user, never read by the grader). For a root grader it is a
                RAM disk of its own, `RUNTIME_BYTES` and `RUNTIME_INODES` at most (`mount_runtime`):
                a host folder would let the kernel fill the grading machine's disk beside its capped
                ``/tmp`` (every folder a kernel may write is capped). A grader that is not root cannot
                mount it: `RUNTIME_UNCAPPED` says so once.
- ``sock/``     the annotation service's socket (the socket file alone is bound into the kernel)
- ``jupyter/``  the sandboxed kernelspec (JUPYTER_PATH of nbgrader)
- ``nbgrader/`` nbgrader's submitted/ and autograded/ trees (never visible to the kernel)
- ``private/``  truth file, ledger and logs (never visible to the kernel)
- ``etc/``      the kernel's /etc/passwd and /etc/group
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PREFIX = "autograder-run-"
RUNTIME_BYTES = 1 * 2**20  # the kernel's runtime RAM disk: a connection file (< 1 kB) and five socket files
RUNTIME_INODES = 256
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MNT_DETACH = 2
RUNTIME_UNCAPPED = (
    "autograder: warning: the kernels' runtime folder (connection file, ZMQ sockets) is a folder of this "
    "machine's disk, not a capped RAM disk: mounting one needs a grader that is root. A kernel can then "
    "write files there beside its capped /tmp (each at most --max-file-mb). Run the grader as root.")
_WARNED: list[bool] = []


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def mount_runtime(folder: Path, uid: int, gid: int) -> None:
    """Mount a RAM disk of `RUNTIME_BYTES` on `folder`, owned by the kernel's user (root only; raises OSError)."""
    options = f"size={RUNTIME_BYTES},nr_inodes={RUNTIME_INODES},mode=0700,uid={uid},gid={gid}".encode()
    if _libc().mount(b"tmpfs", str(folder).encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"cannot mount the kernel's runtime RAM disk on {folder}: {os.strerror(errno)}")


def unmount(folder: Path) -> None:
    """Detach whatever is mounted on `folder` (nothing mounted: nothing done)."""
    if os.path.ismount(folder):
        _libc().umount2(str(folder).encode(), MNT_DETACH)


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
            gid = kernel_gid if kernel_gid is not None else kernel_uid
            os.chown(run.runtime, kernel_uid, gid)
            try:
                mount_runtime(run.runtime, kernel_uid, gid)
            except OSError:
                run.remove()
                raise
        elif not _WARNED:
            print(RUNTIME_UNCAPPED, file=sys.stderr)
            _WARNED.append(True)
        return run

    def remove(self) -> None:
        unmount(self.runtime)
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
            RunFolder(entry).remove()
            removed.append(entry)
    return removed
