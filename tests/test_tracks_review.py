"""Hidden tracks, without a kernel: tracks compared as sets of digits, far-apart annotation counts
marked for review, and a projected leaderboard that never names a hidden track's digits.

The attacks these close (tests/test_attacks_round3.py, under the real autograder): ``--tracks 7,1 1,7``
took the course track in another order as a hidden one; a table of the course track's images with
an honest fallback elsewhere passed with 1 + 60 annotations and no review; the board projected in
round 1 named the hidden track a round-2 notebook would then memorise. Rows are built by hand
(`autograder.store.Row`) as in tests/test_hidden_tracks.py; no notebook runs (about a second).
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import pytest

from autograder import leaderboard, store, tracks
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

def test_verify_and_grading_share_one_review_rule():
    assert verify.REVIEW_RATIO == tracks.REVIEW_RATIO and verify.far_apart is tracks.far_apart
    for event, hidden in [(60, 180), (60, 181), (1, 6), (1, 7), (0, 5), (0, 6), (10, 35), (35, 10)]:
        status, _ = verify.hidden_compare(event, HIDDEN, 0.97, hidden)
        assert (status == "review") == tracks.far_apart(event, hidden), (event, hidden, status)
    # the boundaries: more than 3x and more than 5 beyond
    assert [tracks.far_apart(60, n) for n in (180, 181)] == [False, True]
    assert [tracks.far_apart(1, n) for n in (6, 7)] == [False, True]


def test_a_memorised_course_track_with_an_honest_fallback_is_marked_for_review():
    row = tracks.combine(_pair("memo", (.99, 1, True), (.97, 60, True)), BOTH)
    assert row.passed and row.annotations == 61  # the ranking is unchanged: the review is what flags it
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
