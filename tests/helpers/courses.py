"""A throw-away nbgrader course with given submissions: the one way tests build a course to grade.

    course = make_course(tmp_path, {"alice": None, "bob": edit, "eve": "{ not json"})

`assignments` maps an assignment name to its source notebook (default: the toy
assignment of tests/fixtures/autograder_course); each one is generated with
nbgrader. A submission is, per student (for the first assignment unless given as
``{(student, assignment): spec}``):

- ``None``: the instructor's source notebook (the reference solution);
- ``"release"``: the released (blank) notebook;
- ``"no notebook"``: a folder without a notebook;
- any other ``str``: the notebook file's raw text;
- a callable taking a notebook: an edit of the source notebook;
- a callable taking ``(folder, course_dir)`` (marked with `fills_folder`): fills the folder itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from autograder import layout, secret
from autograder.tasks import tool_env  # noqa: F401 (the tests' subprocess environment)

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "autograder_course"
TOY = FIXTURE / "source" / "toy" / "toy.ipynb"
TEST_SECRET = "5eed" * 16  # every test course's assignment secret: the grading data's shuffle is the same every run


def fills_folder(function):
    """Mark `function(folder, course_dir)` as filling the submission folder itself."""
    function.fills_folder = True
    return function


def solution(code: str):
    """An edit that replaces the solution cell's code."""
    def edit(nb):
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "solution")
        cell.source = code
    return edit


def points_only(source: Path = TOY) -> nbformat.NotebookNode:
    """The toy notebook without its submit cell: a graded test on plain Python instead."""
    nb = nbformat.read(source, as_version=4)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in ("submit", "test_passed")]
    test = nbformat.v4.new_code_cell("assert len(ds.images) > 0 and predict(ds.images[:3]).shape == (3,)")
    test.metadata["nbgrader"] = {"grade": True, "grade_id": "test_shape", "locked": True, "points": 1,
                                 "schema_version": 3, "solution": False, "task": False}
    nb.cells.append(test)
    return nb


def make_course(root: Path, submissions: dict, assignments: dict | None = None,
                config: Path = FIXTURE / "nbgrader_config.py") -> Path:
    """Build ``root/course`` with `assignments` generated and `submissions` in submitted/.

    Every assignment gets the fixed secret `TEST_SECRET` (a real course draws a random one), so a
    test's grading data, and every accuracy near the 90% line, are the same in every run.
    """
    course_dir = Path(root) / "course"
    course_dir.mkdir(parents=True)
    shutil.copy(config, course_dir / "nbgrader_config.py")
    assignments = assignments or {"toy": TOY}
    private = layout.Course.open(course_dir).private()
    for name, source in assignments.items():
        secret.rotate(private, name, value=TEST_SECRET)
        folder = course_dir / "source" / name
        folder.mkdir(parents=True)
        nb = source if isinstance(source, nbformat.NotebookNode) else nbformat.read(source, as_version=4)
        nbformat.write(nb, folder / f"{name}.ipynb")
        subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force"],
                       cwd=course_dir, check=True, capture_output=True, env=tool_env())
    first = next(iter(assignments))
    for key, spec in submissions.items():
        student, assignment = key if isinstance(key, tuple) else (key, first)
        add_submission(course_dir, student, spec, assignment)
    return course_dir


def add_submission(course_dir: Path, student: str, spec, assignment: str = "toy") -> Path:
    """Put one submission (see the module's doc for `spec`) in ``submitted/<student>/<assignment>/``."""
    folder = course_dir / "submitted" / student / assignment
    folder.mkdir(parents=True)
    target = folder / f"{assignment}.ipynb"
    source = course_dir / "source" / assignment / f"{assignment}.ipynb"
    if getattr(spec, "fills_folder", False):
        spec(folder, course_dir)
    elif spec == "release":
        shutil.copyfile(course_dir / "release" / assignment / f"{assignment}.ipynb", target)
    elif spec == "no notebook":
        (folder / "README.txt").write_text("I forgot to attach it.\n")
    elif isinstance(spec, str):
        target.write_text(spec)
    else:
        nb = nbformat.read(source, as_version=4)
        if spec is not None:
            spec(nb)
        nbformat.write(nb, target)
    return folder


def run_cli(*args: str, env: dict | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    """`autograder ...` as an instructor runs it."""
    return subprocess.run([sys.executable, "-m", "autograder.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


HONEST = ("indices = ds.c_indices[:60]\ndigits = oracle.annotate(indices)\n"
          "model = LogisticRegression(max_iter=1000).fit(ds.images[indices].reshape(len(indices), -1) / 255.0, digits)\n\n"
          "def predict(images):\n    return model.predict(images.reshape(len(images), -1) / 255.0).astype(int)\n")
"""The toy's honest solution: 60 annotations, passes."""


def kernel_processes(uid: int) -> list[int]:
    """Pids of processes running as `uid` (the sandboxed kernels' user)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                found.append(int(pid))
        except OSError:
            continue
    return found
