"""A Jupyter kernelspec whose kernel runs inside a bubblewrap sandbox with a memory cap.

Participant code runs in the kernel and can do anything there, so the kernel gets
a view of the file system in which

- everything is read-only,
- the raw MNIST files (the grader's ``$COURSE_DATA_DIR``, the repository's
  ``data/``, the grader's cache folder), the course root (results database,
  ledgers, other students' submissions, the instructor's ``source/``) and the
  grader's temporary folders are hidden behind empty tmpfs mounts,
- only this run's data folder (read-only), cache folder, service socket,
  Jupyter runtime folder (connection file, ZMQ sockets) and working folder are
  bound back in,
- other processes are invisible (own PID namespace), so the service's memory is
  out of reach, and there is no network (own network namespace; nothing to
  download labels from): the kernel speaks ZMQ over Unix sockets in its
  runtime folder (``KernelManager.transport = "ipc"``);
- the kernel has no capabilities (even when the grader runs as root), so it can
  neither unmount what hides the labels nor remount anything writable.

`prlimit --as` caps the kernel's address space; exceeding it raises MemoryError.
The sandbox dies with the process that started it (nbgrader).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

KERNEL_NAME = "autograder-sandbox"


class SandboxError(RuntimeError):
    """The sandbox cannot be built on this machine (e.g. bubblewrap is missing)."""


@dataclass
class Sandbox:
    """What the kernel sees. Paths are absolute; binds keep their path inside."""

    hide: list[Path] = field(default_factory=list)
    read_only: list[Path] = field(default_factory=list)
    writable: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    memory_bytes: int | None = None
    network: bool = False  # False: no network at all (the kernel must then speak ZMQ over ipc)
    home: str = "/tmp/home"

    def argv(self, command: list[str]) -> list[str]:
        """The command line that runs `command` inside the sandbox."""
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxError(
                "bubblewrap (bwrap) is not installed; the grader needs it to isolate participant "
                "code. Install it with: apt-get install -y bubblewrap")
        # --cap-drop ALL: run as root, bwrap would keep every capability, and the kernel
        # could unmount the tmpfs that hides the labels or remount / read-write.
        args = [bwrap, "--die-with-parent", "--cap-drop", "ALL", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        if not self.network:
            args.insert(1, "--unshare-net")
        for path in _existing(self.hide):
            args += ["--tmpfs", str(path)]
        for path in _existing(self.read_only):
            args += ["--ro-bind", str(path), str(path)]
        for path in _existing(self.writable):
            args += ["--bind", str(path), str(path)]
        # ipykernel would compare JPY_PARENT_PID with its parent (pid 1 in the new PID
        # namespace) and quit; the sandbox dies with its parent instead (--die-with-parent).
        args += ["--unsetenv", "JPY_PARENT_PID"]
        args += ["--setenv", "TMPDIR", "/tmp"]  # the launcher's TMPDIR holds the connection file
        args += ["--dir", self.home, "--setenv", "HOME", self.home,
                 "--setenv", "MPLCONFIGDIR", f"{self.home}/.matplotlib"]
        for key, value in self.env.items():
            args += ["--setenv", key, value]
        if self.memory_bytes:
            prlimit = shutil.which("prlimit")
            if prlimit is None:
                raise SandboxError("prlimit (util-linux) is missing; it caps the kernel's memory.")
            args = [prlimit, f"--as={self.memory_bytes}", "--"] + args
        return args + ["--"] + command

    def write_kernelspec(self, jupyter_dir: Path, name: str = KERNEL_NAME) -> Path:
        """Write ``<jupyter_dir>/kernels/<name>/kernel.json`` (put jupyter_dir on JUPYTER_PATH)."""
        spec_dir = jupyter_dir / "kernels" / name
        spec_dir.mkdir(parents=True, exist_ok=True)
        spec = {
            "argv": self.argv([sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]),
            "display_name": "Python 3 (autograder sandbox)",
            "language": "python",
            "interrupt_mode": "signal",
            "metadata": {"debugger": False},
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
        return spec_dir


def _existing(paths: list[Path]) -> list[Path]:
    """Absolute, resolved, existing paths in order, without duplicates."""
    seen: dict[str, Path] = {}
    for path in paths:
        path = Path(path).expanduser()
        if path.exists():
            seen.setdefault(str(path.resolve()), path.resolve())
    return list(seen.values())
