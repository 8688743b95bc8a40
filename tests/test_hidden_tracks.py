"""Hidden tracks: the grader grades the method, not the memory (issue 13).

Knowledge typed into a notebook is out of any sandbox's reach: a table of image hashes
with their true 7/1 labels, or a logistic regression trained at home on all 7/1 labels,
passes the course track with 0 annotations. The notebooks never name the track's digits,
so an honest method works on any pair and a memorised one does not:
``autograder grade toy --tracks 7,1 2,5`` passes a submission only if it passes on every
track. The slow tests grade three submissions on two tracks in ONE batch under the real
autograder (bubblewrap); the others check the store, the combined row and the leaderboard
without a kernel.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sqlite3
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from autograder.grading import secret, tracks
from autograder.results import database, leaderboard, store
from course import config, data
from helpers.courses import HONEST, make_course, run_cli, solution

REPO = Path(__file__).resolve().parent.parent

ASSIGNMENT = "toy"
COURSE_TRACK, HIDDEN_TRACK = "7,1", "2,5"
MEMORY_GB = 3  # as in test_autograder_toy: the toy kernel needs ~1.5 GB of address space

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")


def _key(image: np.ndarray) -> int:
    return int.from_bytes(hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest()[:4], "big")


def hash_table_code() -> str:
    """A participant's notebook carrying the true digits of every 7/1 held-out image, by image hash.

    Built at home from public MNIST; the grader's shuffle does not change an image's bytes. Its
    answers are mapped onto the running track's digits (``ds.track``), so on any track it submits.
    """
    home = data.split(COURSE_TRACK)
    table = {_key(image): int(digit) for image, digit in zip(home.private_test_images, home.private_test_digits)}
    assert len(table) == len(home.private_test_images)
    return ("import hashlib\n"
            f"TABLE = {table!r}\n\n"
            "def predict(images):\n"
            "    keys = [int.from_bytes(hashlib.sha1(np.ascontiguousarray(im).tobytes()).digest()[:4], 'big')\n"
            "            for im in images]\n"
            "    first, second = ds.track  # 7, 1 on the course track\n"
            "    return np.array([second if TABLE.get(k) == 1 else first for k in keys])\n")


def home_model_code() -> str:
    """A participant's notebook carrying a logistic regression trained at home on 4000 true 7/1 labels
    (its two answers mapped onto the running track's digits, so on any track it submits)."""
    from sklearn.linear_model import LogisticRegression

    home = data.split(COURSE_TRACK)
    idx = home.public.c_indices[:4000]
    x = home.public.images[idx].reshape(len(idx), -1) / 255.0
    model = LogisticRegression(max_iter=300).fit(x, home.pool_digits[idx])
    assert [int(c) for c in model.classes_] == [1, 7]
    weights = [round(float(w), 3) for w in model.coef_[0]]
    return (f"W = np.array({weights!r})\nB = {float(model.intercept_[0]):.4f}\n\n"
            "def predict(images):\n"
            "    x = images.reshape(len(images), -1) / 255.0\n"
            "    seven, one = ds.track  # 7, 1 on the course track\n"
            "    return np.where(x @ W + B > 0, seven, one)\n")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One batch: three submissions, each graded on the course track and one hidden track."""
    course_dir = make_course(tmp_path_factory.mktemp("hidden"), {
        "honest": solution(HONEST), "hash_table": solution(hash_table_code()),
        "home_model": solution(home_model_code())})
    run = run_cli("grade", ASSIGNMENT, "--course", str(course_dir), "--memory", str(MEMORY_GB),
                  "--timeout", "300", "--tracks", COURSE_TRACK, HIDDEN_TRACK)
    assert run.returncode == 0, run.stderr[-3000:]
    combined = {r.student: r for r in store.load(course_dir, ASSIGNMENT)}
    per_track = {(r.student, r.track): r for r in store.load_tracks(course_dir, ASSIGNMENT)}
    return course_dir, run, combined, per_track


@pytest.mark.slow
@needs_bwrap
@pytest.mark.parametrize("student", ["hash_table", "home_model"])
def test_memorised_notebook_passes_the_course_track_alone_with_0_annotations(graded, student):
    course_dir, run, combined, per_track = graded
    row = per_track[(student, COURSE_TRACK)]
    assert (row.status, row.passed, row.annotations, row.level) == ("ok", True, 0, "track"), row
    assert row.accuracy >= config.TARGET_ACCURACY and "0 annotations" in row.review


@pytest.mark.slow
@needs_bwrap
@pytest.mark.parametrize("student", ["hash_table", "home_model"])
def test_memorised_notebook_fails_once_a_hidden_track_is_added(graded, student):
    course_dir, run, combined, per_track = graded
    hidden = per_track[(student, HIDDEN_TRACK)]
    assert hidden.status == "ok" and not hidden.passed and hidden.annotations == 0, hidden  # it did submit
    assert hidden.accuracy < 0.75  # about a coin flip: the memory is of 7 and 1
    row = combined[student]
    assert (row.level, row.track, row.passed) == ("combined", f"{COURSE_TRACK} {HIDDEN_TRACK}", False), row
    assert f"{HIDDEN_TRACK}: failed" in row.detail


@pytest.mark.slow
@needs_bwrap
def test_honest_notebook_passes_on_every_track(graded):
    course_dir, run, combined, per_track = graded
    for track in (COURSE_TRACK, HIDDEN_TRACK):
        row = per_track[("honest", track)]
        assert (row.status, row.passed, row.annotations) == ("ok", True, 60), row
    row = combined["honest"]
    # ranked by what memory cannot buy: the hidden track's count and accuracy (the course track only has to pass)
    assert row.passed and row.annotations == 60 and not row.review, row
    assert row.accuracy == pytest.approx(per_track[("honest", HIDDEN_TRACK)].accuracy)
    # each track had its own service: its own ledger, charged 60 each
    assert store.ledger_path(course_dir, ASSIGNMENT, "honest").is_file()
    assert store.ledger_path(course_dir, ASSIGNMENT, "honest", track=HIDDEN_TRACK).is_file()
    # every track's data and baseline were made before the first submission's time limit
    for track in (COURSE_TRACK, HIDDEN_TRACK):
        assert f"track {track}: grading data and baseline ready" in run.stderr


@pytest.mark.slow
@needs_bwrap
def test_leaderboard_shows_per_track_numbers_and_ranks_by_all_tracks(graded):
    course_dir, run, combined, per_track = graded
    with open(course_dir / "leaderboard" / f"{ASSIGNMENT}.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["student"] for r in table][0] == "honest" and table[0]["passed"] == "yes"
    shown = {COURSE_TRACK: COURSE_TRACK, HIDDEN_TRACK: "hidden 1"}  # the projected board keeps hidden digits secret
    for line in table:
        for track in (COURSE_TRACK, HIDDEN_TRACK):
            part = per_track[(line["student"], track)]
            assert line[f"annotations {shown[track]}"] == str(part.annotations)
            assert float(line[f"accuracy {shown[track]}"]) == pytest.approx(part.accuracy, abs=1e-4)
        assert line["passed"] == ("yes" if line["student"] == "honest" else "no")
    page = (course_dir / "leaderboard" / f"{ASSIGNMENT}.html").read_text()
    assert "accuracy hidden 1" in page and HIDDEN_TRACK not in page and "on every track" in page
    assert (course_dir / "leaderboard" / f"{ASSIGNMENT}.png").stat().st_size > 10_000
    again = run_cli("leaderboard", ASSIGNMENT, "--course", str(course_dir))
    assert again.returncode == 0 and HIDDEN_TRACK in again.stdout.splitlines()[0], again.stdout + again.stderr


# the hidden track alone: every reference's 7,1 run is graded elsewhere (03 under this grader in
# test_dry_run, all of them by nbgrader in test_notebooks), and CI time is short; the combined
# row of several tracks is checked on the toy batch above
REFERENCES = ("03_clustering", "04_transfer_learning", "05_active_learning")


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """The instructor's reference notebooks 03-05, submitted by one student, graded under the real
    autograder on the hidden track (one run each: a reference run costs about a minute on two shared
    cores). One course; one `grade` call per assignment (the CLI grades one assignment per batch)."""
    course_dir = make_course(tmp_path_factory.mktemp("references"), {("reference", n): None for n in REFERENCES},
                             assignments={n: REPO / "source" / n / f"{n}.ipynb" for n in REFERENCES},
                             config=REPO / "nbgrader_config.py")
    graded = {}
    for name in REFERENCES:
        run = run_cli("grade", name, "--course", str(course_dir), "--tracks", HIDDEN_TRACK)
        graded[name] = (run, store.load(course_dir, name))
    return graded


@pytest.mark.slow
@needs_bwrap
@pytest.mark.parametrize("name", REFERENCES)
def test_reference_notebook_passes_on_a_hidden_track(references, name):
    """The instructor's notebooks never name the digits: they pass 2,5 as they pass 7,1."""
    run, [row] = references[name]
    assert run.returncode == 0, run.stderr[-3000:]
    assert row.track == HIDDEN_TRACK and row.status == "ok", row
    assert row.passed and row.annotations > 0 and row.accuracy >= config.TARGET_ACCURACY, row
    assert row.score == row.max_score and not row.review, row  # every test cell, hidden ones included


# --- without a kernel ----------------------------------------------------------------------------


def _row(student: str, track: str, accuracy, annotations, passed: bool, level: str = "track",
         status: str = "ok", **kw) -> store.Row:
    return store.Row(student, ASSIGNMENT, track, accuracy, annotations, passed, 2, 2, status, "d", 1.0, "t",
                     level=level, **kw)


def test_tracks_are_parsed_course_track_first_and_each_once():
    assert tracks.parse(["7,1", "2,5"]) == [(7, 1), (2, 5)]
    assert tracks.parse(None, "4,9") == [(4, 9)]
    with pytest.raises(ValueError):
        tracks.parse(["7,1", "7,1"])
    with pytest.raises(ValueError):
        tracks.parse(["7,1"], "2,5")


def test_each_track_has_its_own_reproducible_shuffle(tmp_path):
    seeds = {t: secret.seed(tmp_path, ASSIGNMENT, t) for t in ("7,1", "2,5", "3,8")}
    assert len(set(seeds.values())) == 3
    assert seeds == {t: secret.seed(tmp_path, ASSIGNMENT, t) for t in seeds}


def test_combined_row_passes_only_on_every_track():
    both = [(7, 1), (2, 5)]
    row = tracks.combine([_row("a", "7,1", .99, 0, True, review="passed with 0 annotations"),
                          _row("a", "2,5", .02, 0, False)], both)
    assert (row.passed, row.annotations, row.accuracy, row.track, row.level) == (False, 0, .02, "7,1 2,5", "combined")
    assert "2,5: failed" in row.detail and row.review.startswith("7,1:")
    row = tracks.combine([_row("b", "7,1", .95, 60, True), _row("b", "2,5", None, None, False, status="timeout")],
                         both)
    assert (row.passed, row.status, row.accuracy, row.annotations) == (False, "timeout", None, None)


def test_leaderboard_ranks_passed_on_all_then_the_hidden_tracks_annotations_then_their_accuracy(tmp_path):
    both = [(7, 1), (2, 5)]
    for student, parts in {"memory": [(.99, 0, True), (.01, 0, False)],
                           "frugal": [(.92, 30, True), (.91, 40, True)],
                           "rich": [(.99, 60, True), (.99, 60, True)],
                           "same_total": [(.90, 35, True), (.90, 35, True)]}.items():
        rows = [_row(student, "7,1", *parts[0]), _row(student, "2,5", *parts[1])]
        store.save(tmp_path, rows + [tracks.combine(rows, both)])
    ranked = leaderboard.rank(store.load(tmp_path, ASSIGNMENT))
    # hidden track 2,5: same_total 35, frugal 40, rich 60 (the course track's 30/35/60 buy nothing)
    assert [(n, r.student) for n, r in ranked] == [(1, "same_total"), (2, "frugal"), (3, "rich"), (4, "memory")]
    board = list(csv.DictReader(leaderboard.to_csv(ranked, leaderboard.per_track_rows(tmp_path, ASSIGNMENT))
                                .splitlines()))
    assert board[1]["accuracy 2,5"] == "0.91" and board[1]["annotations 7,1"] == "30"
    assert board[1]["annotations"] == "40"
    # a regrade on one track replaces the submission's rows: no stale per-track row is left
    store.save(tmp_path, _row("rich", "7,1", .99, 60, True, level="combined"))
    assert {r.track for r in store.load_tracks(tmp_path, ASSIGNMENT) if r.student == "rich"} == set()
    assert len(store.load(tmp_path, ASSIGNMENT)) == 4


def test_store_rebuilds_a_database_keyed_by_student_and_assignment(tmp_path):
    connection = sqlite3.connect(tmp_path / store.DB_NAME)
    connection.execute(database._SCHEMA.replace("PRIMARY KEY (student, assignment, track)",
                                             "PRIMARY KEY (student, assignment)"))
    connection.execute("ALTER TABLE results ADD COLUMN review TEXT NOT NULL DEFAULT ''")
    connection.execute("INSERT INTO results (student, assignment, track, accuracy, annotations, passed, score, "
                       "max_score, status, detail, runtime, graded_at, review) "
                       "VALUES ('a', 'toy', '7,1', .9, 5, 1, 2, 2, 'ok', 'd', 1.0, 't', 'look')")
    connection.commit()
    connection.close()
    [old] = store.load(tmp_path, ASSIGNMENT)
    assert (old.student, old.track, old.review, old.level, old.annotations) == ("a", "7,1", "look", "combined", 5)
    rows = [_row("a", "7,1", .95, 3, True), _row("a", "2,5", .93, 4, True)]
    store.save(tmp_path, rows + [tracks.combine(rows, [(7, 1), (2, 5)])])
    assert [r.track for r in store.load(tmp_path, ASSIGNMENT)] == ["7,1 2,5"]
    assert [r.track for r in store.load_tracks(tmp_path, ASSIGNMENT)] == ["2,5", "7,1"]


def test_pending_rows_of_a_submission_graded_on_several_tracks_are_written_together(tmp_path):
    pending = tmp_path / store.PENDING
    pending.parent.mkdir()
    rows = [_row("a", "7,1", .95, 3, True), _row("a", "2,5", .93, 4, True)]
    group = [asdict(r) for r in rows + [tracks.combine(rows, [(7, 1), (2, 5)])]]
    old_style = asdict(_row("b", "7,1", .9, 1, True, level="combined"))
    old_style.pop("level")
    pending.write_text(json.dumps(group) + "\n" + json.dumps(old_style) + "\n")
    assert store.flush_pending(tmp_path) == 2
    assert [r.student for r in store.load(tmp_path, ASSIGNMENT)] == ["a", "b"]
    assert len(store.load_tracks(tmp_path, ASSIGNMENT)) == 2
