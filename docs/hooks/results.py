"""MkDocs hook: every measured number of the docs, rendered from the results files.

A page writes ``{{ results.NAME }}`` and this hook replaces it, at build time, with a value
or a table read from ``benchmarks/results/`` (the files the benchmarks write). So no measured
figure is typed by hand: rerun a benchmark and rebuild the site. An unknown ``NAME`` stops
the build (``mkdocs build --strict``); ``tests/test_docs.py`` renders every page with
:func:`render` and checks that no placeholder is left.

The names (``python docs/hooks/results.py`` lists them all with their values):

- ``exam.*``: the reference notebooks graded in exam mode by the real grader, the notebook rows
  of the full run (``results.json``; the hook refuses rows not graded in exam mode):
  ``exam.table``, ``exam.source``, ``exam.<notebook>.<track>.annotations`` (median over seeds),
  ``.annotations_range``, ``.accuracy`` (median %), ``.passed`` (seeds passing, "5/5");
- ``peers.*``: the label-efficiency comparison (``results.json``, the same run): ``peers.table``,
  ``peers.source``, ``peers.rule`` (the label-free stopping rule), ``peers.<track>.<method>.to90``
  / ``.to99`` (hindsight; method slugs such as ``margin-conv``, ``typiclust-dense``, ``random-conv``),
  ``.stop`` / ``.stop_range`` / ``.stop_acc`` / ``.stop_acc_range`` / ``.stop_passed`` (the label-free
  stop), ``peers.<track>.ceiling-dense.accuracy``;
- ``limit.*``: the limit reference, whole-pool spectral clustering (``unsupervised/results.json``):
  ``limit.<track>.<method>.annotations`` / ``.accuracy`` / ``.accuracy_range`` (methods
  ``conv-spectral``, ``contrastive-spectral``), ``limit.<track>.graded.*`` (the method as a
  notebook under the real grader), ``limit.source``; its rows close ``peers.table``;
- ``speed.*``: local runs of the source notebooks (``results.json``): ``speed.table``,
  ``speed.<notebook>.cold_s`` / ``.warm_s`` / ``.peak_mb``;
- ``throughput.*``: grading many submissions (``throughput/throughput.json``):
  ``throughput.table``, ``throughput.plan``, ``throughput.source``,
  ``throughput.<mode>.per_submission_s`` / ``.wall_min`` / ``.speedup`` / ``.peak_gb``
  (modes ``serial``, ``jobs2``, ``dask2``), ``throughput.minutes.<N>.<mode>`` (N submissions);
- ``event.*``: the live event server under load (``event_load/*.json``): ``event.table``,
  ``event.source``, ``event.<run>.<participants>.p50_ms`` / ``.p99_ms`` / ``.cpu_ms_per_request`` /
  ``.participants_per_core`` / ``.load_average`` / ... (runs ``run_50_500``, ``run_50_500_postgres_2_workers``,
  ``run_kill_at_30``), ``event.<run>.streams.*`` (the board stream's cost per open page, ``.table``),
  ``event.pool_mb``, ``event.<run>.<participants>.downloads.*`` (every participant downloading the pool at once);
- ``tracks.*``: track difficulty (``tracks/results.json``): ``tracks.table``,
  ``tracks.source``, ``tracks.<track>.<notebook>.annotations`` / ``.accuracy``,
  ``tracks.<track>.difficulty``, ``tracks.<track>.random_to_90``, ``tracks.<track>.purity``;
- ``install.*``: install size (``install_size/install_size.json``): ``install.table``,
  ``install.<label>.venv_gb`` / ``.cuda_gb``;
- ``first_batch.*``: the tutorial's batch run for real (``first_batch/``): ``.grade_output``,
  ``.leaderboard_output``, ``.csv``, ``.when``;
- ``dry_run.*``: the instructor's dry run, timed (``dry_run/``, ``python -m benchmarks.dry_run``):
  ``.output``, ``.wall_min``, ``.when``;
- ``library.*``: the `course` library's speed (``library_speed/library_speed.json``), when
  that file exists;
- any other ``<folder>/<folder>.json``: its top-level (and ``meta``) numbers and strings as
  ``<folder>.<key>``, e.g. ``throughput.n`` (see `_generic_values`).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
PLACEHOLDER = re.compile(r"\{\{\s*results\.([A-Za-z0-9_.,:+-]+)\s*\}\}")
NOTEBOOKS = ("02_baseline", "03_clustering", "04_transfer_learning", "05_active_learning")


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _num(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


def _slug(method: str) -> str:
    """'modAL margin (conv)' -> 'margin-conv'; 'ceiling, all labels (dense)' -> 'ceiling-dense'."""
    name, _, features = method.partition(" (")
    name = {"modAL margin": "margin", "ceiling, all labels": "ceiling"}.get(name, name)
    return f"{name.lower()}-{features.rstrip(')')}" if features else name.lower()


def _command(text: str) -> str:
    """A benchmark's command line without a folder of the machine it ran on."""
    return re.sub(r"--out\s+/\S+", "--out DIR", text)


# ---------------------------------------------------------------- the full run: notebooks (exam mode) and peers

def full_run() -> dict:
    """results.json of the full run; its notebook rows must come from exam-mode gradings."""
    run = _load(RESULTS / "results.json")
    for track, block in run["tracks"].items():
        for notebook, runs in (block.get("reference") or {}).items():
            if any(r.get("mode") != "exam" for r in runs):
                raise ValueError(f"benchmarks/results/results.json: the {notebook} rows on {track} were not graded "
                                 "in exam mode; rerun `python -m benchmarks.run` (the grader grades in exam mode)")
    return run


def _exam_values(values: dict) -> None:
    run = full_run()
    meta = run["meta"]
    notebooks = list(dict.fromkeys(n for b in run["tracks"].values() for n in (b.get("reference") or {})))
    notebooks.sort(key=lambda n: (NOTEBOOKS + (n,)).index(n))
    tracks = meta["tracks"]
    head = ["notebook"] + [f"{t}: {c}" for t in tracks for c in ("annotations", "accuracy %", "passed")]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    problems = []
    for notebook in notebooks:
        cells = [f"`{notebook}`"]
        for track in tracks:
            runs = (run["tracks"][track].get("reference") or {}).get(notebook, [])
            problems += [f"`{notebook}` on {track}, seed {r['seed']}: {r.get('error') or r['status']}"
                         for r in runs if r.get("accuracy") is None]
            graded = [r for r in runs if r.get("accuracy") is not None]
            if not graded:
                cells += ["-", "-", "-"]
                continue
            ann = [r["annotations"] for r in graded]
            acc = [r["accuracy"] for r in graded]
            passed = sum(1 for r in graded if r["accuracy"] >= 0.9 and r.get("status") == "ok")
            key = f"exam.{notebook}.{track}"
            values[f"{key}.annotations"] = f"{statistics.median(ann):g}"
            values[f"{key}.annotations_range"] = f"{min(ann)}-{max(ann)}" if min(ann) != max(ann) else f"{min(ann)}"
            values[f"{key}.annotations_each"] = ", ".join(str(a) for a in ann)
            values[f"{key}.accuracy"] = _pct(statistics.median(acc))
            values[f"{key}.accuracy_range"] = f"{_pct(min(acc))}-{_pct(max(acc))}"
            values[f"{key}.passed"] = f"{passed}/{len(runs)}"
            values[f"{key}.grade_s"] = f"{statistics.median(r['grade_s'] for r in graded):.0f}"
            cells += [f"**{values[key + '.annotations']}** ({values[key + '.annotations_range']})",
                      f"{values[key + '.accuracy']} ({values[key + '.accuracy_range']})",
                      values[f"{key}.passed"]]
        lines.append("| " + " | ".join(cells) + " |")
    values["exam.table"] = "\n".join(lines) + "\n"
    grading = meta.get("notebooks") or {}
    at_once = grading.get("gradings_at_once", 1)
    values["exam.source"] = (
        "Medians over seeds, range in brackets, on the private split; every run graded by the real "
        "grader in its sandbox, in exam mode, with the assignment's secret shuffle"
        + (f", {at_once} gradings at once" if at_once > 1 else "")
        + (f", under a wall-clock limit of {grading['timeout_s']:.0f} s per grading (the course's default: "
           f"{grading['course_timeout_s']:.0f} s; raised so that the machine's load cannot turn a slow run into a "
           "timeout)" if grading.get("timeout_s") else "")
        + f". {_run_text(meta)} "
        + ("Runs without a result: " + "; ".join(problems) + "." if problems else "Every grading finished."))


def _run_text(meta: dict) -> str:
    """The command(s) of a run with date, machine, wall time and load; a merged run names each part."""
    def load(m: dict) -> str:
        return (f", load average {m['load_start']:.1f} at the start and {m['load_end']:.1f} at the end"
                if m.get("load_start") is not None and m.get("load_end") is not None else "") + (
            " (stopped before its last step; what it measured until then, from results.partial.json)"
            if m.get("partial") else "")

    parts = meta.get("parts")
    if not parts:
        return f"`{_command(meta['command'])}`: {meta['date']}, {meta['machine']}, {meta['wall_s'] / 60:.0f} min{load(meta)}."
    return (f"{meta['machine']}; in {len(parts)} parts, merged by `python -m benchmarks.report`: "
            + "; ".join(f"`{_command(m['command'])}` from {m['date']}, {m['wall_s'] / 60:.0f} min{load(m)}"
                        for m in parts) + ".")


def _peer_values(values: dict) -> None:
    sys.path.insert(0, str(REPO))
    from benchmarks import report

    results = full_run()
    summary = report.summarise(results)
    grid = results["grid"]
    extra = {track: [row for _, row in _limit_rows(track)] for track in summary}
    values["peers.table"] = report.summary_table(results, summary, extra=extra)
    # the plot is drawn at build time (on_files), so the page links it only once it is rendered
    values["peers.plot"] = "![Accuracy against annotations, a panel per track](../assets/learning_curves.png)"
    meta = results["meta"]
    rule = (meta.get("stop_rule") or {}).get("rule")
    if rule:
        values["peers.rule"] = rule
    values["peers.source"] = (
        f"{_run_text(meta)} {report._seeds(meta['seeds']).capitalize()} (medians); peers and notebooks on the "
        "same machine, tracks and seeds. Accuracy in % on the private split; @N = after N annotations; \"to 90% (hindsight)\": the "
        "first budget whose private accuracy reached 90%, which only the held-out labels can tell; "
        "\"label-free stop\": where the label-free rule ends a peer's run (median, range in brackets, \"at the cap\": "
        f"the seeds it never stopped before {max(grid)}), and the accuracy there with the seeds at 90% or more. "
        "A notebook's cells are its graded runs: it stopped by its own rule. The limit reference rows: "
        "whole-pool spectral clustering (`python -m benchmarks.unsupervised`).")
    for track, s in summary.items():
        for method, row in s["rows"].items():
            if row["kind"] != "peer":
                continue
            key = f"peers.{track}.{_slug(method)}"
            for target, name in ((0.90, "to90"), (0.99, "to99")):
                values[f"{key}.{name}"] = report._reach(row["reach"][target], grid)
            for b, acc in row["at"].items():
                values[f"{key}.at{b}"] = _pct(acc)
            stop = row.get("stop")
            if stop:
                values[f"{key}.stop"] = f"{stop['annotations']:g}"
                values[f"{key}.stop_range"] = report._span(*stop["ann_range"])
                values[f"{key}.stop_acc"] = _pct(stop["accuracy"])
                values[f"{key}.stop_acc_range"] = report._span(*stop["acc_range"], fmt=_pct)
                values[f"{key}.stop_passed"] = f"{stop['passed']}/{stop['seeds']}"
        for label, acc in report._ceilings(s):
            values[f"peers.{track}.{_slug(label)}.accuracy"] = _pct(acc)
        values[f"peers.{track}.pool"] = f"{s['pool']:,}"


# ---------------------------------------------------------------- the limit reference (unsupervised)

LIMIT_METHODS = {"conv-spectral": "conv features", "contrastive-spectral": "SimCLR features"}


def _limit_points(track: str) -> dict[str, list[dict]]:
    """Whole-pool clustering runs of `track` by name: each method of `LIMIT_METHODS`, and ``graded``
    (the conv-spectral method as a notebook under the real grader)."""
    data = _load(RESULTS / "unsupervised" / "results.json")
    points = {m: [r for r in data["runs"] if r["track"] == track and r["method"] == m] for m in LIMIT_METHODS}
    points["graded"] = [r for r in data.get("grader", []) if r["track"] == track]
    return {name: runs for name, runs in points.items() if runs}


def _limit_stats(ok: list[dict]) -> dict:
    """Medians and ranges of finished limit-reference runs (`ok`: each with an accuracy; at least one)."""
    ann, acc = [r["annotations"] for r in ok], [r["accuracy"] for r in ok]
    return {"ann": statistics.median(ann), "ann_lo": min(ann), "ann_hi": max(ann),
            "acc": statistics.median(acc), "acc_lo": min(acc), "acc_hi": max(acc), "passed": sum(a >= 0.9 for a in acc)}


def _limit_rows(track: str) -> list[tuple[str, list[str]]]:
    """(name, table cells without the budget columns) of the limit reference on `track`."""
    rows = []
    for name, runs in _limit_points(track).items():
        if name == "conv-spectral":  # its graded runs are the row
            continue
        ok = [r for r in runs if r.get("accuracy") is not None]
        if not ok:
            continue
        st = _limit_stats(ok)
        label = ("limit reference: whole-pool spectral clustering, graded as a notebook (conv features)"
                 if name == "graded" else f"limit reference: whole-pool spectral clustering ({LIMIT_METHODS[name]})")
        point = f"{st['ann']:g} ({_pct(st['acc'])})"
        span = f"{st['ann_lo']}" if st["ann_lo"] == st["ann_hi"] else f"{st['ann_lo']}-{st['ann_hi']}"
        lo, hi = _pct(st["acc_lo"]), _pct(st["acc_hi"])
        acc_span = lo if lo == hi else f"{lo}-{hi}"
        rows.append((name, [label, point if st["acc"] >= 0.9 else f"not reached: {point}",
                            point if st["acc"] >= 0.99 else f"not reached: {point}", f"{st['ann']:g} ({span})",
                            f"{_pct(st['acc'])} ({acc_span}), {st['passed']}/{len(runs)} >= 90%"]))
    return rows


def _limit_values(values: dict) -> None:
    data = _load(RESULTS / "unsupervised" / "results.json")
    tracks = sorted({r["track"] for r in data["runs"]})
    for track in tracks:
        for name, runs in _limit_points(track).items():
            st = _limit_stats([r for r in runs if r.get("accuracy") is not None])
            key = f"limit.{track}.{name}"
            values[f"{key}.annotations"] = f"{st['ann']:g}"
            values[f"{key}.annotations_max"] = str(st["ann_hi"])
            values[f"{key}.accuracy"] = _pct(st["acc"])
            values[f"{key}.accuracy_range"] = f"{_pct(st['acc_lo'])}-{_pct(st['acc_hi'])}"
            values[f"{key}.seeds"] = str(len(runs))
    meta = data["meta"]
    values["limit.source"] = f"`{_command(meta['command'])}`, {meta['date']}, {meta['machine']}"


def _speed_values(values: dict) -> None:
    full = _load(RESULTS / "results.json")
    speed = full.get("speed") or {}
    lines = ["| notebook | cold run s | warm run s | peak memory MB | errors |", "|---|---:|---:|---:|---|"]
    for notebook in NOTEBOOKS:
        sp = speed.get(notebook)
        if not sp:
            continue
        cells = []
        for k, digits in (("cold_s", 0), ("warm_s", 0), ("peak_mb", 0)):
            if sp.get(k) is not None:
                values[f"speed.{notebook}.{k}"] = f"{sp[k]:.{digits}f}"
            cells.append(values.get(f"speed.{notebook}.{k}", "-"))
        errors = "; ".join(str(sp[k])[:120] for k in ("cold_errors", "warm_errors") if sp.get(k)) or "none"
        lines.append(f"| `{notebook}` | " + " | ".join(cells) + f" | {errors} |")
    meta = full["meta"]
    if len(lines) == 2:
        values["speed.table"] = "(no notebook timed in this run)\n"
        values["speed.source"] = (f"The benchmark run of {meta['date']} timed no notebook (it stopped before its "
                                  "speed timing); `python -m benchmarks.run` times them after the gradings.")
        return
    values["speed.table"] = "\n".join(lines) + "\n"
    values["speed.source"] = (f"{meta['date']}, {meta['machine']}: each source notebook run top to bottom "
                              f"in a fresh kernel on track {meta['tracks'][0]}, seed 0, in exam mode; cold = "
                              "an empty cache folder (MNIST unpacking and baseline training included), warm = "
                              "the baseline cached; peak = the kernel's largest resident memory.")


# ---------------------------------------------------------------- throughput

MODE_NAMES = {"serial": "one at a time", "jobs2": "`--jobs 2`", "dask2": "Dask, two `dask worker --nthreads 1`"}


def _throughput_values(values: dict) -> None:
    data = _load(RESULTS / "throughput" / "throughput.json")
    meta, results = data["meta"], data["results"]
    serial = results.get("serial")
    lines = ["| mode | threads per kernel | wall clock | per submission | passed | peak memory per grading slot "
             "| speed-up vs serial |", "|---|---:|---:|---:|---:|---:|---:|"]
    for mode, r in results.items():
        per = r["wall_s"] / max(r["graded"], 1)
        slots = {k: v for k, v in r["peak_rss_mb_per_worker"].items() if k != "grade process" or len(
            r["peak_rss_mb_per_worker"]) == 1}
        peak = max(slots.values()) / 1024
        speedup = serial["wall_s"] / r["wall_s"] if serial else None
        key = f"throughput.{mode}"
        values[f"{key}.per_submission_s"] = f"{per:.1f}"
        values[f"{key}.wall_min"] = f"{r['wall_s'] / 60:.1f}"
        values[f"{key}.speedup"] = "" if speedup is None else f"{speedup:.2f}x"
        values[f"{key}.peak_gb"] = f"{peak:.1f}"
        values[f"{key}.kernel_s"] = f"{r['runtime_mean_s']:.1f}"
        values[f"{key}.passed"] = f"{r['passed']}/{r['graded']}"
        lines.append(f"| {MODE_NAMES.get(mode, mode)} | {r.get('threads_per_kernel', '')} | "
                     f"**{values[key + '.wall_min']} min** | {values[key + '.per_submission_s']} s | "
                     f"{values[key + '.passed']} | {values[key + '.peak_gb']} GB | {values[key + '.speedup']} |")
        for n in (10, 20, 30, 50, 100):
            values[f"throughput.minutes.{n}.{mode}"] = f"{n * per / 60:.0f}"
    values["throughput.table"] = "\n".join(lines) + "\n"
    values["throughput.n"] = str(meta["n"])
    values["throughput.assignment"] = meta["assignment"]
    values["throughput.source"] = (
        f"`python -m benchmarks.throughput -n {meta['n']}`: {meta['n']} copies of the reference "
        f"`{meta['assignment']}` graded each way in one run; {meta['machine']}, load average at the start "
        f"{meta['load_start'].split()[0]}, {meta['when'][:10]}.")
    plan = data.get("plan") or []
    rows = ["| submissions | machines | grading slots each | minutes |", "|---:|---:|---:|---:|"]
    rows += [f"| {p['submissions']:,} | {p['machines']} | {p['slots_per_machine']} | {p['minutes']} |" for p in plan]
    values["throughput.plan"] = "\n".join(rows) + "\n"
    best = results.get("jobs2") or serial
    values["throughput.per_slot_s"] = f"{best['wall_s'] * (2 if best['mode'] != 'serial' else 1) / meta['n']:.0f}"
    if plan:
        values["throughput.plan_slots"] = str(plan[0]["slots_per_machine"])


# ---------------------------------------------------------------- live event

def _event_values(values: dict) -> None:
    """One row per participant count of every run (a run measures several counts in turn, one server)."""
    runs = {p.stem: _load(p) for p in sorted((RESULTS / "event_load").glob("*.json"))}
    lines = ["| run | participants | annotate requests | p50 / p95 / p99 | inside the server p99 | server CPU "
             "| waited for a core | errors | counts equal to the clients' tallies | board after | load average |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, run in runs.items():
        store = "SQLite, 1 process" if run["workers"] == 1 else f"PostgreSQL, {run['workers']} workers"
        title = f"{store}, {run['seconds']:.0f} s"
        for r in run["counts"]:
            key = f"event.{name}.{r['participants']}"
            for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "server_p99_ms", "requests_per_s", "restart_s",
                      "load_average", "server_cores_busy", "server_runqueue_wait_s_per_s", "client_cores_busy",
                      "requests_per_s_per_participant"):
                if r.get(k) is not None:
                    values[f"{key}.{k}"] = _num(r[k], 2 if k.endswith(("_busy", "_s_per_s", "participant")) else 1)
            values[f"{key}.cpu_ms_per_request"] = f"{r['server_cpu_ms_per_request']:.2f}"
            values[f"{key}.requests"] = f"{r['annotate_requests']:,}"
            values[f"{key}.participants_per_core"] = f"{r['participants_per_core']:,}"
            values[f"{key}.met"] = "met" if r["met"] else "not met"
            row_title = title + (f", `kill -9` at {r['kill_at']:.0f} s, restart in {r['restart_s']:.1f} s"
                                 if r.get("kill_at") else "")
            errors = sum(r["errors"].values()) if r["errors"] else 0
            equal = r["participants"] - len(r["count_mismatches"])
            lines.append(f"| {row_title} | {r['participants']} | {r['annotate_requests']:,} ({r['requests_per_s']:.0f}/s) | "
                         f"{r['p50_ms']} / {r['p95_ms']} / **{r['p99_ms']} ms** | {r['server_p99_ms']} ms | "
                         f"{r['server_cores_busy']:.2f} cores | {r['server_runqueue_wait_s_per_s']:.2f} s/s | {errors} | "
                         f"{equal} / {r['participants']} | {r['board_submitted_after']} / {r['participants']} "
                         f"submissions | {r['load_average']:.1f} |")
            d = r.get("downloads_at_once")
            if d:
                for k in ("p50_s", "max_s", "all_done_s"):
                    values[f"{key}.downloads.{k}"] = f"{d[k]:.1f}"
        values[f"event.{name}.cpus"] = str(run["cpus"])
        values[f"event.{name}.think_s"] = f"{run['think_s']:g}"
        streams = run.get("streams")
        if streams:
            values[f"event.{name}.streams.table"] = _streams_table(streams)
            for k in ("board_kb", "board_rows", "cpu_ms_per_update_per_page", "core_share_per_page_pct", "tick_s"):
                values[f"event.{name}.streams.{k}"] = f"{streams[k]:g}"
            values[f"event.{name}.streams.pages"] = str(max(r["pages"] for r in streams["rows"]))
    values["event.table"] = "\n".join(lines) + "\n"
    first = next(iter(runs.values()))
    values["event.pool_mb"] = _num(first["pool_mb"])
    values["event.p99_max_ms"] = _num(max(c["p99_ms"] for r in runs.values() for c in r["counts"]))
    values["event.source"] = (
        f"`python -m benchmarks.event_load` on loopback, {first['cpus']} cores shared with other jobs; simulated "
        f"participants, each joining, downloading the pool, annotating 5 new images per request with a think time "
        f"of {first['think_s']:g} s on average between requests, and submitting; each count on an event of its own, "
        "one after the other on one server. The server's CPU is every process of it (its workers too; PostgreSQL's "
        "own processes not); *waited for a core*: the seconds per second its threads were runnable but had no core "
        "(the machine's other work); the load average is the machine's at the end of each count. Raw numbers in "
        "`benchmarks/results/event_load/`.")


def _streams_table(streams: dict) -> str:
    lines = ["| open board pages | server CPU | board updates per page | received per page |", "|---:|---:|---:|---:|"]
    for r in streams["rows"]:
        lines.append(f"| {r['pages']} | {r['server_cores_busy']:.2f} cores | {r['updates_per_s']:.1f}/s "
                     f"| {r['kb_per_page'] / streams['seconds']:.0f} kB/s |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- tracks

def _tracks_values(values: dict) -> None:
    sys.path.insert(0, str(REPO))
    from benchmarks import tracks

    results = _load(RESULTS / "tracks" / "results.json")
    meta = results["meta"]
    values["tracks.table"] = tracks.table(results)
    values["tracks.source"] = _command(tracks._header(meta)) + " " + tracks.legend(meta)
    course = results["tracks"][meta["tracks"][0]]
    for track, block in results["tracks"].items():
        key = f"tracks.{track}"
        for notebook, run in (block.get("notebooks") or {}).items():
            values[f"{key}.{notebook}.annotations"] = str(run["annotations"])
            values[f"{key}.{notebook}.accuracy"] = _pct(run["accuracy"])
            values[f"{key}.{notebook}.seconds"] = f"{run['seconds']:.0f}"
        pair = block.get("pair") or {}
        if pair:
            values[f"{key}.random_to_90"] = str(pair.get("random_to_90"))
            values[f"{key}.purity"] = _pct(pair.get("kmeans_purity"))
        values[f"{key}.difficulty"] = tracks.rating(block, course, meta["notebooks"])
        train = (block.get("baseline") or {}).get("train_s")
        if train:
            values[f"{key}.baseline_train_s"] = f"{train:.0f}"


def _install_values(values: dict) -> None:
    path = RESULTS / "install_size" / "install_size.json"
    rows = _load(path)["rows"]
    lines = ["| install | command | venv on disk | of which PyTorch's CUDA libraries (`nvidia-*`, `triton`) "
             "| torch itself |", "|---|---|---:|---:|---:|"]
    for r in rows:
        key = f"install.{r['label']}"
        values[f"{key}.venv_gb"] = f"{r['venv_gb']:.1f}"
        values[f"{key}.cuda_gb"] = f"{r['cuda_gb']:.1f}"
        lines.append(f"| {r['label']} | `{r['command']}` | {r['venv_gb']:.1f} GB | {r['cuda_gb']:.1f} GB "
                     f"| {r['torch_gb']:.1f} GB |")
    values["install.table"] = "\n".join(lines) + "\n\nMeasured with `python -m benchmarks.install_size` (" + "; ".join(
        f"{r['label']}: {r['when']}, {r['machine']}, Python {r['python']}, torch {r['torch']}" for r in rows) + ")."


def _first_batch_values(values: dict) -> None:
    folder = RESULTS / "first_batch"
    if not (folder / "meta.json").exists():
        return
    meta = _load(folder / "meta.json")
    for name in ("grade_output", "leaderboard_output"):
        values[f"first_batch.{name}"] = (folder / f"{name}.txt").read_text().rstrip("\n")
    values["first_batch.csv"] = (folder / "leaderboard.csv").read_text().rstrip("\n")
    values["first_batch.when"] = f"{meta['when']}, {meta['cores']} cores, load average {meta['load_average']}"
    values["first_batch.grade_min"] = f"{meta['grade_s'] / 60:.0f}"


def _dry_run_values(values: dict) -> None:
    folder = RESULTS / "dry_run"
    if not (folder / "meta.json").exists():
        return
    meta = _load(folder / "meta.json")
    values["dry_run.output"] = (folder / "output.txt").read_text().rstrip("\n")
    values["dry_run.wall_min"] = f"{meta['wall_s'] / 60:.0f}"
    values["dry_run.when"] = f"{meta['when']}, {meta['cores']} cores, load average {meta['load_average']}"


def _library_values(values: dict) -> None:
    path = RESULTS / "library_speed" / "library_speed.json"
    if not path.exists():
        return
    data = _load(path)
    for k, v in data["results"].items():
        if isinstance(v, float):
            values[f"library.{k}"] = f"{v:.3f}" if v < 0.1 else (f"{100 * v:.1f}" if k == "accuracy" else f"{v:.2f}")
    values["library.source"] = f"`python benchmarks/library_speed.py`, {data['meta']['when']}, {data['meta']['machine']}"


def _generic_values(values: dict) -> None:
    """Any other results file ``<folder>/<folder>.json``: its top-level numbers and strings (and its
    ``meta``'s) as ``results.<folder>.<key>`` (folder dashes as underscores), for a benchmark
    without a section of its own here. Numbers are shown as written in the file."""
    for path in sorted(RESULTS.glob("*/*.json")):
        if path.stem != path.parent.name:
            continue
        data = _load(path)
        if not isinstance(data, dict):
            continue
        prefix = path.parent.name.replace("-", "_")
        for scope in (data, data.get("meta") if isinstance(data.get("meta"), dict) else {}):
            for key, value in scope.items():
                if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                    values.setdefault(f"{prefix}.{key}", f"{value:g}" if isinstance(value, float) else str(value))


@lru_cache(maxsize=1)
def values() -> dict[str, str]:
    """Every name a page may use, with its rendered value."""
    out: dict[str, str] = {}
    for part in (_exam_values, _peer_values, _limit_values, _speed_values, _throughput_values, _event_values,
                 _tracks_values, _install_values, _first_batch_values, _dry_run_values,
                 _library_values, _generic_values):
        part(out)
    return out


def render(markdown: str, where: str = "a page") -> str:
    """`markdown` with every ``{{ results.NAME }}`` replaced; an unknown NAME raises KeyError."""
    table = values()

    def one(match: re.Match) -> str:
        name = match.group(1)
        if name not in table:
            raise KeyError(f"{where}: no measured value named results.{name} (python docs/hooks/results.py lists them)")
        return table[name]

    return PLACEHOLDER.sub(one, markdown)


def learning_curves_png() -> bytes:
    """The learning-curve plot of the full run (exam-mode notebook points, the peers' label-free stops), as PNG bytes."""
    import tempfile

    sys.path.insert(0, str(REPO))
    from benchmarks import report

    results = full_run()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "learning_curves.png"
        report.plot(results, report.summarise(results), path)
        return path.read_bytes()


def on_files(files, config):  # mkdocs hook: the plot, drawn from the results files at build time
    from mkdocs.structure.files import File

    files.append(File.generated(config, "assets/learning_curves.png", content=learning_curves_png()))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:  # mkdocs hook
    from mkdocs.exceptions import PluginError

    try:
        return render(markdown, page.file.src_uri)
    except KeyError as e:
        raise PluginError(str(e.args[0])) from None


if __name__ == "__main__":
    for name, value in values().items():
        print(f"{name} = {value if chr(10) not in value else '<table>'}")
