"""Grading throughput: one at a time vs ``--jobs 2`` vs a local Dask cluster of two workers.

One throw-away course (the repository's ``nbgrader_config.py`` and
``source/<assignment>/``) gets N copies of the reference (source) notebook as
submissions; three copies of it (same assignment secret, so the same shuffle) are
graded by the real ``autograder grade``:

1. ``serial``: one submission at a time;
2. ``jobs2``: ``--jobs 2`` (a local process pool);
3. ``dask2``: ``--scheduler`` with a scheduler and two ``dask worker --nthreads 1``
   started here on loopback.

Each kernel gets the grader's default threads (this machine's cores divided by the
gradings at once, `autograder.sandbox.threads`) unless ``--threads-per-kernel`` is given; the
report says how many. For each mode: the wall clock of the command, rows that passed, and the peak memory
(RSS summed over a worker's process tree: grading process, nbgrader worker, service,
sandbox, kernel) of each worker, sampled every second. Then the ratios, measured in
one run on the same machine, and on paper: machines and minutes for 300 and 3,000
submissions. Writes ``throughput.json`` and ``throughput.md`` into ``--out``, after
each mode (a run cut short keeps what it measured).

    COURSE_DATA_DIR=... python -m benchmarks.throughput -n 20
    python -m benchmarks.throughput --template tests/fixtures/autograder_course --assignment toy -n 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

from course.files import write_atomic

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "results" / "throughput"
MODES = ("serial", "jobs2", "dask2")
AT_ONCE = {"serial": 1, "jobs2": 2, "dask2": 2}  # gradings at once on this machine in each mode
MACHINE_CORES, MACHINE_GB = 8, 32  # the machine the paper plan rents: 8 cores, 32 GB


def build_course(template: Path, assignment: str, n: int, where: Path) -> Path:
    """A course with `assignment` generated and N copies of its source notebook submitted."""
    from autograder import layout
    from autograder.grading import secret
    from autograder.grading.runner import tool_env

    course = where / "course"
    (course / "source").mkdir(parents=True)
    shutil.copyfile(template / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copytree(template / "source" / assignment, course / "source" / assignment)
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force"],
                   cwd=course, check=True, capture_output=True, env=tool_env())
    notebook = course / "source" / assignment / f"{assignment}.ipynb"
    for i in range(n):
        folder = course / "submitted" / f"ref{i:03d}" / assignment
        folder.mkdir(parents=True)
        shutil.copyfile(notebook, folder / notebook.name)
    secret.read_or_create(layout.Course.open(course).private(), assignment)  # every copy: the same shuffle
    return course


class TreeSampler:
    """Peak RSS (MB) of the process tree under each root pid, sampled every second."""

    def __init__(self, roots):
        self.roots = roots  # a callable returning {name: pid}
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for name, pid in self.roots().items():
                try:
                    root = psutil.Process(pid)
                    tree = [root] + root.children(recursive=True)
                except psutil.Error:
                    continue
                total = 0
                for process in tree:
                    try:
                        total += process.memory_info().rss
                    except psutil.Error:
                        pass
                self.peaks[name] = max(self.peaks.get(name, 0.0), total / 2**20)

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _pool_workers(grade_pid: int) -> dict[str, int]:
    """The grading process's pool workers (spawned Python children), or the process itself when serial."""
    try:
        children = psutil.Process(grade_pid).children()
    except psutil.Error:
        return {}
    workers = {}
    for child in children:
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                workers[f"worker {child.pid}"] = child.pid
        except psutil.Error:  # gone, or a zombie
            continue
    return workers or {"grade process": grade_pid}


def _dask_cluster(tmp: Path, env: dict) -> tuple[str, list[subprocess.Popen]]:
    scheduler_file = tmp / "scheduler.json"
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not scheduler_file.exists():
        time.sleep(0.2)
    address = json.loads(scheduler_file.read_text())["address"]
    workers = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                 "--no-nanny", "--no-dashboard", "--host", "127.0.0.1", "--name", f"w{i}"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in (1, 2)]
    return address, [scheduler] + workers


def grade(mode: str, course: Path, assignment: str, timeout: float, tmp: Path,
          threads_per_kernel: int | None = None) -> dict:
    """Grade every submission of `course` in `mode`; wall clock, rows, peak RSS per worker."""
    from autograder.results import store
    from autograder.sandbox import threads

    env = dict(os.environ)
    command = [sys.executable, "-m", "autograder.cli", "grade", assignment, "--course", str(course),
               "--timeout", str(timeout)]
    cluster: list[subprocess.Popen] = []
    if threads_per_kernel is not None:
        command += ["--threads-per-kernel", str(threads_per_kernel)]
    if mode == "jobs2":
        command += ["--jobs", "2"]
    if mode == "dask2":
        address, cluster = _dask_cluster(tmp, env)
        command += ["--scheduler", address]
    try:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if cluster:
            roots = lambda: {f"dask worker {p.pid}": p.pid for p in cluster[1:]}  # noqa: E731
        else:
            roots = lambda: _pool_workers(process.pid)  # noqa: E731
        with TreeSampler(roots) as sampler:
            out, err = process.communicate()
        wall = time.perf_counter() - start
    finally:
        for p in cluster:
            p.terminate()
        for p in cluster:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    rows = store.load(course, assignment)
    kernel_threads = threads_per_kernel or threads.share(AT_ONCE[mode])  # what the grader's default gives
    return {"mode": mode, "returncode": process.returncode, "wall_s": round(wall, 1), "graded": len(rows),
            "threads_per_kernel": kernel_threads,
            "passed": sum(r.passed for r in rows), "statuses": sorted({r.status for r in rows}),
            "annotations": sorted({r.annotations for r in rows if r.annotations is not None}),
            "runtime_mean_s": round(sum(r.runtime for r in rows) / max(len(rows), 1), 1),
            "peak_rss_mb_per_worker": {k: round(v) for k, v in sampler.peaks.items()},
            "stderr_tail": err[-1500:] if process.returncode else ""}


def plan(results: dict, n: int) -> list[dict]:
    """On paper: machines of MACHINE_CORES cores grading 300 and 3,000 submissions."""
    best = results.get("jobs2") or results.get("serial")
    if not best:
        return []
    per_slot_s = best["wall_s"] * (2 if best["mode"] != "serial" else 1) / n  # one submission on one slot
    peak_gb = max(best["peak_rss_mb_per_worker"].values(), default=2048) / 1024
    slots = min(MACHINE_CORES // 2, int(MACHINE_GB // max(peak_gb * 1.5, 0.5)))  # 2 cores per slot, memory margin
    rows = []
    for total in (300, 3000):
        for machines in (1, 4, 10, 25):
            minutes = math.ceil(total / (machines * slots)) * per_slot_s / 60
            rows.append({"submissions": total, "machines": machines, "slots_per_machine": slots,
                         "minutes": round(minutes, 1)})
    return rows


def report(results: dict, meta: dict, out: Path) -> None:
    n = meta["n"]
    lines = [f"# Grading throughput: {n} reference submissions of {meta['assignment']}", "",
             f"{meta['machine']}; load average at the start {meta['load_start']}; {meta['when']}.", "",
             "| mode | threads per kernel | wall clock | per submission | passed | peak RSS per worker (MB) "
             "| speed-up vs serial |",
             "|---|---|---|---|---|---|---|"]
    serial = results.get("serial")
    for mode in MODES:
        r = results.get(mode)
        if not r:
            continue
        ratio = f"{serial['wall_s'] / r['wall_s']:.2f}x" if serial else ""
        rss = ", ".join(str(v) for v in r["peak_rss_mb_per_worker"].values())
        lines.append(f"| {mode} | {r.get('threads_per_kernel', '')} | {r['wall_s'] / 60:.1f} min | {r['wall_s'] / max(r['graded'], 1):.1f} s | "
                     f"{r['passed']}/{r['graded']} | {rss} | {ratio} |")
    rows = plan(results, n)
    if rows:
        lines += ["", f"On paper (machines of {MACHINE_CORES} cores and {MACHINE_GB} GB, 2 cores per grading slot, "
                      "the per-slot time measured with --jobs 2):", "",
                  "| submissions | machines | slots each | minutes |", "|---|---|---|---|"]
        lines += [f"| {r['submissions']} | {r['machines']} | {r['slots_per_machine']} | {r['minutes']} |" for r in rows]
    write_atomic(out / "throughput.md", "\n".join(lines) + "\n")
    write_atomic(out / "throughput.json", json.dumps({"meta": meta, "results": results, "plan": rows}, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="03_clustering")
    parser.add_argument("--template", type=Path, default=REPO, help="course to copy (default: the repository)")
    parser.add_argument("-n", type=int, default=20, help="submissions (copies of the reference notebook)")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--threads-per-kernel", type=int, default=None, metavar="K",
                        help="passed to `autograder grade` (default: its own, the cores divided by the gradings at once)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    from autograder.sandbox.threads import usable_cores

    meta = {"assignment": args.assignment, "n": args.n,
            "machine": f"{platform.machine()}, {usable_cores()} cores, "
                       f"{psutil.virtual_memory().total / 2**30:.0f} GB",
            "load_start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "when": datetime.now(timezone.utc).isoformat(timespec="minutes")}
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        template = build_course(args.template.resolve(), args.assignment, args.n, Path(tmp) / "template")
        for mode in args.modes:
            course = Path(tmp) / mode / "course"
            shutil.copytree(template, course, symlinks=True)
            print(f"{mode}: grading {args.n} submissions ...", flush=True)
            results[mode] = grade(mode, course, args.assignment, args.timeout, Path(tmp) / mode,
                                  args.threads_per_kernel)
            print(json.dumps(results[mode]), flush=True)
            report(results, meta, args.out)
    print((args.out / "throughput.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
