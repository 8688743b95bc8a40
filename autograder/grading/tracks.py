"""Hidden tracks: grade the method, not the memory.

No sandbox sees knowledge typed into a notebook (a table of image hashes with their
7/1 labels, a model trained at home on all 7/1 labels). The notebooks never name the
track's digits, so an honest method works on any pair of digits and a memorised one
does not. ``autograder grade <assignment> --tracks 7,1 2,5`` grades every submission
once per track (each with its own grading data, shuffle, annotation service and
baseline checkpoint) and a submission passes only if it passes on every track.

The combined row (`combine`) is what the leaderboard ranks, and it ranks **by what memory
cannot buy**: it passes only if every track passes, but its ``annotations`` and ``accuracy``
are the hidden tracks' (their total and their mean; `ranked_parts`). The course track is known
in advance, so a table or a model of its images, made at home from public MNIST, can pay
there as little as its author likes: its count is shown in its own column and must come with
a pass, but it buys no rank. The hidden tracks are named only on the grading command and
drawn anew per round, so no notebook can have been fitted to them.

The same rule reviews what a human should read (`reviews`): a track passed with 0
annotations (`ZERO_NOTE`, also the judge's note on a single track), tracks whose counts are
far apart (`far_apart`: a memorised course track with an honest fallback elsewhere), and each
track's own review (e.g. a notebook carrying more knowledge than a method needs,
`autograder.grading.knowledge`). `autograder verify` builds the same combined row from the event
track's re-run and the hidden track's (`combine`), so a live event and ``grade --tracks``
decide alike: one home for the rule.

Tracks are compared as sets of digits: ``1,7`` is the course track ``7,1`` in another
order (the same images, only another shuffle), and a hidden track sharing a digit with the
course track still lets a table of the course track's images label half of it; `parse`
refuses both, as `autograder verify --hidden-track` does.
"""

from __future__ import annotations

from course import data
from autograder.results import clean, store

_WORST = ("error", "timeout", "failed", "ok")  # the combined status: the worst of the tracks'
REVIEW_RATIO = 3  # review when a track needs more than 3x the annotations of another ...
REVIEW_SLACK = 5  # ... and more than 5 beyond them: the reference notebooks need 0.9-1.9x on similar and harder
# pairs (03: 1 and 1-4, 04: 4 and 4, 05: 9 and 6-12), the toy's honest answer 60 on each; a table of the course
# track's images with an honest fallback elsewhere needs 1 there and 60 on the hidden track


def parse(tracks: list[str] | None, track: str | None = None) -> list[tuple[int, ...]]:
    """The tracks to grade, course track first; `tracks` and `track` are the CLI's values."""
    if tracks and track:
        raise ValueError("give --track or --tracks, not both")
    parsed = [data.parse_track(t) for t in tracks] if tracks else [data.parse_track(track)]
    named = " ".join(data.track_name(t) for t in parsed)
    seen: dict[frozenset[int], tuple[int, ...]] = {}
    for digits in parsed:
        twin = seen.setdefault(frozenset(digits), digits)
        if twin is not digits:
            raise ValueError(f"a track is named twice in {named}: {data.track_name(digits)} has the digits of "
                             f"{data.track_name(twin)} (another order is the same track); name each pair once")
    course = set(parsed[0])
    for digits in parsed[1:]:
        shared = sorted(course & set(digits))
        if shared:
            raise ValueError(f"hidden track {data.track_name(digits)} shares digit {shared[0]} with the course track "
                             f"{data.track_name(parsed[0])}: a table memorised for the course track would still "
                             "label half of it; take a pair of other digits (README, \"How to choose hidden tracks\")")
    return parsed


ZERO_NOTE = "passed with 0 annotations: check the notebook before publishing"  # a pass without a label bought


def zero_pass(passed: bool, annotations: int | None) -> bool:
    """A pass that bought no label: only a guess, a hole in the rules or knowledge typed in achieves it."""
    return bool(passed) and annotations == 0


def ranked_parts(rows: list) -> list:
    """The rows whose numbers rank a submission: the hidden tracks' (every row after the course
    track's), or the one row of a submission graded on one track."""
    return list(rows[1:]) if len(rows) > 1 else list(rows)


def label(tracks: list[tuple[int, ...]]) -> str:
    """The combined row's track: '7,1 2,5'."""
    return " ".join(data.track_name(t) for t in tracks)


def far_apart(fewer: int, more: int) -> bool:
    """Whether `more` annotations on one track are far above `fewer` on another: more than
    `REVIEW_RATIO` times and more than `REVIEW_SLACK` beyond them (the one rule of `lopsided` and verify)."""
    return more > max(REVIEW_RATIO * fewer, fewer + REVIEW_SLACK)


def lopsided(rows: list[store.Row]) -> str:
    """A review note when the tracks' annotation counts are far apart (the most above
    max(`REVIEW_RATIO` x the fewest, the fewest + `REVIEW_SLACK`)), else ''. It says what was seen,
    not why: an honest method needs about as many on every pair, a memorised track far fewer."""
    counts = [(r.track, r.annotations) for r in rows]
    if len(counts) < 2 or any(n is None for _, n in counts):
        return ""
    low, high = min(n for _, n in counts), max(n for _, n in counts)
    if not far_apart(low, high):
        return ""
    seen = ", ".join(f"{track}: {n}" for track, n in counts)
    return (f"annotations per track far apart ({seen}; more than {REVIEW_RATIO}x and {REVIEW_SLACK} beyond the "
            "fewest): a method usually needs about as many on every track; read the notebook")


def reviews(rows: list[store.Row]) -> list[str]:
    """What a human should read in a submission graded on `rows` (course track first), in words; [] for
    nothing. The one review rule of ``grade --tracks`` (`combine`) and of ``autograder verify``."""
    notes = []
    if all(r.passed for r in rows) and (note := lopsided(rows)):  # a failed row is not ranked: nothing to check
        notes.append(note)
    seen: set[str] = set()
    for r in rows:
        if zero_pass(r.passed, r.annotations) and ZERO_NOTE.split(":")[0] not in r.review:  # the judge's, once
            notes.append(f"{r.track}: {ZERO_NOTE}")
        fresh = [part for part in r.review.split("; ") if part and part not in seen]  # the same note on every track:
        seen.update(fresh)                                                               # said once
        if fresh:
            notes.append(f"{r.track}: {'; '.join(fresh)}")
    return notes


def _summary(row: store.Row) -> str:
    accuracy = "no submission" if row.accuracy is None else f"{row.accuracy:.1%}"
    annotations = "" if row.annotations is None else f", {row.annotations} annotations"
    verdict = "passed" if row.passed else ("failed" if row.status == "ok" else row.status)
    return f"{row.track}: {verdict} ({accuracy}{annotations})"


def combine(rows: list[store.Row], tracks: list[tuple[int, ...]]) -> store.Row:
    """The combined row of one submission graded on several tracks (rows in the order of `tracks`, course
    track first): passed on every track; annotations and accuracy of the hidden tracks (`ranked_parts`),
    the total and the mean; the review of `reviews`, far-apart counts first (the review is cut at 300
    characters)."""
    first = rows[0]
    status = min((r.status for r in rows), key=_WORST.index)
    detail = "; ".join(_summary(r) for r in rows)
    problems = [f"{r.track}: {r.detail}" for r in rows if not r.passed]
    if problems:
        detail += " | " + problems[0]
    ranked = ranked_parts(rows)  # the hidden tracks': what memory cannot buy
    accuracies = [r.accuracy for r in ranked]
    annotations = [r.annotations for r in ranked]
    return store.Row(
        student=first.student, assignment=first.assignment, track=label(tracks),
        accuracy=None if None in accuracies else sum(accuracies) / len(accuracies),
        annotations=None if None in annotations else sum(annotations),
        passed=all(r.passed for r in rows), score=first.score, max_score=first.max_score,
        status=status, detail=clean.line(detail, 500), runtime=round(sum(r.runtime for r in rows), 2),
        graded_at=max(r.graded_at for r in rows),
        evaluations=None if any(r.evaluations is None for r in rows) else sum(r.evaluations for r in rows),
        submissions=None if any(r.submissions is None for r in rows) else sum(r.submissions for r in rows),
        review=clean.line("; ".join(reviews(rows)), 300), kind=first.kind, level="combined")
