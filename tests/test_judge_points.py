"""The points of the cells that check the submission are the ledger's, not the kernel's outputs'.

nbgrader gives a test cell its points when its output holds no error, and participant code
decides what its outputs hold. The judge withholds the points of the graded cells that check
the submission (their source, restored by nbgrader from the instructor's, calls ``submit(``
or reads ``result.passed``/``.accuracy``) when the service's ledger says the counted
submission did not pass; it never grants points. The real-grader test of a kernel that fools
its test cells is in tests/test_attacks_exam.py; these check the rule without a kernel.
"""

from __future__ import annotations

import json

import nbformat

from autograder.grading import judge

SETTINGS = judge.Settings(timeout=10, memory_gb=1)


def _ledger(accuracy: float | None) -> str:
    if accuracy is None:
        return ""
    return json.dumps({"seq": 0, "time": 0, "op": "score", "split": "private", "ok": True,
                       "accuracy": accuracy, "count": 4, "n": 10})


def _cell(source: str, grade_id: str, points: float | None = None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": points is not None, "grade_id": grade_id, "locked": True,
                                 "solution": False, "schema_version": 3,
                                 **({"points": points} if points is not None else {})}
    return cell


def _notebook() -> nbformat.NotebookNode:
    """A course notebook's shape: two exercise checks (3 points), the submit cell (3), a toy-style check (2)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [_cell("assert counts == {}", "ex1_tests", 1),
                _cell("assert c_rate < 1  # the result of ex2", "ex2_tests", 2),
                _cell("result = grading.submit(predict)\nassert result.passed, result", "submit", 3),
                _cell("assert result.accuracy >= 0.9, result", "test_passed", 2),
                _cell("print(result)", "show")]  # not graded: no points
    return nb


def _verdict(accuracy: float | None, score: float) -> judge.Verdict:
    return judge.judge(judge.Evidence(_ledger(accuracy), nbgrader_ok=True, notebooks=[_notebook()],
                                      score=score, max_score=8), SETTINGS)


def test_the_submission_cells_are_found_by_their_restored_source():
    assert judge.submission_points([_notebook()]) == 5


def test_forged_submission_points_are_withheld_when_the_ledger_says_it_failed():
    forged = _verdict(0.5, score=8)  # every test cell "passed" in the kernel
    assert (forged.status, forged.passed, forged.score, forged.max_score) == ("ok", False, 3, 8)
    assert "5 point(s) of the submission's test cells withheld" in forged.detail
    assert "check the notebook" in forged.review


def test_no_submission_at_all_earns_none_of_its_points():
    forged = _verdict(None, score=8)
    assert (forged.status, forged.score) == ("failed", 3) and forged.review


def test_honest_rows_keep_nbgrader_points():
    failed = _verdict(0.85, score=3)  # the submission cells raised: nbgrader gave them nothing
    assert (failed.score, failed.review) == (3, "") and "withheld" not in failed.detail
    partial = _verdict(0.85, score=2)  # an exercise failed too
    assert partial.score == 2
    passed = _verdict(0.95, score=8)
    assert passed.passed and passed.score == 8 and "withheld" not in passed.detail
    # the rule only takes points away: a pass does not grant the points of a cell nbgrader saw fail
    assert _verdict(0.95, score=5).score == 5


def test_points_only_assignments_keep_nbgrader_points():
    verdict = judge.judge(judge.Evidence("", nbgrader_ok=True, notebooks=[_notebook()], score=8, max_score=8),
                          judge.Settings(timeout=10, memory_gb=1, kind="points"))
    assert verdict.passed and verdict.score == 8
