"""What the graded attack tests read back: a kernel's printed findings, the rows, the kernel processes.

An attack notebook ends with `probe(expr)`, which prints ``FOUND=<json>``; `found` reads that
line from the autograded notebook. `descendants` and `kernel_user_pids` find the processes a
grading left behind, so a check looks at its own batch, never at every kernel on the machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat

from autograder import sandbox, store, tasks

ASSIGNMENT = "toy"  # the fixture course's assignment (tests/fixtures/autograder_course)


def probe(expr: str) -> str:
    """Code that prints the JSON of `expr` behind ``FOUND=`` (read back by `found`)."""
    return f"import json as _json\nprint('FOUND=' + _json.dumps({expr}))\n"


def found(course_dir: Path, student: str, assignment: str = ASSIGNMENT):
    """What the student's graded notebook printed behind ``FOUND=``."""
    nb = nbformat.read(course_dir / "autograded" / student / assignment / f"{assignment}.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    return json.loads(text.split("FOUND=", 1)[1].splitlines()[0])


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
