"""`autograder grade --jobs 2`: two submissions at once on one machine, the same results as one at a time.

Two copies of one toy course (same submissions, same assignment secret) are graded
for real, one serially and one with ``--jobs 2``; every row (status, accuracy,
annotations, passed, score) and nbgrader's gradebook (scores, per-cell auto scores)
must agree, one progress bar runs, each kernel gets its share of the cores (cores // 2
threads with ``--jobs 2``, `autograder.sandbox.threads`), and a second ``grade`` on a course being
graded with ``--jobs`` stops with exit code 3.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder import layout
from autograder.grading import secret
from autograder.results import store
from autograder.sandbox import threads
from helpers.courses import make_course, run_cli, solution

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"),
              pytest.mark.usefixtures("machine_threads")]  # --jobs 2 shares the machine's cores, not a test process's

ASSIGNMENT = "toy"
THREADS_PROBE = ("import json, os\nimport sklearn.linear_model\nfrom threadpoolctl import threadpool_info\n"
                 "print('kernel threads', json.dumps({'env': os.environ.get('OMP_NUM_THREADS'), "
                 "'pools': sorted({i['num_threads'] for i in threadpool_info()})}))\n")
SUBMISSIONS = {"alice": None, "carol": solution(THREADS_PROBE + "raise ValueError('boom')"), "eve": "{ not json"}
FIELDS = ("status", "accuracy", "annotations", "passed", "score", "max_score")
GRADE = ("--memory", "3", "--timeout", "300")


def gradebook(course_dir: Path) -> dict[str, tuple]:
    """student -> (score, max score, auto scores by cell) from nbgrader's gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    course = layout.Course.open(course_dir)
    found = {}
    with Gradebook(course.db_url, course.course_id) as gb:
        for student in SUBMISSIONS:
            try:
                sub = gb.find_submission(ASSIGNMENT, student)
            except MissingEntry:
                continue
            cells = sorted((g.name, g.auto_score, g.needs_manual_grade) for nb in sub.notebooks for g in nb.grades)
            found[student] = (sub.score, sub.max_score, cells)
    return found


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    serial = make_course(tmp_path_factory.mktemp("serial"), SUBMISSIONS)
    secret.read_or_create(layout.Course.open(serial).private(), ASSIGNMENT)  # both copies: the same shuffle
    parallel = tmp_path_factory.mktemp("parallel") / "course"
    shutil.copytree(serial, parallel, symlinks=True)
    return serial, parallel


@pytest.fixture(scope="module")
def graded(twins):
    serial, parallel = twins
    timings = {}
    for name, course, extra in (("serial", serial, ()), ("jobs2", parallel, ("--jobs", "2"))):
        start = time.perf_counter()
        done = run_cli("grade", ASSIGNMENT, "--course", str(course), *GRADE, *extra)
        timings[name] = time.perf_counter() - start
        assert done.returncode == 0, done.stderr[-3000:]
        timings[name + " output"] = done
    print(f"serial {timings['serial']:.0f} s, --jobs 2 {timings['jobs2']:.0f} s")
    return serial, parallel, timings


def test_jobs_rows_equal_serial_rows(graded):
    serial, parallel, _ = graded
    one = {r.student: r for r in store.load(serial, ASSIGNMENT)}
    two = {r.student: r for r in store.load(parallel, ASSIGNMENT)}
    assert set(one) == set(two) == set(SUBMISSIONS)
    for student in SUBMISSIONS:
        assert [getattr(one[student], f) for f in FIELDS] == [getattr(two[student], f) for f in FIELDS], student
    assert one["alice"].passed and one["alice"].annotations == 60
    assert one["carol"].status == "failed" and one["eve"].status == "error"


def test_jobs_gradebook_equals_serial_gradebook(graded):
    serial, parallel, _ = graded
    one, two = gradebook(serial), gradebook(parallel)
    assert one == two and one["alice"][:2] == (2.0, 2.0) and one["carol"][0] == 0.0, (one, two)
    for student in ("alice", "carol"):  # the executed notebooks and ledgers are kept as before
        assert (parallel / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
        assert store.ledger_path(parallel, ASSIGNMENT, student).is_file()


def kernel_threads(course: Path) -> dict:
    """What carol's graded kernel printed about its threads (THREADS_PROBE)."""
    nb = nbformat.read(course / "autograded" / "carol" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    line = next(line for line in text.splitlines() if line.startswith("kernel threads "))
    return json.loads(line.removeprefix("kernel threads "))


def test_jobs_share_the_cores_among_the_kernels(graded):
    """Serially a kernel has every core; with --jobs 2 each has half (on 2 cores: 1 thread for BLAS and OpenMP)."""
    serial, parallel, _ = graded
    for course, at_once in ((serial, 1), (parallel, 2)):
        expected = threads.share(at_once)
        assert kernel_threads(course) == {"env": str(expected), "pools": [expected]}, (at_once, kernel_threads(course))


def test_jobs_one_progress_bar(graded):
    out = graded[2]["jobs2 output"]
    bars = {line.split(":")[0] for line in out.stderr.replace("\r", "\n").splitlines() if "%|" in line}
    assert bars == {f"grading {ASSIGNMENT}"}, bars
    assert f"grading {ASSIGNMENT}: 100%" in out.stderr
    assert sum(line.split(":")[0] in SUBMISSIONS for line in out.stdout.splitlines()) == len(SUBMISSIONS)


def test_second_grade_with_jobs_waits_its_turn(twins):
    """The course lock holds with --jobs: a second batch on the course exits 3 while the first runs."""
    _, parallel = twins
    first = subprocess.Popen([sys.executable, "-m", "autograder.cli", "grade", ASSIGNMENT, "--course", str(parallel),
                              "--student", "eve", "--jobs", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = parallel / layout.PRIVATE / "grading.lock"
        deadline = time.monotonic() + 600  # a generous bound: the wait ends as soon as the lock names it
        while f"pid {first.pid}" not in (lock.read_text() if lock.exists() else ""):
            assert first.poll() is None, "the first batch ended before it took the course lock"
            assert time.monotonic() < deadline, "the first batch never took the course lock"
            time.sleep(0.2)
        first.send_signal(signal.SIGSTOP)  # it holds the lock, whatever the machine's speed
        second = run_cli("grade", ASSIGNMENT, "--course", str(parallel), "--jobs", "2")
        assert second.returncode == 3 and "another `autograder grade` is running" in second.stderr, second.stderr
    finally:
        first.send_signal(signal.SIGCONT)
        first.kill()  # its pool workers die with it
        first.wait()


@pytest.mark.parametrize("args, words", [
    (("--jobs", "0"), ["--jobs must be at least 1 (got 0)", "e.g. --jobs 2"]),
    (("--jobs", "2", "--scheduler", "tcp://127.0.0.1:1"), ["give --jobs", "or --scheduler", "not both"]),
])
def test_bad_jobs_say_what_to_do(tmp_path, args, words):
    course = tmp_path / "course"
    course.mkdir()
    done = run_cli("grade", ASSIGNMENT, "--course", str(course), *args, env={**os.environ})
    assert done.returncode == 2, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


def test_leaderboard_reads_the_store_named_by_db(graded, tmp_path):
    serial = graded[0]
    empty = tmp_path / "course"
    empty.mkdir()
    board = run_cli("leaderboard", ASSIGNMENT, "--course", str(empty), "--db", f"sqlite:///{store.db_path(serial)}")
    assert board.returncode == 0 and "alice" in board.stdout, board.stderr[-2000:]
    assert (empty / "leaderboard" / f"{ASSIGNMENT}.csv").is_file()
