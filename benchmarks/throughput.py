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
sandbox, kernel) of each worker, sampled every second, and the peak of each of those parts
on its own (``peak_rss_mb_parts``: the largest over the workers). Then the ratios, measured in
one run on the same machine, and on paper: machines and minutes for 300 and 3,000
submissions. Writes ``throughput.json`` and ``throughput.md`` into ``--out``, after
each mode (a run cut short keeps what it measured).

A results file keeps the figures of an earlier run as its ``before`` block, for comparison:
``--before FILE`` takes them from FILE (e.g. the committed results, copied aside before a
change), else the ``before`` block of the file in ``--out`` is carried over. Its headline
figures are also top-level numbers (``before_slot_gb``, ``slot_gb``, ...: the docs show them).

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


PARTS = (("kernel", "ipykernel"), ("nbgrader worker", "autograder.grading.worker"),
         ("service", "autograder.grading.service"))  # a part of a grading slot: a word of its command line


def _part(process: psutil.Process, root: psutil.Process) -> str:
    if process.pid == root.pid:
        return "grading process"
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return "other"
    return next((name for name, word in PARTS if word in command), "other")


class TreeSampler:
    """Peak RSS (MB) of the process tree under each root pid, sampled every second; and of each part
    of it (`_part`: the kernel, nbgrader's worker, the service, the grading process itself)."""

    def __init__(self, roots):
        self.roots = roots  # a callable returning {name: pid}
        self.peaks: dict[str, float] = {}
        self.part_peaks: dict[str, float] = {}  # the largest over all roots
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
                parts: dict[str, float] = {}
                for process in tree:
                    try:
                        rss = process.memory_info().rss
                    except psutil.Error:
                        continue
                    total += rss
                    part = _part(process, root)
                    parts[part] = parts.get(part, 0.0) + rss
                self.peaks[name] = max(self.peaks.get(name, 0.0), total / 2**20)
                for part, rss in parts.items():
                    self.part_peaks[part] = max(self.part_peaks.get(part, 0.0), rss / 2**20)

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
            "accuracies": sorted({r.accuracy for r in rows if r.accuracy is not None}),
            "runtime_mean_s": round(sum(r.runtime for r in rows) / max(len(rows), 1), 1),
            "peak_rss_mb_per_worker": {k: round(v) for k, v in sampler.peaks.items()},
            "peak_rss_mb_parts": {k: round(v) for k, v in sorted(sampler.part_peaks.items())},
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


def slot_mb(r: dict) -> float:
    """A mode's peak memory per grading slot (MB): its largest worker (with a pool, the grading process that
    only hands out submissions is not a slot)."""
    slots = {k: v for k, v in r["peak_rss_mb_per_worker"].items()
             if k != "grade process" or len(r["peak_rss_mb_per_worker"]) == 1}
    return max(slots.values(), default=0.0)


def summary(results: dict, meta: dict) -> dict:
    """The figures a later run compares itself with (its ``before`` block)."""
    modes = {mode: {"per_submission_s": round(r["wall_s"] / max(r["graded"], 1), 1), "wall_s": r["wall_s"],
                    "kernel_s": r["runtime_mean_s"], "slot_mb": round(slot_mb(r)), "passed": r["passed"],
                    "graded": r["graded"], "annotations": r["annotations"],
                    **({"parts_mb": r["peak_rss_mb_parts"]} if r.get("peak_rss_mb_parts") else {})}
             for mode, r in results.items()}
    return {"meta": meta, "modes": modes}


def headline(results: dict, before: dict | None, meta: dict) -> dict:
    """Top-level numbers for the docs (``results.throughput.<key>``): memory per slot and seconds per
    submission now and before, the slot that `plan` uses (``--jobs 2``, else serial)."""
    values = {}
    for prefix, modes in (("", {m: summary(results, {})["modes"][m] for m in results}),
                          ("before_", (before or {}).get("modes", {}))):
        best = modes.get("jobs2") or modes.get("serial")
        if not best:
            continue
        values[f"{prefix}slot_gb"] = round(best["slot_mb"] / 1024, 2)
        if "kernel" in best.get("parts_mb", {}):
            values[f"{prefix}kernel_gb"] = round(best["parts_mb"]["kernel"] / 1024, 2)
        for mode, r in modes.items():
            values[f"{prefix}{mode}_slot_gb"] = round(r["slot_mb"] / 1024, 2)
            values[f"{prefix}{mode}_per_submission_s"] = r["per_submission_s"]
            if "kernel" in r.get("parts_mb", {}):
                values[f"{prefix}{mode}_kernel_gb"] = round(r["parts_mb"]["kernel"] / 1024, 2)
    if before and before.get("meta", {}).get("when"):
        bmeta = before["meta"]
        values["before_when"] = bmeta["when"][:10]
        values["before_load_start"] = bmeta.get("load_start", "").split(" ")[0]
        values["before_note"] = (
            f"Before: {bmeta.get('n')} submissions, {bmeta['when'][:10]}, load average at the start "
            f"{values['before_load_start']}" + (f"; {before['parts_note']}" if before.get("parts_note") else "")
            + f". Now: {meta.get('n')} submissions, {meta.get('when', '')[:10]}, load average at the start "
            f"{meta.get('load_start', '').split(' ')[0]}. Seconds measured under different loads of a shared "
            "machine compare only roughly; memory does not depend on the load.")
    if "slot_gb" in values and values.get("before_slot_gb"):
        values["slot_ratio"] = round(values["slot_gb"] / values["before_slot_gb"], 2)
    return values


def report(results: dict, meta: dict, out: Path, before: dict | None = None) -> None:
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
    parts = {mode: r["peak_rss_mb_parts"] for mode, r in results.items() if r.get("peak_rss_mb_parts")}
    parts.update({f"{mode}, before": b["parts_mb"] for mode, b in (before or {}).get("modes", {}).items()
                  if b.get("parts_mb")})
    if parts:
        names = sorted({name for p in parts.values() for name in p})
        lines += ["", "Peak RSS of each part of a grading slot (MB, the largest over the workers):", "",
                  "| mode | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| {mode} | " + " | ".join(str(p.get(name, "")) for name in names) + " |"
                  for mode, p in parts.items()]
    if before:
        bmeta = before.get("meta", {})
        lines += ["", f"Before ({bmeta.get('when', '?')}, n={bmeta.get('n', '?')}, load average at the start "
                      f"{bmeta.get('load_start', '?')}):", "",
                  "| mode | per submission before | now | peak per slot before (MB) | now (MB) |",
                  "|---|---|---|---|---|"]
        for mode, b in before.get("modes", {}).items():
            r = results.get(mode)
            now_s = f"{r['wall_s'] / max(r['graded'], 1):.1f} s" if r else ""
            now_mb = str(round(slot_mb(r))) if r else ""
            lines.append(f"| {mode} | {b['per_submission_s']} s | {now_s} | {b['slot_mb']} | {now_mb} |")
        if before.get("parts_note"):
            note = before["parts_note"]
            lines += ["", note[:1].upper() + note[1:] + "."]
    rows = plan(results, n)
    if rows:
        lines += ["", f"On paper (machines of {MACHINE_CORES} cores and {MACHINE_GB} GB, 2 cores per grading slot, "
                      "the per-slot time measured with --jobs 2):", "",
                  "| submissions | machines | slots each | minutes |", "|---|---|---|---|"]
        lines += [f"| {r['submissions']} | {r['machines']} | {r['slots_per_machine']} | {r['minutes']} |" for r in rows]
    write_atomic(out / "throughput.md", "\n".join(lines) + "\n")
    blob = {"meta": meta, "results": results, "plan": rows}
    if before:
        blob["before"] = before
    blob.update(headline(results, before, meta))
    write_atomic(out / "throughput.json", json.dumps(blob, indent=1))


def _before(path: Path | None, out: Path) -> dict | None:
    """The ``before`` block: FILE's own figures (`summary`), else the one the results in `out` keep."""
    if path is not None:
        old = json.loads(path.read_text())
        return summary(old["results"], old["meta"])
    existing = out / "throughput.json"
    return json.loads(existing.read_text()).get("before") if existing.is_file() else None


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
    parser.add_argument("--before", type=Path, default=None, metavar="FILE",
                        help="a throughput.json whose figures the results keep as their `before` block "
                             "(default: carry over the `before` block of the file in --out)")
    args = parser.parse_args(argv)
    before = _before(args.before, args.out)
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
            report(results, meta, args.out, before)
    print((args.out / "throughput.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
