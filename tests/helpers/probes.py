"""What the graded attack tests read back: a kernel's printed findings, the rows, the kernel processes.

An attack notebook ends with `probe(expr)`, which prints ``FOUND=<json>``; `found` reads that
line from the autograded notebook. `descendants`, `kernel_user_pids` and `mentioning` find the processes a
grading left behind, so a check looks at its own batch, never at every kernel on the machine; `wait_until`
waits for an event (a row, a kernel, an exit) instead of sleeping.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat

from autograder import sandbox
from autograder.grading import tasks
from autograder.results import store

ASSIGNMENT = "toy"  # the fixture course's assignment (tests/fixtures/autograder_course)


def probe(expr: str) -> str:
    """Code that prints the JSON of `expr` behind ``FOUND=`` (read back by `found`)."""
    return f"import json as _json\nprint('FOUND=' + _json.dumps({expr}))\n"


def printed(course_dir: Path, student: str, assignment: str = ASSIGNMENT) -> str:
    """Everything the student's graded notebook printed (its code cells' stream outputs, in order)."""
    nb = nbformat.read(course_dir / "autograded" / student / assignment / f"{assignment}.ipynb", as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def found(course_dir: Path, student: str, assignment: str = ASSIGNMENT, marker: str = "FOUND="):
    """What the student's graded notebook printed behind ``FOUND=`` (or another `marker`), as JSON."""
    text = printed(course_dir, student, assignment)
    assert marker in text, text[-3000:]
    return json.loads(text.split(marker, 1)[1].splitlines()[0])


def rows_of(course_dir: Path, assignment: str = ASSIGNMENT) -> dict:
    """The course's results rows by student."""
    return {r.student: r for r in store.load(course_dir, assignment)}


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc, so re-parented children of a dead parent are not included)."""
    parents: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def descendants_fast(pid: int) -> list[int]:
    """`descendants`, read from each thread's ``/proc/<pid>/task/<tid>/children`` (no scan of all of /proc: for a
    watcher polling every few milliseconds)."""
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = []
        try:
            for task in os.listdir(f"/proc/{parent}/task"):
                kids += [int(k) for k in Path(f"/proc/{parent}/task/{task}/children").read_text().split()]
        except OSError:
            continue
        out += kids
        todo += kids
    return out


def mentioning(text: str) -> dict[int, str]:
    """{pid: command line} of the processes (not this one) whose environment or command line holds `text`
    (e.g. a grader's own TMPDIR: every process it started names it). Unreadable processes are skipped."""
    found, needle = {}, text.encode()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if int(entry) != os.getpid() and (needle in environ or needle in cmdline):
            found[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
    return found


def kernel_user_pids(pids) -> list[int]:
    """Those of `pids` that run as a kernel user (64100 + the slot its executor claimed)."""
    out = []
    for pid in pids:
        try:
            if sandbox.KERNEL_UID <= os.stat(f"/proc/{pid}").st_uid < sandbox.KERNEL_UID + tasks.UID_SLOTS:
                out.append(pid)
        except OSError:
            continue
    return out


def kernels_below(pid: int) -> list[int]:
    """The kernel-user processes below `pid`: a kernel of that grader (or worker) is running."""
    return kernel_user_pids(descendants(pid))


def wait_until(condition, timeout: float, what: str, every: float = 0.2):
    """Poll `condition()` until it returns something true (returned); fail with `what` after `timeout` seconds.

    The bound is a hang guard, not a speed claim: the wait ends as soon as the event happens.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        time.sleep(every)
