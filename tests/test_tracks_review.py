"""Hidden tracks, without a kernel: tracks compared as sets of digits, far-apart annotation counts
marked for review, and a projected leaderboard that never names a hidden track's digits.

The attacks these close (tests/test_attacks_round3.py, under the real autograder): ``--tracks 7,1 1,7``
took the course track in another order as a hidden one; a table of the course track's images with
an honest fallback elsewhere passed with 1 + 60 annotations and no review; the board projected in
round 1 named the hidden track a round-2 notebook would then memorise. Rows are built by hand
(`autograder.results.store.Row`) as in tests/test_hidden_tracks.py; no notebook runs (about a second).
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import pytest

from autograder.grading import tracks
from autograder.results import leaderboard, store
from autograder.event import verify

A = "toy"
COURSE, HIDDEN = "7,1", "2,5"
BOTH = [(7, 1), (2, 5)]


def _row(student: str, track: str, accuracy, annotations, passed: bool, status: str = "ok", detail: str = "d",
         **kw) -> store.Row:
    return store.Row(student, A, track, accuracy, annotations, passed, 2, 2, status, detail, 1.0, "t",
                     level="track", **kw)


def _pair(student: str, course: tuple, hidden: tuple) -> list[store.Row]:
    return [_row(student, COURSE, *course), _row(student, HIDDEN, *hidden)]


# --- parse: tracks are sets of digits ------------------------------------------------------------

@pytest.mark.parametrize("named", [["7,1", "1,7"], ["7,1", "2,5", "5,2"]])
def test_the_same_pair_in_another_order_is_refused(named):
    with pytest.raises(ValueError, match="named twice.*another order is the same track"):
        tracks.parse(named)


@pytest.mark.parametrize("named", [["7,1", "2,7"], ["7,1", "1,3"], ["4,9", "2,5", "9,3"]])
def test_a_hidden_track_sharing_a_digit_with_the_course_track_is_refused(named):
    """As `autograder verify --hidden-track` refuses it: a table of the course track still labels half of it."""
    with pytest.raises(ValueError, match="shares digit .* with the course track .*take a pair of other digits"):
        tracks.parse(named)


def test_distinct_pairs_are_taken_course_track_first():
    assert tracks.parse(["7,1", "2,5", "6,0"]) == [(7, 1), (2, 5), (6, 0)]
    assert tracks.parse(["4,9", "3,5", "5,8"]) == [(4, 9), (3, 5), (5, 8)]  # hidden tracks may share a digit


# --- combine: far-apart counts are marked for review ---------------------------------------------

# (event-track annotations, hidden accuracy, hidden annotations) -> verify's decision, written out by hand
VERIFY_DECISIONS = [
    (60, .97, 60, "verified"), (60, .97, 180, "verified"), (60, .97, 181, "review"),
    (1, .99, 1, "verified"), (1, .99, 6, "verified"), (1, .99, 7, "review"), (9, .99, 12, "verified"),
    (0, .99, 2, "review"),  # hole 2: a pass with 0 annotations is never verified, whatever the hidden track needs
    (0, .99, 0, "review"), (2, .99, 0, "review"),  # a hidden track passed with 0: the same rule
    (1, .46, 1, "review"),  # fails on the hidden track
    (20, .95, 60, "verified"), (20, .95, 61, "review"),  # 3x: not more; one beyond
]


@pytest.mark.parametrize("event, accuracy, hidden, expected", VERIFY_DECISIONS)
def test_verify_decides_as_written(event, accuracy, hidden, expected):
    status, why = verify.hidden_compare(event, HIDDEN, accuracy, hidden)
    assert status == expected, (event, accuracy, hidden, why)
    assert why and "0.99" not in why and "e-" not in why, why  # in words and percentages


@pytest.mark.parametrize("counts, expected", [((60, 180), False), ((60, 181), True), ((1, 6), False), ((1, 7), True),
                                              ((0, 5), False), ((0, 6), True), ((10, 35), True), ((35, 10), False)])
def test_far_apart_boundaries(counts, expected):
    """More than 3x and more than 5 beyond: written out, not computed."""
    assert tracks.far_apart(*counts) is expected


def test_verify_and_grade_share_one_review_rule():
    """verify builds the rows `tracks.reviews` reads: a track's own review (here the knowledge flag) is verify's too."""
    heavy = "the notebook's code holds 12.0 kB compressed"
    event_row = verify._row(COURSE, .99, 1, review=heavy)
    status, why = verify.decide(event_row, verify._row(HIDDEN, .99, 1))
    assert status == "review" and heavy in why, why
    combined = tracks.combine([_row("x", COURSE, .99, 1, True, review=heavy), _row("x", HIDDEN, .99, 1, True)], BOTH)
    assert heavy in combined.review


def test_a_memorised_course_track_with_an_honest_fallback_is_marked_for_review():
    row = tracks.combine(_pair("memo", (.99, 1, True), (.97, 60, True)), BOTH)
    assert row.passed and row.annotations == 60 and row.accuracy == .97  # ranked by the hidden track alone
    assert row.review.startswith(f"annotations per track far apart ({COURSE}: 1, {HIDDEN}: 60;"), row.review
    assert "read the notebook" in row.review and "cheat" not in row.review  # what was seen, no accusation
    # either way round: a hidden track far cheaper than the course track is as odd
    assert tracks.combine(_pair("m", (.97, 60, True), (.99, 1, True)), BOTH).review


@pytest.mark.parametrize("counts", [(60, 60), (1, 1), (1, 4), (4, 4), (9, 6), (6, 12), (9, 12), (1, 6), (30, 90)])
def test_similar_counts_are_not_marked(counts):
    """The toy's honest answer (60 and 60), the reference notebooks on similar and harder pairs (03: 1 and
    1-4, 04: 4 and 4, 05: 9 and 6-12, benchmarks/results/tracks) and the rule's own edges."""
    row = tracks.combine(_pair("honest", (.95, counts[0], True), (.95, counts[1], True)), BOTH)
    assert row.passed and row.review == "", row.review


@pytest.mark.parametrize("counts", [(1, 7), (30, 91), (0, 6)])
def test_counts_just_past_the_rule_are_marked(counts):
    row = tracks.combine(_pair("s", (.95, counts[0], True), (.95, counts[1], True)), BOTH)
    assert row.review.startswith("annotations per track far apart"), row.review


def test_no_far_apart_note_on_a_row_that_is_not_ranked_as_passing():
    failed = tracks.combine(_pair("f", (.99, 1, True), (.60, 60, False)), BOTH)
    assert not failed.passed and failed.review == ""
    missing = tracks.combine(_pair("t", (.99, 1, True), (None, None, False, "timeout")), BOTH)
    assert missing.review == ""


def test_the_far_apart_note_comes_before_the_tracks_own_reviews():
    row = tracks.combine([_row("z", COURSE, .99, 0, True, review="passed with 0 annotations"),
                          _row("z", HIDDEN, .97, 60, True)], BOTH)
    assert row.review.startswith("annotations per track far apart") and f"{COURSE}: passed with 0" in row.review


# --- the projected board: hidden tracks by label -----------------------------------------------

LEAKY = "AssertionError: my digits are (2, 5), i.e. 2,5"  # a notebook's own words on the hidden track


def _graded(course_dir):
    students = {"honest": _pair("honest", (.95, 60, True), (.96, 60, True)),
                "memo": _pair("memo", (.99, 1, True), (.97, 60, True)),
                "leaky": [_row("leaky", COURSE, .95, 60, True),
                          _row("leaky", HIDDEN, None, None, False, status="error", detail=LEAKY)]}
    for rows in students.values():
        store.save(course_dir, rows + [tracks.combine(rows, BOTH)])


def test_the_projected_board_labels_hidden_tracks_and_the_terminal_keeps_their_digits(tmp_path):
    _graded(tmp_path)
    paths = leaderboard.build(tmp_path, A)
    page, table = paths["html"].read_text(), paths["csv"].read_text()
    for text in (page, table):
        assert HIDDEN not in text and "(2, 5)" not in text, text
    board = {r["student"]: r for r in csv.DictReader(io.StringIO(table))}
    assert set(board["honest"]) >= {f"accuracy {COURSE}", "accuracy hidden 1", "annotations hidden 1"}
    assert board["honest"]["annotations hidden 1"] == "60" and board["honest"]["review"] == ""
    # the review row is shown as before, its counts by label
    assert board["memo"]["review"].startswith(f"annotations per track far apart ({COURSE}: 1, hidden 1: 60;")
    assert '<tr class="passed review">' in page and "far more annotations on one track" in page
    # a hidden track's own error message is withheld; its verdict is not
    assert "hidden 1: error (no submission)" in board["leaky"]["detail"]
    assert leaderboard.WITHHELD in board["leaky"]["detail"] and "AssertionError" not in table
    assert paths["png"].stat().st_size > 10_000
    # the instructor's terminal table (autograder grade / leaderboard) names the tracks
    ranked = leaderboard.rank(store.load(tmp_path, A))
    terminal = leaderboard.table(ranked, per_track=leaderboard.per_track_rows(tmp_path, A))
    assert HIDDEN in terminal.splitlines()[0] and "hidden 1" not in terminal


def test_a_withheld_hidden_message_keeps_the_attempts_note():
    note = "; ranked: attempt 1 of 2 (the first with a counted submission); the latest, attempt 2, passed and is not ranked"
    row = replace(tracks.combine([_row("a", COURSE, .95, 60, True),
                                  _row("a", HIDDEN, .5, 60, False, detail=LEAKY)], BOTH), attempts=2)
    row = replace(row, detail=row.detail + note)
    labels = {COURSE: COURSE, HIDDEN: "hidden 1"}
    shown = leaderboard._public(row.detail, row, labels)
    assert shown.endswith(f"hidden 1: {leaderboard.WITHHELD}{note}") and "(2, 5)" not in shown, shown
    assert leaderboard._public(row.detail, row, None) == row.detail  # no labels: the text as stored


def test_several_hidden_tracks_are_numbered_in_the_order_named(tmp_path):
    three = [(7, 1), (2, 5), (6, 0)]
    rows = [_row("a", COURSE, .95, 60, True), _row("a", HIDDEN, .95, 60, True), _row("a", "6,0", .95, 50, True)]
    store.save(tmp_path, rows + [tracks.combine(rows, three)])
    ranked = leaderboard.rank(store.load(tmp_path, A))
    per_track = leaderboard.per_track_rows(tmp_path, A)
    assert leaderboard.public_labels(ranked, per_track) == {COURSE: COURSE, HIDDEN: "hidden 1", "6,0": "hidden 2"}
    header = leaderboard.to_csv(ranked, per_track, leaderboard.public_labels(ranked, per_track)).splitlines()[0]
    assert "annotations hidden 2" in header and "6,0" not in header


# --- issue 21: memory cannot buy rank; the shared board echoes no kernel text ---------------------

def test_the_course_tracks_count_buys_no_rank(tmp_path):
    """A table of the course track (1 label, 100%) with the honest method on the hidden track ties with the honest
    method on both (2 + 2): the hidden track's count and accuracy rank, the course track's only has to pass."""
    for student, course, hidden in [("memo", (1.0, 1, True), (.97, 2, True)), ("honest", (.95, 2, True), (.97, 2, True)),
                                    ("rich", (.99, 2, True), (.99, 3, True))]:
        rows = _pair(student, course, hidden)
        store.save(tmp_path, rows + [tracks.combine(rows, BOTH)])
    ranked = leaderboard.rank(store.load(tmp_path, A))
    assert [(n, r.student, r.annotations) for n, r in ranked] == [(1, "honest", 2), (1, "memo", 2), (3, "rich", 3)]
    board = {r["student"]: r for r in csv.DictReader(io.StringIO(leaderboard.build(tmp_path, A)["csv"].read_text()))}
    assert board["memo"][f"annotations {COURSE}"] == "1" and board["memo"]["annotations"] == "2"  # shown, not ranked


def test_a_pass_with_0_annotations_is_reviewed_in_the_combined_row_even_without_the_judges_note():
    row = tracks.combine([_row("z", COURSE, 1.0, 0, True), _row("z", HIDDEN, .97, 2, True)], BOTH)
    assert row.review == f"{COURSE}: passed with 0 annotations: check the notebook before publishing", row.review


def test_a_row_graded_on_fewer_tracks_never_ranks_above_a_full_one(tmp_path):
    """Mid-batch, a submission graded on the course track alone (1 annotation) after one graded on both (10)."""
    store.save(tmp_path, store.Row("partial", A, COURSE, .99, 1, True, 2, 2, "ok", "d", 1.0, "t"))
    rows = _pair("full", (.95, 10, True), (.95, 10, True))
    store.save(tmp_path, rows + [tracks.combine(rows, BOTH)])
    assert [(n, r.student) for n, r in leaderboard.rank(store.load(tmp_path, A))] == [(1, "full"), (2, "partial")]


BOUGHT_BITS = "0110100111010010110100101101001011010010110100101101001011010"
KERNEL_TEXT = f"RuntimeError: LEAK {BOUGHT_BITS} 7"


@pytest.mark.parametrize("detail, shown", [
    (f"counted the first of 1 submission; 0 held-out evaluations; first error: cell 3: {KERNEL_TEXT}",
     "counted the first submission; the notebook raised an error (its feedback shows where)"),
    (f"no submission reached the annotation service (grading.submit was not called or failed); first error: cell 3: "
     f"{KERNEL_TEXT}; 60 label(s) bought without a counted submission: this attempt counts as the student's graded one",
     "no submission reached the annotation service; labels bought without a counted submission: this attempt counts "
     "as the student's graded one; the notebook raised an error (its feedback shows where)"),
    (f"the kernel died in cell 4 (it crashed, or was killed) (last error before: {KERNEL_TEXT})",
     "the kernel died in cell 4 (it crashed, or was killed)"),
    (f"the notebook used more than the 3 GB memory limit in cell 4; use less memory (smaller batches, fewer "
     f"processes, free what you no longer need); first error: cell 4: {KERNEL_TEXT}",
     "the notebook used more than the 3 GB memory limit in cell 4; the notebook raised an error (its feedback shows "
     "where)"),
    (KERNEL_TEXT, "details withheld on the board (the instructor has them)"),
])
def test_the_shared_board_shows_the_graders_words_only(tmp_path, detail, shown):
    store.save(tmp_path, store.Row("spy", A, COURSE, None, 60, False, 0, 2, "failed", detail, 1.0, "t"))
    paths = leaderboard.build(tmp_path, A)
    for ext in ("csv", "html"):
        assert BOUGHT_BITS not in paths[ext].read_text() and "LEAK" not in paths[ext].read_text()
    [line] = csv.DictReader(io.StringIO(paths["csv"].read_text()))
    assert line["detail"] == shown
    terminal = leaderboard.table(leaderboard.rank(store.load(tmp_path, A)), width=400)
    assert "LEAK" in terminal  # the instructor's terminal keeps the kernel's words


def test_a_combined_rows_failed_track_is_told_in_the_graders_words(tmp_path):
    rows = [_row("spy", COURSE, .99, 1, True),
            _row("spy", HIDDEN, None, None, False, status="failed", detail=f"no submission reached the annotation "
                                                                          f"service; first error: c: {KERNEL_TEXT}")]
    store.save(tmp_path, rows + [tracks.combine(rows, BOTH)])
    [line] = csv.DictReader(io.StringIO(leaderboard.build(tmp_path, A)["csv"].read_text()))
    assert line["detail"] == ("7,1: passed (99.0%, 1 annotations); hidden 1: failed (no submission) | hidden 1: "
                              f"{leaderboard.WITHHELD}"), line["detail"]


def test_the_shared_review_is_in_words_and_percentages(tmp_path):
    raw = ("a regrade changed the counted accuracy from 0.9523809523809523 (2026-12-07T13:00:00.123456+00:00) to "
           "0.9412 (2026-12-07T14:00:00+00:00)")
    store.save(tmp_path, store.Row("r", A, COURSE, .9412, 3, True, 2, 2, "ok",
                                   "counted the first of 1 submission; 0 held-out evaluations", 1.0, "t", review=raw))
    [line] = csv.DictReader(io.StringIO(leaderboard.build(tmp_path, A)["csv"].read_text()))
    assert line["review"] == "a regrade changed the counted accuracy from 95.24% to 94.12%", line["review"]


def test_a_regrade_on_another_set_of_tracks_is_not_a_changed_accuracy(tmp_path):
    """Issue 23: a counted notebook graded on 7,1, then the same notebook on 7,1 and 2,5: its combined accuracy is
    another number by design (the hidden track's), not a regrade that changed it; the same tracks again still is."""
    key = "ab" * 32
    store.save(tmp_path, store.Row("a", A, COURSE, .95, 3, True, 2, 2, "ok", "d", 1.0, "2026-12-07T10:00:00+00:00"),
               attempt=key)
    rows = _pair("a", (.95, 3, True), (.97, 2, True))
    store.save(tmp_path, rows + [tracks.combine(rows, BOTH)], attempt=key)
    [row] = store.load(tmp_path, A)
    assert (row.track, row.accuracy, row.review) == (f"{COURSE} {HIDDEN}", .97, ""), row
    rows = _pair("a", (.95, 3, True), (.96, 2, True))
    store.save(tmp_path, rows + [tracks.combine(rows, BOTH)], attempt=key)
    assert store.load(tmp_path, A)[0].review.startswith("a regrade changed the counted accuracy")
