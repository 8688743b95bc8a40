"""How fast the autograder grades: overhead per submission and time for a batch.

Targets (issue 5): grading overhead beyond executing the notebook <= 10 s per
submission; 30 submissions of the reference notebook graded in <= 45 minutes on
2 cores.

It builds a throw-away course from the repository (nbgrader_config.py and
source/<assignment>), runs `nbgrader generate_assignment`, then
1. executes the reference (source) notebook plainly with nbclient, no sandbox and
   no service (local oracle): the cost of "executing the notebook";
2. grades N copies of it with `autograder.grading.runner.Grader` (sandbox, service,
   nbgrader, store) and prints, per submission, the total and its parts, the
   overhead (total minus the plain execution), the batch time and the peak RSS
   of any kernel.

    python benchmarks/grading_speed.py --assignment 03_clustering -n 30
    python benchmarks/grading_speed.py --template tests/fixtures/autograder_course --assignment toy -n 3
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder.grading.runner import tool_env

REPO = Path(__file__).resolve().parent.parent
TARGET_OVERHEAD_S = 10.0
TARGET_30_MIN = 45.0

PLAIN = r"""
import datetime, sys, time, nbformat, resource
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
t = time.perf_counter()
NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
total = time.perf_counter() - t
cells = 0.0
for cell in nb.cells:
    timing = cell.get("metadata", {}).get("execution", {})
    if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
        parse = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
        cells += (parse(timing["shell.execute_reply"]) - parse(timing["iopub.execute_input"])).total_seconds()
print(total, cells, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6)
"""


def build_course(template: Path, assignment: str, root: Path) -> Path:
    course = root / "course"
    course.mkdir()
    shutil.copy(template / "nbgrader_config.py", course)
    shutil.copytree(template / "source" / assignment, course / "source" / assignment)
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force"],
                   cwd=course, check=True, capture_output=True, env=tool_env())
    return course


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="03_clustering")
    parser.add_argument("--template", type=Path, default=REPO, help="course to copy (default: the repo)")
    parser.add_argument("-n", type=int, default=3, help="submissions to grade")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()

    from tqdm.auto import tqdm

    from autograder.grading.runner import Grader

    with tempfile.TemporaryDirectory(prefix="grading-speed-") as tmp:
        course = build_course(args.template.resolve(), args.assignment, Path(tmp))
        notebook = course / "source" / args.assignment / f"{args.assignment}.ipynb"
        workdir = Path(tmp) / "plain"
        workdir.mkdir()
        out = subprocess.run([sys.executable, "-c", PLAIN, str(notebook), str(workdir)],
                             check=True, capture_output=True, text=True).stdout.split()
        plain_s, plain_cells, plain_gb = float(out[-3]), float(out[-2]), float(out[-1])
        print(f"plain execution of the reference notebook: {plain_s:.1f} s, of which cells {plain_cells:.1f} s "
              f"(kernel peak RSS {plain_gb:.2f} GB)")

        students = [f"student{i:03d}" for i in range(args.n)]
        for student in students:
            folder = course / "submitted" / student / args.assignment
            folder.mkdir(parents=True)
            shutil.copy(notebook, folder)
        grader = Grader(course, args.assignment, timeout=args.timeout)
        start = time.perf_counter()
        outcomes = [grader.grade(s) for s in tqdm(students, desc="grading", unit="submission")]
        grader.close()
        batch_s = time.perf_counter() - start
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6

    totals = [o.timings.total for o in outcomes]
    statuses = {o.row.status for o in outcomes}
    mean = statistics.mean(totals)
    print(f"statuses: {sorted(statuses)}; passed {sum(o.row.passed for o in outcomes)}/{len(outcomes)}; "
          f"annotations {sorted({o.row.annotations for o in outcomes})}")
    print(f"per submission: mean {mean:.1f} s, median {statistics.median(totals):.1f} s, max {max(totals):.1f} s")
    for part in ("prepare", "nbgrader", "finish", "cells"):
        print(f"  {part:9s} mean {statistics.mean(getattr(o.timings, part) for o in outcomes):.1f} s")
    outside = statistics.mean(o.timings.total - o.timings.cells for o in outcomes)
    print(f"overhead = grading time outside the notebook's cells: {outside:.1f} s per submission "
          f"(plain execution spends {plain_s - plain_cells:.1f} s outside cells; target <= {TARGET_OVERHEAD_S:g} s)")
    print(f"grading time minus plain execution time: {mean - plain_s:+.1f} s per submission")
    per_30 = batch_s / len(outcomes) * 30 / 60
    print(f"batch of {len(outcomes)}: {batch_s / 60:.1f} min; for 30: {per_30:.1f} min "
          f"({'measured' if len(outcomes) == 30 else 'extrapolated'}; target <= {TARGET_30_MIN:g} min)")
    print(f"peak RSS of any grading process (kernel included): {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
