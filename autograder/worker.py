"""A long-lived nbgrader process: imports nbgrader once, autogrades one submission per job.

Starting ``nbgrader autograde`` costs 2-6 s of imports per submission; this worker
pays them once per batch. The runner (`autograder.runner`) sends one JSON line per
job on stdin and reads one JSON line back on stdout; on a timeout it kills the
worker's whole process group (the sandboxed kernel dies with it) and starts a
new worker for the next submission.

Job: ``{"assignment", "student", "log", "env": {...}, "config": {"Section.trait": value}}``.
Reply: ``{"ok": true}`` or ``{"ok": false}`` (the reason is in the job's log file).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import traceback

LOG_FORMAT = "%(asctime)s [%(name)s | %(levelname)s] %(message)s"


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
    """Autograde one submission; nbgrader's log and the kernel's stderr go to job["log"]."""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory

    os.environ.update(job["env"])
    tempfile.tempdir = None  # re-read TMPDIR: nbclient puts the connection file there
    log_fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)  # the kernel inherits stdout and stderr: its messages land in this job's log
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
        sys.stderr.write(traceback.format_exc())
        return False
    finally:
        app.log.removeHandler(handler)
        sys.stderr.flush()


def main() -> None:
    # replies go on a private copy of stdout (not inherited by kernels); fd 1 becomes the log
    reply = os.fdopen(os.dup(1), "w")
    sys.stdout = sys.stderr
    for line in sys.stdin:
        ok = run(json.loads(line))
        reply.write(json.dumps({"ok": ok}) + "\n")
        reply.flush()


if __name__ == "__main__":
    main()
