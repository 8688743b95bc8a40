"""The course's own approaches: the source notebooks 02-05, graded by the autograder.

Nothing is copied from the notebooks: for each track and seed, a throw-away course
folder gets the repository's ``nbgrader_config.py`` and ``source/<assignment>/``,
``nbgrader generate_assignment`` registers the assignment, the unchanged source
notebook is placed as a submission (``submitted/ref-seed<N>/<assignment>/``) and
`autograder.grading.runner.Grader` grades it exactly as it grades a participant: shuffled
label-free data, the annotation service, the sandboxed kernel, the private split.
The seed reaches the kernel as env ``COURSE_SEED`` (the grader passes its own
environment to nbgrader and the kernel; it sets ``COURSE_TRACK`` itself).

The grader runs every kernel in exam mode (`autograder.grading.tasks` sets ``COURSE_EXAM=1``
in the sandbox): no held-out score before the one counted submission, so each notebook stops
by its own label-free rule. Each graded run is one operating point: the annotations the
service counted and the private accuracy. The grader's wall-clock limit is `GRADE_TIMEOUT_S`
here, above the course's default, so that a loaded machine does not turn a slow run into a
timeout (a run that still times out is kept as a ``timeout`` row, never dropped); each run
records the machine's load average when it ended.

`speed` times each notebook outside the grader, in exam mode too (``COURSE_EXAM=1``), cold
(an empty cache folder: MNIST unpacking and the baseline training included) and warm.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from autograder.grading.runner import tool_env
from course import config

NOTEBOOKS = ("02_baseline", "03_clustering", "04_transfer_learning", "05_active_learning")
STUDENT = "ref-seed{seed}"
EXECUTE_TIMEOUT_S = 1800  # a cold run trains the baseline first
GRADE_TIMEOUT_S = 3600.0  # the grader's wall-clock limit per run: 4x the course's default, for a loaded machine
MODE = "exam"  # what the grader's kernels run in; recorded in every run


def grading_meta(jobs: int) -> dict:
    """How the notebooks were graded, for results.json's meta."""
    from autograder.grading.runner import DEFAULT_TIMEOUT_S

    return {"graded_by": "autograder.grading.runner.Grader", "mode": MODE, "timeout_s": GRADE_TIMEOUT_S,
            "course_timeout_s": DEFAULT_TIMEOUT_S, "gradings_at_once": jobs}


def _source(assignment: str, root: Path = config.REPO_ROOT) -> Path:
    path = root / "source" / assignment / f"{assignment}.ipynb"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist; the reference notebooks are source/<assignment>/<assignment>.ipynb. "
            "Run with --no-reference, or --notebooks with the ones that exist.")
    return path


def make_course(where: Path, assignments: Sequence[str], root: Path = config.REPO_ROOT) -> Path:
    """A course folder in `where` with the config and the source of `assignments` from `root`."""
    course = where / "course"
    (course / "source").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / "nbgrader_config.py", course / "nbgrader_config.py")
    for a in assignments:
        _source(a, root)
        shutil.copytree(root / "source" / a, course / "source" / a, dirs_exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", a, "--force"],
                              cwd=course, capture_output=True, text=True, env=tool_env())
        if done.returncode != 0:
            raise RuntimeError(f"nbgrader generate_assignment {a} failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    return course


@contextmanager
def _env(**values: str):
    """Set environment variables for the duration of a block (the grader passes them on)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def grade_one(course: Path, assignment: str, track: str, seed: int, root: Path = config.REPO_ROOT) -> dict:
    """Grade the source notebook of `assignment` as student ``ref-seed<seed>`` of `course`."""
    from autograder.grading.runner import Grader

    student = STUDENT.format(seed=seed)
    target = course / "submitted" / student / assignment
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_source(assignment, root), target / f"{assignment}.ipynb")
    # A Grader per submission: its nbgrader worker starts inside this block, so it and the
    # kernel inherit this seed (the grader passes its own environment on, COURSE_TRACK aside).
    with _env(**{config.ENV_SEED: str(seed)}):
        try:
            grader = Grader(course, assignment, track=track, timeout=GRADE_TIMEOUT_S)
            try:
                outcome = grader.grade(student)
            finally:
                grader.close()  # stops its nbgrader worker
        except Exception as exc:  # the grader cannot start: record it, go on
            return {"seed": seed, "mode": MODE, "accuracy": None, "annotations": None, "status": "error",
                    "error": f"{type(exc).__name__}: {exc}", "load": round(os.getloadavg()[0], 2)}
    row, t = outcome.row, outcome.timings
    ok = row.status == "ok" and row.accuracy is not None
    return {
        "seed": seed, "mode": MODE, "status": row.status, "detail": row.detail, "load": round(os.getloadavg()[0], 2),
        "accuracy": row.accuracy if ok else None, "annotations": row.annotations if ok else None,
        "score": row.score, "max_score": row.max_score, "grade_s": row.runtime,
        "cells_s": round(t.cells, 2), "nbgrader_s": round(t.nbgrader, 2),
        **({} if ok else {"error": f"{row.status}: {row.detail}"}),
    }


_WORKER_COURSES: dict[tuple, Path] = {}  # one course copy per worker process


def _worker_grade(assignments: tuple[str, ...], assignment: str, track: str, seed: int, root: Path) -> dict:
    """Runs in a worker process: its own course copy, so gradebooks and env never mix."""
    key = (assignments, str(root))
    if key not in _WORKER_COURSES:
        tmp = Path(tempfile.mkdtemp(prefix="bench-course-"))
        # a pool worker leaves through multiprocessing's exit path, which skips atexit
        multiprocessing.util.Finalize(None, shutil.rmtree, args=(tmp, True), exitpriority=10)
        _WORKER_COURSES[key] = make_course(tmp, assignments, root)
    return grade_one(_WORKER_COURSES[key], assignment, track, seed, root)


def grade_all(assignments: Sequence[str], track: str, seeds: Iterable[int],
              root: Path = config.REPO_ROOT, jobs: int = 1) -> dict[str, list[dict]]:
    """Grade every source notebook once per seed on `track`; one dict per run.

    `root`: the course whose ``source/`` and ``nbgrader_config.py`` are used (the repository).
    `jobs`: gradings at once, each worker process with its own course copy.
    """
    tasks = [(a, s) for s in seeds for a in assignments]
    runs: dict[str, list[dict]] = {a: [] for a in assignments}
    bar = tqdm(total=len(tasks), desc=f"notebooks {track}", unit="grading")

    def record(assignment: str, run: dict) -> None:
        runs[assignment].append(run)
        bar.update()
        bar.set_postfix_str(f"{assignment} seed {run['seed']}: {run['status']}")
        if run.get("error"):
            tqdm.write(f"  {assignment} seed {run['seed']} on {track}: {run['error']}")

    if jobs <= 1:
        with tempfile.TemporaryDirectory(prefix="bench-course-") as tmp:
            course = make_course(Path(tmp), assignments, root)
            for assignment, seed in tasks:
                record(assignment, grade_one(course, assignment, track, seed, root))
    else:
        context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(_worker_grade, tuple(assignments), a, track, s, root): a for a, s in tasks}
            for future in as_completed(futures):
                record(futures[future], future.result())
    bar.close()
    for assignment in runs:
        runs[assignment].sort(key=lambda r: r["seed"])
    return runs


def execute(notebook: Path, env: dict[str, str]) -> dict:
    """Run `python -m benchmarks.execute` in a child process and return its RESULT."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.execute", str(notebook),
                           "--timeout", str(EXECUTE_TIMEOUT_S)],
                          cwd=config.REPO_ROOT, env=env, capture_output=True, text=True)
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        return {"error": (done.stderr or done.stdout)[-500:]}
    return json.loads(line[len("RESULT "):])


def speed(assignments: Sequence[str], track: str, results: dict,
          root: Path = config.REPO_ROOT) -> dict[str, dict]:
    """Cold and warm execution time and kernel peak memory per notebook, plus grading time."""
    out: dict[str, dict] = {}
    base = {k: v for k, v in os.environ.items() if k not in (config.ENV_SERVICE, config.ENV_SERVICE_TOKEN)}
    base.update({config.ENV_TRACK: track, config.ENV_SEED: "0", config.ENV_EXAM: "1"})
    bar = tqdm([(a, mode) for a in assignments for mode in ("cold", "warm")], desc="notebook speed", unit="run")
    for assignment, mode in bar:
        bar.set_postfix_str(f"{assignment} {mode}")
        with tempfile.TemporaryDirectory(prefix="bench-cold-cache-") as empty_cache:
            env = dict(base, **({config.ENV_CACHE_DIR: empty_cache} if mode == "cold" else {}))
            measured = execute(_source(assignment, root), env)
        entry = out.setdefault(assignment, {})
        entry[f"{mode}_s"] = measured.get("seconds")
        entry[f"{mode}_peak_mb"] = measured.get("kernel_peak_mb")
        if measured.get("error") or measured.get("errors"):
            entry[f"{mode}_errors"] = measured.get("error") or measured.get("errors")
    for assignment, entry in out.items():
        graded = [r for t in results["tracks"].values() for r in t.get("reference", {}).get(assignment, [])
                  if r.get("grade_s") is not None]
        entry["grade_s"] = float(np.median([r["grade_s"] for r in graded])) if graded else None
        entry["peak_mb"] = max((v for k, v in entry.items() if k.endswith("_peak_mb") and v), default=None)
    return out
