"""The grader's handle on one run's annotation service (`autograder.grading.service`): start, wait for ready, stop.

The service gets the run's token in its environment (never on its command line),
reads and deletes the run's truth file, listens on the run's socket and appends
to the run's ledger. It dies with the grader (parent-death signal) and is
stopped with SIGTERM once nbgrader is done.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys

from autograder.sandbox import safefs
from autograder.sandbox.runfolder import RunFolder
from autograder.grading.worker import die_with_parent

START_S = 30.0


class ServiceError(RuntimeError):
    """The annotation service did not start."""


def start(run: RunFolder, token: str, env: dict[str, str], owner: tuple[int, int] | None = None) -> subprocess.Popen:
    """Start the service of `run`; with `owner` (uid, gid) its socket is handed to the kernel's user."""
    env = dict(env)
    env["AUTOGRADER_TOKEN"] = token
    with open(run.service_log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "autograder.grading.service", "--socket", str(run.socket),
             "--truth", str(run.truth), "--ledger", str(run.ledger)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file,
            start_new_session=True, preexec_fn=die_with_parent)
    ready, _, _ = select.select([process.stdout], [], [], START_S)
    line = process.stdout.readline() if ready else b""
    if line.strip() != b"ready":
        stop(process)
        raise ServiceError(f"the annotation service did not start: {safefs.read_tail(run.service_log, 500)}")
    if owner is not None:
        os.chown(run.socket, *owner)  # connecting needs write permission on the socket
    return process


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout:
        process.stdout.close()
