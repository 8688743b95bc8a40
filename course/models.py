"""The baseline CNN for the merged labels, its training loop and a checkpoint cache.

`CNNClassifier` is a small scikit-learn-style estimator (`fit`, `predict`,
`predict_proba`, `embed`) around a two-block convolutional network. Trained on
the merged labels it tells the known digits and C apart, but it has never been
shown the difference between the track's digits: that is the workshop's problem.

`baseline()` returns the model trained on the full pool for a track and seed,
from the checkpoint cache when it is there (``$COURSE_CACHE_DIR/models``), so
later notebooks do not retrain it.

torch is imported only to train (`fit`), to save, or when `net_` (the torch module) is asked
for. A loaded checkpoint is read without it (`read_checkpoint`: the zip file ``torch.save``
writes, its pickle limited to tensors, numbers and the ``classes_`` array), and `predict`,
`predict_proba` and `embed` run the network's forward pass in numpy, in batches of
`PREDICT_BATCH` images. So a notebook that only uses the baseline (a graded kernel of most
assignments) never pays torch's import, the largest part of its memory (`benchmarks/results/throughput/`),
and its seconds. Batches of the forward pass use numpy's BLAS threads (``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

from course import config, data, files
from course.context import CONTEXT

EPOCHS = 3
BATCH_SIZE = 128
LEARNING_RATE = 3e-3  # peak of the one-cycle schedule
CHANNELS = (16, 32)  # small enough to train in well under a minute on 2 cores
EMBED_DIM = 64
PREDICT_BATCH = 256  # images per forward pass: a few tens of MB of activations at a time
CHECKPOINT_VERSION = 1  # bump when the architecture or training recipe changes
CONV_DIM = CHANNELS[1] * 7 * 7  # features after the second conv block and its pooling
EMBED_LAYERS = {"dense": None, "conv": 6}  # layer name -> how many `Net.features` modules to run


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # what torch itself reads at start, in its order
_TORCH_THREADS_AT_IMPORT: int | None = None  # torch's own count when this module first imported it
_threads_given: int | None = None  # what `_set_threads` last gave torch


def _torch():
    """torch, imported on first use (training, saving, `CNNClassifier.net_`), never for inference."""
    global _TORCH_THREADS_AT_IMPORT
    import torch

    if _TORCH_THREADS_AT_IMPORT is None:
        _TORCH_THREADS_AT_IMPORT = torch.get_num_threads()
    return torch


def thread_count() -> int:
    """The threads torch should use in this process.

    An explicit choice wins: ``OMP_NUM_THREADS`` (else ``MKL_NUM_THREADS``), set by the participant
    or, in a graded kernel, by the grader (``autograder grade --jobs N`` gives each of its N
    kernels its share of the cores: N kernels using every core would only compete). Otherwise
    the cores this process may run on (its affinity, narrowed by ``taskset``, a container or a
    batch system), not `os.cpu_count()`, which counts the whole machine.
    """
    for name in THREAD_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return config.usable_cores()


def _set_threads() -> None:
    """Give torch `thread_count()` threads, unless the participant called ``torch.set_num_threads``:
    a count that is neither torch's own at import nor the one given here last is theirs, and stays."""
    global _threads_given
    torch = _torch()
    if torch.get_num_threads() not in (_TORCH_THREADS_AT_IMPORT, _threads_given):
        return
    _threads_given = thread_count()
    torch.set_num_threads(_threads_given)


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected images of shape (N, 28, 28), got {images.shape}.")
    return images


def to_tensor(images: np.ndarray):
    """uint8 images (N, 28, 28) -> float tensor (N, 1, 28, 28) in [0, 1]."""
    images = _check_images(images)
    return _torch().from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def _net_class():
    torch = _torch()
    nn = torch.nn

    class Net(nn.Module):
        """conv -> pool -> conv -> pool -> dense(EMBED_DIM) -> classes."""

        def __init__(self, n_classes: int, embed_dim: int = EMBED_DIM):
            super().__init__()
            c1, c2 = CHANNELS
            self.features = nn.Sequential(
                nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(c2 * 7 * 7, embed_dim), nn.ReLU(),
            )
            self.head = nn.Linear(embed_dim, n_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(x))

    Net.__module__, Net.__qualname__ = __name__, "Net"  # pickles and prints as course.models.Net
    return Net


def _net_type():
    """`Net`, the class made (and torch imported) on first use."""
    if "Net" not in globals():
        globals()["Net"] = _net_class()
    return globals()["Net"]


def __getattr__(name: str):
    """``course.models.Net``: the torch module class, made (and torch imported) on first use."""
    if name == "Net":
        return _net_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def state_shapes(n_classes: int, embed_dim: int = EMBED_DIM) -> dict[str, tuple[int, ...]]:
    """The parameters of `Net` (its ``state_dict`` keys) and their shapes."""
    c1, c2 = CHANNELS
    return {"features.0.weight": (c1, 1, 3, 3), "features.0.bias": (c1,),
            "features.3.weight": (c2, c1, 3, 3), "features.3.bias": (c2,),
            "features.7.weight": (embed_dim, c2 * 7 * 7), "features.7.bias": (embed_dim,),
            "head.weight": (n_classes, embed_dim), "head.bias": (n_classes,)}


# --- the forward pass in numpy (what `Net` computes, without torch) ----------------


def _conv_relu_pool(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """3x3 convolution (padding 1), ReLU, 2x2 max pooling: (N, H, W, C) -> (N, H/2, W/2, O), float32."""
    n, h, w, c = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    columns = np.concatenate([padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=-1)
    kernel = weight.transpose(2, 3, 1, 0).reshape(9 * c, len(weight))  # rows in the columns' (kh, kw, C) order
    out = columns.reshape(n * h * w, 9 * c) @ kernel
    out += bias
    np.maximum(out, 0, out=out)
    out = out.reshape(n, h, w, -1)
    return np.maximum(np.maximum(out[:, 0::2, 0::2], out[:, 0::2, 1::2]),
                      np.maximum(out[:, 1::2, 0::2], out[:, 1::2, 1::2]))


def _forward(weights: dict[str, np.ndarray], images: np.ndarray, stop: str) -> np.ndarray:
    """`Net` on uint8 images (N, 28, 28) up to `stop`: "conv" (N, CONV_DIM), "dense" (N, EMBED_DIM)
    or "logits" (N, n_classes); float32, one batch of at most `PREDICT_BATCH` images at a time."""
    width = {"conv": CONV_DIM, "dense": EMBED_DIM, "logits": len(weights["head.bias"])}[stop]
    out = np.empty((len(images), width), dtype=np.float32)
    for start in range(0, len(images), PREDICT_BATCH):
        x = images[start:start + PREDICT_BATCH].astype(np.float32)[..., None] / np.float32(255.0)
        x = _conv_relu_pool(x, weights["features.0.weight"], weights["features.0.bias"])
        x = _conv_relu_pool(x, weights["features.3.weight"], weights["features.3.bias"])
        x = x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # torch's Flatten order: (C, H, W)
        if stop != "conv":
            x = x @ weights["features.7.weight"].T
            x += weights["features.7.bias"]
            np.maximum(x, 0, out=x)
            if stop == "logits":
                x = x @ weights["head.weight"].T
                x += weights["head.bias"]
        out[start:start + len(x)] = x
    return out


class CNNClassifier:
    """A seeded CNN trained on CPU with a progress bar; sklearn-style interface.

    classes_: the label values in output order, set by `fit` (e.g. merged labels).
    """

    def __init__(self, epochs: int = EPOCHS, batch_size: int = BATCH_SIZE,
                 lr: float = LEARNING_RATE, random_state: int = config.SEED,
                 progress: bool = True):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.random_state = random_state
        self.progress = progress
        self.classes_: np.ndarray | None = None
        self._net = None  # the torch module (`net_`): trained here, or made from `_weights` when asked for
        self._weights: dict[str, np.ndarray] | None = None  # float32 parameters read from a checkpoint

    @property
    def net_(self):
        """The torch `Net` (None before `fit`); for a loaded model made, and torch imported, on first use."""
        if self._net is None and self._weights is not None:
            torch = _torch()
            net = _net_type()(len(self.classes_))
            net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self._weights.items()})
            net.eval()
            self._net, self._weights = net, None
        return self._net

    @net_.setter
    def net_(self, net) -> None:
        self._net, self._weights = net, None

    def fit(self, images: np.ndarray, labels: np.ndarray) -> "CNNClassifier":
        """Train from scratch on uint8 `images` (N, 28, 28) and integer `labels` (N,)."""
        labels = np.asarray(labels)
        if len(labels) != len(images):
            raise ValueError(f"got {len(images)} images but {len(labels)} labels.")
        from tqdm.auto import tqdm

        torch = _torch()
        nn = torch.nn
        _set_threads()
        torch.manual_seed(self.random_state)
        self.classes_ = np.unique(labels)
        targets = torch.from_numpy(np.searchsorted(self.classes_, labels)).long()
        x = to_tensor(images)
        self.net_ = _net_type()(len(self.classes_))
        optimiser = torch.optim.Adam(self.net_.parameters(), lr=self.lr)
        generator = torch.Generator().manual_seed(self.random_state)
        steps = self.epochs * ((len(x) + self.batch_size - 1) // self.batch_size)
        # One-cycle learning rate: reaches high accuracy in few epochs on CPU.
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=self.lr, total_steps=steps)
        bar = tqdm(total=steps, desc="training CNN", disable=not self.progress, leave=False)
        self.net_.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), self.batch_size):
                batch = order[start:start + self.batch_size]
                loss = nn.functional.cross_entropy(self.net_(x[batch]), targets[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        bar.close()
        self.net_.eval()
        return self

    def _check_fitted(self):
        if self.net_ is None:
            raise RuntimeError("this CNNClassifier is not trained yet; call fit() first.")
        return self.net_

    def _numpy_weights(self) -> dict[str, np.ndarray]:
        """The parameters as float32 arrays: those read from the checkpoint, else the torch module's now."""
        if self._weights is not None:
            return self._weights
        if self._net is None:
            raise RuntimeError("this CNNClassifier is not trained yet; call fit() first.")
        return {k: v.detach().cpu().numpy().astype(np.float32, copy=False)
                for k, v in self._net.state_dict().items()}

    def _run(self, images: np.ndarray, stop: str) -> np.ndarray:
        weights = self._numpy_weights()
        images = _check_images(images)
        if not len(images):
            return np.zeros((0,))
        return _forward(weights, images, stop)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, n_classes), columns ordered as `classes_`."""
        logits = self._run(images, "logits")
        if not logits.size:
            return logits
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Predicted labels (N,) taken from `classes_`."""
        return self.classes_[self.predict_proba(images).argmax(axis=1)]

    def embed(self, images: np.ndarray, layer: str = "dense") -> np.ndarray:
        """Latent features of uint8 `images` (N, 28, 28), float32.

        layer="dense" (default): (N, EMBED_DIM), the activations before the last layer.
        layer="conv": (N, CONV_DIM), the pooled output of the second conv block. The dense
        layer learned to map the track's digits onto one class; the conv block, shared with
        all the known digits, keeps more of the strokes that tell them apart.
        """
        if layer not in EMBED_LAYERS:
            raise ValueError(f"layer must be one of {sorted(EMBED_LAYERS)}, got {layer!r}.")
        return self._run(images, layer)

    def save(self, path: str | Path) -> None:
        """Write the weights and classes atomically (a temp file, then a rename)."""
        torch = _torch()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = files.temp_beside(path)
        try:
            torch.save({"state": self._check_fitted().state_dict(), "classes": self.classes_,
                        "version": CHECKPOINT_VERSION}, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | Path) -> "CNNClassifier":
        """Read a model written by `save` (without importing torch: `read_checkpoint`).

        Only tensors, numbers and the `classes_` array are read: a checkpoint is often a
        copied file (the instructor's cache on every machine), and a pickle could run any
        code when loaded. Every parameter of `Net` must be there, with its shape.
        """
        blob = read_checkpoint(path)
        if not isinstance(blob, dict) or blob.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{path} is from another version of course.models; delete it to retrain.")
        model = cls()
        model.classes_ = np.asarray(blob["classes"])
        state = blob.get("state")
        expected = state_shapes(len(model.classes_))
        if not isinstance(state, dict) or set(state) != set(expected):
            raise ValueError(f"{path} does not hold the parameters of course.models.Net.")
        for name, shape in expected.items():
            if not isinstance(state[name], np.ndarray) or state[name].shape != shape:
                raise ValueError(f"{path}: {name} has shape {getattr(state[name], 'shape', None)}, "
                                 f"expected {shape}.")
        model._weights = {name: _readonly(state[name].astype(np.float32)) for name in expected}
        return model


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


# --- reading a checkpoint without torch ---------------------------------------------

_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                   "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}
_NUMPY_GLOBALS = {("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
_NUMPY_DTYPE_CLASSES = {type(np.dtype(t)).__name__ for t in (np.int64, np.int32, np.int8, np.uint8)}


class _Storage(tuple):
    """A storage type named in the pickle (torch.FloatStorage, ...): its numpy dtype."""


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """`torch._utils._rebuild_tensor_v2` for a numpy storage: a contiguous copy of the view, bounds checked."""
    if not isinstance(storage, np.ndarray):
        raise pickle.UnpicklingError("a tensor without a storage")
    size, stride, offset = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(offset)
    if len(size) != len(stride) or offset < 0 or min(size + stride, default=0) < 0:
        raise pickle.UnpicklingError("a tensor with a negative size, stride or offset")
    if int(np.prod(size, dtype=np.float64)) > len(storage):
        raise pickle.UnpicklingError("a tensor larger than its storage")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= len(storage):
        raise pickle.UnpicklingError("a tensor reaches past its storage")
    if not all(size):
        return np.zeros(size, dtype=storage.dtype)
    view = np.lib.stride_tricks.as_strided(storage[offset:], size,
                                           tuple(s * storage.itemsize for s in stride), writeable=False)
    return np.array(view)


class _CheckpointUnpickler(pickle.Unpickler):
    """The pickle of a checkpoint, limited to what `CNNClassifier.save` writes."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(file)
        self._archive, self._prefix, self._order = archive, prefix, "<" if byteorder == "little" else ">"

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _Storage((np.dtype(_STORAGE_DTYPES[name]).newbyteorder(self._order),))
        if (module, name) in _NUMPY_GLOBALS or (module == "numpy.dtypes" and name in _NUMPY_DTYPE_CLASSES):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a checkpoint may not hold {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise pickle.UnpicklingError("a checkpoint holds only tensor storages")
        dtype, key, numel = pid[1][0], str(pid[2]), int(pid[4])
        if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
            raise pickle.UnpicklingError("a storage of numbers only")
        raw = self._archive.read(f"{self._prefix}data/{key}")
        if numel < 0 or len(raw) < numel * dtype.itemsize:
            raise pickle.UnpicklingError(f"storage {key} is shorter than its {numel} elements")
        return np.frombuffer(raw, dtype=dtype, count=numel)


def read_checkpoint(path: str | Path) -> dict:
    """What ``torch.save`` wrote to `path` (its zip format), tensors as numpy arrays, without torch.

    Only an ordered dict, tensors (their storages as numpy arrays), numbers, strings and
    numpy integer arrays are read; any other object in the pickle raises
    ``pickle.UnpicklingError`` before it is made.
    """
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(f"{path} is not a checkpoint written by torch.save")
        prefix = pickles[0][:-len("data.pkl")]
        names = set(archive.namelist())
        byteorder = archive.read(prefix + "byteorder").decode().strip() if prefix + "byteorder" in names else "little"
        with archive.open(pickles[0]) as handle:
            return _CheckpointUnpickler(handle, archive, prefix, byteorder).load()


def checkpoint_path(track: tuple[int, ...], seed: int = config.SEED) -> Path:
    """Where the baseline for `track` and `seed` is cached."""
    name = f"baseline-v{CHECKPOINT_VERSION}-track{''.join(map(str, track))}-seed{seed}.pt"
    return config.cache_dir() / "models" / name


def baseline(track: str | tuple[int, ...] | None = None, seed: int = config.SEED,
             retrain: bool = False) -> CNNClassifier:
    """The baseline CNN trained on the merged labels of the pool (cached on disk).

    `track`: default the active track (that of the last `course.data.load`), the
    same rule as `course.oracle` and `course.evaluate`. It only ever sees merged
    labels, so it is safe to cache and share.
    """
    track = CONTEXT.track(track)
    path = checkpoint_path(track, seed)
    with files.exclusive(path):  # another process training the same baseline: wait for it, then load
        if path.is_file() and not retrain:
            try:
                return CNNClassifier.load(path)
            except Exception:  # a stale or broken checkpoint: retrain and replace it
                pass
        ds = data.split(track).public  # not data.load: the active track stays as it is
        model = CNNClassifier(random_state=seed).fit(ds.images, ds.labels)
        model.save(path)
        return model
