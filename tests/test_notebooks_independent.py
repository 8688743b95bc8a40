"""Every release notebook, answered by an independent solution (`tests/independent/`, written from the exercise
text alone) and run in a fresh kernel, passes every graded cell without an error or stderr in a test cell, in exam
mode (``COURSE_EXAM=1``: no held-out scores, one counted submission) on the hard track ``4,9``: a given cell that
needs a name no exercise asks for, a check that rejects a correct answer, or a notebook that only works on 7,1 or
only with held-out scores fails here. (Practice mode is the source notebooks' run, tests/test_notebooks.py.)

A module of its own: its five runs (and the hard track's baseline) go to one test process while nbgrader grades
the source and release notebooks in the other.
"""

from __future__ import annotations

import nbformat
import pytest

from helpers.notebooks import (ASSIGNMENTS, HARD_TRACK, PLACEHOLDER, RELEASE, SOURCE, Run, answer_cells, answered,
                               describe, errors, execute, independent_answers, nbgrader_meta)


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def assignment(request) -> str:
    return request.param


def test_independent_answers_match_the_release():
    for a in ASSIGNMENTS:
        release = nbformat.read(RELEASE / a / f"{a}.ipynb", as_version=4)
        ids = [nbgrader_meta(c)["grade_id"] for c in answer_cells(release)]
        answers = independent_answers(a)
        assert sorted(ids) == sorted(answers), f"tests/independent/a{a}.py answers {sorted(answers)}, the release asks {sorted(ids)}"
        for cell in answer_cells(release):
            assert PLACEHOLDER in cell.source, f"{a}: answer cell {nbgrader_meta(cell)['grade_id']} has no placeholder"


def _code_lines(source: str) -> set[str]:
    return {line.strip() for line in source.splitlines()
            if line.strip() and not line.strip().startswith(("#", "def ", '"""', "return", "###"))
            and len(line.strip()) > 25}


def test_independent_answers_are_not_the_reference():
    """The independent answers are not copies of the source's solutions (few shared long lines)."""
    for a in ASSIGNMENTS:
        source = nbformat.read(SOURCE / a / f"{a}.ipynb", as_version=4)
        reference = set().union(*(_code_lines(c.source) for c in answer_cells(source)))
        for grade_id, answer in independent_answers(a).items():
            lines = _code_lines(answer)
            shared = lines & reference
            # lines the exercise text dictates (names, calls it spells out) may coincide; most may not
            assert len(shared) <= max(1, len(lines) // 2), f"{a} {grade_id} copies the reference: {sorted(shared)}"


@pytest.fixture(scope="module")
def independent_run(assignment, tmp_path_factory) -> Run:
    """The release notebook with the independent answers, in a fresh kernel, in exam mode on the hard
    track, as the grader runs it on a hidden track. Exam mode is the stricter one (no held-out
    scores, a track whose digits no cell names) and the test cells do not depend on the mode; the
    given cells' practice-mode path runs in the source notebooks, the same cells, above."""
    return execute(answered(assignment), tmp_path_factory.mktemp(f"independent-{assignment}"),
                   track=HARD_TRACK, exam=True, name=f"{assignment}.ipynb")


@pytest.mark.slow
def test_release_passes_with_independent_answers(assignment, independent_run):
    problems = [describe(k, c, e) for k, c in enumerate(independent_run.nb.cells) if c.cell_type == "code"
                for e in errors(c)]
    problems += [f"cell {k} ({nbgrader_meta(c)['grade_id']}) wrote to stderr: {o.text[:200]!r}"
                 for k, c in enumerate(independent_run.nb.cells) if nbgrader_meta(c).get("grade")
                 for o in c.get("outputs", []) if o.output_type == "stream" and o.name == "stderr"]
    assert not problems, (f"{assignment}, answered independently, fails in exam mode on track {HARD_TRACK}:\n"
                          + "\n".join(problems))
