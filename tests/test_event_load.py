"""A small run of the event benchmark end to end (`benchmarks.event_load`): two participant counts in one run,
one results file with a row per count, the machine's load and the board stream's cost per open page.

The numbers themselves are the benchmark's to report, not this test's: it checks the run's shape and the
outcomes that do not depend on the machine's speed (no error, every count equal to its client's tally,
every submission back on the board). The event reuses the session's pool (no MNIST shuffle, no baseline).
"""

from __future__ import annotations

import json

import pytest

from benchmarks import event_load
from tests.helpers import events


@pytest.mark.slow
def test_one_run_measures_several_counts_and_the_stream(tmp_path, monkeypatch):
    from autograder.event import cli

    events.reuse_pool(monkeypatch, tmp_path)
    monkeypatch.setattr(cli, "with_baseline", lambda pool_file, track: pool_file)
    out = tmp_path / "run.json"
    result = event_load.main(["-n", "3", "6", "--seconds", "3", "--processes", "2", "--streams", "2",
                              "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [c["participants"] for c in result["counts"]] == [3, 6]
    assert result["cpus"] >= 1 and result["workers"] == 1 and result["store"] == "sqlite"
    for count in result["counts"]:
        assert count["annotate_requests"] > 0 and count["p50_ms"] <= count["p99_ms"] <= count["max_ms"]
        assert count["errors"] == {} and count["count_mismatches"] == []
        assert count["submitted"] == count["participants"] == count["board_rows_with_submission"]
        assert count["downloads_at_once"]["participants"] == count["participants"]
        assert not count["downloads_at_once"]["failures"]
        assert isinstance(count["load_average"], float) and count["server_cpu_s"] >= 0
    assert len({c["event"] for c in result["counts"]}) == 2  # each count on an event of its own
    streams = result["streams"]
    assert [r["pages"] for r in streams["rows"]] == [1, 2] and all(r["refused"] == 0 for r in streams["rows"])
    assert all(r["updates_per_page"] >= 1 for r in streams["rows"])  # every page got the board
    assert streams["board_rows"] == 6 + 2  # the last count's participants, its lone downloader, the stream's annotator


def test_the_counts_must_fit_the_loopback_addresses(capsys):
    with pytest.raises(SystemExit):
        event_load.main(["-n", "50", "1001"])
    assert "each participant count must be 1 to 1000" in capsys.readouterr().err
    assert event_load.address(0) == "127.1.0.1" and event_load.address(999) == "127.1.3.250"
