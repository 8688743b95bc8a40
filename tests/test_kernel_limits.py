"""A kernel's limits hold for the kernel as a whole, under the real `autograder grade`.

`autograder.sandbox.launch` puts each kernel in cgroups of its own (v2 when delegated, else the v1
``memory``, ``pids`` and ``cpu`` controllers this machine mounts read-write for root):

- memory: 3 forked children holding 1.1 GB each exceed ``--memory 3`` together; the whole kernel
  is stopped and its row says it ran out of memory (the cap was per process before);
- CPU: a kernel whose 48 busy children each start their own session (so, without a cpu cgroup,
  48 scheduler autogroups: 48 shares) no longer makes an honest notebook of another
  ``autograder grade`` running at the same time time out;
- clean-up: the cgroups of a grader killed with -9 are emptied and removed at the next start;
- nbgrader's worker has a memory cgroup of its own: a kernel that sends one 300 MB output stops it at its
  cap, the row says the output was too large, and the batch goes on with a new worker.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder import sandbox
from autograder.results import store
from autograder.sandbox import launch
from helpers.courses import HONEST, make_course, run_cli, solution
from helpers.probes import descendants, found, kernel_user_pids, probe, rows_of

A = "toy"
CGROUP_V1 = sandbox.cgroup_v1()


def graded_with_cgroups(test):
    """Marks of a test that grades under kernel cgroups: slow, bwrap, a root grader, cgroups here."""
    for mark in (pytest.mark.slow,
                 pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"),
                 pytest.mark.skipif(os.geteuid() != 0, reason="kernel cgroups need a grader that is root"),
                 pytest.mark.skipif(not sandbox.cgroups_available(), reason="no cgroup v2 delegation or writable v1")):
        test = mark(test)
    return test


HOG_CHILDREN = 48


MEMORY_HOG = (
    "import os, time\n"
    "r, w = os.pipe()\nkids = []\n"
    "for k in range(3):\n"
    "    pid = os.fork()\n"
    "    if pid == 0:\n"
    "        try:\n"
    "            block = b'\\x01' * (1100 * 2**20)\n"
    "            rss = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS')) // 1024\n"
    "        except MemoryError:\n            rss = -1\n"
    "        os.write(w, (str(rss) + '\\n').encode())\n"
    "        time.sleep(60)\n        os._exit(0)\n"
    "    kids.append(pid)\n"
    "rf = os.fdopen(r)\nheld = [int(rf.readline()) for _ in kids]\n"
    "own = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS')) // 1024\n"
    "for pid in kids:\n    os.kill(pid, 9)\n    os.waitpid(pid, 0)\n"
    + probe("{'children_mb': held, 'own_mb': own, 'total_mb': own + sum(max(h, 0) for h in held)}"))

BIG_OUTPUT_MB = 300  # one display message, inside the kernel's --memory 3; too large for nbgrader's worker
BIG_OUTPUT = (f"from IPython.display import display\ndisplay({{'text/plain': 'x' * ({BIG_OUTPUT_MB} * 2**20)}}, "
              "raw=True)\nanswer = 2\n")

# an honest notebook that also looks for a way out of its cgroups: no cgroup file system inside
LOOK_FOR_CGROUPS = (HONEST + "import os\n"
                    + probe("{'cgroupfs': os.path.exists('/sys/fs/cgroup'), 'uid': os.getuid()}"))

CPU_HOG = (
    "import os, time\ngo, end = time.time() + 3, time.time() + 300  # spins until the grader is killed\nkids = []\n"
    f"for _ in range({HOG_CHILDREN}):\n"
    "    pid = os.fork()\n"
    "    if pid == 0:\n"
    "        os.setsid()  # its own session, so (without a cpu cgroup) its own scheduler autogroup\n"
    "        while time.time() < go:  # all forked before any spins (they share one cgroup with the parent)\n"
    "            time.sleep(0.1)\n"
    "        while time.time() < end:\n            pass\n"
    "        os._exit(0)\n"
    "    kids.append(pid)\n"
    "for pid in kids:\n    os.waitpid(pid, 0)\n")


def _kernel_tasks(pid: int) -> int:
    """How many descendants of `pid` run as a kernel user (64100 + a slot)."""
    return len(kernel_user_pids(descendants(pid)))


# The contract's line, with margins both ways: the honest toy's kernel takes ~10 s alone and < 40 s beside the
# hog at load 15 (one cpu share of two); starved (one share of 49) it takes ~25 times as long, minutes.
VICTIM_TIMEOUT_S = 120


@graded_with_cgroups
def test_a_cpu_hog_does_not_make_another_grading_time_out(tmp_path):
    """Once the hog's 48 children spin (each its own session; the hog is the tiny assignment's answer cell, a
    kernel that starts fast), an honest notebook graded by another
    `autograder grade` still passes well within its timeout: each kernel is one cpu cgroup, one share.
    The victim also looks for the cgroup file system (to leave its cgroups by): it is not there."""
    args = ["--memory", "3", "--max-processes", "96", "--tmp-mb", "64"]
    hog_course = make_course(tmp_path / "hog", {"hog": _answer(CPU_HOG)}, assignments={"tiny": _tiny()})
    victim_course = make_course(tmp_path / "victim", {"honest": solution(LOOK_FOR_CGROUPS)})
    hog_args = ["--memory", "3", "--max-processes", "256", "--tmp-mb", "64"]  # its kernel's threads + 48
    hog = subprocess.Popen([sys.executable, "-m", "autograder.cli", "grade", "tiny", "--course", str(hog_course),
                            *hog_args, "--timeout", "300"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 600  # a hang bound: the wait ends when the children spin
        while time.time() < deadline and hog.poll() is None and _kernel_tasks(hog.pid) < HOG_CHILDREN:
            time.sleep(0.5)
        spinning = _kernel_tasks(hog.pid)
        assert spinning >= HOG_CHILDREN, spinning
        start = time.time()
        victim = run_cli("grade", A, "--course", str(victim_course), *args, "--timeout", str(VICTIM_TIMEOUT_S))
        seconds = time.time() - start
        still = _kernel_tasks(hog.pid)
    finally:
        os.kill(hog.pid, signal.SIGKILL)  # the worker, the service and the kernel die with it
        hog.wait()
    row = rows_of(victim_course).get("honest")
    assert row is not None, victim.stderr[-2000:]
    assert still >= HOG_CHILDREN, still  # the hog spun the whole time
    assert row.status == "ok" and row.passed, (row, round(seconds, 1))
    inside = found(victim_course, "honest")  # and no cgroup file system to leave its cgroups by
    assert inside["cgroupfs"] is False and inside["uid"] >= sandbox.KERNEL_UID, inside


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.skipif(os.geteuid() != 0 or not CGROUP_V1, reason="needs writable cgroup v1 controllers (root)")
def test_the_cgroups_of_a_killed_grader_are_removed_at_the_next_start():
    """A kernel cgroup whose launcher is dead (grader killed with -9) is emptied and removed, and so is the memory
    cgroup of a dead nbgrader worker; one whose launcher lives (here: this process) is kept."""
    folders = list(CGROUP_V1.values())
    stale = [Path(f) / f"{launch.CGROUP_PREFIX}{_dead_pid()}-{_dead_pid()}" for f in folders]
    stale += [Path(CGROUP_V1["memory"]) / f"{launch.WORKER_PREFIX}{_dead_pid()}"] if "memory" in CGROUP_V1 else []
    live = [Path(f) / f"{launch.CGROUP_PREFIX}{os.getpid()}" for f in folders]
    left = subprocess.Popen(["sleep", "60"])  # a process left in the stale cgroups
    try:
        for path in stale + live:
            path.mkdir()
        for path in stale:
            (path / "cgroup.procs").write_text(str(left.pid))
        removed = launch.remove_stale(folders)
        assert set(map(str, stale)) <= set(removed)  # with any other grader's left here
        assert not any(p.exists() for p in stale) and all(p.exists() for p in live)
        assert left.wait(timeout=10) == -signal.SIGKILL
    finally:
        left.kill()
        for path in stale + live:
            if path.exists():
                path.rmdir()


# --- the course gradebook's extensions reach the grading workers -------------------------------------

DUE, LATE = "2026-01-01 12:00:00 UTC", "2026-01-02 12:00:00 UTC"  # one day late


def _tiny() -> nbformat.NotebookNode:
    """A points-only notebook of one solution cell and one graded test (a kernel, no model)."""
    meta = {"schema_version": 3, "task": False, "locked": False}
    answer = nbformat.v4.new_code_cell("answer = 2")
    answer.metadata["nbgrader"] = {**meta, "grade": False, "solution": True, "grade_id": "answer"}
    test = nbformat.v4.new_code_cell("assert answer == 2")
    test.metadata["nbgrader"] = {**meta, "grade": True, "solution": False, "locked": True, "points": 1,
                                 "grade_id": "test_answer"}
    nb = nbformat.v4.new_notebook(cells=[answer, test])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _answer(code: str):
    def edit(nb):
        next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "answer").source = code
    return edit


@pytest.fixture(scope="module")
def tiny_batch(tmp_path_factory):
    """One `autograder grade --memory 3` of the tiny assignment: a day-late submission, one with a two-day
    extension in the course gradebook (nbgrader's 'zero' late penalty), the memory hog, and (graded first, so
    the others need a new nbgrader worker) one 300 MB output. Serial: every
    mode grades through `tasks.Executor` against a gradebook copy per run (the same path as a `--jobs` or
    Dask worker's, half the time of a `--jobs 2` start here)."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap (bwrap) is not installed")
    from nbgrader.api import Gradebook

    course_dir = make_course(tmp_path_factory.mktemp("tiny"), {"late": None, "extended": None,
                                                               "mem_hog": _answer(MEMORY_HOG),
                                                               "big_output": _answer(BIG_OUTPUT)},
                             assignments={"tiny": _tiny()})
    with open(course_dir / "nbgrader_config.py", "a") as config:
        config.write('\nc.LateSubmissionPlugin.penalty_method = "zero"\n')
    db_url = f"sqlite:///{course_dir / 'gradebook.db'}"
    with Gradebook(db_url, "autograder-fixture") as gb:
        gb.update_or_create_assignment("tiny", duedate=DUE)
        for student in ("late", "extended"):
            gb.update_or_create_student(student)
        gb.add_submission("tiny", "extended")
        gb.grant_extension("tiny", "extended", days=2)
    for student in ("late", "extended"):
        (course_dir / "submitted" / student / "tiny" / "timestamp.txt").write_text(LATE + "\n")
    run = run_cli("grade", "tiny", "--course", str(course_dir), "--memory", "3", "--tmp-mb", "64",
                  "--max-processes", "96", "--timeout", "60")
    assert run.returncode in (0, 1), run.stderr[-3000:]
    with Gradebook(db_url, "autograder-fixture") as gb:
        penalty = {s: gb.find_submission("tiny", s).late_submission_penalty for s in ("late", "extended")}
        extension = gb.find_submission("tiny", "extended").extension
    rows = {r.student: r for r in store.load(course_dir, "tiny")}
    return {"run": run, "rows": rows, "penalty": penalty, "extension": extension}


@graded_with_cgroups
def test_memory_cap_holds_for_the_whole_kernel(tiny_batch):
    """The hog's 3 children hold 1.1 GB each: together past --memory 3, so the whole kernel is stopped and
    its row says why (before, the cap was per process and all three held)."""
    hog = tiny_batch["rows"]["mem_hog"]
    assert hog.status == "failed" and not hog.passed and "used more than the 3 GB memory limit in cell" in hog.detail, hog


@graded_with_cgroups
def test_a_huge_output_stops_only_its_own_grading(tiny_batch):
    """nbgrader's worker reads the 300 MB message whole and passes its memory cap (with the default
    --max-output-mb): its row says the output was too large; the next submissions get a new worker."""
    rows = tiny_batch["rows"]
    big = rows["big_output"]
    assert big.status == "error" and not big.passed, big
    assert "the notebook's output was too large for the grader" in big.detail, big.detail
    assert set(rows) == {"big_output", "extended", "late", "mem_hog"}, rows
    assert rows["extended"].status == "ok" and rows["late"].status == "ok", rows  # graded by a new worker
    assert rows["extended"].max_score == rows["late"].max_score == 1, rows  # the tiny notebook's one test ran


@pytest.mark.slow
def test_an_extension_in_the_course_gradebook_reaches_the_grading_workers(tiny_batch):
    """Each run autogrades against its own gradebook copy (as on a `--jobs` or Dask worker): the copy carries
    the student's extension, so the day-late submission with two days more loses nothing, the other its point."""
    assert tiny_batch["penalty"] == {"late": 1.0, "extended": 0.0}, (tiny_batch["penalty"],
                                                                      tiny_batch["run"].stdout[-2000:])
    assert tiny_batch["extension"] is not None and tiny_batch["extension"].days == 2
    assert tiny_batch["rows"]["extended"].status == "ok", tiny_batch["rows"]["extended"]


# --- where the cgroups come from, and what happens without them ---------------------------------------


def test_cgroup_v1_folders_are_the_graders_own_in_each_writable_controller(tmp_path, monkeypatch):
    """Parsed from mountinfo and /proc/self/cgroup: a combined cpu,cpuacct mount, a nested memory cgroup;
    a read-only or missing folder is left out; AUTOGRADER_CGROUP (even empty) turns v1 off."""
    monkeypatch.delenv(sandbox.ENV_CGROUP, raising=False)
    for folder in ("memory/grader", "cpu"):
        (tmp_path / folder).mkdir(parents=True)
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        f"30 25 0:26 / {tmp_path}/memory rw,relatime shared:10 - cgroup cgroup rw,memory\n"
        f"31 25 0:27 / {tmp_path}/cpu rw,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct\n"
        f"32 25 0:28 / {tmp_path}/pids rw,relatime shared:12 - cgroup cgroup rw,pids\n"  # not there: left out
        f"33 25 0:29 / {tmp_path}/unified rw,relatime shared:13 - cgroup2 cgroup2 rw\n")
    own = tmp_path / "cgroup"
    own.write_text("8:pids:/\n4:memory:/grader\n2:cpu,cpuacct:/\n0::/\n")
    found = sandbox.cgroup_v1(str(mountinfo), str(own))
    assert found == {"memory": str(tmp_path / "memory" / "grader"), "cpu": str(tmp_path / "cpu")}
    monkeypatch.setenv(sandbox.ENV_CGROUP, "")
    assert sandbox.cgroup_v1(str(mountinfo), str(own)) == {}


def test_jobs_without_cgroups_warn_once(monkeypatch, capsys):
    """`--jobs 2` still runs without cgroups, and says once that the limits are then per process."""
    from autograder.grading import parallel

    monkeypatch.setattr(sandbox, "cgroups_available", lambda: False)
    monkeypatch.setattr(parallel, "_WARNED", False)
    for _ in range(2):
        assert list(parallel.LocalPool(2).run(None, [])) == []
    assert capsys.readouterr().err.count("no cgroup for the kernels") == 1
