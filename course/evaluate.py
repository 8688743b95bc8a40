"""Accuracy of a `predict` function on the track's held-out images.

`predict(images)` takes uint8 images (N, 28, 28) and returns the *original*
digits (N,), e.g. 7 or 1 for track 7,1. The labels it is scored against are kept
inside the oracle's backend (locally) or the annotation service (under the
autograder), never in a public array.

Held-out labels are labels: every score computed from them tells the kernel
something about them. So `accuracy` scores only in practice mode (locally, the
default). In exam mode (under the autograder, or locally with ``COURSE_EXAM=1`` or
`course.grading.exam_mode()`) it returns ``nan`` without calling `predict`, and
prints one notice per process on stdout: a loop that waits for a good score then
keeps going (spends annotations) instead of crashing, and a notebook has to
decide without test labels (cross-validation on bought labels, agreement of two
models, a label-free stopping rule). The only held-out score in exam mode is the
counted submission (`course.grading.submit`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix

from course import data, oracle, protocol
from course.context import CONTEXT, track_name
from course.exceptions import PredictionError  # noqa: F401  (re-exported: course.evaluate.PredictionError still works

Predict = Callable[[np.ndarray], np.ndarray]
_NOTICE_SHOWN: list[bool] = []  # the exam-mode notice is printed once per process
EXAM_NOTICE = ("exam mode: course.evaluate.accuracy gives no score (it returns nan), as under the grader: no "
               "held-out score reaches the kernel before its one counted submission (course.grading.submit). "
               "Decide without test labels, e.g. cross-validate on the labels you bought or check that two "
               "models agree.")


def track_test_images(split: str = "public", track=None) -> np.ndarray:
    """The held-out images of the track's digits (the ones `accuracy` scores)."""
    if split not in protocol.SPLITS:
        raise ValueError(f"split must be 'public' or 'private', got {split!r}.")
    s = data.split(track)
    if split == protocol.PRIVATE:
        return s.private_test_images
    return s.public.test_images[s.public.test_labels == data.C]


def check_predictions(predictions, n_images: int, track: Sequence[int]) -> np.ndarray:
    """Validate what `predict` returned; a clear `PredictionError` says what is wrong.

    The hints name what a `predict` most likely returned instead (probabilities, a
    column vector, a boolean test, cluster ids, the merged class C).
    """
    if hasattr(predictions, "detach"):  # a torch tensor
        predictions = predictions.detach().cpu().numpy()
    elif hasattr(predictions, "to_numpy"):  # a pandas Series
        predictions = predictions.to_numpy()
    array = np.asarray(predictions)
    if array.shape != (n_images,):
        hint = ""
        if array.ndim == 2 and array.shape[0] == n_images:
            hint = (" Flatten the column with .ravel()." if array.shape[1] == 1
                    else " Did you return probabilities? Take .argmax(axis=1) and map it to digits.")
        raise PredictionError(
            f"predict returned shape {array.shape}; expected ({n_images},): one digit per image.{hint}")
    digits = track_name(tuple(track))
    example = f"np.where(is_{track[0]}, {track[0]}, {track[1]})"
    if array.dtype.kind == "b":
        raise PredictionError(f"predict returned booleans; expected digits {digits}: map them, e.g. {example}.")
    if array.dtype.kind == "f":
        whole = np.all(np.isfinite(array)) and np.all(array == np.round(array))
        raise PredictionError(
            f"predict returned {array.dtype} values; expected integer digits "
            + ("(cast with .astype(int))." if whole else "(some are not whole numbers: scores, not digits?)."))
    if array.dtype.kind not in "iu":
        raise PredictionError(f"predict returned {array.dtype} values; expected integer digits {digits}.")
    unexpected = sorted(set(np.unique(array).tolist()) - set(track))
    if unexpected:
        names = ", ".join(data.class_name(v) for v in unexpected)
        hint = ("Map the merged class C to a digit first." if data.C in unexpected
                else f"Map cluster or class numbers to the track's digits, e.g. {example}.")
        raise PredictionError(
            f"predict returned labels {names}; expected only the track's digits {digits}. {hint}")
    return array.astype(np.int64)


def accuracy(predict: Predict, track=None) -> float:
    """Share of the public held-out track images that `predict` labels correctly.

    Practice mode only. In exam mode it returns ``nan`` (without calling
    `predict`) and prints, once per process, why: see the module docstring.
    """
    if CONTEXT.exam():
        if not _NOTICE_SHOWN:
            _NOTICE_SHOWN.append(True)
            print(EXAM_NOTICE)  # stdout: nbgrader zeroes a test cell that writes to stderr
        return float("nan")
    track = CONTEXT.track(track)
    images = track_test_images(protocol.PUBLIC, track)
    predictions = check_predictions(predict(images), len(images), track)
    score, _ = oracle.backend(track).score(predictions, protocol.PUBLIC)
    return score


def merged_accuracy(predict: Predict, track=None) -> float:
    """Accuracy of a merged-label model (e.g. the baseline) on the public test split.

    It compares with the merged labels (`Dataset.test_labels`), which are public,
    so it is available in exam mode too.
    """
    ds = data.split(track).public
    return float(np.mean(np.asarray(predict(ds.test_images)) == ds.test_labels))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray,
                     labels: Sequence[int] | None = None) -> np.ndarray:
    """Counts (n_labels, n_labels): row = true label, column = predicted label."""
    if labels is None:
        labels = np.union1d(np.unique(y_true), np.unique(y_pred))
    return _sk_confusion_matrix(y_true, y_pred, labels=list(labels))
