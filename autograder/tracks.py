"""Hidden tracks: grade the method, not the memory.

No sandbox sees knowledge typed into a notebook (a table of image hashes with their
7/1 labels, a model trained at home on all 7/1 labels). The notebooks never name the
track's digits, so an honest method works on any pair of digits and a memorised one
does not. ``autograder grade <assignment> --tracks 7,1 2,5`` grades every submission
once per track (each with its own grading data, shuffle, annotation service and
baseline checkpoint) and a submission passes only if it passes on every track.

The combined row (`combine`) is what the leaderboard ranks: passed on all tracks,
then total annotations, then mean accuracy.
"""

from __future__ import annotations

from course import data
from autograder import clean, store

_WORST = ("error", "timeout", "failed", "ok")  # the combined status: the worst of the tracks'


def parse(tracks: list[str] | None, track: str | None = None) -> list[tuple[int, ...]]:
    """The tracks to grade, course track first; `tracks` and `track` are the CLI's values."""
    if tracks and track:
        raise ValueError("give --track or --tracks, not both")
    parsed = [data.parse_track(t) for t in tracks] if tracks else [data.parse_track(track)]
    if len(set(parsed)) != len(parsed):
        raise ValueError(f"a track is named twice in {' '.join(data.track_name(t) for t in parsed)}")
    return parsed


def label(tracks: list[tuple[int, ...]]) -> str:
    """The combined row's track: '7,1 2,5'."""
    return " ".join(data.track_name(t) for t in tracks)


def _summary(row: store.Row) -> str:
    accuracy = "no submission" if row.accuracy is None else f"{row.accuracy:.1%}"
    annotations = "" if row.annotations is None else f", {row.annotations} annotations"
    verdict = "passed" if row.passed else ("failed" if row.status == "ok" else row.status)
    return f"{row.track}: {verdict} ({accuracy}{annotations})"


def combine(rows: list[store.Row], tracks: list[tuple[int, ...]]) -> store.Row:
    """The combined row of one submission graded on several tracks (rows in the order of `tracks`)."""
    first = rows[0]
    accuracies = [r.accuracy for r in rows]
    annotations = [r.annotations for r in rows]
    status = min((r.status for r in rows), key=_WORST.index)
    detail = "; ".join(_summary(r) for r in rows)
    problems = [f"{r.track}: {r.detail}" for r in rows if not r.passed]
    if problems:
        detail += " | " + problems[0]
    reviews = [f"{r.track}: {r.review}" for r in rows if r.review]
    return store.Row(
        student=first.student, assignment=first.assignment, track=label(tracks),
        accuracy=None if None in accuracies else sum(accuracies) / len(accuracies),
        annotations=None if None in annotations else sum(annotations),
        passed=all(r.passed for r in rows), score=first.score, max_score=first.max_score,
        status=status, detail=clean.line(detail, 500), runtime=round(sum(r.runtime for r in rows), 2),
        graded_at=max(r.graded_at for r in rows),
        evaluations=None if any(r.evaluations is None for r in rows) else sum(r.evaluations for r in rows),
        submissions=None if any(r.submissions is None for r in rows) else sum(r.submissions for r in rows),
        review=clean.line("; ".join(reviews), 300), kind=first.kind, level="combined")
