"""An event's data: the participants' pool file and the server's truth, made once at `create`.

It reuses the grader's preparation (`autograder.grading.prepare`): the pool, the public and the
private test images are shuffled with the event's secret seed; the participants' file
(the `course.data` grading-file format, compressed) holds images, merged labels, the
public test split with merged labels and the private test images without labels. The
truth (original digits) goes only into the event store. After `create`, the server needs
neither MNIST nor torch.
"""

from __future__ import annotations

import io
import secrets
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from autograder.grading import prepare

TRUTH_KEYS = ("track", "pool_digits", "public_digits", "private_digits")


def build(track: tuple[int, ...], seed: int | None = None) -> tuple[int, bytes, bytes]:
    """(seed, pool file bytes, truth bytes) for a new event on `track` (reads MNIST: instructor side)."""
    seed = secrets.randbits(63) if seed is None else int(seed)
    with tempfile.TemporaryDirectory(prefix="event-") as tmp:
        tmp_path = Path(tmp)
        made = prepare.prepare(tuple(track), tmp_path / "data", tmp_path / "truth.npz", seed=seed)
        with np.load(made.data_file) as f:
            pool = {k: f[k] for k in f.files}
        with np.load(made.truth_file) as f:
            truth = {k: f[k] for k in TRUTH_KEYS}
    pool["labels"] = pool["labels"].astype(np.int8)  # merged labels 0..10: 8x smaller, read back as int64
    pool["test_labels"] = pool["test_labels"].astype(np.int8)
    return seed, _npz(pool, compressed=True), _npz({k: v.astype(np.int8) for k, v in truth.items()})


def read_truth(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob)) as f:
        return {k: f[k].astype(np.int64) for k in TRUTH_KEYS}


def _npz(arrays: dict[str, np.ndarray], compressed: bool = False) -> bytes:
    """An .npz file in memory; compressed at zlib level 3 (12.3 MB for MNIST, half the time of level 6)."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", method, compresslevel=3 if compressed else None) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()
