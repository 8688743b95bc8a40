"""Exam mode: no held-out score before the one counted submission, locally and under the real service.

The attacks of issue 10 are replayed here: naming clusters by comparing scores,
reading labels by group testing on `evaluate.accuracy`, and submitting twice to
keep the better labelling. None of them gains anything.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from course import config, data, evaluate, grading, oracle, protocol
from course.context import CONTEXT
from course.exceptions import CourseError, SubmissionRefusedError
from course.service_client import ServiceBackend
from helpers.service import TOKEN, TRACK, direct, ledger_entries

MNIST_DIR = os.environ.get(config.ENV_DATA_DIR, "")  # the tests' own MNIST folder (set by conftest)


@pytest.fixture(autouse=True)
def practice_mode(monkeypatch):
    """Every test starts in practice mode, with the once-per-process notice not yet shown."""
    monkeypatch.delenv(config.ENV_EXAM, raising=False)
    CONTEXT.set_exam(None)
    evaluate._NOTICE_SHOWN.clear()
    yield
    CONTEXT.set_exam(None)
    evaluate._NOTICE_SHOWN.clear()


def truth_of(split: str) -> np.ndarray:
    """The local ground truth of a held-out split (the grader's view, for building predictions)."""
    s = data.split(data.active_track())
    if split == "private":
        return s.private_test_digits.copy()
    return s.public_test_digits[s.public.test_labels == data.C].copy()


def never_called(images):
    raise AssertionError("exam mode must not even run predict for a score it will not give")


# --- the switch ----------------------------------------------------------------------------------


def test_the_switch(monkeypatch):
    assert not grading.is_exam()
    monkeypatch.setenv(config.ENV_EXAM, "1")
    assert grading.is_exam()
    grading.exam_mode(False)  # the in-process switch wins over the environment
    assert not grading.is_exam()
    grading.exam_mode()
    monkeypatch.setenv(config.ENV_EXAM, "0")
    assert grading.is_exam()
    CONTEXT.set_exam(None)
    assert not grading.is_exam()
    monkeypatch.setenv(config.ENV_SERVICE, "unix:/nowhere")  # under the grader it is always on
    grading.exam_mode(False)
    assert grading.is_exam()
    monkeypatch.delenv(config.ENV_SERVICE)
    monkeypatch.setenv(config.ENV_EXAM, "maybe")
    CONTEXT.set_exam(None)
    with pytest.raises(ValueError, match="COURSE_EXAM=1"):
        grading.is_exam()


# --- locally ----------------------------------------------------------------------------------------


def test_accuracy_is_nan_with_one_notice_on_stdout(capsys):
    grading.exam_mode()
    assert math.isnan(evaluate.accuracy(never_called))
    assert math.isnan(evaluate.accuracy(never_called))
    out, err = capsys.readouterr()
    assert out.count("exam mode") == 1 and "nan" in out and err == ""
    assert not [e for e in oracle.backend().ledger() if e["op"] == "score"]


def test_group_testing_on_accuracy_gains_nothing(ds, capsys):
    """151 evaluations that each flip one prediction read 150 labels in practice mode; in exam mode none."""
    base = np.full(len(evaluate.track_test_images()), 7)
    flips = [base.copy() for _ in range(5)]
    for k, flipped in enumerate(flips):
        flipped[k] = 1
    assert len({evaluate.accuracy(lambda images, p=p: p) for p in [base, *flips]}) > 1  # practice: it leaks
    grading.exam_mode()
    scores = [evaluate.accuracy(lambda images, p=p: p) for p in [base, *flips]]
    assert all(math.isnan(s) for s in scores)


def test_local_exam_submission_counts_once(ds, capsys):
    grading.exam_mode()
    oracle.annotate(ds.c_indices[:3])
    worse = truth_of("private")
    worse[:100] = np.where(worse[:100] == 7, 1, 7)
    first = grading.submit(lambda images: worse)
    assert first.split == "private" and first.annotations == 3 and first.n_images == len(worse)
    assert first.accuracy == pytest.approx(1 - 100 / len(worse))
    assert "private held-out images" in capsys.readouterr().out
    with pytest.raises(SubmissionRefusedError, match="only the first submission") as refused:
        grading.submit(lambda images: truth_of("private"))  # the better labelling: refused
    assert isinstance(refused.value, CourseError) and "charged nothing" in str(refused.value)
    assert oracle.count() == 3
    summary = protocol.summarize(oracle.backend().ledger())
    assert (summary.accuracy, summary.annotations, summary.submissions) == (first.accuracy, 3, 2)


def test_a_broken_predict_does_not_use_up_the_submission(ds):
    grading.exam_mode()
    with pytest.raises(evaluate.PredictionError):
        grading.submit(lambda images: np.zeros(3, dtype=int))
    assert grading.submit(lambda images: truth_of("private")).accuracy == 1.0


def test_practice_mode_is_unlimited_and_public(ds):
    for _ in range(3):
        result = grading.submit(lambda images: truth_of("public"))
        assert result.split == "public" and result.accuracy == 1.0
    assert evaluate.accuracy(lambda images: truth_of("public")) == 1.0
    with pytest.raises(SubmissionRefusedError, match="private split is scored only once"):
        oracle.backend().score(truth_of("private"), "private")
    grading.exam_mode()  # practice submissions did not use up the exam's one
    assert grading.submit(lambda images: truth_of("private")).split == "private"


# --- under the real service ---------------------------------------------------------------------------


def test_service_accuracy_is_nan_and_never_asks(running, capsys):
    sock, ledger, truth = running
    data.load()
    assert grading.is_exam()
    assert math.isnan(evaluate.accuracy(never_called))
    assert "exam mode" in capsys.readouterr().out
    assert not [e for e in ledger_entries(ledger) if e["op"] == "score"]


def test_service_never_scores_the_public_split_even_spoken_to_directly(running):
    sock, ledger, truth = running
    perfect = truth["public_digits"].tolist()
    for _ in range(3):
        reply = direct(sock, "score", split="public", predictions=perfect)
        assert reply["ok"] is False and reply["error"] == "SubmissionRefusedError"
        assert "no held-out score" in reply["message"] and "result" not in reply
    summary = protocol.summarize(protocol.read_ledger(ledger.read_text()))
    assert summary.evaluations == 3 and summary.submissions == 0 and summary.accuracy is None


def test_two_submissions_to_pick_the_better_labelling_gain_nothing(running):
    """Submit labelling A, then B = A with the clusters swapped: only A counts, B is refused."""
    sock, ledger, truth = running
    ds = data.load()
    oracle.annotate(ds.c_indices[:1])
    a = np.where(truth["private_digits"] == 7, 1, 7)  # the wrong naming of two perfect clusters
    first = grading.submit(lambda images: a)
    assert first.accuracy == 0.0 and not first.passed
    with pytest.raises(SubmissionRefusedError, match=r"accuracy 0\.0% .* 1 annotation\)"):
        grading.submit(lambda images: np.where(a == 7, 1, 7))
    reply = direct(sock, "score", split="private", predictions=truth["private_digits"].tolist())
    assert reply["error"] == "SubmissionRefusedError", "a kernel that speaks to the socket gains nothing either"
    summary = protocol.summarize(protocol.read_ledger(ledger.read_text()))
    assert (summary.accuracy, summary.annotations, summary.submissions) == (0.0, 1, 3)


def test_local_and_service_refuse_with_the_same_words(running, monkeypatch):
    """One Rules class: the same bad requests give the same messages on both backends."""
    sock, ledger, truth = running
    remote = ServiceBackend(f"unix:{sock}", TOKEN, TRACK)
    n_pool = len(truth["pool_digits"])
    c_remote = [int(i) for i in np.flatnonzero(np.isin(truth["pool_digits"], TRACK))[:3]]

    def attempts(backend, c_indices, private):
        messages = []
        for action in (lambda: backend.annotate(np.array([n_pool])),
                       lambda: backend.set_budget(-1),
                       lambda: (backend.set_budget(2), backend.annotate(np.array(c_indices)))):
            with pytest.raises(CourseError) as err:
                action()
            messages.append(f"{type(err.value).__name__}: {err.value}")
        backend.set_budget(None)
        backend.annotate(np.array(c_indices[:2]))
        for split in ("public", "private", "private"):
            try:
                backend.score(private if split == "private" else np.full(len(truth["public_digits"]), 7), split)
            except CourseError as exc:
                messages.append(f"{type(exc).__name__}: {exc}")
        return messages

    remote_messages = attempts(remote, c_remote, truth["private_digits"])
    monkeypatch.delenv(config.ENV_SERVICE)
    monkeypatch.setenv(config.ENV_DATA_DIR, MNIST_DIR)
    data._cached_split.cache_clear()
    try:
        grading.exam_mode()
        ds = data.load("7,1")
        local = oracle.LocalBackend(TRACK)
        local_messages = attempts(local, [int(i) for i in ds.c_indices[:3]], truth_of("private"))
    finally:
        data._cached_split.cache_clear()
    assert len(remote_messages) == 5 and local_messages == remote_messages
    assert remote_messages[3].startswith("SubmissionRefusedError: exam mode: no held-out score")
    assert "only the first submission" in remote_messages[4]
