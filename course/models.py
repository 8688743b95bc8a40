"""The baseline CNN for the merged labels, its training loop and a checkpoint cache.

`CNNClassifier` is a small scikit-learn-style estimator (`fit`, `predict`,
`predict_proba`, `embed`) around a two-block convolutional network. Trained on
the merged labels it tells the known digits and C apart, but it has never been
shown the difference between the track's digits: that is the workshop's problem.

`baseline()` returns the model trained on the full pool for a track and seed,
from the checkpoint cache when it is there (``$COURSE_CACHE_DIR/models``), so
later notebooks do not retrain it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from course import config, data, files
from course.context import CONTEXT

EPOCHS = 3
BATCH_SIZE = 128
LEARNING_RATE = 3e-3  # peak of the one-cycle schedule
CHANNELS = (16, 32)  # small enough to train in well under a minute on 2 cores
EMBED_DIM = 64
PREDICT_BATCH = 2048
CHECKPOINT_VERSION = 1  # bump when the architecture or training recipe changes
CONV_DIM = CHANNELS[1] * 7 * 7  # features after the second conv block and its pooling
EMBED_LAYERS = {"dense": None, "conv": 6}  # layer name -> how many `Net.features` modules to run


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # what torch itself reads at start, in its order
_TORCH_THREADS_AT_IMPORT = torch.get_num_threads()
_threads_given: int | None = None  # what `_set_threads` last gave torch


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
    if torch.get_num_threads() not in (_TORCH_THREADS_AT_IMPORT, _threads_given):
        return
    _threads_given = thread_count()
    torch.set_num_threads(_threads_given)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> float tensor (N, 1, 28, 28) in [0, 1]."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected images of shape (N, 28, 28), got {images.shape}.")
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


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
        self.net_: Net | None = None

    def fit(self, images: np.ndarray, labels: np.ndarray) -> "CNNClassifier":
        """Train from scratch on uint8 `images` (N, 28, 28) and integer `labels` (N,)."""
        labels = np.asarray(labels)
        if len(labels) != len(images):
            raise ValueError(f"got {len(images)} images but {len(labels)} labels.")
        _set_threads()
        torch.manual_seed(self.random_state)
        self.classes_ = np.unique(labels)
        targets = torch.from_numpy(np.searchsorted(self.classes_, labels)).long()
        x = to_tensor(images)
        self.net_ = Net(len(self.classes_))
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

    def _check_fitted(self) -> Net:
        if self.net_ is None:
            raise RuntimeError("this CNNClassifier is not trained yet; call fit() first.")
        return self.net_

    @torch.no_grad()
    def _batched(self, images: np.ndarray, fn) -> np.ndarray:
        net = self._check_fitted()
        _set_threads()
        x = to_tensor(images)
        out = [fn(net, x[i:i + PREDICT_BATCH]) for i in range(0, len(x), PREDICT_BATCH)]
        return torch.cat(out).numpy() if out else np.zeros((0,))

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, n_classes), columns ordered as `classes_`."""
        return self._batched(images, lambda net, x: net(x).softmax(dim=1))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Predicted labels (N,) taken from `classes_`."""
        return self.classes_[self.predict_proba(images).argmax(axis=1)]

    def embed(self, images: np.ndarray, layer: str = "dense") -> np.ndarray:
        """Latent features of uint8 `images` (N, 28, 28).

        layer="dense" (default): (N, EMBED_DIM), the activations before the last layer.
        layer="conv": (N, CONV_DIM), the pooled output of the second conv block. The dense
        layer learned to map the track's digits onto one class; the conv block, shared with
        all the known digits, keeps more of the strokes that tell them apart.
        """
        if layer not in EMBED_LAYERS:
            raise ValueError(f"layer must be one of {sorted(EMBED_LAYERS)}, got {layer!r}.")
        stop = EMBED_LAYERS[layer]
        return self._batched(images, lambda net, x: torch.flatten(net.features[:stop](x), 1))

    def save(self, path: str | Path) -> None:
        """Write the weights and classes atomically (a temp file, then a rename)."""
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
        """Read a model written by `save`.

        Only tensors, numbers and the `classes_` array are read (``weights_only``): a checkpoint
        is often a copied file (the instructor's cache on every machine), and a pickle could
        run any code when loaded.
        """
        with torch.serialization.safe_globals(_CHECKPOINT_GLOBALS):
            blob = torch.load(path, weights_only=True)
        if blob.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{path} is from another version of course.models; delete it to retrain.")
        model = cls()
        model.classes_ = np.asarray(blob["classes"])
        model.net_ = Net(len(model.classes_))
        model.net_.load_state_dict(blob["state"])
        model.net_.eval()
        return model


_CHECKPOINT_GLOBALS = [np._core.multiarray._reconstruct, np.ndarray, np.dtype,  # what `save` writes for classes_
                       *{type(np.dtype(t)) for t in (np.int64, np.int32, np.int8, np.uint8)}]


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
