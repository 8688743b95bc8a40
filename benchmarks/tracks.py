"""How hard is a track? The reference notebooks and a few measures per pair of digits.

    python -m benchmarks.tracks                          # the default tracks, notebooks 03-05
    python -m benchmarks.tracks --tracks 7,1 2,5 --notebooks 03_clustering
    python -m benchmarks.tracks --render                 # rebuild results.md from results.json

For choosing hidden tracks (docs: "A competition in rounds with hidden tracks"): an instructor who grades on
extra tracks wants them about as hard as the course track. Per track this measures

- **the reference notebooks** (``source/<assignment>/``, unchanged), each run once in a
  fresh kernel in exam mode (``COURSE_EXAM=1``, as under the grader: the one counted
  submission scores the private split) with a fixed seed (``COURSE_SEED``), without the
  grader's sandbox and service (its shuffle aside, the numbers are the grader's: the
  same rules count the annotations, `course.protocol.Rules`); the annotations counted
  at the submission and its private accuracy are read from the kernel's own ledger;
- **the baseline on C**: the share of the track's test images the baseline CNN (trained
  on merged labels) puts in C, i.e. how well the two digits are merged into one class;
- **how separable the pair is without labels**: the purity of 2-means on the baseline's
  features (conv block, PCA 30, as notebooks 03 and 05) of the C pool;
- **random annotations**: the annotations a logistic regression on the same features,
  trained on randomly chosen annotated C samples, needs to reach 90% (median of 5 seeds);
- the time to train the track's baseline (once per machine, then cached).

The **difficulty** compares the track with the course track (the first one given): how
many times the annotations each method (every reference notebook, random annotations)
needs on the course track it needs here, geometric mean (see `difficulty`). Writes
``results.json`` (after every step, so a cut-short run keeps what it measured) and
``results.md`` into ``--out`` (default ``benchmarks/results/tracks/``), which the docs site renders.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from course import config
from benchmarks import report
from course.files import write_atomic

OUT = Path(__file__).resolve().parent / "results" / "tracks"
NOTEBOOKS = ("03_clustering", "04_transfer_learning", "05_active_learning")
TRACKS = ("7,1", "2,5", "3,8", "4,9", "6,0", "2,7", "3,5")
SEED = 0
RANDOM_SEEDS = 5
RANDOM_GRID = tuple(range(1, 31)) + (40, 50, 60, 80, 100, 150, 200)
CELL_TIMEOUT_S = 1800
MARK = "BENCHMARK-LEDGER "
# Appended to the notebook: the kernel's own ledger, as the service would write it.
LEDGER_CELL = ("import json as _json\nfrom course import oracle as _oracle\n"
               f"print({MARK!r} + _json.dumps(_oracle.backend().ledger()))\n")
# rating: the geometric mean, over the reference notebooks and the random annotations, of the
# annotations each needs on the track relative to the course track (see `rating`)
RATINGS = ((0.75, "easier"), (1.5, "similar"), (2.5, "harder"), (float("inf"), "much harder"))


# --- measuring --------------------------------------------------------------------------------


def run_notebook(assignment: str, track: str, seed: int = SEED, root: Path = config.REPO_ROOT,
                 timeout: int = CELL_TIMEOUT_S) -> dict:
    """Execute the source notebook of `assignment` on `track` in exam mode; its counted numbers."""
    import nbformat
    from nbclient import NotebookClient

    from course import protocol

    path = root / "source" / assignment / f"{assignment}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(LEDGER_CELL))
    env = {k: v for k, v in os.environ.items() if k not in (config.ENV_SERVICE, config.ENV_SERVICE_TOKEN)}
    env.update({config.ENV_TRACK: track, config.ENV_SEED: str(seed), config.ENV_EXAM: "1"})
    start = time.perf_counter()
    error = ""
    with tempfile.TemporaryDirectory(prefix="bench-track-") as work:  # the kernel's folder, thrown away
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": work}})
        try:
            with _environ(env):
                client.execute()
        except Exception as exc:  # a timeout or a dead kernel: record it, go on
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
    seconds = round(time.perf_counter() - start, 1)
    errors = [f"{o.get('ename')}: {str(o.get('evalue', ''))[:160]}" for c in nb.cells
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []) if o.get("name") == "stdout")
    line = next((ln for ln in text.splitlines() if ln.startswith(MARK)), None)
    summary = protocol.summarize(json.loads(line[len(MARK):])) if line else None
    accuracy = summary.accuracy if summary else None
    return {"assignment": assignment, "track": track, "seed": seed, "seconds": seconds,
            "accuracy": accuracy, "annotations": summary.annotations if summary else None,
            "passed": accuracy is not None and accuracy >= config.TARGET_ACCURACY,
            "submissions": summary.submissions if summary else None,
            "errors": ([error] if error else []) + errors}


class _environ:
    """Set the whole environment for a block (the kernel inherits it)."""

    def __init__(self, env: dict[str, str]):
        self.env, self.old = env, None

    def __enter__(self):
        self.old = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env)

    def __exit__(self, *exc):
        os.environ.clear()
        os.environ.update(self.old)


def train_baseline(track: str) -> dict:
    """The track's baseline checkpoint: trained now (timed) or read from the cache."""
    from course import data, models

    digits = data.parse_track(track)
    cached = models.checkpoint_path(digits).is_file()
    start = time.perf_counter()
    models.baseline(digits)
    return {"cached": cached, "train_s": None if cached else round(time.perf_counter() - start, 1)}


def measure_pair(track: str, seeds: int = RANDOM_SEEDS) -> dict:
    """Baseline share of the track's test images in C, 2-means purity, random annotations to 90%."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    from benchmarks import features, peers
    from course import data, models

    digits = data.parse_track(track)
    split = data._split(digits)  # instructor side: the original digits (trusted benchmark code)
    # the private test images are the track's digits only (the public split holds every other digit too)
    in_c = float(np.mean(models.baseline(digits).predict(split.private_test_images) == config.MERGED_LABEL))
    td = features.load_track(track, "conv")
    with threadpool_limits(limits=peers.THREADS):
        clusters = KMeans(n_clusters=2, n_init=10, random_state=SEED).fit_predict(td.X_pool)
    purity = sum(np.bincount(td.y_pool[clusters == k]).max() for k in (0, 1)) / len(td.y_pool)
    curves = np.array([peers.learning_curve("random", td, RANDOM_GRID, s) for s in range(seeds)])
    return {"baseline_in_c": round(in_c, 4), "kmeans_purity": round(float(purity), 4),
            "random_to_90": report.median_reach(RANDOM_GRID, curves, config.TARGET_ACCURACY),
            "random_at_10": round(float(np.median(curves[:, RANDOM_GRID.index(10)])), 4),
            "pool_c": int(len(td.y_pool))}


# --- the report ---------------------------------------------------------------------------------


def total_annotations(block: dict, notebooks: list[str]) -> int | None:
    """Sum of the notebooks' annotations on a track; None unless every one ran and passed."""
    runs = [block.get("notebooks", {}).get(n) for n in notebooks]
    if not runs or any(r is None or not r.get("passed") for r in runs):
        return None
    return sum(r["annotations"] for r in runs)


def rating(block: dict, course: dict, notebooks: list[str]) -> str:
    """'course track', 'easier', 'similar', 'harder', 'much harder', or why there is none."""
    runs = [block.get("notebooks", {}).get(n) for n in notebooks]
    if any(r is None for r in runs):
        return "not measured"
    if any(not r.get("passed") for r in runs):
        return "too hard: " + ", ".join(n[:2] for n, r in zip(notebooks, runs) if not r.get("passed")) + " fail"
    if block is course:
        return "course track"
    ratio = difficulty(block, course, notebooks)
    if ratio is None:
        return "n/a (the course track is not measured or did not pass)"
    return next(name for bound, name in RATINGS if ratio < bound) + f" ({ratio:.1f}x)"


def _needs(block: dict, notebooks: list[str]) -> list[float] | None:
    """Annotations each method needed on a track: the notebooks', then random annotations' to 90%."""
    runs = [block.get("notebooks", {}).get(n) for n in notebooks]
    if any(r is None or not r.get("passed") for r in runs) or "pair" not in block:
        return None
    random_to_90 = block["pair"].get("random_to_90") or RANDOM_GRID[-1]  # not reached: at least the grid's end
    return [max(1, r["annotations"]) for r in runs] + [random_to_90]


def difficulty(block: dict, course: dict, notebooks: list[str]) -> float | None:
    """Geometric mean over the methods (each notebook, random annotations) of the annotations a method
    needs on the track divided by what it needs on the course track: 1.0 is the course track's difficulty.

    A geometric mean, so that each method counts alike: a total would be ruled by the method that
    needs the most (05), and 03's 1 -> 4 annotations on 4,9 would hardly show."""
    mine, theirs = _needs(block, notebooks), _needs(course, notebooks)
    if mine is None or theirs is None:
        return None
    return float(np.exp(np.mean(np.log(np.array(mine) / np.array(theirs)))))


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _nb_cell(run: dict | None) -> str:
    if run is None:
        return "-"
    if run.get("accuracy") is None:
        return "error"
    mark = "" if run["passed"] else " (fail)"
    return f"{run['annotations']} / {_pct(run['accuracy'])}{mark}"


def legend(meta: dict) -> str:
    """What the table's columns mean."""
    return ("Per track: each reference notebook run once (seed "
            f"{meta.get('seed', SEED)}, exam mode, the private split) as *annotations / accuracy %*; the "
            "baseline's share of the track's test images put in C (how merged the pair is); the purity of "
            "2-means on the baseline's conv features of the C pool (how separable the pair is without a "
            "label); the annotations a logistic regression on random annotations needs for 90% (median of "
            f"{meta.get('random_seeds', RANDOM_SEEDS)} seeds); the time to train the track's baseline (once "
            "per machine); the difficulty: how many times the annotations each method (every notebook, and "
            f"random annotations to 90%) needs on the course track {meta['tracks'][0]}, geometric mean "
            "(easier < 0.75x <= similar < 1.5x <= harder < 2.5x <= much harder; too hard when a reference "
            "notebook fails).")


def table(results: dict) -> str:
    """One row per track, the course track first and in bold."""
    meta, notebooks, tracks = results["meta"], results["meta"]["notebooks"], results["tracks"]
    course = tracks.get(meta["tracks"][0], {})
    lines = ["| track | " + " | ".join(notebooks) + " | total annotations | baseline: in C % | 2-means purity % "
             "| random: to 90% | baseline training s | difficulty |",
             "|---|" + "---:|" * (len(notebooks) + 5) + "---|"]
    for track, block in tracks.items():
        pair, base = block.get("pair", {}), block.get("baseline", {})
        total = total_annotations(block, notebooks)
        to_90 = "-" if not pair else (pair.get("random_to_90") or f"> {RANDOM_GRID[-1]}")
        lines.append(
            f"| {'**' + track + '**' if track == meta['tracks'][0] else track} | "
            + " | ".join(_nb_cell(block.get("notebooks", {}).get(n)) for n in notebooks)
            + f" | {'-' if total is None else total} | {_pct(pair.get('baseline_in_c'))}"
            f" | {_pct(pair.get('kmeans_purity'))} | {to_90}"
            f" | {'cached' if base.get('cached') else (base.get('train_s') or '-')}"
            f" | {rating(block, course, notebooks)} |")
    return "\n".join(lines) + "\n"


def _header(meta: dict) -> str:
    wall = f"; wall time {meta['wall_s'] / 60:.0f} min" if meta.get("wall_s") else ""
    note = f" {meta['note']}" if meta.get("note") else ""  # e.g. how a cut-short run was finished
    return (f"Measured {meta.get('date', '?')} on {meta.get('machine', '?')}: "
            f"`{meta.get('command', '?')}`{wall}.{note}")


def markdown(results: dict) -> str:
    """The page an instructor reads to choose hidden tracks."""
    meta = results["meta"]
    return ("# Track difficulty\n\n" + _header(meta) + "\n\n" + legend(meta) + "\n\n" + table(results)
            + "\nChoose hidden tracks rated *similar* to the course track (docs: how-to/competition.md). One seed "
            "per notebook: 05's count varies by a few annotations between seeds.\n")


def save(results: dict, out: Path) -> None:
    report.save_pair(results, out, markdown)


# --- the command ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tracks", description=__doc__.split("\n\n")[0])
    p.add_argument("--tracks", nargs="+", default=list(TRACKS), help="course track first (default: %(default)s)")
    p.add_argument("--notebooks", nargs="+", default=list(NOTEBOOKS), help="default: %(default)s")
    p.add_argument("--seed", type=int, default=SEED, help="COURSE_SEED of the notebooks (default %(default)s)")
    p.add_argument("--random-seeds", type=int, default=RANDOM_SEEDS, help="seeds of the random annotations")
    p.add_argument("--out", type=Path, default=OUT, help="output folder (default: benchmarks/results/tracks)")
    p.add_argument("--render", action="store_true", help="only rebuild results.md from --out's results.json")
    p.add_argument("--resume", action="store_true",
                   help="keep the steps --out's results.json already has (same notebooks and seeds), run the rest")
    args = p.parse_args(argv)
    if args.render:
        results = json.loads((args.out / "results.json").read_text())
        write_atomic(args.out / "results.md", markdown(results))
        return 0
    from benchmarks.run import machine
    from course import data

    for t in args.tracks:
        try:
            data.parse_track(t)
        except data.TrackError as exc:
            p.error(str(exc))
    start = time.perf_counter()
    argv_text = " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    results = {"meta": {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
                        "command": f"python -m benchmarks.tracks {argv_text}".strip(), "tracks": args.tracks,
                        "notebooks": args.notebooks, "seed": args.seed, "random_seeds": args.random_seeds},
               "tracks": {t: {} for t in args.tracks}}
    earlier = 0.0
    if args.resume and (args.out / "results.json").is_file():
        old = json.loads((args.out / "results.json").read_text())
        same = ("notebooks", "seed", "random_seeds")
        if any(old["meta"].get(k) != results["meta"][k] for k in same):
            p.error(f"--resume: {args.out}/results.json was run with other {', '.join(same)}")
        results["tracks"] = {t: old["tracks"].get(t, {}) for t in args.tracks}
        results["meta"]["date"] = old["meta"]["date"]
        earlier = old["meta"].get("wall_s") or 0.0
    def checkpoint() -> None:  # a cut-short run keeps every step it finished, and its time
        results["meta"]["wall_s"] = earlier + time.perf_counter() - start
        save(results, args.out)

    for track in args.tracks:
        block = results["tracks"][track]
        if "pair" in block:  # measured in full by an earlier run
            continue
        print(f"track {track}: baseline", flush=True)
        block["baseline"] = block.get("baseline") or train_baseline(track)
        checkpoint()
        for assignment in args.notebooks:
            if assignment in block.get("notebooks", {}):
                continue
            print(f"track {track}: {assignment}", flush=True)
            run = run_notebook(assignment, track, args.seed)
            block.setdefault("notebooks", {})[assignment] = run
            print(f"  {_nb_cell(run)} in {run['seconds']} s {run['errors'][:1] or ''}", flush=True)
            checkpoint()
        print(f"track {track}: measures of the pair", flush=True)
        block["pair"] = measure_pair(track, args.random_seeds)
        checkpoint()
    checkpoint()
    print(markdown(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
