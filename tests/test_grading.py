"""course.evaluate and course.grading.submit in their local form."""

import numpy as np
import pytest
import torch

from course import config, data, evaluate, grading, oracle


def oracle_predict(images):
    """A cheating-free 'perfect' predict for tests: looks images up in the public split."""
    split = data.split()
    track_imgs = evaluate.track_test_images("public")
    truth = split.public_test_digits[split.public.test_labels == data.C]
    assert len(images) == len(track_imgs)
    return truth.copy()


def test_track_test_images(ds):
    public = evaluate.track_test_images("public")
    private = evaluate.track_test_images("private")
    assert public.shape[1:] == (28, 28) and len(public) == int(np.sum(ds.test_labels == data.C))
    assert len(private) == 1028 + 1135 - len(public)
    with pytest.raises(ValueError, match="public"):
        evaluate.track_test_images("secret")


def test_submit_perfect_passes(capsys):
    result = grading.submit(oracle_predict)
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


def test_result_threshold():
    r = grading.Result(accuracy=config.TARGET_ACCURACY, annotations=1, passed=True, n_images=10)
    assert "1 annotation " in str(r)


def test_accuracy_and_confusion():
    assert evaluate.accuracy(oracle_predict) == 1.0
    m = evaluate.confusion_matrix(np.array([7, 7, 1]), np.array([7, 1, 1]), labels=[7, 1])
    assert m.tolist() == [[1, 1], [0, 1]]
