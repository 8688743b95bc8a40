"""MNIST with the digits of a *track* merged into one class C.

`load()` returns a `Dataset`: the training pool (images + merged labels) and the
public test split (images + merged labels). The original digit of a C sample is
what the oracle sells; it is deliberately not reachable from any public attribute
here. The track's test samples are split once, with a fixed seed, into a public
half (for local scoring) and a private half (for the autograder).

Where the MNIST files come from, in order:
1. env ``COURSE_DATA_DIR`` (a folder holding ``MNIST/raw/*.gz`` or unpacked files),
2. the repository's ``data/`` folder,
3. files unpacked or downloaded earlier into the cache folder,
4. a torchvision download into the cache folder (unless ``COURSE_OFFLINE=1``).
Every file is checked against its known SHA-256 before use.

Under the autograder, ``COURSE_DATA_DIR`` holds a prepared grading file instead
(`GRADING_FILE`): merged labels, a secretly shuffled pool and unlabelled private
test images. `load()` reads it transparently.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from course import config, files
from course.context import CONTEXT, parse_track, track_name  # noqa: F401  (re-exported: course.data.parse_track)
from course.exceptions import DataError, TrackError  # noqa: F401  (re-exported: course.data.DataError still works)

C = config.MERGED_LABEL
N_DIGITS = 10
GRADING_FILE = "course-grading.npz"
RAW_FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


# --- tracks -----------------------------------------------------------------


def class_name(label: int) -> str:
    """Display name of a merged label: ``"C"`` for the merged class, else the digit."""
    return "C" if int(label) == C else str(int(label))


def merge(labels: np.ndarray, track: tuple[int, ...]) -> np.ndarray:
    """Return a copy of digit labels with every track digit replaced by `C`."""
    merged = np.asarray(labels).astype(np.int64)
    merged[np.isin(merged, track)] = C
    return merged


# --- the public data set ----------------------------------------------------


@dataclass(frozen=True, repr=False)
class Dataset:
    """The pool and the public test split with merged labels (read-only arrays).

    images: (N, 28, 28) uint8, the training pool the oracle indexes into.
    labels: (N,) int64, merged (track digits -> C).
    c_indices: (K,) int64, pool indices whose label is C.
    test_images, test_labels: the public test split, labels merged.
    track: the merged digits, e.g. (7, 1).
    """

    images: np.ndarray
    labels: np.ndarray
    c_indices: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    track: tuple[int, ...]
    source: str = field(default="mnist")
    _private_test_size: int | None = field(default=None, repr=False)  # a grading file's private test images (a count, no labels)

    @property
    def classes(self) -> list[int]:
        """Merged labels in model order: the known digits ascending, then C."""
        return [d for d in range(N_DIGITS) if d not in self.track] + [C]

    @property
    def class_names(self) -> list[str]:
        return [class_name(c) for c in self.classes]

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        pool = f"pool={len(self.images)} images ({len(self.c_indices)} in C)"
        if self.source != "grading":
            return f"Dataset(track={track_name(self.track)}, {pool}, public test={len(self.test_images)} images)"
        # a grading file (a live event's pool, or the grader's): shuffled, the private test labels elsewhere
        where, scorer = ("the event's", "the event server") if CONTEXT.in_event() else ("the grader's", "the grader")
        return (f"Dataset(track={track_name(self.track)}, {where} {pool}, shuffled; "
                f"public test={len(self.test_images)} images with merged labels; "
                f"private test={self._private_test_size} images without labels, scored by {scorer})")


@dataclass(frozen=True)
class _Split:
    """Everything for one track, including what must stay hidden (private)."""

    public: Dataset
    private_test_images: np.ndarray
    # Truth below is None under the autograder: the service holds it instead.
    pool_digits: np.ndarray | None
    public_test_digits: np.ndarray | None
    private_test_digits: np.ndarray | None


def load(track: str | Iterable[int] | None = None) -> Dataset:
    """Load the merged data set for `track` (default: env ``COURSE_TRACK``, else "7,1").

    It also makes `track` the *active track*: the one `course.oracle`,
    `course.evaluate`, `course.grading` and `course.models.baseline()` use when
    they are given no track.
    """
    track = parse_track(track)
    result = split(track).public
    CONTEXT.set_track(track)
    return result


def active_track() -> tuple[int, ...]:
    """The track of the most recent `load()`, else the default track (`course.context` decides)."""
    return CONTEXT.track()


def split(track: str | Iterable[int] | None = None) -> _Split:
    """Everything for `track` (default: the active track), the hidden truth included.

    For grader and benchmark code, not for notebooks: the truth fields are the
    labels the oracle sells (None when reading the autograder's grading file).
    Unlike `load`, it does not change the active track.
    """
    return _cached_split(CONTEXT.track(track), CONTEXT.data_dir())


_split = split  # the old private name, kept for existing callers


def forget() -> None:
    """Drop the arrays this process keeps (the MNIST files as read, each track's split) until the next `load`.

    For a process that reads the data once and then keeps running (the grader, after it wrote
    its grading files): some 60 MB it no longer needs.
    """
    _cached_split.cache_clear()
    _read_mnist.cache_clear()


@functools.lru_cache(maxsize=4)
def _cached_split(track: tuple[int, ...], data_dir: str) -> _Split:
    grading = Path(data_dir) / GRADING_FILE if data_dir else None
    if grading is not None and grading.is_file():
        return _grading_split(grading, track)
    return _mnist_split(track)


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


def _make_public(images, labels, test_images, test_labels, track, source, private_test_size=None) -> Dataset:
    labels = np.asarray(labels, dtype=np.int64)
    return Dataset(
        images=_readonly(np.asarray(images, dtype=np.uint8)),
        labels=_readonly(labels),
        c_indices=_readonly(np.flatnonzero(labels == C).astype(np.int64)),
        test_images=_readonly(np.asarray(test_images, dtype=np.uint8)),
        test_labels=_readonly(np.asarray(test_labels, dtype=np.int64)),
        track=track,
        source=source,
        _private_test_size=private_test_size,
    )


def split_test_indices(test_digits: np.ndarray, track: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Public and private indices into the MNIST test set (fixed seed, stratified by digit).

    Every non-track test sample is public; each track digit is split 50/50.
    """
    rng = np.random.default_rng(config.SPLIT_SEED)
    private = []
    for digit in sorted(track):
        members = np.flatnonzero(test_digits == digit)
        n_public = int(round(len(members) * config.PUBLIC_FRACTION))
        private.append(rng.permutation(members)[n_public:])
    private_idx = np.sort(np.concatenate(private))
    public_idx = np.setdiff1d(np.arange(len(test_digits)), private_idx)
    return public_idx, private_idx


def _mnist_split(track: tuple[int, ...]) -> _Split:
    train_x, train_y, test_x, test_y = _read_mnist()
    public_idx, private_idx = split_test_indices(test_y, track)
    public = _make_public(train_x, merge(train_y, track), test_x[public_idx],
                          merge(test_y[public_idx], track), track, "mnist")
    return _Split(
        public=public,
        private_test_images=_readonly(test_x[private_idx]),
        pool_digits=_readonly(train_y.astype(np.int64)),
        public_test_digits=_readonly(test_y[public_idx].astype(np.int64)),
        private_test_digits=_readonly(test_y[private_idx].astype(np.int64)),
    )


def _grading_split(path: Path, track: tuple[int, ...]) -> _Split:
    with np.load(path) as f:
        file_track = tuple(int(d) for d in f["track"])
        if file_track != track:
            raise TrackError(
                f"the grading data is for track {track_name(file_track)}, not "
                f"{track_name(track)}; call course.data.load() without a track."
            )
        private = _readonly(f["private_test_images"])
        public = _make_public(f["images"], f["labels"], f["test_images"], f["test_labels"],
                              track, "grading", private_test_size=len(private))
    return _Split(public, private, None, None, None)


# --- finding, verifying and reading the MNIST files --------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _candidate_dirs() -> list[tuple[str, Path]]:
    places = []
    if os.environ.get(config.ENV_DATA_DIR):
        places.append((f"${config.ENV_DATA_DIR}", Path(os.environ[config.ENV_DATA_DIR]).expanduser()))
    places.append(("the repository's data/ folder", config.REPO_DATA_DIR))
    places.append(("the cache folder", config.cache_dir()))
    return places


def _has_all(raw: Path) -> bool:
    return all((raw / n).is_file() or (raw / f"{n}.gz").is_file() for n in RAW_FILES)


def _verified_raw_dir() -> Path:
    """A folder with the four unpacked, checksum-verified MNIST files."""
    unpacked = config.cache_dir() / "MNIST" / "raw"
    for _, base in _candidate_dirs():
        raw = base / "MNIST" / "raw"
        if _has_all(raw):
            return _materialise(raw, unpacked)
    if os.environ.get(config.ENV_OFFLINE) == "1":
        raise DataError(_not_found_message())
    return _download(unpacked)


def _materialise(raw: Path, unpacked: Path) -> Path:
    """Verify the files in `raw`; unpack any `.gz` into `unpacked` (raw may be read-only)."""
    if all((raw / n).is_file() for n in RAW_FILES):
        _verify(raw)
        return raw
    unpacked.mkdir(parents=True, exist_ok=True)
    for name, expected in RAW_FILES.items():
        target = unpacked / name
        if target.is_file() and _sha256(target) == expected:
            continue
        source = raw / name
        tmp = files.temp_beside(target)
        try:
            if source.is_file():
                shutil.copyfile(source, tmp)
            else:
                with gzip.open(raw / f"{name}.gz", "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            os.replace(tmp, target)  # atomic: never leave a half-written file behind
        finally:
            tmp.unlink(missing_ok=True)
    _verify(unpacked)
    return unpacked


def _verify(raw: Path) -> None:
    for name, expected in RAW_FILES.items():
        actual = _sha256(raw / name)
        if actual != expected:
            raise DataError(
                f"{raw / name} has SHA-256 {actual[:12]}..., expected {expected[:12]}...: "
                "the file is corrupt or not the original MNIST. Delete it and copy the "
                "four MNIST .gz files again."
            )


def _download(unpacked: Path) -> Path:
    from torchvision.datasets import MNIST

    try:
        MNIST(root=str(unpacked.parent.parent), train=True, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(_not_found_message() + f"\nThe download failed too: {exc}") from exc
    _verify(unpacked)
    return unpacked


def _not_found_message() -> str:
    where = "\n".join(f"  - {label}: {path / 'MNIST' / 'raw'}" for label, path in _candidate_dirs())
    return (
        "MNIST files not found. Looked for train-images-idx3-ubyte(.gz) and the three other "
        f"files in:\n{where}\nPut the four MNIST .gz files in one of these folders, or set "
        f"{config.ENV_DATA_DIR} to a folder that holds MNIST/raw/, or go online once so "
        "torchvision can download them."
    )


@functools.lru_cache(maxsize=1)
def _read_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train digits, test images, test digits): uint8 (N, 28, 28) and int64 (N,).

    Read with numpy, not torchvision: importing torchvision costs seconds in every process
    that loads the data (each kernel, each grader), for a format of a dozen bytes of header.
    """
    raw = _verified_raw_dir()
    train_x, train_y, test_x, test_y = (_read_idx(raw / name) for name in RAW_FILES)
    return train_x, train_y.astype(np.int64), test_x, test_y.astype(np.int64)


def _read_idx(path: Path) -> np.ndarray:
    """An unpacked IDX file (MNIST's format): two zero bytes, a type byte (0x08: unsigned
    bytes), the number of dimensions, each size as a big-endian 32-bit integer, then the data."""
    blob = path.read_bytes()
    ndim = blob[3] if len(blob) > 4 else 0
    if blob[:3] != b"\0\0\x08" or not 1 <= ndim <= 3:
        raise DataError(f"{path} is not an MNIST file (IDX, unsigned bytes): delete it and copy the "
                        "four MNIST .gz files again.")
    shape = tuple(int.from_bytes(blob[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim))
    return np.frombuffer(blob, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()
