"""Grading data for one run: what the kernel may see, and the truth only the service gets.

The grader is trusted instructor code, so it reads the true MNIST through
`course.data`. For each batch it derives the seed from the assignment's secret (`autograder.grading.secret`), shuffles the pool, the public
and the private test images, and writes

- ``<data_dir>/course-grading.npz`` (the format `course.data._grading_split` reads):
  track, images, labels (merged), test_images, test_labels (merged),
  private_test_images - no original label of a C sample, no private label;
- ``<truth_path>``: the pool digits and the track digits of both test splits in
  the same shuffled order, read once by the annotation service and deleted.

Indices or predictions remembered from a local run point at other images here.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from course import data


@dataclass(frozen=True)
class Prepared:
    """Paths of one run's grading data; `seed` never leaves the grader."""

    data_file: Path
    truth_file: Path
    n_pool: int
    n_private: int


def _write_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def prepare(track: tuple[int, ...], data_dir: Path, truth_path: Path, seed: int | None = None) -> Prepared:
    """Write the shuffled, label-free grading file and the service's truth file."""
    seed = secrets.randbits(64) if seed is None else seed
    rng = np.random.default_rng(seed)
    split = data.split(track)  # the grader's own, fully labelled view
    ds = split.public
    pool = rng.permutation(len(ds.images))
    public = rng.permutation(len(ds.test_images))
    private = rng.permutation(len(split.private_test_images))

    test_labels = ds.test_labels[public]
    public_digits = split.public_test_digits[public][test_labels == data.C]
    data_dir.mkdir(parents=True, exist_ok=True)
    _write_npz(data_dir / data.GRADING_FILE,
               track=np.asarray(track, dtype=np.int64),
               images=ds.images[pool], labels=ds.labels[pool],
               test_images=ds.test_images[public], test_labels=test_labels,
               private_test_images=split.private_test_images[private])
    _write_npz(truth_path, track=np.asarray(track, dtype=np.int64),
               pool_digits=split.pool_digits[pool], public_digits=public_digits,
               private_digits=split.private_test_digits[private])
    return Prepared(data_dir / data.GRADING_FILE, truth_path, len(pool), len(private))


def checkpoint(track: tuple[int, ...]) -> Path:
    """The baseline checkpoint of `track` in the grader's cache (trained once if missing).

    It saw only merged labels; the kernel gets this one file, read-only.
    """
    from course import models  # torch: imported only when a batch is prepared

    source = models.checkpoint_path(track)
    if not source.is_file():
        models.baseline(track)  # trains and caches it in the grader's own cache
    return source
