"""The features and the truth a benchmark run works on, for one track.

Every peer strategy sees the same features as the reference notebooks: the
baseline CNN's embedding (`course.models.baseline(track).embed`, 64-d dense layer
or 1568-d conv block), which was trained on merged labels only. The query pool is the C part of the training pool;
the accuracy is measured on the *private* test split, as the autograder does.

The original digits come from the instructor side (`course.data._split`): this
is trusted benchmark code. It never saves a model trained on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from course import data, models

DEFAULT_LAYER = "dense"  # the baseline's 64-d embedding


@dataclass(frozen=True)
class TrackData:
    """Pool and private test features with their original digits, for one track.

    X_pool: (K, 64) embeddings of the pool's C samples; y_pool: (K,) their digits.
    X_test: (M, 64) embeddings of the private test images; y_test: (M,) their digits.
    """

    track: tuple[int, ...]
    X_pool: np.ndarray
    y_pool: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def name(self) -> str:
        return data.track_name(self.track)


def load_track(track: str, layer: str = DEFAULT_LAYER) -> TrackData:
    """Embed the C pool and the private test split of `track` with its cached baseline.

    `layer`: which baseline features, as in `CNNClassifier.embed` ("dense": 64-d, "conv": 1568-d).
    """
    digits = data.parse_track(track)
    split = data._split(digits)
    if split.pool_digits is None or split.private_test_digits is None:
        raise RuntimeError(
            "the benchmark needs the MNIST files with labels; COURSE_DATA_DIR points at a "
            "grading folder. Unset it or point it at a folder holding MNIST/raw/."
        )
    pool = split.public
    base = models.baseline(digits)
    return TrackData(
        track=digits,
        X_pool=base.embed(pool.images[pool.c_indices], layer=layer),
        y_pool=np.asarray(split.pool_digits[pool.c_indices], dtype=np.int64),
        X_test=base.embed(split.private_test_images, layer=layer),
        y_test=np.asarray(split.private_test_digits, dtype=np.int64),
    )
