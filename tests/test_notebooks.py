"""The nbgrader assignments, executed for real: every `source/<a>/<a>.ipynb` is found here.

What is proved, per assignment (each notebook runs in a fresh kernel):
- the source notebook runs top to bottom without an error, its test cells write nothing to
  stderr, and nbgrader's validator passes it (full points on every graded cell);
- the release notebook stops only at unanswered exercises: NotImplementedError raised by a
  placeholder, plus the NameErrors/AssertionErrors that follow from answers it does not have;
  never a setup error. nbgrader's validator with ``--invert`` finds no passing graded cell;
- `release/` is exactly what ``nbgrader generate_assignment`` makes from `source/` today;
- ``nbgrader autograde`` in a temporary course copy gives a perfect submission (the source
  notebook) full points and a blank one (the release notebook) zero;
- every release notebook, answered by an *independent* solution (`tests/independent/`,
  written from the exercise text alone) and run in a fresh kernel, passes every graded cell
  without an error or stderr in a test cell, in exam mode (``COURSE_EXAM=1``: no held-out
  scores, one counted submission) on the hard track ``4,9``: a given cell that needs a name no
  exercise asks for, a check that rejects a correct answer, or a notebook that only works on 7,1
  or only with held-out scores fails here. Practice mode is the source notebooks' run (the
  same given and test cells); the source notebooks in exam mode on another track:
  tests/test_hidden_tracks.py, under the grader;
- no code cell outside the test cells names a track's digits.

Budget: every notebook is executed once per role, in module-scoped fixtures, and the checks
read those runs. One ``nbgrader autograde "*"`` call grades two students on every assignment:
"perfect" submits the source notebook and "blank" the release notebook, so the autograded
notebooks are the source and release runs (nbgrader executes them with nbclient in a fresh
kernel, as it does for real submissions). The validator checks apply nbgrader's own
`Validator` (its pass/fail rules) to those runs instead of executing each notebook again.
The independent answers add one nbclient run per release notebook (exam mode, hard track).
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from autograder.grading.runner import tool_env


REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "source"
RELEASE = REPO / "release"
ASSIGNMENTS = sorted(p.parent.name for p in SOURCE.glob("*/*.ipynb") if p.stem == p.parent.name)
CELL_TIMEOUT = 1200  # seconds per cell, as in nbgrader_config.py (a cold baseline training is the slowest cell)
HARD_TRACK = "4,9"
KERNEL = "python3"
PLACEHOLDER = "raise NotImplementedError()"  # what nbgrader's ClearSolutions writes
ANSI = re.compile(r"\x1b\[[0-9;]*m")
MISSING_NAME = re.compile(r"name '([^']+)' is not defined")
# Environment the notebooks must not inherit from the caller: tests pin the track and seed.
VOLATILE_ENV = ("COURSE_TRACK", "COURSE_SEED", "COURSE_SERVICE", "COURSE_SERVICE_TOKEN", "COURSE_EXAM")


def nbgrader_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "nbgrader", *args]


def kernel_env(track: str | None = None, exam: bool = False) -> dict[str, str]:
    """The caller's environment with the track pinned (default track when None), in
    practice mode, or in exam mode (``COURSE_EXAM=1``) when `exam`.

    MPLBACKEND is dropped so that kernels draw with the inline backend, as in JupyterLab:
    the figures are rendered for real (and a non-interactive Agg would skip them).
    """
    # tool_env: nbgrader runs alembic by name, also when this venv is not activated
    env = tool_env({k: v for k, v in os.environ.items() if k not in VOLATILE_ENV + ("MPLBACKEND",)})
    if track is not None:
        env["COURSE_TRACK"] = track
    if exam:
        env["COURSE_EXAM"] = "1"
    return env


@dataclass
class Run:
    """A notebook executed in a fresh kernel: the notebook with outputs, where it was saved."""

    nb: nbformat.NotebookNode
    path: Path
    seconds: float | None  # None when nbgrader executed it


def execute(notebook: Path | nbformat.NotebookNode, workdir: Path, track: str | None = None,
            exam: bool = False, name: str | None = None) -> Run:
    """Execute `notebook` (a path or a notebook) in a fresh kernel in `workdir`, continuing past errors."""
    from nbclient import NotebookClient

    workdir.mkdir(parents=True, exist_ok=True)
    if isinstance(notebook, Path):
        nb, name = nbformat.read(notebook, as_version=4), notebook.name
    else:
        nb = notebook
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name=KERNEL, allow_errors=True,
                            resources={"metadata": {"path": str(workdir)}})
    start = time.perf_counter()
    client.execute(env=kernel_env(track, exam), cwd=str(workdir))
    seconds = time.perf_counter() - start
    out = workdir / (name or "notebook.ipynb")
    nbformat.write(nb, out)
    return Run(nb, out, seconds)


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def errors(cell) -> list:
    return [o for o in cell.get("outputs", []) if o.output_type == "error"]


def describe(k: int, cell, error) -> str:
    first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
    return f"cell {k} ({nbgrader_meta(cell).get('grade_id', 'plain')}: {first[:60]!r}): {error.ename}: {error.evalue[:300]}"


def bound_names(source: str) -> set[str]:
    """Names a cell binds at top level (over-approximated: every assignment target in it)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def unexpected_release_errors(nb, source_nb) -> tuple[list[str], int]:
    """Errors of an executed release notebook that an unanswered exercise does not explain.

    Allowed, and nothing else:
    - NotImplementedError raised by a placeholder line (`PLACEHOLDER` in the traceback);
    - NameError for a name that a cell which failed in an allowed way would have bound
      (an answer, read from the source version of the cell, or something computed from one);
    - AssertionError in a graded test cell once some exercise is unanswered.
    Returns the list of unexplained errors and the number of placeholder stops.
    """
    answers = {nbgrader_meta(c)["grade_id"]: c.source for c in source_nb.cells
               if nbgrader_meta(c).get("grade_id")}
    owed: set[str] = set()
    problems, stops = [], 0
    for k, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for error in errors(cell):
            trace = ANSI.sub("", "\n".join(error.get("traceback", [])))
            missing = MISSING_NAME.search(error.evalue or "")
            if error.ename == "NotImplementedError" and PLACEHOLDER in trace:
                stops += 1
            elif error.ename == "NameError" and missing and missing.group(1) in owed:
                pass
            elif error.ename == "AssertionError" and nbgrader_meta(cell).get("grade") and owed:
                pass
            else:
                problems.append(describe(k, cell, error))
                continue
            owed |= bound_names(cell.source)
            owed |= bound_names(answers.get(nbgrader_meta(cell).get("grade_id"), ""))
    return problems, stops


def nbgrader_validate(run: Run, invert: bool) -> dict:
    """nbgrader's `Validator` applied to an executed notebook (without executing it again).

    The CLI would clear the outputs and execute the notebook the same way (a fresh kernel,
    errors allowed); here the run is reused, and `Validator` keeps its own pass/fail rules.
    """
    from nbgrader.preprocessors import CheckCellMetadata
    from nbgrader.validator import Validator

    validator = Validator(invert=invert)
    validator.preprocessors = [CheckCellMetadata]
    return validator.validate(str(run.path))


# --- one nbgrader autograde run: perfect (source) and blank (release) submissions -------


@pytest.fixture(scope="module")
def course_copy(tmp_path_factory) -> Path:
    """A course root with the config and source/, release generated by nbgrader itself."""
    root = tmp_path_factory.mktemp("course")
    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copytree(SOURCE, root / "source")
    done = subprocess.run(nbgrader_cmd("generate_assignment", "*", "--force"), cwd=root,
                          env=kernel_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def graded(course_copy) -> Path:
    """Submit every source notebook as student "perfect" and every release notebook as
    "blank", then grade both with one ``nbgrader autograde "*"`` call (fresh kernel each)."""
    for student, folder in (("perfect", SOURCE), ("blank", RELEASE)):
        for a in ASSIGNMENTS:
            target = course_copy / "submitted" / student / a
            target.mkdir(parents=True)
            shutil.copy(folder / a / f"{a}.ipynb", target)
    done = subprocess.run(nbgrader_cmd("autograde", "*", "--force"), cwd=course_copy,
                          env=kernel_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return course_copy


def autograded(root: Path, student: str, assignment: str) -> Run:
    path = root / "autograded" / student / assignment / f"{assignment}.ipynb"
    assert path.is_file(), f"nbgrader autograde wrote no {path.relative_to(root)}"
    return Run(nbformat.read(path, as_version=4), path, None)


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def assignment(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def source_run(assignment, graded) -> Run:
    """The source notebook as the autograder executed it (its tests include the hidden ones)."""
    return autograded(graded, "perfect", assignment)


@pytest.fixture(scope="module")
def release_run(assignment, graded) -> Run:
    """The release notebook as the autograder executed it: a participant who answered nothing."""
    return autograded(graded, "blank", assignment)


def test_assignments_found():
    assert "01_data" in ASSIGNMENTS, f"no source notebooks found under {SOURCE}"
    for a in ASSIGNMENTS:
        assert (RELEASE / a / f"{a}.ipynb").is_file(), f"release/{a}/{a}.ipynb is missing: run nbgrader generate_assignment {a}"


def test_committed_without_outputs():
    for folder in (SOURCE, RELEASE):
        for path in folder.glob("*/*.ipynb"):
            nb = nbformat.read(path, as_version=4)
            dirty = [k for k, c in enumerate(nb.cells)
                     if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
            assert not dirty, f"{path.relative_to(REPO)} is committed with outputs in cells {dirty}"


def tree(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()
            and ".ipynb_checkpoints" not in p.parts}


@pytest.mark.slow
def test_release_matches_generate_assignment(course_copy):
    fresh, committed = tree(course_copy / "release"), tree(RELEASE)
    assert sorted(fresh) == sorted(committed), "release/ has other files than nbgrader generates"
    for name, path in fresh.items():
        hint = ""
        if name.endswith(".ipynb"):
            want, have = json.loads(path.read_text()), json.loads(committed[name].read_text())
            same = want == have
            cells = [k for k, (a, b) in enumerate(zip(want["cells"], have["cells"])) if a != b]
            hint = f" (cells {cells[:10]} differ, {len(want['cells'])} vs {len(have['cells'])} cells)"
        else:
            same = path.read_bytes() == committed[name].read_bytes()
        assert same, (f"release/{name} differs from what nbgrader generate_assignment makes{hint}: "
                      f"run nbgrader generate_assignment {name.split('/')[0]} --force and commit it")


@pytest.mark.slow
def test_autograde_scores(assignment, graded):
    """The source notebook gets full points, the blank release notebook zero."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{graded / 'gradebook.db'}") as gb:
        perfect = gb.find_submission(assignment, "perfect")
        blank = gb.find_submission(assignment, "blank")
        assert perfect.max_score > 0, f"{assignment} has no graded cells"
        assert perfect.score == perfect.max_score, (
            f"the source notebook scores {perfect.score}/{perfect.max_score}; failing cells: "
            + ", ".join(g.name for nb in perfect.notebooks for g in nb.grades if g.score < g.max_score))
        assert blank.score == 0, (
            f"the blank notebook scores {blank.score}; passing cells: "
            + ", ".join(g.name for nb in blank.notebooks for g in nb.grades if g.score > 0))


@pytest.mark.slow
def test_source_runs_clean(source_run):
    problems = [describe(k, c, e) for k, c in enumerate(source_run.nb.cells) if c.cell_type == "code"
                for e in errors(c)]
    assert not problems, "the source notebook fails:\n" + "\n".join(problems)


@pytest.mark.slow
def test_source_test_cells_write_no_stderr(source_run):
    # nbgrader gives 0 points to a test cell that writes to stderr
    noisy = [f"cell {k} ({nbgrader_meta(c)['grade_id']}): {o.text[:200]!r}"
             for k, c in enumerate(source_run.nb.cells) if nbgrader_meta(c).get("grade")
             for o in c.get("outputs", []) if o.output_type == "stream" and o.name == "stderr"]
    assert not noisy, "test cells wrote to stderr:\n" + "\n".join(noisy)


@pytest.mark.slow
def test_source_validates(source_run):
    assert nbgrader_validate(source_run, invert=False) == {}
    # and the reused validator is not vacuous: inverted, it sees the passing cells
    assert nbgrader_validate(source_run, invert=True).get("passed")


@pytest.mark.slow
def test_release_stops_only_at_exercises(assignment, release_run):
    source_nb = nbformat.read(SOURCE / assignment / f"{assignment}.ipynb", as_version=4)
    problems, stops = unexpected_release_errors(release_run.nb, source_nb)
    assert not problems, "the release notebook fails outside the exercises:\n" + "\n".join(problems)
    assert stops > 0, "the release notebook never reached an unanswered exercise"


@pytest.mark.slow
def test_release_validate_invert(release_run):
    result = nbgrader_validate(release_run, invert=True)
    assert result == {}, f"a blank notebook passes graded cells: {json.dumps(result)[:1000]}"
    assert nbgrader_validate(release_run, invert=False).get("failed")


# --- the release notebooks, answered independently ------------------------------------

INDEPENDENT = REPO / "tests" / "independent"
YOUR_CODE = "# YOUR CODE HERE"


def independent_answers(assignment: str) -> dict[str, str]:
    """`ANSWERS` of tests/independent/a<assignment>.py: {grade_id: code}."""
    module = importlib.import_module(f"tests.independent.a{assignment}")
    return {k: v.strip("\n") for k, v in module.ANSWERS.items()}


def answer_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and nbgrader_meta(c).get("solution")]


def answered(assignment: str) -> nbformat.NotebookNode:
    """The release notebook with every answer cell filled from the independent solution.

    A placeholder inside a function (indented) is answered by the whole cell (the answer
    defines the function); a top-level placeholder is replaced in place, so that given
    lines after it (e.g. a print) stay.
    """
    nb = nbformat.read(RELEASE / assignment / f"{assignment}.ipynb", as_version=4)
    answers = independent_answers(assignment)
    for cell in answer_cells(nb):
        answer = answers[nbgrader_meta(cell)["grade_id"]]
        lines = cell.source.splitlines()
        at = next(k for k, line in enumerate(lines) if line.strip() == PLACEHOLDER)
        if lines[at] != lines[at].lstrip():
            cell.source = answer
        else:
            start = at - 1 if at and lines[at - 1].strip() == YOUR_CODE else at
            cell.source = "\n".join(lines[:start] + [answer] + lines[at + 1:])
    return nb


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


# a track as a string ("7,1") or the default and hard tracks as a tuple or list ((7, 1), [4, 9])
TRACK_DIGITS = re.compile(r"""(["']\s*\d\s*,\s*\d|[(\[]\s*(?:7\s*,\s*1|1\s*,\s*7|4\s*,\s*9|9\s*,\s*4)\s*[)\]])""")


def test_no_code_cell_names_the_track():
    """Given and answer cells work for any track: no literal like "7,1", (4, 9) or [7, 1]."""
    for folder in (SOURCE, RELEASE):
        for path in folder.glob("*/*.ipynb"):
            nb = nbformat.read(path, as_version=4)
            for k, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or nbgrader_meta(cell).get("grade"):
                    continue
                code_only = "\n".join(line.split("#")[0] for line in cell.source.splitlines())
                found = TRACK_DIGITS.findall(code_only)
                assert not found, f"{path.relative_to(REPO)} cell {k} names digits {found}: use ds.track"


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


# --- the release rule itself, on small hand-made notebooks (fast) -----------------------


def _cell(source: str, error: tuple[str, str, str] | None = None, grade_id: str | None = None,
          grade: bool = False):
    from nbformat.v4 import new_code_cell, new_output

    cell = new_code_cell(source)
    if grade_id:
        cell.metadata["nbgrader"] = {"grade_id": grade_id, "grade": grade, "solution": not grade,
                                     "locked": grade, "schema_version": 3}
    if error:
        ename, evalue, trace = error
        cell.outputs = [new_output("error", ename=ename, evalue=evalue,
                                   traceback=[f"\x1b[0;31m{trace}\x1b[0m", f"{ename}: {evalue}"])]
    return cell


def _release_verdict(cells, answers: dict[str, str]):
    from nbformat.v4 import new_notebook

    source = new_notebook(cells=[_cell(src, grade_id=gid) for gid, src in answers.items()])
    return unexpected_release_errors(new_notebook(cells=cells), source)


PLACEHOLDER_STOP = ("NotImplementedError", "", f"Cell In[2], line 2\n----> 2 {PLACEHOLDER}")


def test_release_rule_accepts_placeholder_and_its_consequences():
    problems, stops = _release_verdict([
        _cell("import numpy as np"),
        _cell(f"# YOUR CODE HERE\n{PLACEHOLDER}", PLACEHOLDER_STOP, "ex1"),
        _cell("assert answer.shape == (3,)", ("NameError", "name 'answer' is not defined", ""), "ex1_t", True),
        _cell("derived = answer + 1", ("NameError", "name 'answer' is not defined", "")),
        _cell("print(derived)", ("NameError", "name 'derived' is not defined", "")),
        _cell("assert count() == 3", ("AssertionError", "", ""), "ex2_t", True),
    ], {"ex1": "### BEGIN SOLUTION\nanswer = np.arange(3)\n### END SOLUTION"})
    assert problems == [] and stops == 1


@pytest.mark.parametrize("cells, why", [
    ([_cell("import nonexistent", ("ModuleNotFoundError", "No module named 'nonexistent'", ""))],
     "a setup error"),
    ([_cell(f"{PLACEHOLDER}", PLACEHOLDER_STOP, "ex1"),
      _cell("print(typo)", ("NameError", "name 'typo' is not defined", ""))],
     "a NameError no exercise explains"),
    ([_cell("helper()", ("NotImplementedError", "", "File course/x.py, line 3\n    raise NotImplementedError"))],
     "a NotImplementedError that is not a placeholder"),
    ([_cell(f"{PLACEHOLDER}", PLACEHOLDER_STOP, "ex1"),
      _cell("assert answer", ("AssertionError", "", ""))],
     "an AssertionError outside a test cell"),
    ([_cell("x = 1", ("ValueError", "bad", "")), _cell(f"{PLACEHOLDER}", PLACEHOLDER_STOP, "ex1")],
     "any other error"),
])
def test_release_rule_rejects(cells, why):
    problems, _ = _release_verdict(cells, {"ex1": "answer = 1"})
    assert problems, f"{why} should be reported"


# --- visible checks catch the common wrong answers (fast: no notebook is executed) ------

HIDDEN = "### BEGIN HIDDEN TESTS"
PRELUDE = ("import warnings\nimport numpy as np\nfrom sklearn.cluster import KMeans\n"
           "from course import data\nSEED = 0\n")
MISTAKES = {  # (assignment, test cell grade_id, setup, wrong answer, what it gets wrong)
    "wrong count mapping": ("01_data", "ex1_counts_tests", "ds = data.load()",
                            "v, n = np.unique(ds.labels, return_counts=True)\ncounts = dict(zip(ds.classes, sorted(n.tolist())))"),
    "2-digit-only merge": ("01_data", "ex2_merge_tests", "ds = data.load()",
                           "def merge(labels, track):\n    l = np.array(labels, dtype=np.int64)\n"
                           "    return np.where((l == track[0]) | (l == track[1]), data.C, l)"),
    "first member, not typical (03)": ("03_clustering", "ex3_typical_tests", "",
                                       "def most_typical(features, ids):\n"
                                       "    return np.array([np.flatnonzero(ids == c)[0] for c in range(ids.max() + 1)])"),
    "first member, not typical (04)": ("04_transfer_learning", "ex2_typical_tests", "",
                                       "def typical_members(points, k):\n"
                                       "    ids = KMeans(k, n_init=10, random_state=SEED).fit_predict(points)\n"
                                       "    return np.array([np.flatnonzero(ids == c)[0] for c in range(k)])"),
    "unsorted cold start": ("05_active_learning", "ex1_cold_start_tests", "",
                            "def cold_start(X, k):\n    km = KMeans(k, n_init=10, random_state=SEED).fit(X)\n"
                            "    order = np.argsort(np.bincount(km.labels_))  # smallest first\n"
                            "    return [int(((X - km.cluster_centers_[c]) ** 2).sum(1).argmin()) for c in order]"),
    "max - min as margin": ("05_active_learning", "ex2_margins_tests", "",
                            "def margins(model, X):\n    p = model.predict_proba(X)\n    return p.max(1) - p.min(1)"),
    "first two columns as margin": ("05_active_learning", "ex2_margins_tests", "",
                                    "def margins(model, X):\n    p = model.predict_proba(X)\n"
                                    "    return np.abs(p[:, 0] - p[:, 1])"),
    "stops one query late": ("05_active_learning", "ex4_stop_tests", "COLD_START, PATIENCE, STOP_CHANGE = 4, 2, 0.005",
                             "def should_stop(history):\n    if len(history) <= COLD_START + PATIENCE:\n        return False\n"
                             "    return all(np.mean(history[-k] != history[-k - 1]) < STOP_CHANGE for k in range(1, PATIENCE + 1))"),
    "stop compares with the first prediction": ("05_active_learning", "ex4_stop_tests",
                                                "COLD_START, PATIENCE, STOP_CHANGE = 4, 2, 0.005",
                                                "def should_stop(history):\n    if len(history) < COLD_START + PATIENCE:\n"
                                                "        return False\n    return all(np.mean(history[-k] != history[0]) < STOP_CHANGE"
                                                " for k in range(1, PATIENCE + 1))"),
    "pool indices for rows (03)": ("03_clustering", "ex5_loop_tests", "subset = np.arange(10000, 14000)",
                                   "known = {int(subset[5]): 7, int(subset[9]): 1}\nbought = [int(subset[5])]"),
    "stable, shared digit, stops (03)": ("03_clustering", "ex5_loop_tests",
                                         "class ds:\n    track = (4, 7, 9)\nK, AGREE, MAX_ROUNDS = 3, 0.9, 4\n"
                                         "subset = np.arange(10000, 10030)\nfirst = np.repeat([0, 1, 2], 10)",
                                         "stable, trusted, ids = 0.95, False, first\n"
                                         "known, bought = {0: 4, 10: 4}, [0, 10]  # two typical members, one digit"),
}


def visible_check(assignment: str, grade_id: str) -> str:
    nb = nbformat.read(SOURCE / assignment / f"{assignment}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == grade_id)
    return cell.source.split(HIDDEN)[0]


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_visible_checks_catch_common_mistakes(mistake):
    assignment, grade_id, setup, wrong = MISTAKES[mistake]
    namespace: dict = {}
    exec(PRELUDE + setup, namespace)
    exec(wrong, namespace)
    with pytest.raises(AssertionError) as caught:
        exec(visible_check(assignment, grade_id), namespace)
    assert str(caught.value), f"the check for {mistake!r} fails without saying what is wrong"


@pytest.mark.parametrize("assignment, grade_id", [("05_active_learning", "ex4_stop_tests")])
def test_visible_checks_accept_numpy_scalars(assignment, grade_id):
    namespace: dict = {}
    exec(PRELUDE + "COLD_START, PATIENCE, STOP_CHANGE = 4, 2, 0.005", namespace)
    exec(independent_answers(assignment)["ex4_stop"], namespace)  # returns np.True_
    exec(visible_check(assignment, grade_id), namespace)
