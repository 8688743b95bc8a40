"""nbgrader's worker: one long-lived process that imports nbgrader once and autogrades one job at a time.

Starting ``nbgrader autograde`` costs 2-6 s of imports per submission; the worker
pays them once per batch. `WorkerClient` (in the grader) sends one JSON line per
job on stdin and reads one JSON line back; on a timeout it kills the worker's
process group (the sandboxed kernel dies with it) and starts a new worker for the
next job. The worker dies with the grader (parent-death signal, and end of stdin).

Job: ``{"assignment", "student", "log", "env": {...}, "config": {"Section.trait": value},
"max_output_bytes": int, "running_cell": path}`` (the number of the cell being executed is
written there, for the row of a kernel that dies). Reply: ``{"ok": true|false}`` (the reason is in the job's log).

Outputs of the executed notebook are capped while nbclient receives them
(`max_output_bytes` per notebook): an output flood of many messages costs neither the
worker's memory nor the stored notebook's size.

But each kernel message is read and parsed whole before the cap can drop it (one 300 MB
display message took the worker, root and outside every kernel limit, to ~1 GB). So with
cgroups the grader puts each worker in a memory cgroup of its own (`WORKER_PREFIX` + its pid,
beside the kernels' cgroups), capped at `memory_cap`: what an honest grading needs (measured)
plus room for the kept outputs and the largest submitted notebook. A message too large for that
makes the system kill the worker; `WorkerClient.run` reports it (`JobEnd.out_of_memory`), the
submission's row says its output was too large, and the next job gets a new worker. ZMQ's own
message-size cap is not used: an oversized message cuts the output channel for good, and the
error outputs nbgrader needs to fail later test cells would be lost without a trace. Without
cgroups (a grader that is not root) the worker is not capped.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import NamedTuple

from autograder.sandbox import launch
from autograder.sandbox.safefs import MAX_NOTEBOOK_BYTES

LOG_FORMAT = "%(asctime)s [%(name)s | %(levelname)s] %(message)s"
_OUTPUT = {"limit": 0, "used": 0, "truncated": False}
# the worker's memory cgroup (`memory_cap`); measured on this machine's honest gradings: see the README
BASE_BYTES = 384 * 2**20  # nbgrader, nbclient, the gradebook and alembic at a grading's peak, with room
OUTPUT_COPIES = 6  # a kept output in memory at once: ZMQ frame, bytes, parsed, notebook, JSON text, written
NOTEBOOK_COPIES = 4  # the submitted notebook (outputs included) read and validated before its outputs are cleared


def memory_cap(max_output_bytes: int) -> int:
    """The memory cap of nbgrader's worker (all its processes; the kernel is in cgroups of its own)."""
    return BASE_BYTES + OUTPUT_COPIES * int(max_output_bytes) + NOTEBOOK_COPIES * MAX_NOTEBOOK_BYTES


class JobEnd(NamedTuple):
    """How one job ended."""

    ok: bool  # nbgrader succeeded
    timed_out: bool = False  # killed at the wall-clock limit
    out_of_memory: bool = False  # the worker passed its memory cap (a kernel message too large) and was killed


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG(SIGKILL): this process is killed when the process that started it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def _cap_outputs() -> None:
    from nbclient.client import NotebookClient
    from nbformat.v4 import new_output

    original = NotebookClient.output

    def output(self, outs, msg, display_id, cell_index):
        limit = _OUTPUT["limit"]
        if limit:
            size = len(json.dumps(msg.get("content", {}), default=str))
            if _OUTPUT["used"] + size > limit:
                if not _OUTPUT["truncated"]:
                    _OUTPUT["truncated"] = True
                    outs.append(new_output("stream", name="stderr",
                                           text=f"[autograder: output beyond {limit} bytes was dropped]\n"))
                return None
            _OUTPUT["used"] += size
        return original(self, outs, msg, display_id, cell_index)

    NotebookClient.output = output


_RUNNING = {"path": ""}  # the job's `running_cell` file: which cell the kernel is running (`autograder.sandbox.memlimit`)


def _track_cells() -> None:
    """Write the number of each cell as its execution starts, so a kernel that dies says where it was."""
    from nbclient.client import NotebookClient
    from nbclient.util import run_sync

    original = NotebookClient.async_execute_cell

    async def execute_cell(self, cell, cell_index, *args, **kwargs):
        # a kernel already at its address-space limit met it in an earlier cell: that cell stays the one recorded,
        # whenever the launcher's next look (`launch._watch_address_space`) stops it
        if _RUNNING["path"] and not _at_limit(self):
            fd = os.open(_RUNNING["path"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(str(int(cell_index) + 1))  # 1-based, as `autograder.grading.judge.first_error` counts
        return await original(self, cell, cell_index, *args, **kwargs)

    NotebookClient.async_execute_cell = execute_cell
    NotebookClient.execute_cell = run_sync(execute_cell)  # nbconvert's preprocessor calls the blocking one


def _at_limit(client) -> bool:
    """Whether the kernel of nbclient's `client` has come within `launch.AS_RESERVE` of its address-space limit."""
    process = getattr(getattr(getattr(client, "km", None), "provisioner", None), "process", None)
    pid = getattr(process, "pid", None)
    return pid is not None and launch.near_address_space_limit(pid)


def running_cell(path: str | Path) -> int | None:
    """The number of the last cell the worker started (1-based), or None."""
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def _config(overrides: dict):
    """The course's nbgrader_config.py (from the working directory) plus the job's overrides."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = Config()
    if os.path.isfile("nbgrader_config.py"):
        config.merge(PyFileConfigLoader("nbgrader_config.py", path=os.getcwd()).load_config())
    for key, value in overrides.items():
        section, trait = key.rsplit(".", 1)
        config[section][trait] = value
    return config


def run(job: dict) -> bool:
    """Autograde one submission; nbgrader's log goes to job["log"]."""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory

    os.environ.update(job["env"])
    tempfile.tempdir = None  # re-read TMPDIR: nbclient puts the connection file there
    _OUTPUT.update(limit=int(job.get("max_output_bytes", 0)), used=0, truncated=False)
    _RUNNING["path"] = job.get("running_cell", "")
    log_fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
    config = _config(job["config"])
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = job["assignment"]
    coursedir.student_id = job["student"]
    app = Autograde(coursedir=coursedir, config=config)
    app.force = True
    app.create_student = True
    app.log.addHandler(handler)
    app.log.setLevel(logging.INFO)
    try:
        app.start()
        return True
    except Exception:
        sys.stderr.write(traceback.format_exc()[-20000:])
        return False
    finally:
        app.log.removeHandler(handler)
        sys.stderr.flush()


def main() -> None:
    die_with_parent()
    _cap_outputs()
    _track_cells()
    # replies go on a private copy of stdout; fd 1 and 2 become each job's log
    reply = os.fdopen(os.dup(1), "w")
    sys.stdout = sys.stderr
    for line in sys.stdin:
        ok = run(json.loads(line))
        reply.write(json.dumps({"ok": ok}) + "\n")
        reply.flush()


class WorkerClient:
    """The grader's handle on one worker (started on first use, restarted after a kill).

    With `memory_bytes` and a cgroup parent (the kernels' own: v2 `cgroup_parent`, else the v1
    ``memory`` folder of `cgroup_v1`) each worker runs in a memory cgroup of its own; it is emptied and
    removed with the worker, and so are the cgroups of a kernel whose launcher died with it."""

    def __init__(self, course_root: Path, env: dict[str, str], memory_bytes: int = 0, cgroup_parent: str = "",
                 cgroup_v1: dict[str, str] | None = None, kernel_cgroups: list[str] | None = None):
        self.course_root = Path(course_root)
        self.env = env
        self.memory_bytes = memory_bytes
        self.cgroup_parent, self.cgroup_v1 = cgroup_parent, dict(cgroup_v1 or {})
        self.kernel_cgroups = list(kernel_cgroups or [])  # the folders holding the kernels' cgroups
        self.process: subprocess.Popen | None = None
        self.cgroup = ""  # the running worker's memory cgroup ("" = none)

    def _start(self) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-m", "autograder.grading.worker"], cwd=self.course_root, env=self.env,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   start_new_session=True, preexec_fn=die_with_parent)
        # moved before its first job (it imports nbgrader then): what it allocates from now on is charged there
        self.cgroup = launch.memory_cgroup(f"{launch.WORKER_PREFIX}{process.pid}", self.memory_bytes,
                                           self.cgroup_parent, self.cgroup_v1) if self.memory_bytes else ""
        if self.cgroup:
            try:
                with open(os.path.join(self.cgroup, "cgroup.procs"), "w") as procs:
                    procs.write(str(process.pid))
            except OSError as exc:
                sys.stderr.write(f"autograder: nbgrader's worker not capped ({exc})\n")
        return process

    def run(self, job: dict, timeout: float) -> JobEnd:
        if self.process is None or self.process.poll() is not None:
            self.kill()  # a worker that died between jobs: its cgroups go with it
            self.process = self._start()
        process = self.process
        try:
            process.stdin.write((json.dumps(job) + "\n").encode())
            process.stdin.flush()
        except BrokenPipeError:
            out_of_memory = self._out_of_memory()
            self.kill()
            return JobEnd(False, False, out_of_memory)
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        line = process.stdout.readline() if ready else b""
        out_of_memory = self._out_of_memory()
        if ready and line and not out_of_memory:
            return JobEnd(bool(json.loads(line)["ok"]))
        self.kill()  # timeout, or the worker died: kill its group (the sandbox dies with it)
        return JobEnd(False, not ready, out_of_memory)

    def _out_of_memory(self) -> bool:
        return bool(self.cgroup) and launch.oom_kills(self.cgroup) > 0

    def kill(self) -> None:
        pid = None
        if self.process is not None:
            pid = self.process.pid
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.process = None
        if self.cgroup:
            launch.kill_cgroup(self.cgroup)  # the kernel's launcher (a child of the worker) is in it
            self.cgroup = ""
        if pid is not None:  # a launcher killed with its worker left its kernel's cgroups: empty them now
            for folder in self.kernel_cgroups:
                launch.remove_worker_kernels(folder, pid)

    def close(self) -> None:
        if self.process is not None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


if __name__ == "__main__":
    main()
