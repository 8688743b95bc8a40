"""The features and the truth a benchmark run works on, for one track.

Every peer strategy sees features of the baseline CNN (`course.models.baseline(track)`),
which was trained on merged labels only, in one of two sets (`FEATURE_SETS`):

- ``conv``: the conv block (1568 numbers) reduced by PCA to `CONV_PCA_COMPONENTS`
  dimensions, the PCA fitted on the pool without labels: what notebooks 03 and 05 use,
  so peers and notebooks choose from the same features;
- ``dense``: the 64-d dense embedding, what a participant reaches for first (it learned
  to map the track's digits onto one class, so it keeps less of what tells them apart).

The query pool is the C part of the training pool; the accuracy is measured on the
*private* test split, as the autograder does.

The original digits come from the instructor side (`course.data._split`): this
is trusted benchmark code. It never saves a model trained on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA

from course import config, data, models

CONV_PCA_COMPONENTS = 30  # as N_COMPONENTS in notebooks 03 and 05
FEATURE_SETS = {
    "conv": f"conv block (1568-d) reduced by PCA to {CONV_PCA_COMPONENTS} dimensions, as notebooks 03 and 05",
    "dense": "64-d dense embedding",
}
DEFAULT_FEATURES = ("conv", "dense")


@dataclass(frozen=True)
class TrackData:
    """Pool and private test features with their original digits, for one track.

    X_pool: (K, D) features of the pool's C samples; y_pool: (K,) their digits.
    X_test: (M, D) features of the private test images; y_test: (M,) their digits.
    """

    track: tuple[int, ...]
    X_pool: np.ndarray
    y_pool: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def name(self) -> str:
        return data.track_name(self.track)


def load_track(track: str, feature_set: str = DEFAULT_FEATURES[0]) -> TrackData:
    """Features of the C pool and the private test split of `track`, from its cached baseline.

    `feature_set`: a key of `FEATURE_SETS` ("conv": PCA of the conv block, "dense": 64-d).
    """
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature_set must be one of {', '.join(FEATURE_SETS)}, got {feature_set!r}.")
    digits = data.parse_track(track)
    split = data._split(digits)
    if split.pool_digits is None or split.private_test_digits is None:
        raise RuntimeError(
            "the benchmark needs the MNIST files with labels; COURSE_DATA_DIR points at a "
            "grading folder. Unset it or point it at a folder holding MNIST/raw/."
        )
    pool = split.public
    base = models.baseline(digits)
    X_pool = base.embed(pool.images[pool.c_indices], layer=feature_set)
    X_test = base.embed(split.private_test_images, layer=feature_set)
    if feature_set == "conv":  # unsupervised, fitted on the pool only, as the notebooks do
        pca = PCA(n_components=CONV_PCA_COMPONENTS, random_state=config.SEED).fit(X_pool)
        X_pool, X_test = pca.transform(X_pool), pca.transform(X_test)
    return TrackData(
        track=digits,
        X_pool=X_pool,
        y_pool=np.asarray(split.pool_digits[pool.c_indices], dtype=np.int64),
        X_test=X_test,
        y_test=np.asarray(split.private_test_digits, dtype=np.int64),
    )
