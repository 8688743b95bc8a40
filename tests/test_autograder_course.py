"""`autograder grade 03_clustering` on the real assignment: reference and blank submissions.

A throw-away course is built from the repository (its nbgrader_config.py and
source/03_clustering), the assignment is generated with nbgrader, the reference
(the instructor's source notebook) and a blank (the release notebook) are
submitted, and the installed `autograder` command grades them: the full notebook
runs in the sandboxed kernel against a live annotation service. Bad and
cheating submissions are covered, faster, by test_autograder_toy.py.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.grading import runner
from autograder.results import store
from helpers.courses import make_course

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENT = "03_clustering"
SOURCE = REPO / "source" / ASSIGNMENT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"),
]
SUBMITTED_LINE = re.compile(r"accuracy ([\d.]+)% on (\d+) private held-out images with (\d+) annotation")


def autograder_command() -> list[str]:
    """The console script when installed (it is, with pip install -e .), else the module."""
    script = Path(sys.executable).parent / "autograder"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "autograder.cli"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    notebook = f"{ASSIGNMENT}.ipynb"
    course = make_course(tmp_path_factory.mktemp("course03"), {"reference": None, "blank": "release"},
                         assignments={ASSIGNMENT: SOURCE / notebook}, config=REPO / "nbgrader_config.py")
    run = subprocess.run(autograder_command() + ["grade", ASSIGNMENT, "--course", str(course)],
                         capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]
    return course, {r.student: r for r in store.load(course, ASSIGNMENT)}, run


def test_reference_passes_with_the_count_the_service_kept(graded):
    course, rows, run = graded
    row = rows["reference"]
    assert row.status == "ok" and row.passed and row.accuracy >= 0.9, row
    assert row.score == row.max_score and row.max_score > 0, "every nbgrader test of the reference passes"
    # what `submit` printed in the kernel is what the service recorded
    executed = nbformat.read(course / "autograded" / "reference" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []))
    printed = SUBMITTED_LINE.findall(text)
    assert printed, "the notebook submitted to the service (private split)"
    accuracy, _, annotations = printed[-1]
    assert int(annotations) == row.annotations > 0
    assert float(accuracy) == pytest.approx(100 * row.accuracy, abs=0.051)
    ledger = store.ledger_path(course, ASSIGNMENT, "reference").read_text()
    assert '"split": "private"' in ledger


def test_blank_fails_and_ranks_last(graded):
    course, rows, run = graded
    blank = rows["blank"]
    assert blank.status == "failed" and not blank.passed and blank.accuracy is None, blank
    assert "NotImplementedError" in blank.detail and blank.score < blank.max_score
    with open(course / "leaderboard" / f"{ASSIGNMENT}.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["student"] for r in table] == ["reference", "blank"]
    assert table[0]["rank"] == "1" and table[0]["passed"] == "yes" and table[1]["passed"] == "no"
    for ext in ("html", "png"):
        assert (course / "leaderboard" / f"{ASSIGNMENT}.{ext}").stat().st_size > 1000
    assert "reference" in run.stdout and "blank" in run.stdout


def test_only_assignments_with_a_submit_cell_are_competitions():
    """01_data has no submit cell: it is graded for points only (no accuracy, no annotations)."""
    kinds = {a: runner.has_submit_cell(sorted((REPO / "source" / a).glob("*.ipynb")))
             for a in ("01_data", ASSIGNMENT)}
    assert kinds == {"01_data": False, ASSIGNMENT: True}
