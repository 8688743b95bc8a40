"""The first graded batch of the docs' tutorial, run for real: what `autograder grade` prints.

    python -m benchmarks.first_batch [--assignment 03_clustering] [--out benchmarks/results/first_batch]

Builds a throw-away course (this repository's ``nbgrader_config.py`` and ``source/<assignment>``,
released with ``nbgrader generate_assignment``), hands in five notebooks as the tutorial does
(alice, bob and carol: the reference solution; dave: the solution with a typo in its first
exercise; erin: the release notebook, blank), runs ``autograder grade <assignment>`` and
``autograder leaderboard <assignment>`` on it, and writes what they printed (course folder
shown as ``course/``) to ``output.txt``, with the leaderboard CSV, into ``--out``. The tutorial
(docs/tutorials/first-graded-batch.md) renders these files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from autograder.grading.runner import tool_env

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "results" / "first_batch"
CORRECT = ("alice", "bob", "carol")
TYPO = "dave"
BLANK = "erin"


def broken(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The solution with a typo: the first answer cell uses a name nobody defined."""
    for cell in notebook.cells:
        if cell.cell_type == "code" and "### BEGIN SOLUTION" in cell.source:
            lines = cell.source.split("\n")
            at = next(i for i, line in enumerate(lines) if "### BEGIN SOLUTION" in line)
            indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
            lines.insert(at + 1, indent + "number_of_clusters_typo  # a typo: a name nobody defined")
            cell.source = "\n".join(lines)
            return notebook
    raise ValueError("no solution cell to break")


def build(root: Path, assignment: str) -> Path:
    course = root / "course"
    course.mkdir()
    shutil.copy(REPO / "nbgrader_config.py", course)
    shutil.copytree(REPO / "source" / assignment, course / "source" / assignment)
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force"],
                   cwd=course, check=True, capture_output=True, env=tool_env())
    source = course / "source" / assignment / f"{assignment}.ipynb"
    release = course / "release" / assignment / f"{assignment}.ipynb"
    for student in (*CORRECT, TYPO, BLANK):
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        target = folder / f"{assignment}.ipynb"
        if student == TYPO:
            nbformat.write(broken(nbformat.read(source, as_version=4)), target)
        else:
            shutil.copy(release if student == BLANK else source, target)
    return course


def run(course: Path, *args: str) -> tuple[str, float]:
    start = time.perf_counter()
    done = subprocess.run(["autograder", *args], cwd=course, capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "COLUMNS"})
    if done.returncode != 0:
        raise RuntimeError(f"autograder {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    text = done.stdout.replace(str(course), "course").replace(str(course.resolve()), "course")
    return text, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.first_batch", description=__doc__.split("\n\n")[0])
    p.add_argument("--assignment", default="03_clustering")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="first-batch-") as tmp:
        course = build(Path(tmp), args.assignment)
        graded, seconds = run(course, "grade", args.assignment)
        board, _ = run(course, "leaderboard", args.assignment)
        csv = (course / "leaderboard" / f"{args.assignment}.csv").read_text()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grade_output.txt").write_text(graded)
    (args.out / "leaderboard_output.txt").write_text(board)
    (args.out / "leaderboard.csv").write_text(csv)
    meta = {"assignment": args.assignment, "correct": list(CORRECT), "typo": TYPO, "blank": BLANK,
            "grade_s": round(seconds, 1), "cores": os.cpu_count(),
            "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_average": round(os.getloadavg()[0], 1)}
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(graded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
