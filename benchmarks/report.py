"""Aggregate benchmark numbers into the Markdown table, the plot and the raw files.

Aggregation (stated in the table's notes too):
- accuracy at a budget: the median over seeds of the private test accuracy;
- annotations to reach a target: for each seed, the smallest budget of the grid at
  which the accuracy first reaches the target; then the median over seeds. When
  more than half of the seeds never reach it within the grid, it reads "> max".
- a peer's label-free stop (`benchmarks.peers.should_stop`, one rule for every peer):
  per seed the annotations at which the rule stopped it and the private accuracy
  there; the median over seeds, with the range, and how many seeds stopped at 90% or
  more. These are the fair columns: the "to 90%" columns pick the budget in hindsight,
  with the private split, which no participant has;
- a reference notebook is one operating point per run, graded in exam mode: the
  annotations the service counted when its own rule stopped it, and the private
  accuracy; medians over seeds. It fills both the hindsight and the stop columns.

Every file is written atomically (a temp file, then `os.replace`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.peers import split_row_name
from course.files import write_atomic

TARGETS = (0.90, 0.99)
TABLE_BUDGETS = (1, 2, 5, 10, 20, 50)


def first_reach(grid: Sequence[int], curve: Sequence[float], target: float) -> int | None:
    """Smallest budget of `grid` at which `curve` reaches `target` (None: never)."""
    for budget, acc in zip(grid, curve):
        if acc >= target:
            return int(budget)
    return None


def median_reach(grid: Sequence[int], curves: np.ndarray, target: float) -> int | None:
    """Median over seeds (rows of `curves`) of `first_reach`; None when most never reach it."""
    hits = [first_reach(grid, c, target) for c in curves]
    # A seed that never reaches the target counts as +infinity in the median.
    values = sorted(np.inf if h is None else h for h in hits)
    med = float(np.median(values))
    return None if not np.isfinite(med) else int(np.ceil(med))


def stop_summary(per_seed: dict) -> dict | None:
    """Median and range over seeds of a peer's label-free stops ({seed: {annotations, accuracy, settled}})."""
    stops = list(per_seed.values())
    if not stops:
        return None
    ann = [s["annotations"] for s in stops]
    acc = [s["accuracy"] for s in stops]
    return {"annotations": float(np.median(ann)), "ann_range": (min(ann), max(ann)),
            "accuracy": float(np.median(acc)), "acc_range": (min(acc), max(acc)),
            "passed": sum(bool(a >= TARGETS[0]) for a in acc), "capped": sum(not s["settled"] for s in stops),
            "seeds": len(stops)}


def summarise(results: dict) -> dict:
    """Per track: per method, the median accuracy at each table budget, the budgets to targets (hindsight)
    and the label-free stop."""
    grid = results["grid"]
    summary = {}
    for track, block in results["tracks"].items():
        rows = {}
        for method, per_seed in block["peers"].items():
            curves = np.array(list(per_seed.values()))
            median = np.median(curves, axis=0)
            rows[method] = {
                "kind": "peer",
                "at": {b: float(median[grid.index(b)]) for b in TABLE_BUDGETS if b in grid},
                "reach": {t: median_reach(grid, curves, t) for t in TARGETS},
                "curve": median.tolist(),
                "seeds": len(curves),
                "stop": stop_summary((block.get("stops") or {}).get(method, {})),
            }
        for notebook, runs in block.get("reference", {}).items():
            ok = [r for r in runs if r.get("accuracy") is not None]
            if not ok:
                rows[notebook] = {"kind": "reference", "error": runs[0].get("error", "no run") if runs else "no run"}
                continue
            acc = float(np.median([r["accuracy"] for r in ok]))
            ann = float(np.median([r["annotations"] for r in ok]))
            rows[notebook] = {
                "kind": "reference", "accuracy": acc, "annotations": ann, "seeds": len(ok),
                "acc_range": (min(r["accuracy"] for r in ok), max(r["accuracy"] for r in ok)),
                "ann_range": (min(r["annotations"] for r in ok), max(r["annotations"] for r in ok)),
                "passed": sum(bool(r["accuracy"] >= TARGETS[0]) for r in ok),
                "errors": len(runs) - len(ok),
            }
        summary[track] = {"rows": rows, "ceiling": block["ceiling"], "pool": block["pool_size"]}
    return summary


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _reach(x: int | None, grid: Sequence[int]) -> str:
    return f"> {max(grid)}" if x is None else str(x)


def _span(lo, hi, fmt=str) -> str:
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}-{fmt(hi)}"


def stop_cells(row: dict) -> tuple[str, str]:
    """(annotations, accuracy %) of a row's label-free stop: a peer's rule, or a notebook's own rule
    (its graded runs); medians with the range, the seeds stopped at the cap, the seeds at 90% or more."""
    if row["kind"] == "peer":
        stop = row.get("stop")
        if stop is None:
            return "n/a", "n/a"
        capped = f", {stop['capped']} at the cap" if stop["capped"] else ""
        ann = f"{stop['annotations']:g} ({_span(*stop['ann_range'])}){capped}"
        acc, lo_hi, passed, seeds = stop["accuracy"], stop["acc_range"], stop["passed"], stop["seeds"]
    elif "error" in row:
        return "failed", "failed"
    else:
        ann = f"{row['annotations']:g} ({_span(*row['ann_range'])})"
        acc, lo_hi, passed, seeds = row["accuracy"], row["acc_range"], row["passed"], row["seeds"]
    return ann, f"{_pct(acc)} ({_span(*lo_hi, fmt=_pct)}), {passed}/{seeds} >= 90%"


def markdown(results: dict, summary: dict) -> str:
    """The results table (one per track) with the run's metadata and speed table."""
    grid = results["grid"]
    meta = results["meta"]
    budgets = [b for b in TABLE_BUDGETS if b in grid]
    out = io.StringIO()
    out.write(f"# Benchmark results\n\nRun {meta['date']} on {meta['machine']}; "
              f"{_seeds(meta['seeds'])}; command `{meta['command']}`; wall time "
              f"{meta['wall_s'] / 60:.1f} min.\n\n")
    head = ("| method | " + " | ".join(f"{b}" for b in budgets) + " | to 90% (hindsight) | to 99% (hindsight) "
            "| label-free stop: annotations | accuracy at the stop % |\n")
    rule = "|---|" + "---:|" * (len(budgets) + 4) + "\n"
    for track, s in summary.items():
        out.write(f"## Track {track}\n\nPrivate test accuracy (%, median over seeds) after N "
                  f"annotations; annotations needed to reach 90% / 99%, picked in hindsight on the private "
                  f"split; and where the label-free stopping rule ends a peer's run (a notebook's: its own rule), "
                  f"with the accuracy there. Pool: {s['pool']} C samples.\n\n")
        out.write(head + rule)
        for method, row in s["rows"].items():
            if row["kind"] == "peer":
                cells = [_pct(row["at"].get(b)) for b in budgets]
                reach = [_reach(row["reach"][t], grid) for t in TARGETS]
            elif "error" in row:
                cells, reach = ["n/a"] * len(budgets), ["failed", "failed"]
            else:
                cells = ["n/a"] * len(budgets)
                a = row["annotations"]
                reach = [f"{a:g} ({_pct(row['accuracy'])}%)" if row["accuracy"] >= t else "not reached"
                         for t in TARGETS]
            out.write(f"| {method} | " + " | ".join(cells + reach + list(stop_cells(row))) + " |\n")
        for label, acc in _ceilings(s):
            ceiling = [f"{s['pool']} ({_pct(acc)}%)" if acc >= t else "not reached" for t in TARGETS]
            out.write(f"| {label} | " + " | ".join(["-"] * len(budgets) + ceiling + ["-", "-"]) + " |\n")
        out.write("\n")
        refs = {m: r for m, r in s["rows"].items() if r["kind"] == "reference"}
        if refs:
            out.write("Reference notebooks (one operating point per run, graded by the autograder "
                      "on the private split):\n\n| notebook | annotations (median, range) | "
                      "accuracy % (median, range) | passed | errors |\n|---|---:|---:|---:|---:|\n")
            for name, r in refs.items():
                if "error" in r:
                    out.write(f"| {name} | - | - | - | {r['error']} |\n")
                    continue
                out.write(f"| {name} | {r['annotations']:g} ({r['ann_range'][0]}-{r['ann_range'][1]}) | "
                          f"{_pct(r['accuracy'])} ({_pct(r['acc_range'][0])}-{_pct(r['acc_range'][1])}) | "
                          f"{r['passed']}/{r['seeds']} | {r['errors']} |\n")
            out.write("\n")
    speed = speed_table(results)
    if speed:
        out.write("## Speed\n\n" + speed + "\n")
    out.write(NOTES.format(grid=_grid_text(grid), seeds=_seeds(meta["seeds"]), features=_feature_text(meta),
                           stop_rule=(meta.get("stop_rule") or {}).get("rule", "not recorded in this run")))
    return out.getvalue()


def speed_table(results: dict) -> str:
    """The speed table (Markdown) of a run with reference notebooks; "" without them."""
    meta = results["meta"]
    notebooks = list(dict.fromkeys(n for b in results["tracks"].values() for n in b.get("reference", {})))
    if not notebooks:
        return ""
    speed = results.get("speed") or {}
    out = io.StringIO()
    out.write("Local runs of the source notebook (track {t}, seed 0): cold = empty cache folder (MNIST "
              "unpacking and baseline training included), warm = cached baseline; peak = the kernel's "
              "max RSS. Grader columns: medians over every graded run (both tracks, all seeds).\n\n"
              "| notebook | cold run s | warm run s | peak memory MB | cells in grader s | "
              "grading s per submission |\n|---|---:|---:|---:|---:|---:|\n".format(t=meta["tracks"][0]))
    for name in notebooks:
        sp = speed.get(name, {})
        graded = [r for b in results["tracks"].values() for r in b.get("reference", {}).get(name, [])
                  if r.get("grade_s") is not None]
        cells = float(np.median([r["cells_s"] for r in graded])) if graded else None
        grade = float(np.median([r["grade_s"] for r in graded])) if graded else None
        out.write(f"| {name} | {_num(sp.get('cold_s'))} | {_num(sp.get('warm_s'))} | "
                  f"{_num(sp.get('peak_mb'), 0)} | {_num(cells)} | {_num(grade)} |\n")
    return out.getvalue()


def _ceilings(track_summary: dict) -> list[tuple[str, float]]:
    """(row label, accuracy) of the ceiling of every feature set of a track."""
    return [(f"ceiling, all labels ({fs})", acc) for fs, acc in track_summary["ceiling"].items()]


def _feature_text(meta: dict) -> str:
    from benchmarks.features import FEATURE_SETS

    return "; ".join(f"({fs}) {FEATURE_SETS.get(fs, fs)}" for fs in meta.get("features", []))


NOTES = """## How to read this

- Features: every peer row names its feature set, taken from the baseline CNN (which saw
  merged labels only): {features}. Classifier of every peer: logistic regression (C=1). Pool: the
  C samples of the training pool; accuracy on the private test split (what the autograder scores).
- Budgets on the grid {grid}; {seeds}. Accuracy at a budget: median over seeds.
  "to 90% (hindsight)": per seed the first grid budget reaching 90% on the private split,
  then the median over seeds ("> max" when most seeds never get there). No participant can
  pick that budget: it needs the held-out labels.
- "label-free stop": the same rule for every peer: {stop_rule}. Per seed the annotations at
  the stop and the private accuracy there; medians with the range, and the seeds at 90% or
  more. A notebook's stop is its own rule, graded in exam mode.
- Reference notebooks give one operating point per run, graded by the real grader in exam
  mode (the annotations the annotation service counted, and the private accuracy); they have
  no budget knob, so their budget columns are n/a and "to 90%" shows their own count when
  they pass.
"""


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _num(x, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _grid_text(grid: Sequence[int]) -> str:
    steps = []
    start = prev = grid[0]
    step = None
    for g in list(grid[1:]) + [None]:
        if g is not None and step in (None, g - prev):
            step, prev = g - prev, g
            continue
        steps.append(f"{start}..{prev}" + (f" step {step}" if step and step != 1 else ""))
        if g is not None:
            start, prev, step = g, g, None
    return ", ".join(steps)


def write_csv(results: dict, path: Path) -> None:
    """Long-format learning curves: track, method, seed, budget, accuracy."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["track", "method", "seed", "budget", "accuracy"])
    for track, block in results["tracks"].items():
        for method, per_seed in block["peers"].items():
            for seed, curve in per_seed.items():
                for budget, acc in zip(results["grid"], curve):
                    w.writerow([track, method, seed, budget, f"{acc:.6f}"])
        for notebook, runs in block.get("reference", {}).items():
            for r in runs:
                if r.get("accuracy") is not None:
                    w.writerow([track, notebook, r["seed"], r["annotations"], f"{r['accuracy']:.6f}"])
    write_atomic(path, buf.getvalue())


def write_json(results: dict, path: Path) -> None:
    write_atomic(path, json.dumps(results, indent=1, default=_jsonable) + "\n")


def save_pair(results: dict, out: Path, markdown_of) -> None:
    """`out`/results.json and `out`/results.md (``markdown_of(results)``), each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(results, out / "results.json")
    write_atomic(out / "results.md", markdown_of(results))


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def plot(results: dict, summary: dict, path: Path) -> None:
    """Accuracy against annotations, one line per method, 90% and 99% lines, a panel per track."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = results["grid"]
    tracks = list(summary)
    fig, axes = plt.subplots(1, len(tracks), figsize=(6.5 * len(tracks), 6.2), squeeze=False)
    markers = iter("osD^vP*X")
    ref_markers: dict[str, str] = {}
    colors: dict[str, str] = {}
    for ax, track in zip(axes[0], tracks):
        s = summary[track]
        for method, row in s["rows"].items():
            if row["kind"] == "peer":
                # one colour per strategy, solid on the notebooks' conv features, dashed on dense
                strategy, feature_set = split_row_name(method)
                color = colors.setdefault(strategy, f"C{len(colors)}")
                ax.plot(grid, 100 * np.array(row["curve"]), label=method, lw=1.6, color=color,
                        ls="-" if feature_set == "conv" else "--")
                if row.get("stop"):  # where the label-free rule stops it (medians over seeds)
                    ax.plot([row["stop"]["annotations"]], [100 * row["stop"]["accuracy"]], marker="x", ms=9,
                            mew=2, color=color, ls="none")
            elif "error" not in row:
                marker = ref_markers.setdefault(method, next(markers))
                lo, hi = row["ann_range"]
                ax.errorbar([max(row["annotations"], grid[0])], [100 * row["accuracy"]],
                            xerr=[[row["annotations"] - lo], [hi - row["annotations"]]],
                            fmt=marker, ms=8, capsize=3, color="k", mfc="w",
                            label=f"{method} (notebook)")
        for (label, acc), ls in zip(_ceilings(s), (":", (0, (1, 4)))):
            ax.axhline(100 * acc, color="k", lw=1, ls=ls, label=label)
        if any(r.get("stop") for r in s["rows"].values()):
            ax.plot([], [], marker="x", ms=9, mew=2, color="grey", ls="none",
                    label="x: where the label-free rule stops a peer (median)")
        for t, ls in zip(TARGETS, ("--", "-.")):
            ax.axhline(100 * t, color="grey", lw=1, ls=ls)
            ax.text(grid[0], 100 * t - 0.4, f"{t:.0%}", color="grey", fontsize=8, va="top")
        ax.set_xscale("log")
        right = max([max(grid)] + [r["ann_range"][1] for r in s["rows"].values()
                                   if r["kind"] == "reference" and "error" not in r])
        ax.set_xlim(0.8, right * 1.25)
        ticks = [b for b in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if b <= right]
        ax.set_xticks(ticks, [str(b) for b in ticks])
        ax.set_xlabel("annotations (log scale)")
        ax.set_ylabel("private test accuracy (%)")
        ax.set_ylim(45, 100.5)
        ax.set_title(f"track {track} ({_seeds(results['meta']['seeds'])}, median)")
        ax.grid(alpha=0.3)
    # one legend under the panels: inside, it would cover the curves it explains
    legend: dict[str, object] = {}  # every panel's entries once (a notebook may be run on one track only)
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    ncol = 2 if len(tracks) == 1 else 5
    rows = -(-len(labels) // ncol)
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=ncol, frameon=False)
    fig.tight_layout(rect=(0, 0.035 * rows + 0.01, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buf.getvalue())


SUMMARY_BUDGETS = (5, 10, 20)
SUMMARY_HEAD = ["to 90% (hindsight)", "to 99% (hindsight)", "label-free stop", "accuracy at the stop %"]


def summary_markdown(results: dict, summary: dict) -> str:
    """The compact tables of ``summary.md`` (the docs render theirs from results.json): per track, budgets to
    90%/99% in hindsight, the label-free stop and a few accuracies."""
    meta = results["meta"]
    lines = [f"Measured {meta['date']} on {meta['machine']}; {_seeds(meta['seeds'])} (medians); "
             f"`{meta['command']}` took {meta['wall_s'] / 60:.0f} min. Accuracy in % on the private "
             "split; @N = after N annotations; a notebook's cell shows the annotations it used "
             "and its accuracy. Full tables: `benchmarks/results/results.md`.", "",
             summary_table(results, summary).rstrip("\n")]
    speed = speed_table(results)
    return "\n".join(lines) + "\n" + (f"\nSpeed, same run. {speed}" if speed else "")


def summary_table(results: dict, summary: dict, extra: dict[str, list[list[str]]] | None = None) -> str:
    """The compact tables (Markdown) of `summary_markdown` without its header: per track a bold title and
    one row per method: to 90% and to 99% in hindsight, the label-free stop and the accuracy there
    (`stop_cells`), the accuracy at a few budgets. `extra`: more rows per track, each a list of cells
    without the budget columns (the docs add the limit reference)."""
    grid = results["grid"]
    budgets = [b for b in SUMMARY_BUDGETS if b in grid]
    head = ["method"] + SUMMARY_HEAD + [f"@{b}" for b in budgets]
    out = []
    for track, s in summary.items():
        lines = [f"**Track {track}**", "", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for method, row in s["rows"].items():
            if "error" in row:
                cells = [method, "failed", "failed", "failed", row["error"]] + ["n/a"] * len(budgets)
            elif row["kind"] == "peer":
                cells = [method] + [_reach(row["reach"][x], grid) for x in TARGETS] + list(stop_cells(row))
                cells += [_pct(row["at"].get(b)) for b in budgets]
            else:
                point = f"{row['annotations']:g} ({_pct(row['accuracy'])})"
                cells = [f"`{method}` (notebook)"]
                cells += [point if row["accuracy"] >= x else f"not reached: {point}" for x in TARGETS]
                cells += list(stop_cells(row)) + ["-"] * len(budgets)
            lines.append("| " + " | ".join(cells) + " |")
        for cells in (extra or {}).get(track, []):
            lines.append("| " + " | ".join(list(cells) + ["-"] * len(budgets)) + " |")
        for label, acc in _ceilings(s):
            cells = [label] + [f"{s['pool']} ({_pct(acc)})" if acc >= x else "not reached" for x in TARGETS]
            lines.append("| " + " | ".join(cells + ["-"] * (2 + len(budgets))) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def merge(base: dict, extra: dict) -> dict:
    """`base` plus the reference notebooks and speed of `extra` (a second run, same grid and tracks).

    For when the notebooks were not all ready for one run: the header then names both
    commands and the wall time is their sum.
    """
    if base["grid"] != extra["grid"] or set(extra["tracks"]) - set(base["tracks"]):
        raise ValueError("the runs to merge need the same budget grid and the extra run's tracks in the base run.")
    merged = json.loads(json.dumps(base))
    for track, block in extra["tracks"].items():
        merged["tracks"][track].setdefault("reference", {}).update(block.get("reference", {}))
    merged.setdefault("speed", {}).update(extra.get("speed") or {})
    meta, other = merged["meta"], extra["meta"]
    meta["parts"] = [{k: m.get(k) for k in ("command", "date", "wall_s", "load_start", "load_end", "jobs", "partial")}
                     for m in (base["meta"], other)]
    meta["command"] = f"{meta['command']}` then `{other['command']}"
    meta["date"] = f"{meta['date']} and {other['date']}"
    meta["wall_s"] = meta["wall_s"] + other["wall_s"]
    if other.get("notebooks"):
        meta["notebooks"] = other["notebooks"]
    if other.get("load_end") is not None:
        meta["load_end"] = other["load_end"]
    return merged


def main(argv: list[str] | None = None) -> int:
    """Rewrite the outputs of a run from its results.json, merged with a second run if given.

    ``python -m benchmarks.report RUN.json --out DIR``
    ``python -m benchmarks.report BASE.json EXTRA.json --out DIR``
    """
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=main.__doc__.split("\n")[0])
    p.add_argument("base", type=Path, help="results.json of a run")
    p.add_argument("extra", type=Path, nargs="?", help="results.json of a second run whose notebooks to add")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    results = json.loads(args.base.read_text())
    if args.extra is not None:
        results = merge(results, json.loads(args.extra.read_text()))
    summary = summarise(results)
    write_json(results, args.out / "results.json")
    write_csv(results, args.out / "curves.csv")
    write_atomic(args.out / "results.md", markdown(results, summary))
    plot(results, summary, args.out / "learning_curves.png")
    write_atomic(args.out / "summary.md", summary_markdown(results, summary))
    print(f"wrote {args.out}/results.md, learning_curves.png, curves.csv, results.json, summary.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
