"""The notebooks as the tests run them: the course's folders, a fresh kernel's run, nbgrader's metadata, and the
independent answers (`tests/independent/`, written from the exercise text alone) filled into a release notebook.

Shared by tests/test_notebooks.py (nbgrader's runs of source and release) and tests/test_notebooks_independent.py
(the release answered independently, in exam mode on the hard track): two modules, so that the two long runs
go to two test processes.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder.grading.runner import tool_env

REPO = Path(__file__).resolve().parent.parent.parent
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
