"""The true digit of an image, read by the tests themselves from the MNIST files (not through `course.data`).

`course.data` merges, shuffles and splits MNIST; a test that takes its expected digits from there
checks the code against itself. `Truth` parses the raw idx files here and looks an image up by its
pixels, so the oracle's answers and the graded accuracies are compared with the files' own labels.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (``.gz`` or unpacked) as an array: magic, dimensions (big-endian), uint8 data."""
    packed = path.with_name(path.name + ".gz")
    raw = gzip.decompress(packed.read_bytes()) if packed.is_file() else path.read_bytes()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


class Truth:
    """The digits of one MNIST split by image: ``Truth(raw, "test").digits(images)``."""

    def __init__(self, raw_dir: Path, split: str):
        images_name, labels_name = FILES[split]
        images, labels = read_idx(Path(raw_dir) / images_name), read_idx(Path(raw_dir) / labels_name)
        self.labels: dict[bytes, set[int]] = {}
        for image, label in zip(images, labels):
            self.labels.setdefault(image.tobytes(), set()).add(int(label))

    def digits(self, images: np.ndarray) -> np.ndarray:
        """The digit of each image; an image found twice with two different digits is an error."""
        out = []
        for image in np.asarray(images, dtype=np.uint8):
            found = self.labels[image.tobytes()]  # KeyError: not an image of this split
            assert len(found) == 1, f"an image with two digits in MNIST: {found}"
            out.append(next(iter(found)))
        return np.array(out, dtype=np.int64)
