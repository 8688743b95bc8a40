"""Graded attempts: every changed notebook of a student is kept and counted, and the leaderboard ranks
the first with a counted submission (`autograder.grading.attempts.RULE`), so a regrade after a failed counted
submission cannot turn the board into a scoring oracle. No kernel: the store and the leaderboard only
(the real-grader resubmission test is in tests/test_attacks_exam.py).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from dataclasses import replace

import pytest

from autograder.grading import attempts, judge
from autograder.results import database, leaderboard, spreadsheet, store
from course import protocol
from helpers.rows import row as stored_row

A = "toy"
GUESS, OTHER_NAMING, HONEST = (attempts.key([("toy.ipynb", text)]) for text in (b"guess a", b"guess b", b"honest"))


def row(student: str, accuracy: float | None = .95, annotations: int | None = 60, track: str = "7,1",
        graded_at: str = "2026-11-27T08:00:00Z", status: str = "ok", **kw) -> store.Row:
    return stored_row(student, accuracy, annotations, assignment=A, track=track, graded_at=graded_at, status=status,
                    passed=accuracy is not None and accuracy >= .9, **kw)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(store.ENV, raising=False)


def _one(course, student: str) -> store.Row:
    return {r.student: r for r in store.load(course, A)}[student]


def test_the_key_is_the_submitted_bytes_whatever_their_order():
    files = [("a.ipynb", b"{}"), ("b.ipynb", b"[]")]
    assert attempts.key(files) == attempts.key(files[::-1]) and len(attempts.key(files)) == attempts.KEY_CHARS
    assert attempts.key(files) != attempts.key([("a.ipynb", b"{} "), ("b.ipynb", b"[]")])
    assert attempts.key([("a.ipynb", b"b.ipynb")]) != attempts.key([("a.ipynbb.ipynb", b"")])  # no run-together
    assert attempts.key([]) == attempts.key(()) != attempts.UNKNOWN  # nothing gradable: one attempt, not many


def test_a_regrade_of_the_same_notebook_is_not_a_new_attempt(tmp_path):
    store.save(tmp_path, row("ana", .47, 0), attempt=GUESS)
    store.save(tmp_path, row("ana", .47, 0, graded_at="2026-11-27T09:00:00Z"), attempt=GUESS)
    again = _one(tmp_path, "ana")
    assert (again.attempts, again.attempt, again.notebook, again.graded_at) == (1, 1, GUESS, "2026-11-27T09:00:00Z")
    assert again.detail == "d"  # one attempt: nothing added
    assert len(store.load_attempts(tmp_path, A, "ana")) == 1


def test_a_changed_notebook_is_a_new_attempt_and_cannot_improve_the_row(tmp_path):
    store.save(tmp_path, row("bo", .99, 80))  # an honest one-notebook participant
    store.save(tmp_path, row("ana", .47, 0), attempt=GUESS)  # counted, failed, on the board
    store.save(tmp_path, row("ana", .98, 0), attempt=OTHER_NAMING)  # read the board, named the other way
    ana = _one(tmp_path, "ana")
    assert (ana.accuracy, ana.passed, ana.annotations, ana.attempt, ana.attempts) == (.47, False, 0, 1, 2)
    assert "ranked: attempt 1 of 2 (the first with a counted submission)" in ana.detail, ana.detail
    assert "the latest, attempt 2, passed and is not ranked" in ana.detail, ana.detail
    assert [(r.attempt, r.accuracy) for r in store.load_attempts(tmp_path, A, "ana")] == [(1, .47), (2, .98)]
    store.save(tmp_path, row("ana", .98, 0, graded_at="2026-11-27T10:00:00Z"), attempt=OTHER_NAMING)  # regraded
    store.save(tmp_path, row("ana", .47, 0, graded_at="2026-11-27T10:00:00Z"), attempt=GUESS)  # handed in again
    assert [(r.attempt, r.notebook) for r in store.load_attempts(tmp_path, A, "ana")] == [(1, GUESS),
                                                                                       (2, OTHER_NAMING)]
    assert (_one(tmp_path, "ana").attempts, _one(tmp_path, "ana").accuracy) == (2, .47)
    ranked = leaderboard.rank(store.load(tmp_path, A))
    assert [(r.student, r.passed) for _, r in ranked] == [("bo", True), ("ana", False)]


def test_an_attempt_without_a_counted_submission_does_not_use_it_up(tmp_path):
    crashed = row("cy", None, None, status="failed")
    store.save(tmp_path, crashed, attempt=attempts.key([]))  # no notebook, or a crash before submit
    assert _one(tmp_path, "cy").attempts == 1
    store.save(tmp_path, row("cy", .93, 40), attempt=HONEST)
    cy = _one(tmp_path, "cy")
    assert (cy.passed, cy.annotations, cy.attempt, cy.attempts) == (True, 40, 2, 2)
    assert "ranked: attempt 2 of 2 (the first with a counted submission)" in cy.detail
    store.save(tmp_path, row("cy", .99, 5), attempt=GUESS)  # a later, better notebook is not ranked
    assert (_one(tmp_path, "cy").annotations, _one(tmp_path, "cy").attempts) == (40, 3)
    points = [store.Row("dee", "pts", "7,1", None, None, ok, s, 2, "ok", "d", 1.0, "t", kind="points")
              for ok, s in ((False, 1), (True, 2))]
    for number, points_row in enumerate(points):  # no submit cell: nothing counted, the latest is ranked
        store.save(tmp_path, points_row, attempt=attempts.key([("pts.ipynb", bytes([number]))]))
    [dee] = store.load(tmp_path, "pts")
    assert (dee.score, dee.attempt, dee.attempts) == (2, 2, 2) and "none made a counted submission" in dee.detail


def test_hidden_tracks_rows_follow_the_ranked_attempt(tmp_path):
    def graded(accuracy: float, annotations: int) -> list[store.Row]:
        parts = [row("ed", accuracy, annotations, "7,1", level="track"),
                 row("ed", accuracy, annotations, "2,5", level="track")]
        return parts + [row("ed", accuracy, 2 * annotations, "7,1 2,5")]

    store.save(tmp_path, graded(.5, 0), attempt=GUESS)
    store.save(tmp_path, graded(.97, 30), attempt=HONEST)
    assert [(r.track, r.annotations, r.attempts) for r in store.load_tracks(tmp_path, A)] == [
        ("2,5", 0, 2), ("7,1", 0, 2)]
    assert len(store.load_attempts(tmp_path, A, "ed", level="track")) == 4


def test_the_leaderboard_shows_the_attempts_in_csv_html_and_terminal(tmp_path):
    store.save(tmp_path, row("bo", .99, 80), attempt=HONEST)
    store.save(tmp_path, row("ana", .47, 0), attempt=GUESS)
    store.save(tmp_path, row("ana", .98, 0), attempt=OTHER_NAMING)
    paths = leaderboard.build(tmp_path, A)
    table = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert list(table[0]) == leaderboard.CSV_COLUMNS
    assert [(r["rank"], r["student"], r["passed"], r["attempts"]) for r in table] == [("1", "bo", "yes", "1"),
                                                                                      ("2", "ana", "no", "2")]
    page = paths["html"].read_text()
    assert 'class="resubmitted"' in page and "first graded notebook with a counted submission" in page
    text = leaderboard.table(leaderboard.rank(store.load(tmp_path, A))).splitlines()
    assert "attempts" in text[0].split() and text[3].split()[:2] == ["2", "ana"]


def test_rows_kept_while_the_store_was_unavailable_keep_their_attempt(tmp_path):
    store.save(tmp_path, row("ana", .47, 0), attempt=GUESS)
    with pytest.raises(store.StoreConfigError):
        store.save(tmp_path, row("ana", .98, 0), url=str(tmp_path / "missing" / store.DB_NAME), attempt=OTHER_NAMING)
    assert store.flush_pending(tmp_path) == 1
    assert [(r.attempt, r.notebook) for r in store.load_attempts(tmp_path, A, "ana")] == [(1, GUESS),
                                                                                       (2, OTHER_NAMING)]
    with pytest.raises(ValueError, match="notebook key"):
        store.save(tmp_path, row("ana"), attempt="../x")


def test_a_database_from_before_attempts_is_migrated_and_its_rows_are_adopted(tmp_path):
    # the format before attempts: keyed by (student, assignment, track)
    connection = sqlite3.connect(tmp_path / store.DB_NAME)
    connection.execute(database._SCHEMA)
    connection.executemany("INSERT INTO results VALUES (?, 'toy', '7,1', ?, ?, ?, 2, 2, 'ok', 'd', 1.0, 't')",
                           [("ana", .47, 0, 0), ("bo", .95, 5, 1)])
    connection.commit()
    connection.close()
    old = {r.student: r for r in store.load(tmp_path, A)}
    assert [(r.notebook, r.attempt, r.attempts) for r in old.values()] == [(attempts.UNKNOWN, 1, 1)] * 2
    with sqlite3.connect(tmp_path / store.DB_NAME) as connection:
        assert [r[1] for r in connection.execute("PRAGMA table_info(results)")] == store.COLUMNS
        assert [r[1] for r in connection.execute("PRAGMA table_info(results)") if r[5]] == store.KEY
    store.save(tmp_path, row("bo", .95, 5, graded_at="t2"), attempt=HONEST)  # regraded after the upgrade
    bo = _one(tmp_path, "bo")
    assert (bo.notebook, bo.attempt, bo.attempts, bo.graded_at) == (HONEST, 1, 1, "t2")  # the same row, not an attempt
    store.save(tmp_path, row("ana", .47, 0), attempt=GUESS)
    store.save(tmp_path, row("ana", .98, 0), attempt=OTHER_NAMING)  # from now on a changed notebook counts
    assert (_one(tmp_path, "ana").accuracy, _one(tmp_path, "ana").attempts) == (.47, 2)
    with sqlite3.connect(tmp_path / store.DB_NAME) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert not connection.execute("SELECT name FROM sqlite_master WHERE name LIKE '%before%'").fetchall()


def test_every_attempt_keeps_its_ledger(tmp_path):
    for key, text in ((GUESS, "first\n"), (OTHER_NAMING, "second\n")):
        store.save_ledger(tmp_path, A, "ana", text, attempt=key)
    assert store.ledger_path(tmp_path, A, "ana").read_text() == "second\n"  # the latest run
    kept = tmp_path / store.LEDGER_DIR / A / store.ATTEMPT_LEDGERS / "ana"
    assert {p.name: p.read_text() for p in kept.iterdir()} == {f"{GUESS}.jsonl": "first\n",
                                                               f"{OTHER_NAMING}.jsonl": "second\n"}


@pytest.mark.parametrize("student", ['=1+HYPERLINK("evil.example","x")', "+1", "-2+3", "@SUM(A1)", "=A1"])
def test_every_text_cell_of_the_leaderboard_csv_is_text_whatever_follows(tmp_path, student):
    store.save(tmp_path, replace(row(student, -0.5, 3, review="=1+1"), detail="-1-1"))
    cells = list(csv.DictReader(io.StringIO(leaderboard.build(tmp_path, A)["csv"].read_text())))[0]
    for column in leaderboard.TEXT_COLUMNS:
        assert not cells[column].startswith(spreadsheet.FORMULA_STARTS), (column, cells[column])
    assert cells["student"] == "'" + student and cells["review"] == "'=1+1"
    assert cells["detail"] == leaderboard.DETAIL_WITHHELD  # the shared detail is the grader's words, never the stored text
    assert (cells["accuracy"], cells["annotations"]) == ("-0.5", "3")  # numbers the grader formats stay numbers
    assert spreadsheet.safe_cell("=1+1", numeric=True) == "'=1+1"  # a numeric column that is not a number: guarded


def test_a_counted_attempt_stays_counted_when_a_regrade_makes_no_submission(tmp_path):
    store.save(tmp_path, row("ana", .47, 0, graded_at="t1"), attempt=GUESS)  # counted, failed, on the board
    store.save(tmp_path, row("ana", .98, 0, graded_at="t2"), attempt=OTHER_NAMING)  # the other naming: not ranked
    store.save(tmp_path, row("ana", None, None, graded_at="t3", status="failed"), attempt=GUESS)  # after a DEADLINE
    ana = _one(tmp_path, "ana")
    assert (ana.attempt, ana.accuracy, ana.passed, ana.graded_at, ana.counted_at) == (1, .47, False, "t1", "t1")
    assert ana.review == f"{store.REGRADE_UNCOUNTED} at t3 (status failed), so the counted grading of t1 is kept"
    store.save(tmp_path, row("ana", None, None, graded_at="t4", status="error"), attempt=GUESS)  # again: one note
    assert _one(tmp_path, "ana").review == ana.review.replace("t3 (status failed", "t4 (status error")
    assert [(r.attempt, r.counted_at) for r in store.load_attempts(tmp_path, A, "ana")] == [(1, "t1"), (2, None)]


def test_a_counted_regrade_keeps_counted_at_and_a_changed_accuracy_is_flagged(tmp_path):
    store.save(tmp_path, row("bo", .95, 60, graded_at="t1"), attempt=HONEST)
    store.save(tmp_path, row("bo", .95, 60, graded_at="t2"), attempt=HONEST)  # unchanged: the same row
    bo = _one(tmp_path, "bo")
    assert (bo.accuracy, bo.graded_at, bo.counted_at, bo.review) == (.95, "t2", "t1", "")
    store.save(tmp_path, row("bo", .97, 60, graded_at="t3"), attempt=HONEST)  # a grader fix (or a time bomb)
    bo = _one(tmp_path, "bo")
    assert (bo.accuracy, bo.counted_at) == (.97, "t1") and bo.review.startswith(store.REGRADE_CHANGED), bo.review
    store.save(tmp_path, row("cy", None, None, status="failed"), attempt=GUESS)  # never counted: nothing kept
    store.save(tmp_path, row("cy", .5, 0, graded_at="t5"), attempt=GUESS)
    assert (_one(tmp_path, "cy").accuracy, _one(tmp_path, "cy").counted_at) == (.5, None)  # its first count


def test_a_database_without_counted_at_gains_it_and_its_counted_rows_stay_counted(tmp_path):
    store.save(tmp_path, row("ana", .47, 0, graded_at="t1"), attempt=GUESS)
    with sqlite3.connect(tmp_path / store.DB_NAME) as connection:  # the table of the release before counted_at
        connection.execute("ALTER TABLE results DROP COLUMN counted_at")
    database._READY.clear()
    store.save(tmp_path, row("ana", None, None, graded_at="t2", status="failed"), attempt=GUESS)
    ana = _one(tmp_path, "ana")
    assert (ana.accuracy, ana.counted_at, ana.graded_at) == (.47, "t1", "t1")
    with sqlite3.connect(tmp_path / store.DB_NAME) as connection:
        assert [r[1] for r in connection.execute("PRAGMA table_info(results)")] == store.COLUMNS


def test_a_regrade_never_overwrites_an_attempts_kept_ledger(tmp_path):
    kept = tmp_path / store.LEDGER_DIR / A / store.ATTEMPT_LEDGERS / "ana"
    store.save_ledger(tmp_path, A, "ana", "counted run\n", attempt=GUESS)
    store.save_ledger(tmp_path, A, "ana", "counted run\n", attempt=GUESS)  # the same ledger: nothing new
    store.save_ledger(tmp_path, A, "ana", "no submission\n", attempt=GUESS)  # after a DEADLINE
    assert {p.name: p.read_text() for p in kept.iterdir()} == {f"{GUESS}.jsonl": "counted run\n",
                                                               f"{GUESS}.run2.jsonl": "no submission\n"}
    assert store.ledger_path(tmp_path, A, "ana").read_text() == "no submission\n"


def _bought_ledger(count: int) -> str:
    """A run's ledger that bought `count` labels in one call and never submitted."""
    entry = {"seq": 0, "time": 1.0, "op": "annotate", "ok": True, "error": None, "message": None,
             "indices": list(range(32)), "n_indices": count, "new": list(range(32)), "n_new": count, "count": count}
    return json.dumps(entry) + "\n" + json.dumps({**entry, "seq": 1, "n_new": 0, "count": count}) + "\n"


def test_a_run_that_bought_labels_without_a_submission_shows_them_on_its_row():
    summary = protocol.summarize(protocol.read_ledger(_bought_ledger(60)))
    assert (summary.accuracy, summary.annotations, summary.bought) == (None, None, 60)
    assert protocol.summarize([]).bought == 0
    settings = judge.Settings(timeout=60, memory_gb=1)
    verdict = judge.judge(judge.Evidence(ledger_text=_bought_ledger(60), nbgrader_ok=True), settings)
    assert (verdict.status, verdict.passed, verdict.accuracy, verdict.annotations) == ("failed", False, None, 60)
    assert judge.BOUGHT_NOTE % 60 in verdict.detail, verdict.detail
    timed_out = judge.judge(judge.Evidence(ledger_text=_bought_ledger(5), timed_out=True), settings)
    assert (timed_out.status, timed_out.annotations) == ("timeout", 5)
    assert judge.judge(judge.Evidence(nbgrader_ok=True), settings).annotations is None  # bought nothing
    points = judge.judge(judge.Evidence(ledger_text=_bought_ledger(5), nbgrader_ok=True),
                         judge.Settings(60, 1, kind="points"))
    assert points.annotations is None and judge.BOUGHT_NOTE % 5 not in points.detail


def test_labels_bought_in_an_attempt_without_a_submission_spend_it(tmp_path):
    """Attempt 1 buys 60 labels and crashes before submit (its labels in the error); attempt 2 types them in."""
    store.save(tmp_path, row("bo", .95, 60), attempt=HONEST)
    store.save(tmp_path, row("mal", None, 60, status="failed", graded_at="t1"), attempt=GUESS)
    store.save(tmp_path, row("mal", .98, 1, graded_at="t2"), attempt=OTHER_NAMING)
    mal = _one(tmp_path, "mal")
    assert (mal.attempt, mal.attempts, mal.passed, mal.accuracy, mal.annotations) == (1, 2, False, None, 60)
    assert "the first that counted: it bought labels" in mal.detail, mal.detail
    assert "the latest, attempt 2, passed and is not ranked" in mal.detail, mal.detail
    assert [(r.student, r.passed) for _, r in leaderboard.rank(store.load(tmp_path, A))] == [("bo", True),
                                                                                            ("mal", False)]
    # a regrade of the same bytes that buys nothing (a time bomb) cannot void it: its rows are kept
    store.save(tmp_path, row("mal", None, None, status="failed", graded_at="t3"), attempt=GUESS)
    mal = _one(tmp_path, "mal")
    assert (mal.attempt, mal.annotations, mal.counted_at) == (1, 60, "t1") and mal.review.startswith(
        store.REGRADE_UNCOUNTED), mal
    # hidden tracks: labels bought on any one track spend the attempt
    parts = [row("ed", None, 7, "7,1", status="failed", level="track"),
             row("ed", None, None, "2,5", status="failed", level="track"),
             row("ed", None, None, "7,1 2,5", status="failed")]
    store.save(tmp_path, parts, attempt=GUESS)
    store.save(tmp_path, [replace(r, accuracy=.97, annotations=1, passed=True) for r in parts], attempt=HONEST)
    ed = _one(tmp_path, "ed")
    assert (ed.attempt, ed.passed) == (1, False), ed
