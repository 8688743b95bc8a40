"""An instructor's rehearsal: grade a throw-away batch of a real assignment and check what came out.

    autograder dry-run [03_clustering] [--course .] [--dir DIR] [--open] [--timeout S]

Builds a course in a fresh folder outside the repository (``--dir``, default a new temp folder,
printed): this course's ``nbgrader_config.py`` and ``source/<assignment>``, released with
``nbgrader generate_assignment``, and four submissions (`SUBMISSIONS`):

- **alice**: the reference solution (the source notebook), correct;
- **bob**: the solution with a typo in its first answer (a name nobody defined, `broken`);
- **carol**: the release notebook handed in blank;
- **dave**: a folder without a notebook.

It grades them with the real grader (``autograder grade``: annotation service, sandboxed kernel,
exam mode), writes the leaderboard, optionally opens its HTML page, and prints what to expect of
each row (status, passed, why) next to what happened. The exit code is 0 when every row is as
expected, 1 when one differs, 2 when the batch could not be built or graded.

The same builders make the throw-away courses of the tests and the docs' first graded batch
(`generate`, `add_submission`, `broken`), so they live here, in the product, not in ``tests/``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
import webbrowser
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder.grading.tasks import tool_env

DEFAULT_ASSIGNMENT = "03_clustering"
TYPO = "number_of_clusters_typo"


# ---------------------------------------------------------------- building a course

def broken(notebook: nbformat.NotebookNode, name: str = TYPO) -> nbformat.NotebookNode:
    """`notebook` with a typo: the first line of its first answer uses `name`, which nobody defined."""
    for cell in notebook.cells:
        if cell.cell_type == "code" and "### BEGIN SOLUTION" in cell.source:
            lines = cell.source.split("\n")
            at = next(i for i, line in enumerate(lines) if "### BEGIN SOLUTION" in line)
            indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
            lines.insert(at + 1, indent + f"{name}  # a typo: a name nobody defined")
            cell.source = "\n".join(lines)
            return notebook
    raise ValueError("no solution cell (### BEGIN SOLUTION) to break")


def generate(course_dir: Path, notebooks: dict[str, nbformat.NotebookNode], config: Path) -> Path:
    """A course folder at `course_dir`: `config` as its ``nbgrader_config.py`` and each notebook in
    ``source/<name>/<name>.ipynb``, released and registered by ``nbgrader generate_assignment``."""
    course_dir = Path(course_dir)
    course_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(config, course_dir / "nbgrader_config.py")
    for name, nb in notebooks.items():
        folder = course_dir / "source" / name
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / f"{name}.ipynb")
        done = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force"],
                              cwd=course_dir, capture_output=True, text=True, env=tool_env())
        if done.returncode != 0:
            raise RuntimeError(f"nbgrader generate_assignment {name} failed:\n{done.stderr[-2000:]}")
    return course_dir


def add_submission(course_dir: Path, student: str, spec, assignment: str) -> Path:
    """Put one submission in ``submitted/<student>/<assignment>/``. `spec`: ``None`` (the source notebook,
    the reference solution), ``"release"`` (the blank release notebook), ``"no notebook"`` (a folder with a
    note and no notebook), other text (the notebook file's raw text), or a callable editing the source notebook."""
    course_dir = Path(course_dir)
    folder = course_dir / "submitted" / student / assignment
    folder.mkdir(parents=True)
    target = folder / f"{assignment}.ipynb"
    source = course_dir / "source" / assignment / f"{assignment}.ipynb"
    if spec == "release":
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


# ---------------------------------------------------------------- what to expect

@dataclass(frozen=True)
class Expected:
    student: str
    what: str  # what was handed in
    status: str
    passed: bool
    detail: str  # a regular expression the stored detail must match
    why: str


def has_submit_cell(notebook: nbformat.NotebookNode) -> bool:
    return any(c.cell_type == "code" and "submit(" in c.source for c in notebook.cells)


SUBMISSIONS = {"alice": None, "bob": broken, "carol": "release", "dave": "no notebook"}


def expectations(assignment: str, graded: bool = True) -> list[Expected]:
    """What each dry-run row should be. `graded`: the assignment has a submit cell (else nbgrader's points only)."""
    if graded:
        return [
            Expected("alice", "the reference solution", "ok", True, r"^counted the first",
                     "the reference solution reaches 90% on the private images: passed, rank 1"),
            Expected("bob", f"the solution with a typo ({TYPO})", "failed", False,
                     rf"no submission reached.*NameError.*{TYPO}",
                     "the typo raises NameError, so no submission reaches the service: not passed"),
            Expected("carol", "the blank release notebook", "failed", False,
                     r"no submission reached.*NotImplementedError",
                     "its exercises raise NotImplementedError, nothing is submitted: not passed, 0 points"),
            Expected("dave", "a folder without a notebook", "error", False, r"^no notebook in submitted/",
                     "nothing to execute: status error"),
        ]
    return [
        Expected("alice", "the reference solution", "ok", True, r"graded for points only",
                 "every test cell passes: all points, passed"),
        Expected("bob", f"the solution with a typo ({TYPO})", "ok", False, r"graded for points only.*NameError",
                 "the typo raises NameError: some points lost, not passed"),
        Expected("carol", "the blank release notebook", "ok", False, r"graded for points only.*NotImplementedError",
                 "its exercises raise NotImplementedError: points lost, not passed"),
        Expected("dave", "a folder without a notebook", "error", False, r"^no notebook in submitted/",
                 "nothing to execute: status error"),
    ]


def build(course_dir: Path, assignment: str, source_course: Path) -> tuple[Path, list[Expected]]:
    """The dry run's course at `course_dir` (made from `source_course`), and what its rows should be."""
    source = source_course / "source" / assignment / f"{assignment}.ipynb"
    config = source_course / "nbgrader_config.py"
    if not source.is_file() or not config.is_file():
        raise FileNotFoundError(f"no {source} (or no nbgrader_config.py beside source/): run the dry run "
                                "in the course root, or give --course")
    nb = nbformat.read(source, as_version=4)
    generate(course_dir, {assignment: nb}, config)
    for student, spec in SUBMISSIONS.items():
        add_submission(course_dir, student, spec, assignment)
    return course_dir, expectations(assignment, has_submit_cell(nb))


def compare(expected: list[Expected], rows) -> list[tuple[Expected, object, list[str]]]:
    """Each expectation with its stored row (or None) and the ways they differ (empty: as expected)."""
    by_student = {row.student: row for row in rows}
    out = []
    for e in expected:
        row = by_student.get(e.student)
        problems = []
        if row is None:
            problems.append("no row in the results store")
        else:
            if row.status != e.status:
                problems.append(f"status {row.status}, expected {e.status}")
            if bool(row.passed) != e.passed:
                problems.append(f"passed {'yes' if row.passed else 'no'}, expected {'yes' if e.passed else 'no'}")
            if not re.search(e.detail, row.detail or "", re.S):
                problems.append(f"detail does not match /{e.detail}/")
        out.append((e, row, problems))
    return out


def report(compared) -> str:
    lines = ["", "dry run: expected vs graded", ""]
    for e, row, problems in compared:
        got = "no row" if row is None else f"{row.status}, {'passed' if row.passed else 'not passed'}"
        want = f"{e.status}, {'passed' if e.passed else 'not passed'}"
        mark = "as expected" if not problems else "DIFFERENT: " + "; ".join(problems)
        lines.append(f"{e.student:6} {e.what}")
        lines.append(f"       expected: {want} ({e.why})")
        detail = "" if row is None else " | " + _short(_why(row.detail))
        lines.append(f"       graded:   {got}{detail}")
        lines.append(f"       {mark}")
    bad = sum(bool(p) for _, _, p in compared)
    lines.append("")
    lines.append("every row as expected" if not bad else f"{bad} of {len(compared)} rows differ from what was expected")
    return "\n".join(lines)


def _why(detail: str) -> str:
    """The part of a stored detail that says why: its first error when it has one."""
    head, found, error = (detail or "").partition("first error: ")
    return f"{head.split(' (')[0].split(';')[0]}; first error: {error}" if found else detail or ""


def _short(text: str, width: int = 140) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


# ---------------------------------------------------------------- the command

def add_command(commands) -> None:
    p = commands.add_parser("dry-run", help="rehearse: grade a throw-away batch (correct, broken, blank, missing) "
                                            "and compare with what to expect")
    p.add_argument("assignment", nargs="?", default=DEFAULT_ASSIGNMENT,
                   help=f"a real assignment of the course (default {DEFAULT_ASSIGNMENT})")
    p.add_argument("--course", type=Path, default=Path("."),
                   help="the course whose source/ and nbgrader_config.py to use (default: .)")
    p.add_argument("--dir", type=Path, default=None,
                   help="where to build the throw-away course (must not exist or be empty; default: a new temp folder)")
    p.add_argument("--open", action="store_true", help="open the leaderboard page in a browser afterwards")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="wall-clock limit per submission")


def run(args) -> int:
    from autograder import cli
    from autograder.results import store

    start = time.perf_counter()
    source_course = args.course.resolve()
    if args.dir is None:
        root = Path(tempfile.mkdtemp(prefix="autograder-dry-run-"))
    else:
        root = args.dir.resolve()
        if root.exists() and any(root.iterdir()):
            print(f"autograder: {root} is not empty; give a new folder to --dir", file=sys.stderr)
            return 2
    try:
        root.relative_to(source_course)
        print(f"autograder: {root} is inside the course {source_course}; give a folder outside it to --dir",
              file=sys.stderr)
        return 2
    except ValueError:
        pass
    course_dir = root / "course"
    print(f"dry run of {args.assignment} in {course_dir} (throw-away: delete it when done)", flush=True)
    try:
        course_dir, expected = build(course_dir, args.assignment, source_course)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"autograder: cannot build the dry run's course: {exc}", file=sys.stderr)
        return 2
    print("submissions: " + "; ".join(f"{e.student}: {e.what}" for e in expected), flush=True)
    grade = ["grade", args.assignment, "--course", str(course_dir)]
    if args.timeout is not None:
        grade += ["--timeout", str(args.timeout)]
    code = cli.main(grade)
    if code != 0:
        print(f"autograder: the dry run's grading stopped (exit {code})", file=sys.stderr)
        return 2
    compared = compare(expected, store.load(course_dir, args.assignment))
    print(report(compared))
    page = course_dir / "leaderboard" / f"{args.assignment}.html"
    print(f"leaderboard to check: {page} and {page.with_suffix('.png')}")
    print(f"dry run took {time.perf_counter() - start:.0f} s")
    if args.open and not webbrowser.open(page.as_uri()):
        print(f"no browser to open here: copy {page.parent} to a machine with one", file=sys.stderr)
    return 0 if not any(p for _, _, p in compared) else 1
