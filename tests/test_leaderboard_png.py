"""The leaderboard PNG (`autograder.results.leaderboard.figure`), read from matplotlib's objects, not pixels:
names never overlap, the annotation axis has integer ticks, the legend counts every row."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg

from autograder.results import leaderboard
from helpers.rows import row


def _batch():
    """The tutorial's batch: three tie on 1 annotation, two failed without a submission, one below 90%."""
    return leaderboard.rank([row("alice", 0.9972, 1), row("bob", 0.9972, 1), row("carol", 0.9972, 1),
                             row("dave", None, None, status="failed"), row("erin", None, None, status="failed"),
                             row("fay", 0.8, 5)])


def _drawn(fig):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_names_never_overlap_and_ticks_are_whole_annotations():
    fig = leaderboard.figure("03_clustering", _batch())
    renderer = _drawn(fig)
    bars = fig.axes[0]
    labels = [t for t in bars.get_yticklabels() if t.get_text()]
    assert [t.get_text() for t in labels] == ["1. alice", "1. bob", "1. carol", "4. fay", "5. dave", "5. erin"]
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert all(not _overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert [round(y) for y in bars.get_yticks()] == [5, 4, 3, 2, 1, 0]  # rank 1 at the top, one row each
    ticks = [t for t in bars.get_xticks() if bars.get_xlim()[0] <= t <= bars.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert ticks[0] == 0 and ticks[-1] >= 5


def test_legend_counts_every_row():
    fig = leaderboard.figure("03_clustering", _batch())
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts == ["passed (3)", "not passed (3)"]  # dave and erin (no submission) and fay (below 90%)
    two_failed = leaderboard.rank([row("a", 0.95, 2), row("b", 0.95, 2), row("c", 0.95, 2),
                                   row("d", None, None, status="failed"), row("e", None, None, status="error")])
    texts = [t.get_text() for t in leaderboard.figure("x", two_failed).axes[0].get_legend().get_texts()]
    assert texts == ["passed (3)", "not passed (2)"]


def test_accuracy_panel_has_the_target_line_and_no_names():
    fig = leaderboard.figure("03_clustering", _batch())
    accuracy = fig.axes[1]
    assert any(list(line.get_xdata()) == [0.9, 0.9] for line in accuracy.get_lines())
    shown = sorted(t.get_text() for t in accuracy.texts)
    assert shown == [" target 90%", "80.0%", "99.7%", "99.7%", "99.7%"]


def test_many_rows_are_capped_but_counted(tmp_path):
    rows = [row(f"s{i:02d}", 0.95, i % 4) for i in range(50)] + [row("late", None, None, status="failed")]
    ranked = leaderboard.rank(rows)
    fig = leaderboard.figure("x", ranked)
    bars = fig.axes[0]
    assert len([t for t in bars.get_yticklabels() if t.get_text()]) == leaderboard.MAX_PNG_ROWS
    assert [t.get_text() for t in bars.get_legend().get_texts()] == ["passed (50)", "not passed (1)"]
    assert "best 40 of 51" in fig._suptitle.get_text()
    leaderboard.to_png("x", ranked, tmp_path / "board.png")
    assert (tmp_path / "board.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tracks_are_markers_on_their_rows():
    ranked = leaderboard.rank([row("ana", 0.95, 6, track="7,1 2,5"), row("bo", None, None, track="7,1 2,5",
                                                                           status="failed")])
    per_track = {"ana": {"7,1": row("ana", 0.96, 2, track="7,1", level="track"),
                         "2,5": row("ana", 0.94, 4, track="2,5", level="track")}}
    labels = leaderboard.public_labels(ranked, per_track)
    fig = leaderboard.figure("x", ranked, per_track, labels)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts == ["passed (1)", "not passed (1)", "track 7,1", "track hidden 1"]  # no hidden digits
    assert "2,5" not in " ".join(t.get_text() for t in fig.findobj(match=lambda a: hasattr(a, "get_text")))


def test_points_only_board():
    ranked = leaderboard.rank([row("a", None, None, kind="points", score=2.0, passed=True),
                               row("b", None, None, kind="points", score=0.0, passed=False)])
    fig = leaderboard.figure("01_data", ranked)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["passed (1)", "not passed (1)"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()] == ["1. a", "2. b"]
