"""nbgrader's worker: one long-lived process that imports nbgrader once and autogrades one job at a time.

Starting ``nbgrader autograde`` costs 2-6 s of imports per submission; the worker
pays them once per batch. `WorkerClient` (in the grader) sends one JSON line per
job on stdin and reads one JSON line back; on a timeout it kills the worker's
process group (the sandboxed kernel dies with it) and starts a new worker for the
next job. The worker dies with the grader (parent-death signal, and end of stdin).

Job: ``{"assignment", "student", "log", "env": {...}, "config": {"Section.trait": value},
"max_output_bytes": int}``. Reply: ``{"ok": true|false}`` (the reason is in the job's log).

Outputs of the executed notebook are capped while nbclient receives them
(`max_output_bytes` per notebook): an output flood costs neither the worker's
memory nor the stored notebook's size.
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

LOG_FORMAT = "%(asctime)s [%(name)s | %(levelname)s] %(message)s"
_OUTPUT = {"limit": 0, "used": 0, "truncated": False}


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
    # replies go on a private copy of stdout; fd 1 and 2 become each job's log
    reply = os.fdopen(os.dup(1), "w")
    sys.stdout = sys.stderr
    for line in sys.stdin:
        ok = run(json.loads(line))
        reply.write(json.dumps({"ok": ok}) + "\n")
        reply.flush()


class WorkerClient:
    """The grader's handle on one worker (started on first use, restarted after a kill)."""

    def __init__(self, course_root: Path, env: dict[str, str]):
        self.course_root = Path(course_root)
        self.env = env
        self.process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "autograder.worker"], cwd=self.course_root, env=self.env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=die_with_parent)

    def run(self, job: dict, timeout: float) -> tuple[bool, bool]:
        """(nbgrader succeeded, timed out)."""
        if self.process is None or self.process.poll() is not None:
            self.process = self._start()
        process = self.process
        try:
            process.stdin.write((json.dumps(job) + "\n").encode())
            process.stdin.flush()
        except BrokenPipeError:
            self.kill()
            return False, False
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        line = process.stdout.readline() if ready else b""
        if ready and line:
            return bool(json.loads(line)["ok"]), False
        self.kill()  # timeout, or the worker died: kill its group (the sandbox dies with it)
        return False, not ready

    def kill(self) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.process = None

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
