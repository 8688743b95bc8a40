"""One command for the label-efficiency and speed benchmark.

    python -m benchmarks.run                 # full: tracks 7,1 and 4,9, 5 seeds
    python -m benchmarks.run --smoke         # CI: track 7,1, one seed, budgets 1..10, peers only
    python -m benchmarks.run --no-reference  # peers only (no notebooks, no autograder)

The notebooks are graded by the real grader, so in exam mode (`benchmarks.reference`); the
peers get the same label-free stopping rule next to their hindsight figures
(`benchmarks.peers.should_stop`). Writes, atomically, into ``--out`` (default ``benchmarks/results/``):
``results.md`` (the tables), ``learning_curves.png`` (the plot), ``curves.csv`` (every
accuracy measured) and ``results.json`` (everything, including speed and metadata).
Needs the ``bench`` extra (``pip install -e ".[bench]"``) and the MNIST files
(``COURSE_DATA_DIR``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path

from tqdm.auto import tqdm

from benchmarks import features, peers, report

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FULL_TRACKS = ("7,1", "4,9")
FULL_SEEDS = 5
# Every budget up to 50 (the table's budgets and the 90% crossing), coarser up to 100.
FULL_GRID = tuple(range(1, 51)) + (60, 70, 80, 90, 100)
SMOKE_GRID = tuple(range(1, 11))


def machine() -> str:
    """A one-line description: CPU model, cores, memory, GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        mem_text = f", {mem:.0f} GB RAM"
    except (ValueError, OSError, AttributeError):
        mem_text = ""
    try:
        import torch

        gpu = "GPU" if torch.cuda.is_available() else "no GPU"
    except ImportError:
        gpu = "no GPU"
    return f"{os.cpu_count()} cores ({cpu}){mem_text}, {gpu}, Python {platform.python_version()}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny run for CI: track 7,1, 1 seed, budgets 1..10, no notebooks")
    p.add_argument("--tracks", nargs="+", help=f"tracks to run (default: {' '.join(FULL_TRACKS)})")
    p.add_argument("--seeds", type=int, help=f"number of seeds 0..N-1 (default {FULL_SEEDS})")
    p.add_argument("--max-budget", type=int, help="cut the budget grid at this many annotations")
    p.add_argument("--peers", nargs="+", choices=peers.PEERS, help="peer strategies to run (default: all)")
    p.add_argument("--no-peers", action="store_true", help="skip the peers (the ceiling is still measured)")
    p.add_argument("--features", nargs="+", choices=list(features.FEATURE_SETS), default=list(features.DEFAULT_FEATURES),
                   help="feature sets the peers run on: conv (PCA of the conv block, as the notebooks) "
                        "and/or dense (default: %(default)s)")
    p.add_argument("--no-reference", action="store_true", help="skip the reference notebooks")
    p.add_argument("--ref-seeds", type=int, help="seeds for the reference notebooks (default: --seeds)")
    p.add_argument("--jobs", type=int, default=1,
                   help="peer curves and notebook gradings at once, each in a process of its own (default 1)")
    p.add_argument("--notebooks", nargs="+", help="reference assignments (default: 02_baseline .. 05_active_learning)")
    p.add_argument("--no-speed", action="store_true", help="skip the cold/warm notebook timing")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder (default: benchmarks/results)")
    args = p.parse_args(argv)
    if args.smoke:
        args.tracks = args.tracks or ["7,1"]
        args.seeds = 1 if args.seeds is None else args.seeds
        args.grid = SMOKE_GRID
        args.no_reference = args.no_reference or args.notebooks is None
        args.no_speed = True
    else:
        args.tracks = args.tracks or list(FULL_TRACKS)
        args.seeds = FULL_SEEDS if args.seeds is None else args.seeds
        args.grid = FULL_GRID
    if args.max_budget is not None:
        if args.max_budget < 1:
            p.error(f"--max-budget must be at least 1, got {args.max_budget}.")
        args.grid = tuple(b for b in args.grid if b <= args.max_budget)
    if args.seeds < 1:
        p.error(f"--seeds must be at least 1, got {args.seeds}.")
    from course import data

    for t in args.tracks:
        try:
            data.parse_track(t)
        except data.TrackError as exc:
            p.error(str(exc))
    args.peers = [] if args.no_peers else (args.peers or list(peers.PEERS))
    args.ref_seeds = args.seeds if args.ref_seeds is None else args.ref_seeds
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}.")
    if args.ref_seeds < 1:
        p.error(f"--ref-seeds must be at least 1, got {args.ref_seeds}.")
    return args


def run_peers(args, results: dict) -> None:
    """Per track and feature set: the ceiling, and for every peer and seed its learning curve and its
    label-free stop.

    A peer's row is named ``"<method> (<feature set>)"``, e.g. ``"random (conv)"``; its curves are in
    ``peers``, its stops (annotations, accuracy, settled) in ``stops``, both by seed.
    """
    tasks = []
    for track in args.tracks:
        block = results["tracks"][track] = {"ceiling": {}, "peers": {}, "stops": {}, "reference": {}}
        for feature_set in args.features:
            td = features.load_track(track, feature_set)
            block["pool_size"] = len(td.y_pool)
            block["ceiling"][feature_set] = peers.ceiling(td)
            _TRACK_DATA[(track, feature_set)] = td  # the serial path reuses it
            for method in args.peers:
                row = peers.row_name(method, feature_set)
                block["peers"][row], block["stops"][row] = {}, {}
                tasks += [(track, feature_set, method, seed) for seed in range(args.seeds)]
    bar = tqdm(total=len(tasks), desc="peers", unit="curve")

    def record(task, run: peers.PeerRun) -> None:
        track, feature_set, method, seed = task
        row = peers.row_name(method, feature_set)
        results["tracks"][track]["peers"][row][str(seed)] = run.curve.tolist()
        results["tracks"][track]["stops"][row][str(seed)] = run.record()
        bar.update()
        bar.set_postfix_str(f"{track} {row} seed {seed}")

    if args.jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            record(task, _peer_run(*task, args.grid))
    else:
        context = multiprocessing.get_context("spawn")  # no fork of a process holding BLAS threads
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
            futures = {pool.submit(_peer_run, *task, args.grid): task for task in tasks}
            for future in as_completed(futures):
                record(futures[future], future.result())
    bar.close()
    for block in results["tracks"].values():  # seeds in order, whatever order they finished in
        for kind in ("peers", "stops"):
            block[kind] = {row: dict(sorted(by_seed.items(), key=lambda kv: int(kv[0])))
                           for row, by_seed in block[kind].items()}


_TRACK_DATA: dict[tuple[str, str], features.TrackData] = {}  # per process: each track's features once


def _peer_run(track: str, feature_set: str, method: str, seed: int, grid) -> peers.PeerRun:
    key = (track, feature_set)
    if key not in _TRACK_DATA:
        _TRACK_DATA[key] = features.load_track(track, feature_set)
    return peers.run_peer(method, _TRACK_DATA[key], grid, seed)


def run_reference(args, results: dict) -> None:
    """The course's notebooks graded by the autograder, per track and seed, plus speed."""
    from benchmarks import reference

    notebooks = args.notebooks or list(reference.NOTEBOOKS)
    results["meta"]["notebooks"] = reference.grading_meta(args.jobs)
    for track in args.tracks:
        runs = reference.grade_all(notebooks, track, range(args.ref_seeds), jobs=args.jobs)
        for notebook, per_run in runs.items():
            results["tracks"][track]["reference"][notebook] = per_run
        checkpoint(args, results)
    if not args.no_speed:
        results["speed"] = reference.speed(notebooks, args.tracks[0], results)


PARTIAL = "results.partial.json"


def checkpoint(args, results: dict) -> None:
    """What a long run has measured so far, in ``--out``/results.partial.json (removed when the run ends):
    a run stopped later keeps its peers and gradings (``python -m benchmarks.report`` renders the file)."""
    args.out.mkdir(parents=True, exist_ok=True)
    partial = json.loads(json.dumps(results, default=report._jsonable))
    partial["meta"]["wall_s"] = time.perf_counter() - args.start
    partial["meta"]["load_end"] = os.getloadavg()[0]
    partial["meta"]["partial"] = True
    report.write_json(partial, args.out / PARTIAL)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = args.start = time.perf_counter()
    command = "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    results = {
        "grid": list(args.grid),
        "meta": {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 "machine": machine(), "features": args.features, "seeds": args.seeds, "ref_seeds": args.ref_seeds, "command": command.strip(),
                 "tracks": args.tracks, "jobs": args.jobs, "load_start": os.getloadavg()[0],
                 "stop_rule": {"rule": peers.STOP_RULE, "change": peers.STOP_CHANGE,
                               "patience": peers.STOP_PATIENCE, "min_labels": peers.STOP_MIN_LABELS}},
        "tracks": {},
    }
    print(f"benchmark: tracks {' '.join(args.tracks)}, {args.seeds} seed(s), budgets up to "
          f"{max(args.grid)}, peers {', '.join(args.peers) or 'none'}; reference notebooks "
          f"{'off' if args.no_reference else 'on'}", flush=True)
    run_peers(args, results)
    if not args.no_reference:
        checkpoint(args, results)
        run_reference(args, results)
    results["meta"]["wall_s"] = time.perf_counter() - start
    results["meta"]["load_end"] = os.getloadavg()[0]
    summary = report.summarise(results)
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(results, args.out / "results.json")
    report.write_csv(results, args.out / "curves.csv")
    report.write_atomic(args.out / "results.md", report.markdown(results, summary))
    report.plot(results, summary, args.out / "learning_curves.png")
    report.write_atomic(args.out / "summary.md", report.summary_markdown(results, summary))
    (args.out / PARTIAL).unlink(missing_ok=True)
    print(f"done in {results['meta']['wall_s'] / 60:.1f} min; wrote {args.out}/results.md, "
          "learning_curves.png, curves.csv, results.json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
