"""A free proxy task: try a query strategy or a pipeline where labels cost nothing.

On the track, every label is an annotation and the held-out labels are off limits (in
exam mode `evaluate.accuracy` gives no score at all). So how do you draw a learning
curve, compare two strategies or tune a threshold? On a **proxy task**: the two *known*
digits (outside the track) that the baseline confuses most. Their labels are public
(`ds.labels`), so the "oracle" of the proxy is a free lookup, and their public test
images give an honest accuracy. Nothing here reads a label of the track's digits, calls
the oracle or scores on the track's held-out images.

The proxy is easier than C (the baseline was trained to tell these two digits apart), so
trust the *comparison* of methods and the *shape* of a curve more than its absolute level.

    >>> from course import proxy
    >>> def pipeline(images, label_of, budget, rng):          # doctest: +SKIP
    ...     rows = rng.choice(len(images), budget, replace=False)
    ...     digits = label_of(rows)                           # free, but counted
    ...     ...                                               # fit something
    ...     return predict                                    # images -> digits
    >>> curves = proxy.run(pipeline, budgets=[2, 4, 8])        # doctest: +SKIP
    >>> curves.mean()                                         # doctest: +SKIP
    array([0.91, 0.95, 0.98])

`run` calls the pipeline once per budget and repetition; `run_loop` runs a sequential
query loop once per repetition and reads its whole curve from the loop's history. Both
return `Curves` (accuracy and labels used, one row per repetition), ready for
`course.plots.learning_curve({name: curves.line()}, bands={name: curves.band()},
ylabel=f"accuracy on {curves.measured_on}")`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from course import config, data, models
from course.context import CONTEXT, track_name

_PREPARED: dict = {}  # (prepare, track, random_state, repetition, n_images) -> prepared pool
PREPARED_KEEP = 8  # prepared pools kept, so that several runs with one `prepare` share them
N_IMAGES = 2000  # proxy pool images per repetition: enough for clusters, quick to embed
REPETITIONS = 3  # independent random proxy pools


class ProxyBudgetError(ValueError):
    """A pipeline asked the proxy for more labels than its budget."""


@dataclass(frozen=True, repr=False)
class Task:
    """The proxy task: two known digits, their pool images and public test images.

    digits: the two digits, e.g. (3, 5); confusions: how often the baseline mixed them
    up on the public test split; pool_indices: every pool index of the two digits;
    test_images / test_labels: their public test images and (free) digits.
    """

    digits: tuple[int, int]
    confusions: int
    pool_indices: np.ndarray
    pool_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def __repr__(self) -> str:
        a, b = self.digits
        return (f"proxy.Task({a} vs {b}: {self.confusions} confusions of the baseline, "
                f"{len(self.pool_indices)} pool images, {len(self.test_images)} test images)")


def pair(track=None, base=None) -> tuple[int, int]:
    """The two known digits (outside `track`) that the baseline confuses most.

    Counted on the public test split, both directions together; ties go to the smaller
    digits. `base`: a model with `predict(images)` over merged labels (default: the
    cached `models.baseline()` of the track).
    """
    return task(track, base).digits


def task(track=None, base=None) -> Task:
    """The proxy `Task` of `track` (default: the active track)."""
    track = _track(track)
    if base is None:
        return _default_task(track)
    return _make_task(track, base)


@functools.lru_cache(maxsize=4)
def _default_task(track: tuple[int, ...]) -> Task:
    return _make_task(track, models.baseline(track))


def _make_task(track: tuple[int, ...], base) -> Task:
    ds = data.load(track)
    known = [d for d in range(data.N_DIGITS) if d not in track]
    if len(known) < 2:
        raise ValueError(f"track {track_name(track)} leaves fewer than two known digits for a proxy task.")
    is_known = np.isin(ds.test_labels, known)
    truth, said = ds.test_labels[is_known], np.asarray(base.predict(ds.test_images[is_known]))
    confusion = np.zeros((len(known), len(known)), dtype=int)
    position = {d: k for k, d in enumerate(known)}
    for t, s in zip(truth.tolist(), said.tolist()):
        if t != s and s in position:
            confusion[position[t], position[s]] += 1
    confusion = confusion + confusion.T
    i, j = np.unravel_index(np.argmax(np.triu(confusion, 1)), confusion.shape)
    digits = (known[min(i, j)], known[max(i, j)])
    pool_indices = np.flatnonzero(np.isin(ds.labels, digits))
    test = np.isin(ds.test_labels, digits)
    return Task(digits=digits, confusions=int(confusion[i, j]), pool_indices=pool_indices,
                pool_labels=np.asarray(ds.labels[pool_indices]), test_images=ds.test_images[test],
                test_labels=np.asarray(ds.test_labels[test]))


class Labeler:
    """`label_of(rows)` for one proxy pool: free labels, counted like the oracle.

    rows index the images the pipeline was given. Each distinct row counts once, asking
    again is free, and a call that would go over `budget` raises `ProxyBudgetError`
    (nothing counted), as the oracle does with its budget.
    """

    def __init__(self, labels: np.ndarray, budget: int | None = None):
        self._labels = np.asarray(labels)
        self.budget = budget
        self.asked: dict[int, None] = {}

    def __call__(self, rows) -> np.ndarray:
        flat = np.asarray(rows).reshape(-1)
        if flat.size and flat.dtype.kind not in "iu":
            raise TypeError(f"label_of takes integer rows, got {flat.dtype}.")
        if flat.size and (flat.min() < 0 or flat.max() >= len(self._labels)):
            raise IndexError(f"label_of: rows must be in 0..{len(self._labels) - 1}.")
        new = [int(r) for r in dict.fromkeys(flat.tolist()) if int(r) not in self.asked]
        if self.budget is not None and len(self.asked) + len(new) > self.budget:
            raise ProxyBudgetError(
                f"this call needs {len(new)} new labels but only {self.budget - len(self.asked)} "
                f"of the budget of {self.budget} are left.")
        self.asked.update(dict.fromkeys(new))
        return self._labels[np.asarray(rows, dtype=np.int64)].copy()

    def count(self) -> int:
        """Distinct rows labelled so far."""
        return len(self.asked)


@dataclass(frozen=True)
class Curves:
    """Accuracy against labels, one row per repetition.

    budgets (B,); accuracy (R, B); labels_used (R, B): the labels the pipeline really
    asked for (it may stop before its budget); measured_on: what the accuracy is
    measured on, for plot labels; digits: the proxy pair.
    """

    budgets: np.ndarray
    accuracy: np.ndarray
    labels_used: np.ndarray
    measured_on: str
    digits: tuple[int, int]

    def mean(self) -> np.ndarray:
        """Mean accuracy over the repetitions, one value per budget (B,)."""
        return self.accuracy.mean(axis=0)

    def line(self) -> tuple[np.ndarray, np.ndarray]:
        """(budgets, mean accuracy): one line for `plots.learning_curve`."""
        return self.budgets, self.mean()

    def band(self) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) over the repetitions: a band for `plots.learning_curve`."""
        return self.accuracy.min(axis=0), self.accuracy.max(axis=0)

    def at(self, budget: int) -> float:
        """Mean accuracy at one budget."""
        hits = np.flatnonzero(self.budgets == budget)
        if not hits.size:
            raise KeyError(f"no budget {budget} in this curve; budgets are {self.budgets.tolist()}.")
        return float(self.mean()[hits[0]])


def _subsets(t: Task, repetitions: int, n_images: int, random_state: int):
    for rep in range(repetitions):
        rng = np.random.default_rng([random_state, rep])
        pick = np.sort(rng.choice(len(t.pool_indices), size=min(n_images, len(t.pool_indices)), replace=False))
        yield rep, rng, t.pool_indices[pick], t.pool_labels[pick]


def _score(t: Task, out, truth: np.ndarray) -> tuple[float, str]:
    if callable(out):  # a predict function: score it on the proxy's public test images
        said = np.asarray(out(t.test_images)).reshape(-1)
        if said.shape != t.test_labels.shape:
            raise ValueError(f"predict returned {said.shape[0]} digits for {len(t.test_labels)} images.")
        return float(np.mean(said == t.test_labels)), "held-out proxy images"
    said = np.asarray(out).reshape(-1)
    if said.shape != truth.shape:
        raise ValueError(f"the pipeline returned {said.shape[0]} predictions for {len(truth)} images; "
                         "return one digit per image it was given, or a predict function.")
    return float(np.mean(said == truth)), "the proxy pool"


def run(pipeline: Callable, budgets: Sequence[int], repetitions: int = REPETITIONS,
        n_images: int = N_IMAGES, random_state: int = config.SEED, track=None, base=None,
        prepare: Callable | None = None, progress: bool = True, desc: str = "proxy") -> Curves:
    """Run `pipeline` on the proxy task for every budget, `repetitions` times.

    pipeline(images, label_of, budget, rng) gets `n_images` uint8 images of the proxy
    pair (the same random pool for every budget of one repetition), a `Labeler`
    `label_of(rows) -> digits` capped at `budget`, and a `numpy` Generator seeded from
    (`random_state`, repetition). It returns either a `predict(images) -> digits`
    function, scored on the proxy's public test images, or one digit per pool image,
    scored on the pool. `prepare(images)`, if given, is computed once per repetition
    (e.g. features) and passed to the pipeline instead of the images; its results are
    kept for later runs with the same `prepare` function object (e.g. one run per
    threshold), so that they are computed once.
    """
    t = task(track, base)
    budgets = np.asarray(list(budgets), dtype=int)
    if budgets.ndim != 1 or not budgets.size or budgets.min() < 0:
        raise ValueError("budgets must be a non-empty list of non-negative ints.")
    accuracy = np.zeros((repetitions, len(budgets)))
    used = np.zeros((repetitions, len(budgets)), dtype=int)
    measured_on = ""
    bar = tqdm(total=repetitions * len(budgets), desc=desc, disable=not progress, leave=False)
    for rep, rng, pool, truth in _subsets(t, repetitions, n_images, random_state):
        given = _prepared(prepare, t, track, random_state, rep, n_images, pool)
        for b, budget in enumerate(budgets):
            label_of = Labeler(truth, int(budget))
            out = pipeline(given, label_of, int(budget), np.random.default_rng([random_state, rep, int(budget)]))
            accuracy[rep, b], measured_on = _score(t, out, truth)
            used[rep, b] = label_of.count()
            bar.update()
    bar.close()
    return Curves(budgets, accuracy, used, measured_on, t.digits)


def run_loop(loop: Callable, budget: int, repetitions: int = REPETITIONS, n_images: int = N_IMAGES,
             random_state: int = config.SEED, track=None, base=None, prepare: Callable | None = None,
             progress: bool = True, desc: str = "proxy") -> Curves:
    """Run a sequential query loop once per repetition; its history gives the whole curve.

    loop(images, label_of, budget, rng) -> history: after each label it bought, the
    loop's digit for every pool image (a list of (N,) arrays, at most `budget` long).
    Accuracy after k labels is measured on the proxy pool. A loop that stops early
    keeps its last accuracy for the larger budgets (labels_used shows where it stopped).
    """
    t = task(track, base)
    budgets = np.arange(1, int(budget) + 1)
    accuracy = np.zeros((repetitions, len(budgets)))
    used = np.zeros((repetitions, len(budgets)), dtype=int)
    for rep, rng, pool, truth in tqdm(_subsets(t, repetitions, n_images, random_state), total=repetitions,
                                      desc=desc, disable=not progress, leave=False):
        given = _prepared(prepare, t, track, random_state, rep, n_images, pool)
        label_of = Labeler(truth, int(budget))
        history = list(loop(given, label_of, int(budget), rng))
        if not history:
            raise ValueError("the loop returned an empty history: one prediction array per label bought.")
        scores = [_score(t, h, truth)[0] for h in history[:budget]]
        accuracy[rep] = scores + [scores[-1]] * (len(budgets) - len(scores))
        used[rep] = np.minimum(budgets, len(scores))
    return Curves(budgets, accuracy, used, "the proxy pool", t.digits)


def _prepared(prepare, t: Task, track, random_state: int, rep: int, n_images: int, pool: np.ndarray):
    images = data.load(_track(track)).images[pool]
    if prepare is None:
        return images
    key = (prepare, _track(track), t.digits, random_state, rep, n_images)
    if key not in _PREPARED:
        while len(_PREPARED) >= PREPARED_KEEP:
            _PREPARED.pop(next(iter(_PREPARED)))
        _PREPARED[key] = prepare(images)
    return _PREPARED[key]


def _track(track) -> tuple[int, ...]:
    """The track a proxy call works for (default: the active one)."""
    return CONTEXT.track(track)
