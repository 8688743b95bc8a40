"""The knowledge flag and the rounds' shuffles, without a kernel (about a second).

- `autograder.grading.knowledge`: a notebook whose code carries far more than a method needs is marked for
  review. Its threshold comes from the reference notebooks in ``source/``, measured here the way the
  grader measures them (zlib level 9 of the code and raw cells): when a reference outgrows
  ``REFERENCE_BYTES`` this test says so and the constant must follow.
- `autograder.grading.secret.round_key`: a round graded into its own store (``--db``) gets its own shuffle;
  the course's default store keeps the seed it always had (computed here by hand).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import nbformat
import pytest

from autograder.grading import judge, knowledge, secret
from helpers.courses import TEST_SECRET, TOY

REPO = Path(__file__).resolve().parent.parent
REFERENCES = sorted((REPO / "source").glob("*/*.ipynb"))


def _measured(path: Path) -> int:
    """The compressed code of a notebook file, measured without the module under test."""
    cells = json.loads(path.read_text())["cells"]
    text = "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                     for c in cells if c["cell_type"] in ("code", "raw"))
    return len(zlib.compress(text.encode(), 9))


def test_the_threshold_follows_the_largest_reference_notebook():
    assert len(REFERENCES) == 5, REFERENCES
    sizes = {p.parent.name: _measured(p) for p in REFERENCES}
    assert max(sizes.values()) == knowledge.REFERENCE_BYTES, (
        f"the reference notebooks measure {sizes}: set autograder.grading.knowledge.REFERENCE_BYTES to the largest")
    assert knowledge.REVIEW_BYTES == 10158  # 1.5 x 6772, written out


def test_reference_notebooks_and_the_toy_are_not_flagged():
    for path in REFERENCES + [TOY]:
        assert knowledge.review_note([nbformat.read(path, as_version=4)]) == "", path


def _toy_with(code: str) -> nbformat.NotebookNode:
    nb = nbformat.read(TOY, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(code))
    return nb


def test_a_table_of_an_event_tracks_test_images_is_flagged():
    """2,163 entries (the 7/1 MNIST test images) of a 12-hex-digit hash and a digit, as attack 2 typed them."""
    rng = __import__("random").Random(0)
    table = {f"{rng.getrandbits(48):012x}": rng.choice((1, 7)) for _ in range(2163)}
    note = knowledge.review_note([_toy_with(f"TABLE = {table!r}\n")])
    limit = f"more than {knowledge.REVIEW_BYTES / 1000:.1f} kB"
    assert note.startswith("the notebook's code holds ") and limit in note and "read the notebook" in note, note


def test_a_passing_heavy_notebook_is_marked_for_review_by_the_judge():
    rng = __import__("random").Random(1)
    weights = [round(rng.uniform(-1, 1), 3) for _ in range(784 * 10)]  # a ten-digit model typed in
    ledger = ('{"op": "annotate", "ok": true, "count": 1}\n'
              '{"op": "score", "split": "private", "ok": true, "accuracy": 0.99, "count": 1, "n": 100}\n')
    evidence = judge.Evidence(ledger_text=ledger, nbgrader_ok=True, notebooks=[_toy_with(f"W = {weights!r}\n")],
                              score=2, max_score=2)
    verdict = judge.judge(evidence, judge.Settings(timeout=60, memory_gb=3))
    if not verdict.passed:
        pytest.fail(f"the hand-written ledger does not make a passing row: {verdict}")
    assert "the notebook's code holds" in verdict.review, verdict.review


# --- rounds ---------------------------------------------------------------------------------------

def test_the_default_store_keeps_its_seed_and_a_rounds_store_has_its_own(tmp_path):
    course = tmp_path / "course"
    private = course / ".autograder"
    secret.rotate(private, "toy", value=TEST_SECRET)
    by_hand = int.from_bytes(hashlib.sha256(f"{TEST_SECRET}|toy|7,1".encode()).digest()[:8], "big")
    assert secret.seed(private, "toy", "7,1") == by_hand
    assert secret.round_key(course, None) == "" and secret.round_key(course, str(course / "grades.db")) == ""
    one, two = secret.round_key(course, str(tmp_path / "round1.db")), secret.round_key(course, str(tmp_path / "round2.db"))
    assert one == f"sqlite:///{tmp_path / 'round1.db'}" and one != two
    seeds = {secret.seed(private, "toy", "7,1", key) for key in ("", one, two)}
    assert len(seeds) == 3  # each round its own shuffle
    assert secret.seed(private, "toy", "7,1", one) == secret.seed(private, "toy", "7,1", one)  # regrades agree
    assert "hunter2" not in secret.round_key(course, "postgresql://grader:hunter2@db.example/round2")
