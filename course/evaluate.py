"""Accuracy of a `predict` function on the track's held-out images.

`predict(images)` takes uint8 images (N, 28, 28) and returns the *original*
digits (N,), e.g. 7 or 1 for track 7,1. The labels it is scored against are kept
inside the oracle's backend (locally) or the annotation service (under the
autograder), never in a public array.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix

from course import data, oracle

Predict = Callable[[np.ndarray], np.ndarray]


class PredictionError(ValueError):
    """`predict` broke its contract (shape, dtype or labels)."""


def track_test_images(split: str = "public", track=None) -> np.ndarray:
    """The held-out images of the track's digits (the ones `accuracy` scores)."""
    if split not in ("public", "private"):
        raise ValueError(f"split must be 'public' or 'private', got {split!r}.")
    s = data._split(data.parse_track(track) if track is not None else data.active_track())
    if split == "private":
        return s.private_test_images
    return s.public.test_images[s.public.test_labels == data.C]


def check_predictions(predictions, n_images: int, track: Sequence[int]) -> np.ndarray:
    """Validate what `predict` returned; a clear `PredictionError` says what is wrong."""
    if hasattr(predictions, "detach"):  # a torch tensor
        predictions = predictions.detach().cpu().numpy()
    array = np.asarray(predictions)
    if array.shape != (n_images,):
        raise PredictionError(
            f"predict returned shape {array.shape}; expected ({n_images},): one digit per image."
            + (" Did you return probabilities? Take argmax first." if array.ndim == 2 else "")
        )
    if array.dtype.kind not in "iu":
        raise PredictionError(
            f"predict returned {array.dtype} values; expected integer digits (use .astype(int))."
        )
    unexpected = sorted(set(np.unique(array).tolist()) - set(track))
    if unexpected:
        names = ", ".join(data.class_name(v) for v in unexpected)
        raise PredictionError(
            f"predict returned labels {names}; expected only the track's digits "
            f"{data.track_name(tuple(track))}. Map the merged class C to a digit first."
        )
    return array.astype(np.int64)


def accuracy(predict: Predict, track=None) -> float:
    """Share of the public held-out track images that `predict` labels correctly."""
    track = data.parse_track(track) if track is not None else data.active_track()
    images = track_test_images("public", track)
    predictions = check_predictions(predict(images), len(images), track)
    score, _ = oracle.backend(track).score(predictions, "public")
    return score


def merged_accuracy(predict: Predict, track=None) -> float:
    """Accuracy of a merged-label model (e.g. the baseline) on the public test split."""
    ds = data.load(track) if track is not None else data.load(data.active_track())
    return float(np.mean(np.asarray(predict(ds.test_images)) == ds.test_labels))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray,
                     labels: Sequence[int] | None = None) -> np.ndarray:
    """Counts (n_labels, n_labels): row = true label, column = predicted label."""
    if labels is None:
        labels = np.union1d(np.unique(y_true), np.unique(y_pred))
    return _sk_confusion_matrix(y_true, y_pred, labels=list(labels))
