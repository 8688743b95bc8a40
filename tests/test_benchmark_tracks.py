"""The track-difficulty benchmark's report (benchmarks/tracks.py), from a tiny fake result.

The benchmark itself runs the reference notebooks on several tracks (an hour); these only
check that its results render and rate, without a kernel.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import tracks

NOTEBOOKS = ["03_clustering", "05_active_learning"]


def _run(annotations: int | None, accuracy: float | None) -> dict:
    return {"annotations": annotations, "accuracy": accuracy, "seconds": 60.0, "errors": [],
            "passed": accuracy is not None and accuracy >= 0.9}


def fake_results() -> dict:
    pair = {"baseline_in_c": 0.994, "kmeans_purity": 0.98, "random_to_90": 5, "random_at_10": 0.97, "pool_c": 13007}
    return {
        "meta": {"date": "2026-11-27 18:00 UTC", "machine": "2 cores", "command": "python -m benchmarks.tracks",
                 "tracks": ["7,1", "6,0", "2,5", "4,9", "3,5", "5,8"], "notebooks": NOTEBOOKS, "seed": 0,
                 "random_seeds": 5, "wall_s": 600},
        "tracks": {
            "7,1": {"baseline": {"cached": True}, "notebooks": {"03_clustering": _run(1, .995),
                                                                 "05_active_learning": _run(9, .994)}, "pair": pair},
            "6,0": {"baseline": {"cached": False, "train_s": 412.3},
                    "notebooks": {"03_clustering": _run(1, .99), "05_active_learning": _run(4, .99)},
                    "pair": dict(pair, random_to_90=2)},
            "2,5": {"baseline": {"cached": True},
                    "notebooks": {"03_clustering": _run(1, .99), "05_active_learning": _run(10, .99)}, "pair": pair},
            "4,9": {"baseline": {"cached": True},
                    "notebooks": {"03_clustering": _run(4, .98), "05_active_learning": _run(25, .99)},
                    "pair": dict(pair, random_to_90=None)},
            "3,5": {"baseline": {"cached": True},
                    "notebooks": {"03_clustering": _run(3, .85), "05_active_learning": _run(12, .95)}, "pair": pair},
            "5,8": {"baseline": {"cached": True}, "notebooks": {"03_clustering": _run(None, None)}},  # cut short
        },
    }


def _rows(text: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    return {r[0].strip().strip("*"): [c.strip() for c in r[1:]] for r in rows[1:]}


def test_each_track_is_rated_against_the_course_track():
    rows = _rows(tracks.table(fake_results()))
    assert rows["7,1"][0] == "1 / 99.5" and rows["7,1"][2] == "10" and rows["7,1"][-1] == "course track"
    # the geometric mean of each method's annotations (03, 05, random to 90%) over the course track's
    assert rows["6,0"][-1] == "easier (0.6x)" and rows["6,0"][-2] == "412.3"  # (1/1 * 4/9 * 2/5) ** (1/3)
    assert rows["2,5"][-1] == "similar (1.0x)" and rows["2,5"][-2] == "cached"
    assert rows["4,9"][-1] == "much harder (7.6x)" and rows["4,9"][5] == "> 200"  # random counted as 200
    assert rows["3,5"][-1] == "too hard: 03 fail" and rows["3,5"][0] == "3 / 85.0 (fail)" and rows["3,5"][2] == "-"
    assert rows["5,8"][0] == "error" and rows["5,8"][1] == "-" and rows["5,8"][-1] == "not measured"
    assert rows["7,1"][3:5] == ["99.4", "98.0"]


def test_the_page_renders_from_results_json(tmp_path):
    results = fake_results()
    results["tracks"]["6,1"] = {}
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert tracks.main(["--render", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "results.md").read_text()
    assert page.startswith("# Track difficulty") and "wall time 10 min" in page and "| **7,1** |" in page
    assert "| 3,5 |" in page


def test_the_ledger_cell_reads_the_kernels_counted_submission():
    """The cell the benchmark appends prints the kernel's own ledger; `summarize` finds the counted one."""
    from course import protocol

    assert tracks.MARK in tracks.LEDGER_CELL and "_oracle.backend().ledger()" in tracks.LEDGER_CELL
    entries = [{"op": "annotate", "ok": True, "count": 3},
               {"op": "score", "split": "private", "ok": True, "accuracy": .97, "count": 3, "n": 900}]
    summary = protocol.summarize(entries)
    assert (summary.accuracy, summary.annotations, summary.submissions) == (.97, 3, 1)


def test_resume_keeps_the_measured_tracks_and_refuses_other_settings(tmp_path):
    results = fake_results()
    (tmp_path / "results.json").write_text(json.dumps(results))
    common = ["--resume", "--out", str(tmp_path), "--notebooks", *NOTEBOOKS]
    assert tracks.main(common + ["--tracks", "7,1", "2,5"]) == 0  # both measured in full: nothing to run
    again = json.loads((tmp_path / "results.json").read_text())
    assert list(again["tracks"]) == ["7,1", "2,5"] and again["tracks"]["2,5"] == results["tracks"]["2,5"]
    assert again["meta"]["tracks"] == ["7,1", "2,5"] and again["meta"]["date"] == results["meta"]["date"]
    with pytest.raises(SystemExit):
        tracks.main(common + ["--tracks", "7,1", "--seed", "3"])
