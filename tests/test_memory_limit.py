"""A notebook over the memory limit gets the same row every time, whichever way the limit bites.

With a memory cgroup the system's OOM killer stops the kernel; without one the process's
address-space limit raises MemoryError, or a C library aborts (`autograder.sandbox.memlimit`). Before,
both limits were 3 GB and raced: the same hog got "failed: MemoryError" in one run and "error:
the kernel died" in the next (a CI run went red on it). Now every path gives one row:
status ``failed``, no points, "the notebook used more than the 3 GB memory limit in cell N".

The judge's rule is checked on hand-made evidence (fast), then under the real
`autograder grade`: two identical hogs with cgroups, and a hog without cgroups (``AUTOGRADER_CGROUP=""``,
rlimits only) get the same row, and a notebook that catches its own MemoryError still passes.
"""

from __future__ import annotations

import os
import shutil

import nbformat
import pytest

from autograder import sandbox
from autograder.grading import judge
from autograder.results import store
from helpers.courses import HONEST, TOY, make_course, run_cli, solution

A = "toy"
MEMORY_GB = 3
EXPECTED = ("the notebook used more than the 3 GB memory limit in cell {cell}; use less memory "
            "(smaller batches, fewer processes, free what you no longer need)")
SETTINGS = judge.Settings(timeout=60, memory_gb=MEMORY_GB)
HOG = "blocks = []\nwhile True:\n    blocks.append(np.ones(25_000_000))  # 200 MB at a time"
CATCHES = ("try:\n    huge = np.ones(10**11)  # 800 GB: refused at once\nexcept MemoryError:\n    huge = None\n\n"
           + HONEST)
# libzmq at the address-space limit, for real: the address space is used up (untouched pages: no real memory), then
# a socket's queue needs a new chunk, and libzmq says "FATAL ERROR: OUT OF MEMORY" on fd 2 and aborts the kernel
ZMQ_ABORT = ("import zmq\nctx = zmq.Context()\npush, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)\n"
             "push.setsockopt(zmq.SNDHWM, 0)\npull.setsockopt(zmq.RCVHWM, 0)\n"
             "pull.bind('inproc://q')\npush.connect('inproc://q')\nkept = []\n"
             "for size in (10**8, 10**7, 10**6, 10**5, 10**4, 10**3, 10**2):\n"
             "    while True:\n        try:\n            kept.append(bytearray(size))\n"
             "        except MemoryError:\n            break\n"
             "for _ in range(100_000):\n    push.send(b'x')")
PASSED_LEDGER = '{"op": "score", "split": "private", "ok": true, "accuracy": 0.99, "count": 4, "n": 1000}\n'


def _solution_cell() -> int:
    """The toy notebook's solution cell, counted from 1 over all cells (read from the fixture)."""
    nb = nbformat.read(TOY, as_version=4)
    return next(n for n, c in enumerate(nb.cells, start=1)
                if c.metadata.get("nbgrader", {}).get("grade_id") == "solution")


def _notebook_with_error(ename: str, evalue: str, at: int = 2) -> nbformat.NotebookNode:
    cells = [nbformat.v4.new_code_cell("x = 1") for _ in range(4)]
    cells[at - 1].outputs = [nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[])]
    return nbformat.v4.new_notebook(cells=cells)


# --- the rule, on hand-made evidence -------------------------------------------------------------

def test_an_oom_kill_is_the_limit_in_the_running_cell():
    verdict = judge.judge(judge.Evidence(nbgrader_ok=False, log_tail="DeadKernelError: Kernel died",
                                         oom_kills=1, running_cell=7), SETTINGS)
    assert (verdict.status, verdict.passed, verdict.detail) == ("failed", False, EXPECTED.format(cell=7))


@pytest.mark.parametrize("ename, evalue", [("MemoryError", ""),
                                           ("_ArrayMemoryError", "Unable to allocate 191. MiB for an array"),
                                           ("RuntimeError", "DefaultCPUAllocator: can't allocate memory: you tried")])
def test_an_uncaught_memory_error_is_the_limit_in_its_cell(ename, evalue):
    evidence = judge.Evidence(nbgrader_ok=True, notebooks=[_notebook_with_error(ename, evalue, at=3)],
                              ledger_text=PASSED_LEDGER, score=3, max_score=3, running_cell=4)
    verdict = judge.judge(evidence, SETTINGS)
    # even after a counted pass: the same notebook could have been stopped there (see the module's doc)
    assert (verdict.status, verdict.passed, verdict.score, verdict.detail) == (
        "failed", False, None, EXPECTED.format(cell=3))


def test_a_kernel_that_aborts_at_its_address_space_limit_is_the_limit():
    evidence = judge.Evidence(nbgrader_ok=False, log_tail="nbclient.exceptions.DeadKernelError: Kernel died",
                              kernel_log="terminate called after throwing an instance of 'std::bad_alloc'\n",
                              running_cell=5)
    assert judge.judge(evidence, SETTINGS).detail == EXPECTED.format(cell=5)


def test_any_other_death_says_the_kernel_died_not_memory():
    evidence = judge.Evidence(nbgrader_ok=False, log_tail="DeadKernelError: Kernel died",
                              kernel_log="Segmentation fault\n", running_cell=5)
    verdict = judge.judge(evidence, SETTINGS)
    assert verdict.status == "error" and verdict.detail.startswith("the kernel died in cell 5"), verdict
    assert "memory" not in verdict.detail


def test_other_errors_are_not_the_limit():
    evidence = judge.Evidence(nbgrader_ok=True, notebooks=[_notebook_with_error("ValueError", "boom")],
                              ledger_text=PASSED_LEDGER, score=3, max_score=3)
    verdict = judge.judge(evidence, SETTINGS)
    assert verdict.status == "ok" and verdict.passed and "memory limit" not in verdict.detail, verdict


# --- under the real grader ---------------------------------------------------------------------

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")


def _grade(tmp_path, submissions: dict, env: dict | None = None) -> dict[str, store.Row]:
    course = make_course(tmp_path, {name: solution(code) for name, code in submissions.items()})
    run = run_cli("grade", A, "--course", str(course), "--memory", str(MEMORY_GB), "--timeout", "300", env=env)
    assert run.returncode in (0, 1), run.stderr[-3000:]
    return {row.student: row for row in store.load(course, A)}


def _shape(row: store.Row) -> tuple:
    return (row.status, row.passed, row.accuracy, row.score, row.max_score, row.detail)


@pytest.mark.slow
@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0 or not sandbox.cgroups_available(),
                    reason="kernel cgroups need a root grader and cgroup v2 delegation or writable v1")
def test_with_cgroups_every_hog_gets_the_same_row(tmp_path):
    rows = _grade(tmp_path, {"hog_a": HOG, "hog_b": HOG, "aborts": ZMQ_ABORT, "catches": CATCHES})
    expected = ("failed", False, None, None, None, EXPECTED.format(cell=_solution_cell()))
    assert _shape(rows["hog_a"]) == expected, rows["hog_a"]
    assert _shape(rows["hog_b"]) == expected, rows["hog_b"]
    assert _shape(rows["aborts"]) == expected, rows["aborts"]
    assert rows["catches"].status == "ok" and rows["catches"].passed, rows["catches"]


@pytest.mark.slow
@needs_bwrap
def test_without_cgroups_a_hog_gets_the_same_row(tmp_path):
    """A hog that gets MemoryError and a kernel that libzmq aborts at the address-space limit get one row (the
    kernel's fd 2 is the launcher's pipe, so libzmq's last words reach the kernel log)."""
    rows = _grade(tmp_path, {"hog": HOG, "aborts": ZMQ_ABORT, "dies": "import os\nos.abort()", "catches": CATCHES},
                  env={**os.environ, sandbox.ENV_CGROUP: ""})
    expected = ("failed", False, None, None, None, EXPECTED.format(cell=_solution_cell()))
    assert _shape(rows["hog"]) == expected, rows["hog"]
    assert _shape(rows["aborts"]) == expected, rows["aborts"]
    assert rows["dies"].status == "error" and "the kernel died in cell" in rows["dies"].detail, rows["dies"]
    assert "memory" not in rows["dies"].detail, rows["dies"]
    assert rows["catches"].status == "ok" and rows["catches"].passed, rows["catches"]
