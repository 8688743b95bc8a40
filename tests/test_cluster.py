"""`autograder grade --scheduler`: submissions graded on a Dask cluster, one killed worker included.

The test starts a scheduler and two ``dask worker`` processes on loopback (each with
its own TMPDIR, which names its processes and run folders), grades a toy course
there, kills (-9) the worker that is in the middle of a submission, and checks that
the batch still finishes with every row, that rows reached the store while the
batch was running (written as they arrive), and that the killed worker left no
process behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from autograder.results import store
from helpers.courses import HONEST, make_course, run_cli, solution
from helpers.probes import kernels_below, mentioning, wait_until

pytest.importorskip("distributed")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")]

ASSIGNMENT = "toy"
SLOW = HONEST + "\nimport time\ntime.sleep(10)\n"  # long enough to be killed in the middle of it
STUDENTS = {"s1": None, "s2": solution(SLOW), "s3": solution(SLOW), "s4": solution("raise ValueError('x')")}


def run_folders(tmp: Path) -> list[Path]:
    """A worker's run folders of submissions being graded (not its batch data or task course)."""
    return [p for p in tmp.glob("autograder-run-*") if not any(w in p.name for w in ("-batch-", "-course-"))]


def stored(course: Path) -> int:
    try:
        with sqlite3.connect(f"file:{store.db_path(course)}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.fixture
def scheduler(tmp_path):
    """(scheduler address, start_worker(name) -> (process, its TMPDIR)) on loopback; everything stopped afterwards."""
    scheduler_file = tmp_path / "scheduler.json"
    started, temporary = [], []
    env = dict(os.environ)
    started.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                     "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        wait_until(scheduler_file.exists, 60, "the Dask scheduler's address file")
        import json

        address = json.loads(scheduler_file.read_text())["address"]

        def start_worker(name: str) -> tuple[subprocess.Popen, Path]:
            tmp = Path(tempfile.mkdtemp(prefix=f"ag-{name}-", dir="/tmp"))  # short: Unix socket paths are in it
            temporary.append(tmp)
            worker = subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-nanny",
                 "--no-dashboard", "--host", "127.0.0.1", "--name", name],
                env={**env, "TMPDIR": str(tmp)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            started.append(worker)
            return worker, tmp

        yield address, start_worker
    finally:
        for process in reversed(started):
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for tmp in temporary:
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def cluster(scheduler):
    """(scheduler address, {name: (process, its TMPDIR)}): a scheduler and two workers."""
    address, start_worker = scheduler
    yield address, {name: start_worker(name) for name in ("w1", "w2")}


def test_cluster_grades_every_submission_despite_a_killed_worker(tmp_path, cluster):
    address, workers = cluster
    course = make_course(tmp_path, STUDENTS)
    grade = subprocess.Popen([sys.executable, "-m", "autograder.cli", "grade", ASSIGNMENT, "--course", str(course),
                              "--memory", "3", "--timeout", "300", "--scheduler", address],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed, counts = None, []
    deadline = time.monotonic() + 400
    while grade.poll() is None and time.monotonic() < deadline:
        counts.append(stored(course))
        if killed is None and counts[-1] >= 1:  # one row is in: kill a worker that is grading the next one
            busy = [name for name, (_, tmp) in workers.items() if run_folders(tmp)]
            if busy:  # once its kernel is up: killed in the middle of the submission
                wait_until(lambda: kernels_below(workers[busy[0]][0].pid) or grade.poll() is not None, 300,
                           "the busy worker's kernel")
                killed = busy[0]
                workers[killed][0].send_signal(signal.SIGKILL)
                workers[killed][0].wait()
        time.sleep(0.5)
    out, err = grade.communicate(timeout=60)
    assert grade.returncode == 0, err[-3000:]
    assert killed is not None, "no worker was caught in the middle of a submission"
    rows = {r.student: r for r in store.load(course, ASSIGNMENT)}
    assert set(rows) == set(STUDENTS), (rows, err[-2000:])
    assert all(rows[s].passed for s in ("s1", "s2", "s3")) and rows["s4"].status == "failed", \
        {s: (r.status, r.detail) for s, r in rows.items()}
    assert any(0 < c < len(STUDENTS) for c in counts), counts  # rows were written while the batch ran
    try:
        wait_until(lambda: not mentioning(str(workers[killed][1])), 60, "the killed worker's processes to end")
    except AssertionError:
        raise AssertionError(f"the killed worker left processes behind: {mentioning(str(workers[killed][1]))}") \
            from None


def test_a_task_whose_only_worker_died_before_another_joined_is_graded_again(tmp_path, scheduler):
    """The batch's spec is shipped to the workers present when it starts. Here that is one worker, killed in the
    middle of the first submission, before a second joins: the spec is lost with it and the scheduler cancels
    the task (it stopped the whole batch: "FuturesCancelledError: 2 Futures cancelled", in CI). The grader ships
    the spec again and resubmits: every submission gets its row."""
    address, start_worker = scheduler
    first, tmp = start_worker("w1")
    course = make_course(tmp_path, {"s1": solution(SLOW), "s2": None})
    grade = subprocess.Popen([sys.executable, "-m", "autograder.cli", "grade", ASSIGNMENT, "--course", str(course),
                              "--memory", "3", "--timeout", "300", "--scheduler", address],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: kernels_below(first.pid) or grade.poll() is not None, 300, "the first worker's kernel")
        assert grade.poll() is None, grade.communicate()[1][-3000:]
        first.send_signal(signal.SIGKILL)
        first.wait()
        start_worker("w2")
        out, err = grade.communicate(timeout=600)
    finally:
        if grade.poll() is None:
            grade.kill()
    assert grade.returncode == 0, err[-3000:]
    rows = {r.student: r for r in store.load(course, ASSIGNMENT)}
    assert {s: (r.status, r.passed) for s, r in rows.items()} == {"s1": ("ok", True), "s2": ("ok", True)}, \
        {s: r.detail for s, r in rows.items()}


def test_unreachable_scheduler_says_so(tmp_path):
    course = make_course(tmp_path, {"s1": None})
    done = run_cli("grade", ASSIGNMENT, "--course", str(course), "--scheduler", "tcp://127.0.0.1:9",
                   env={**os.environ, "AUTOGRADER_DASK_CONNECT_S": "3"}, timeout=900)  # a hang bound only
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in done.stderr and "dask scheduler" in done.stderr


def test_without_dask_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['distributed'] = None\n"
            "from autograder.cli import main\n"
            f"sys.exit(main(['grade', 'toy', '--course', {str(tmp_path)!r}, '--scheduler', 'tcp://127.0.0.1:9']))")
    (tmp_path / "submitted").mkdir()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "pip install 'dcai-hackathon[cluster]'" in done.stderr, done.stderr[-2000:]
