"""The label-efficiency benchmark: aggregation rules, and the smoke run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("modAL", reason="the benchmark peers need the bench extra: pip install -e '.[bench]'")
pytest.importorskip("skactiveml", reason="the benchmark peers need the bench extra: pip install -e '.[bench]'")

from benchmarks import features, peers, report, run  # noqa: E402


def test_first_reach_is_the_first_budget_at_or_above_the_target():
    grid = [1, 2, 5, 10]
    assert report.first_reach(grid, [0.5, 0.91, 0.89, 0.95], 0.90) == 2
    assert report.first_reach(grid, [0.5, 0.6, 0.7, 0.8], 0.90) is None


def test_median_reach_counts_never_as_infinity():
    grid = [1, 2, 5]
    curves = np.array([[0.5, 0.95, 0.95], [0.5, 0.5, 0.95], [0.5, 0.5, 0.5]])
    assert report.median_reach(grid, curves, 0.90) == 5  # median of 2, 5, inf
    assert report.median_reach(grid, curves[[0, 2, 2]], 0.90) is None  # most never reach it


def test_grid_text_names_runs_and_steps():
    assert report._grid_text([1, 2, 3, 10, 20, 30]) == "1..3, 10..30 step 10"


def test_row_names_round_trip():
    assert peers.split_row_name(peers.row_name("modAL margin", "conv")) == ("modAL margin", "conv")
    with pytest.raises(ValueError, match="not a peer row name"):
        peers.split_row_name("03_clustering")


def test_label_model_with_one_class_predicts_it_and_ties_every_margin():
    X = np.random.default_rng(0).normal(size=(4, 3))
    model = peers.LabelModel().fit(X[:1], np.array([7]))
    assert model.predict(X).tolist() == [7, 7, 7, 7]
    assert model.predict_proba(X).shape == (4, 1)


def test_the_label_free_stop_rule_is_notebook_05s_with_every_digit_seen():
    n = peers.STOP_MIN_LABELS
    same = [np.zeros(1000, dtype=int)] * n
    both = [7] * (n - 1) + [1]
    assert peers.should_stop(same, both, 2), "nothing changed over the last labels, both digits seen: stop"
    assert not peers.should_stop(same[:-1], both[:-1], 2), "never before STOP_MIN_LABELS labels"
    assert not peers.should_stop(same, [7] * n, 2), "one digit so far: a one-digit model never changes; go on"
    flip = np.zeros(1000, dtype=int)
    flip[: int(peers.STOP_CHANGE * 1000)] = 1  # exactly STOP_CHANGE of the pool flips: that is a change
    assert not peers.should_stop(same[:-1] + [flip], both, 2)
    quiet_last = same[:-2] + [np.ones(1000, dtype=int)] * 2  # a big change, then one quiet label
    assert not peers.should_stop(quiet_last, both, 2), "each of the last STOP_PATIENCE labels must be quiet"
    assert str(peers.STOP_PATIENCE) in peers.STOP_RULE and f"{100 * peers.STOP_CHANGE:g}%" in peers.STOP_RULE


def test_bad_arguments_are_refused_with_a_message(capsys):
    with pytest.raises(SystemExit):
        run.parse_args(["--tracks", "7,7"])
    assert "distinct digits" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run.parse_args(["--seeds", "0"])
    assert "--seeds must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run.parse_args(["--features", "pixels"])
    assert "invalid choice: 'pixels'" in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_run_writes_sane_results(tmp_path):
    assert run.main(["--smoke", "--out", str(tmp_path)]) == 0
    for name in ("results.md", "results.json", "curves.csv", "learning_curves.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["grid"] == list(run.SMOKE_GRID)
    block = results["tracks"]["7,1"]
    assert block["pool_size"] > 10_000
    assert set(block["ceiling"]) == set(features.FEATURE_SETS) == set(results["meta"]["features"])
    for feature_set, ceiling in block["ceiling"].items():  # every label of C, on baseline features
        assert ceiling >= 0.98, feature_set
    assert set(block["peers"]) == {peers.row_name(m, f) for m in peers.PEERS for f in features.FEATURE_SETS}
    for method, per_seed in block["peers"].items():
        feature_set = peers.split_row_name(method)[1]
        curve = np.array(per_seed["0"])
        assert curve.shape == (len(run.SMOKE_GRID),), method
        assert np.all((curve >= 0) & (curve <= 1)), method
        # One label means one seen digit: the model can only predict that digit (~50%).
        assert 0.3 < curve[0] < 0.7, method
        assert curve.max() <= block["ceiling"][feature_set] + 0.01, method
    # Ten labels are enough for random sampling to pass the 90% target on 7,1.
    assert block["peers"]["random (conv)"]["0"][-1] >= 0.90

    # The label-free stop of every peer and seed: within the grid, and its accuracy is the curve's value there
    assert set(block["stops"]) == set(block["peers"])
    assert results["meta"]["stop_rule"]["rule"] == peers.STOP_RULE
    for method, per_seed in block["stops"].items():
        stop = per_seed["0"]
        assert peers.STOP_MIN_LABELS <= stop["annotations"] <= max(run.SMOKE_GRID), method
        assert stop["settled"] or stop["annotations"] == max(run.SMOKE_GRID), method  # else it ran to the cap
        curve = block["peers"][method]["0"]
        assert stop["accuracy"] == curve[run.SMOKE_GRID.index(stop["annotations"])], method
    # the rule stops random sampling on 7,1 before ten labels (seed 0: at 9, 98.5%)
    assert block["stops"]["random (conv)"]["0"]["settled"]

    table = (tmp_path / "results.md").read_text()
    for method in block["peers"]:
        assert f"| {method} |" in table
    assert "ceiling, all labels (conv)" in table and "to 90% (hindsight)" in table
    assert "| label-free stop: annotations | accuracy at the stop % |" in table
    assert peers.STOP_RULE in table
    stop = block["stops"]["random (conv)"]["0"]
    row = next(line for line in table.splitlines() if line.startswith("| random (conv) |"))
    assert row.endswith(f"| {stop['annotations']} ({stop['annotations']}) | {100 * stop['accuracy']:.1f} "
                        f"({100 * stop['accuracy']:.1f}), 1/1 >= 90% |"), row
    summary = (tmp_path / "summary.md").read_text()
    assert "**Track 7,1**" in summary and "| label-free stop | accuracy at the stop % |" in summary


PROBE = """\
import numpy as np
from course import config, data, grading, oracle

ds = data.load()
oracle.annotate(ds.c_indices[: config.seed() + 1])  # the count tells which seed the kernel saw
track = data.active_track()
grading.submit(lambda images: np.full(len(images), track[0]))
"""


@pytest.mark.slow
@pytest.mark.skipif(__import__("shutil").which("bwrap") is None, reason="the autograder needs bubblewrap")
def test_reference_runs_reach_the_kernel_with_the_benchmarks_track_and_seed(tmp_path):
    """The seam for the notebooks: the grader's kernel sees COURSE_TRACK and COURSE_SEED."""
    import nbformat

    from benchmarks import reference
    from course import config

    root = tmp_path / "repo"
    (root / "source" / "probe").mkdir(parents=True)
    (root / "nbgrader_config.py").write_text((config.REPO_ROOT / "nbgrader_config.py").read_text())
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE)]),
                   root / "source" / "probe" / "probe.ipynb")
    runs = reference.grade_all(["probe"], "4,9", [0, 2], root=root)["probe"]
    assert [r["status"] for r in runs] == ["ok", "ok"], runs
    assert [r["annotations"] for r in runs] == [1, 3]  # seed + 1: COURSE_SEED reached the kernel
    for r in runs:  # all 4s on track 4,9: about half right, scored on the private split
        assert 0.4 < r["accuracy"] < 0.6
        assert r["grade_s"] > 0


def _results(notebook_accuracy: float) -> dict:
    """A small results.json as a run writes it: one track, one peer, one notebook."""
    grid = [1, 2, 5]
    return {
        "grid": grid,
        "meta": {"date": "2026-01-01 00:00 UTC", "machine": "test", "features": ["conv"], "seeds": 2,
                 "ref_seeds": 2, "command": "python -m benchmarks.run", "tracks": ["7,1"], "wall_s": 60.0},
        "tracks": {"7,1": {
            "pool_size": 100, "ceiling": {"conv": 0.995},
            "peers": {"random (conv)": {"0": [0.5, 0.8, 0.95], "1": [0.5, 0.92, 0.99]}},
            "stops": {"random (conv)": {"0": {"annotations": 2, "accuracy": 0.8, "settled": True},
                                        "1": {"annotations": 5, "accuracy": 0.99, "settled": False}}},
            "reference": {"03_clustering": [
                {"seed": s, "mode": "exam", "status": "ok", "accuracy": notebook_accuracy, "annotations": 2 + s,
                 "grade_s": 30.0, "cells_s": 20.0} for s in (0, 1)]},
        }},
    }


def test_report_rerenders_a_run(tmp_path):
    run_json = tmp_path / "run" / "results.json"
    report.write_json(_results(0.991), run_json)
    assert report.main([str(run_json), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "results.md").read_text()
    # random: 90% at budgets 5 and 2 -> median 3.5 -> 4; 99% only by one seed of two -> "> 5";
    # its label-free stops at 2 (80%) and at the cap 5 (99%): median 3.5, one of two seeds at 90%
    assert ("| random (conv) | 50.0 | 86.0 | 97.0 | 4 | > 5 | 3.5 (2-5), 1 at the cap | 89.5 (80.0-99.0), "
            "1/2 >= 90% |") in table
    assert "| 03_clustering | 2.5 (2-3) | 99.1 (99.1-99.1) | 2/2 | 0 |" in table
    assert "| 03_clustering | n/a | n/a | n/a | 2.5 (99.1%) | 2.5 (99.1%) | 2.5 (2-3) | 99.1 (99.1), 2/2 >= 90% |" in table
    assert "| ceiling, all labels (conv) |" in table
    block = (tmp_path / "out" / "summary.md").read_text()
    assert "| `03_clustering` (notebook) | 2.5 (99.1) | 2.5 (99.1) | 2.5 (2-3) | 99.1 (99.1), 2/2 >= 90% |" in block
    # the speed table: no local timings in this run, grader medians of the two graded runs
    assert "| 03_clustering | n/a | n/a | n/a | 20.0 | 30.0 |" in block
    assert (tmp_path / "out" / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_course_copy_works_from_an_interpreter_that_is_not_activated(tmp_path, monkeypatch):
    """nbgrader runs `alembic` by name: the benchmark must not need the venv on PATH."""
    from benchmarks import reference

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    course = reference.make_course(tmp_path, ["03_clustering"])
    assert (course / "gradebook.db").is_file()
    assert (course / "release" / "03_clustering" / "03_clustering.ipynb").is_file()
