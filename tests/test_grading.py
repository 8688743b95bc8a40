"""course.evaluate and course.grading.submit in their local form."""

import numpy as np
import pytest
import torch

from course import config, data, evaluate, grading, oracle
from helpers.mnist import Truth


@pytest.fixture(scope="module")
def truth(mnist_raw):
    """The digits of MNIST's test images, read from the files by the test (not through course.data)."""
    return Truth(mnist_raw, "test")


@pytest.fixture
def perfect(truth):
    """A predict that is always right: it looks each image up in the MNIST files."""
    return truth.digits


def with_mistakes(truth, k):
    """A predict that is right except on its first `k` images."""
    def predict(images):
        digits = truth.digits(images)
        digits[:k] = np.where(digits[:k] == 7, 1, 7)
        return digits
    return predict


def test_track_test_images(ds, truth):
    public = evaluate.track_test_images("public")
    assert set(truth.digits(public).tolist()) == {7, 1}  # the track's digits, by the files' own labels
    private = evaluate.track_test_images("private")
    assert public.shape[1:] == (28, 28) and len(public) == int(np.sum(ds.test_labels == data.C))
    assert len(private) == 1028 + 1135 - len(public)
    with pytest.raises(ValueError, match="public"):
        evaluate.track_test_images("secret")


def test_submit_perfect_passes(capsys, perfect):
    result = grading.submit(perfect)
    assert result.accuracy == 1.0 and result.passed and result.annotations == 0
    assert result.split == "public"
    assert "PASSED" in capsys.readouterr().out


def test_submit_constant_fails_and_counts(ds, capsys):
    oracle.annotate(ds.c_indices[:4])
    result = grading.submit(lambda imgs: np.full(len(imgs), 7))
    assert not result.passed and result.annotations == 4
    assert 0.3 < result.accuracy < 0.7
    assert "NOT YET" in capsys.readouterr().out


def test_submit_accepts_torch_and_lists():
    assert grading.submit(lambda imgs: torch.full((len(imgs),), 1)).accuracy > 0.3
    assert grading.submit(lambda imgs: [7] * len(imgs)).accuracy > 0.3


@pytest.mark.parametrize("bad, message", [
    (lambda imgs: np.zeros((len(imgs), 2), dtype=int), "argmax"),
    (lambda imgs: np.zeros(3, dtype=int), "one digit per image"),
    (lambda imgs: np.full(len(imgs), 7.0), "integer"),
    (lambda imgs: np.full(len(imgs), data.C), "Map the merged class C"),
    (lambda imgs: np.full(len(imgs), 3), "3"),
    (lambda imgs: np.zeros(len(imgs), dtype=int), "Map cluster or class numbers"),
    (lambda imgs: np.zeros(len(imgs), dtype=bool), r"booleans.*np\.where\(is_7, 7, 1\)"),
    (lambda imgs: np.full(len(imgs), 0.5), "not whole numbers"),
    (lambda imgs: np.full((len(imgs), 1), 7), r"\.ravel\(\)"),
    (lambda imgs: np.full(len(imgs), "7"), "integer digits 7,1"),
])
def test_submit_rejects_broken_predict(bad, message):
    with pytest.raises(evaluate.PredictionError, match=message):
        grading.submit(bad)


def test_the_target_accuracy_passes_and_one_mistake_more_does_not(ds, truth, capsys):
    oracle.annotate(ds.c_indices[:1])
    n = len(evaluate.track_test_images("public"))
    allowed = int(np.floor(n * (1 - config.TARGET_ACCURACY) + 1e-9))  # mistakes at or above the target
    at = grading.submit(with_mistakes(truth, allowed))
    below = grading.submit(with_mistakes(truth, allowed + 1))
    assert at.accuracy == pytest.approx((n - allowed) / n) and at.passed and at.n_images == n
    assert at.annotations == 1 and "1 annotation " in str(at)  # one, not "1 annotations"
    assert below.accuracy == pytest.approx((n - allowed - 1) / n) and not below.passed
    assert "PASSED" in capsys.readouterr().out.split("NOT YET")[0]


def test_accuracy_and_confusion(perfect, truth):
    assert evaluate.accuracy(perfect) == 1.0
    assert evaluate.accuracy(with_mistakes(truth, 10)) == pytest.approx(1 - 10 / len(evaluate.track_test_images("public")))
    m = evaluate.confusion_matrix(np.array([7, 7, 1]), np.array([7, 1, 1]), labels=[7, 1])
    assert m.tolist() == [[1, 1], [0, 1]]
