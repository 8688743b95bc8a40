"""`autograder dry-run`: the instructor's rehearsal (`autograder.grading.dryrun`), and `autograder grade` on
the real assignment.

The end-to-end tests run the installed `autograder` command as an instructor does, on the real
03_clustering: a throw-away course outside the repository, four submissions (alice: the reference
solution, bob: a typo, carol: the blank release notebook, dave: no notebook) graded by the real
grader (the full notebook in the sandboxed kernel against a live annotation service), every row as
expected, exit 0, the leaderboard written. One rehearsal serves every end-to-end test: what the
reference printed is what the service kept, the blank fails and ranks below it. The fast tests cover
the comparison (a row that differs makes the exit code 1) and the folder checks. Bad and cheating
submissions are covered, faster, by test_autograder_toy.py.
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.grading import dryrun, runner
from autograder.results import leaderboard, store
from helpers.rows import row

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENT = "03_clustering"
SUBMITTED_LINE = re.compile(r"accuracy ([\d.]+)% on (\d+) private held-out images with (\d+) annotation")
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")


def test_broken_puts_a_typo_first_in_the_first_answer():
    nb = dryrun.broken(nbformat.read(REPO / "source" / "03_clustering" / "03_clustering.ipynb", as_version=4))
    cell = next(c for c in nb.cells if "### BEGIN SOLUTION" in c.source)
    lines = cell.source.split("\n")
    at = next(i for i, line in enumerate(lines) if "### BEGIN SOLUTION" in line)
    assert lines[at + 1].strip().startswith(dryrun.TYPO)


def test_expectations_follow_the_assignment():
    assert dryrun.has_submit_cell(nbformat.read(REPO / "source" / "03_clustering" / "03_clustering.ipynb", 4))
    assert not dryrun.has_submit_cell(nbformat.read(REPO / "source" / "01_data" / "01_data.ipynb", 4))
    graded = {e.student: (e.status, e.passed) for e in dryrun.expectations("03_clustering")}
    assert graded == {"alice": ("ok", True), "bob": ("failed", False), "carol": ("failed", False),
                      "dave": ("error", False)}
    assert list(dryrun.SUBMISSIONS) == list(graded)


def _as_graded():
    why = "no submission reached the annotation service (grading.submit was not called or failed); first error: "
    return [row("alice", 0.99, 1, detail="counted the first of 1 submission; 0 held-out evaluations"),
            row("bob", None, None, status="failed", detail=why + f"ex1: NameError: name '{dryrun.TYPO}' is not defined"),
            row("carol", None, None, status="failed", detail=why + "ex1: NotImplementedError: "),
            row("dave", None, None, status="error", detail="no notebook in submitted/dave/03_clustering/ (...)")]


def test_compare_as_expected_and_different():
    expected = dryrun.expectations("03_clustering")
    compared = dryrun.compare(expected, _as_graded())
    assert all(not problems for _, _, problems in compared)
    assert dryrun.report(compared).endswith("every row as expected")
    graded = _as_graded()
    graded[0] = row("alice", 0.85, 1, detail="counted the first of 1 submission; 0 held-out evaluations")  # below 90%
    del graded[3]
    compared = dryrun.compare(expected, graded)
    text = dryrun.report(compared)
    assert "DIFFERENT: passed no, expected yes" in text and "DIFFERENT: no row in the results store" in text
    assert text.endswith("2 of 4 rows differ from what was expected")


def _args(**given):
    values = {"assignment": "03_clustering", "course": REPO, "dir": None, "open": False, "timeout": None} | given
    return argparse.Namespace(**values)


def test_the_course_folder_must_be_new_and_outside_the_repository(tmp_path, capsys):
    assert dryrun.run(_args(dir=REPO / "dry-run-here")) == 2
    assert "inside the course" in capsys.readouterr().err
    assert not (REPO / "dry-run-here").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert dryrun.run(_args(dir=tmp_path / "full")) == 2
    assert "not empty" in capsys.readouterr().err
    assert dryrun.run(_args(dir=tmp_path / "new", assignment="99_nothing")) == 2
    assert "cannot build" in capsys.readouterr().err


def autograder_command() -> list[str]:
    """The console script when installed (it is, with pip install -e .), else the module."""
    script = Path(sys.executable).parent / "autograder"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "autograder.cli"]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """One `autograder dry-run` of 03_clustering: (course folder, rows by student, the command's stdout)."""
    where = tmp_path_factory.mktemp("dry") / "rehearsal"
    done = subprocess.run(autograder_command() + ["dry-run", "--dir", str(where)], cwd=REPO,
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    course = where / "course"
    return course, {r.student: r for r in store.load(course, ASSIGNMENT)}, done.stdout


@pytest.mark.slow
@needs_bwrap
def test_dry_run_end_to_end(rehearsal):
    course, rows, out = rehearsal
    assert f"dry run of {ASSIGNMENT} in {course}" in out
    for student, graded in (("alice", "ok, passed"), ("bob", "failed, not passed"), ("carol", "failed, not passed"),
                            ("dave", "error, not passed")):
        block = out[out.index(f"\n{student} "):]
        assert f"graded:   {graded}" in block.split("\n", 5)[3], block[:600]
    assert out.count("       as expected") == 4 and "every row as expected" in out
    assert rows["alice"].passed and rows["alice"].accuracy >= 0.9 and rows["alice"].annotations >= 1
    for ext in ("csv", "html", "png"):
        assert (course / "leaderboard" / f"{ASSIGNMENT}.{ext}").stat().st_size > 0
    fig = leaderboard.figure(ASSIGNMENT, leaderboard.rank(list(rows.values())))
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["passed (1)", "not passed (3)"]


@pytest.mark.slow
@needs_bwrap
def test_reference_passes_with_the_count_the_service_kept(rehearsal):
    course, rows, out = rehearsal
    row = rows["alice"]
    assert row.status == "ok" and row.passed and row.accuracy >= 0.9, row
    assert row.score == row.max_score and row.max_score > 0, "every nbgrader test of the reference passes"
    # what `submit` printed in the kernel is what the service recorded
    executed = nbformat.read(course / "autograded" / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []))
    printed = SUBMITTED_LINE.findall(text)
    assert printed, "the notebook submitted to the service (private split)"
    accuracy, _, annotations = printed[-1]
    assert int(annotations) == row.annotations > 0
    assert float(accuracy) == pytest.approx(100 * row.accuracy, abs=0.051)
    ledger = store.ledger_path(course, ASSIGNMENT, "alice").read_text()
    assert '"split": "private"' in ledger


@pytest.mark.slow
@needs_bwrap
def test_blank_fails_and_ranks_below_the_reference(rehearsal):
    course, rows, out = rehearsal
    blank = rows["carol"]
    assert blank.status == "failed" and not blank.passed and blank.accuracy is None, blank
    assert "NotImplementedError" in blank.detail and blank.score < blank.max_score
    with open(course / "leaderboard" / f"{ASSIGNMENT}.csv") as f:
        table = {r["student"]: r for r in csv.DictReader(f)}
    assert table["alice"]["rank"] == "1" and table["alice"]["passed"] == "yes"
    assert table["carol"]["passed"] == "no" and table["carol"]["rank"] != "1"
    for ext in ("html", "png"):
        assert (course / "leaderboard" / f"{ASSIGNMENT}.{ext}").stat().st_size > 1000


def test_only_assignments_with_a_submit_cell_are_competitions():
    """01_data has no submit cell: it is graded for points only (no accuracy, no annotations)."""
    kinds = {a: runner.has_submit_cell(sorted((REPO / "source" / a).glob("*.ipynb")))
             for a in ("01_data", ASSIGNMENT)}
    assert kinds == {"01_data": False, ASSIGNMENT: True}
