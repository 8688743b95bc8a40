"""Peer query strategies on the course's features, and their learning curves.

What a participant would use instead of the course's approaches, each driving the
same classifier (`LabelModel`: logistic regression on the baseline embedding) so
that the comparison is about which samples get annotated:

- ``random``: annotate a random permutation of the pool.
- ``modAL margin``: modAL's `margin_sampling`, one label at a time from one random
  label, refitting after each; until both digits are seen the margins tie and
  modAL's random tie-break picks at random.
- ``TypiClust`` (scikit-activeml): the most typical sample of the largest uncovered
  k-means cluster, in rounds that end at each budget of the grid.
- ``ProbCover`` (scikit-activeml): greedy maximum coverage of delta-balls, on the
  L2-normalised embedding as in its paper. Its greedy choice does not depend on
  labels, so one batch of the largest budget gives every smaller budget as a prefix.
- ``ceiling``: the same classifier trained with every label of the pool.

Every peer is measured twice (`run_peer`): its **learning curve** (the private accuracy at
every budget of the grid, from which the report picks "to 90%" in hindsight), and where
one **label-free stopping rule**, the same for every peer (`should_stop`, notebook 05's
rule on the peer's own model), ends its run, with the private accuracy there.

The peer libraries are imported inside the functions: they belong to the optional
``bench`` extra, and nothing in `course` or `autograder` depends on them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize

from benchmarks.features import TrackData

LOGISTIC_C = 1.0  # sklearn's default; the same for every strategy
MAX_ITER = 2000
PROBCOVER_DELTAS = np.arange(0.05, 1.0, 0.05)  # ball radii tried on unit-norm features
PROBCOVER_ALPHA = 0.95  # ProbCover's default purity target
TYPICLUST_K = 5  # neighbours for typicality (scikit-activeml's default)
THREADS = 1  # BLAS and OpenMP threads for the many tiny fits; see learning_curve

PEERS = ("random", "modAL margin", "TypiClust", "ProbCover")

# The label-free stopping rule, one for every peer: notebook 05's `should_stop` (its
# STOP_CHANGE, PATIENCE, and COLD_START + PATIENCE as the earliest stop) on the peer's own
# model. After each label the model predicts every image of the pool; the run stops once
# each of the last STOP_PATIENCE labels flipped fewer than STOP_CHANGE of those predictions,
# no earlier than STOP_MIN_LABELS labels, and only once the bought labels show every digit
# of the track (a one-digit model predicts one digit whatever it is given, so it never
# "changes": notebook 05 refits only from two digits, notebook 03 refines until every digit
# is in hand). It reads the labels the peer bought and nothing held out. Without a stop the
# run ends at the grid's largest budget, its cap (notebook 05 has BUDGET for that).
STOP_CHANGE = 0.005  # a label "changes nothing" when under 0.5% of the pool predictions flip
STOP_PATIENCE = 2  # stop after this many labels in a row that changed nothing
STOP_MIN_LABELS = 6  # never earlier (notebook 05: COLD_START 4 + PATIENCE 2)
STOP_RULE = (f"stop once each of the last {STOP_PATIENCE} labels flipped under {100 * STOP_CHANGE:g}% of the "
             f"model's predictions on the pool, from {STOP_MIN_LABELS} labels on and once the labels show every "
             "digit of the track (notebook 05's rule); else at the largest budget")


class LabelModel(ClassifierMixin, BaseEstimator):
    """Logistic regression that also works with a single seen class.

    With one class it predicts that class and reports one probability column, so
    modAL's margins all tie (its documented behaviour for a one-class model).
    """

    def __init__(self, C: float = LOGISTIC_C, random_state: int = 0):
        self.C = C
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> "LabelModel":
        y = np.asarray(y).astype(np.int64)
        self.classes_ = np.unique(y)
        self.model_ = None
        if len(self.classes_) > 1:
            self.model_ = LogisticRegression(C=self.C, max_iter=MAX_ITER,
                                             random_state=self.random_state).fit(X, y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.model_ is None:
            return np.ones((len(X), 1))
        return self.model_.predict_proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.model_ is None:
            return np.full(len(X), self.classes_[0], dtype=np.int64)
        return self.model_.predict(X)


def accuracy(td: TrackData, picked: np.ndarray, seed: int = 0) -> float:
    """Private test accuracy of `LabelModel` trained on the pool samples `picked`."""
    return _test_accuracy(LabelModel(random_state=seed).fit(td.X_pool[picked], td.y_pool[picked]), td)


def _test_accuracy(model: LabelModel, td: TrackData) -> float:
    return float(np.mean(model.predict(td.X_test) == td.y_test))


def should_stop(history: Sequence[np.ndarray], labels: Sequence[int], n_digits: int) -> bool:
    """The label-free stopping rule (see `STOP_CHANGE`): `history` holds the pool predictions
    after each label so far, `labels` the digits bought so far, `n_digits` the track's digits."""
    if len(history) < max(STOP_MIN_LABELS, STOP_PATIENCE + 1) or len(set(np.asarray(labels).tolist())) < n_digits:
        return False
    changes = [np.mean(np.asarray(history[-k]) != np.asarray(history[-k - 1])) for k in range(1, STOP_PATIENCE + 1)]
    return bool(all(c < STOP_CHANGE for c in changes))


def ceiling(td: TrackData) -> float:
    """Accuracy with every label of the pool: what no query strategy can beat here."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=THREADS):
        return accuracy(td, np.arange(len(td.y_pool)))


# --- query strategies: each returns the pool indices in the order annotated ----


def query_random(td: TrackData, grid: Sequence[int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(len(td.y_pool))[: max(grid)]


def query_margin(td: TrackData, grid: Sequence[int], seed: int) -> np.ndarray:
    # modAL's query function, in a loop of our own: modAL 0.4.2.1 (the latest release)
    # cannot run `ActiveLearner.teach` with scikit-learn >= 1.8, which removed the
    # `force_all_finite` argument it passes to `check_X_y` (modAL issue #196). The
    # loop below is what `teach` does: add the label, refit on all labels so far.
    from modAL.uncertainty import margin_sampling

    np.random.seed(seed)  # modAL's random tie-break draws from numpy's global state
    picked = [int(np.random.default_rng(seed).integers(len(td.y_pool)))]
    unlabelled = np.ones(len(td.y_pool), dtype=bool)
    unlabelled[picked[0]] = False
    while len(picked) < max(grid):
        model = LabelModel(random_state=seed).fit(td.X_pool[picked], td.y_pool[picked])
        candidates = np.flatnonzero(unlabelled)
        chosen = margin_sampling(model, td.X_pool[candidates], n_instances=1, random_tie_break=True)
        chosen = chosen[0] if isinstance(chosen, tuple) else chosen  # modAL returns (indices, margins)
        index = int(candidates[np.atleast_1d(chosen)[0]])
        unlabelled[index] = False
        picked.append(index)
    return np.asarray(picked)


def query_typiclust(td: TrackData, grid: Sequence[int], seed: int) -> np.ndarray:
    from skactiveml.pool import TypiClust

    strategy = TypiClust(random_state=seed, k=TYPICLUST_K)
    y = np.full(len(td.y_pool), np.nan)  # scikit-activeml marks unlabelled with NaN
    picked: list[int] = []
    for budget in sorted(grid):  # one round per budget: k-means with |labelled| + batch clusters
        batch = budget - len(picked)
        if batch <= 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # k-means convergence chatter
            chosen = strategy.query(td.X_pool, y, batch_size=batch)
        y[chosen] = td.y_pool[chosen]
        picked.extend(int(i) for i in chosen)
    return np.asarray(picked)


def query_probcover(td: TrackData, grid: Sequence[int], seed: int) -> np.ndarray:
    from skactiveml.pool import ProbCover

    strategy = ProbCover(n_classes=len(td.track), deltas=PROBCOVER_DELTAS,
                         alpha=PROBCOVER_ALPHA, random_state=seed)
    y = np.full(len(td.y_pool), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(strategy.query(normalize(td.X_pool), y, batch_size=max(grid)))


STRATEGIES: dict[str, Callable[[TrackData, Sequence[int], int], np.ndarray]] = {
    "random": query_random,
    "modAL margin": query_margin,
    "TypiClust": query_typiclust,
    "ProbCover": query_probcover,
}


def row_name(method: str, feature_set: str) -> str:
    """The name of a peer's row in the results: method and feature set."""
    return f"{method} ({feature_set})"


def split_row_name(name: str) -> tuple[str, str]:
    """(method, feature set) of a row named by `row_name`."""
    method, _, rest = name.rpartition(" (")
    if not method or not rest.endswith(")"):
        raise ValueError(f"{name!r} is not a peer row name like 'random (conv)'.")
    return method, rest[:-1]


@dataclass(frozen=True)
class PeerRun:
    """One peer, one seed: its learning curve and where the label-free rule stopped it."""

    curve: np.ndarray  # private accuracy at every budget of the grid
    stop: int  # annotations when the rule stopped it (the cap, max(grid), when it never did)
    stop_accuracy: float  # private accuracy of the model at `stop` (the curve's value when `stop` is on the grid)
    settled: bool  # True: the rule stopped it; False: it ran to the cap

    def record(self) -> dict:
        """The stop as results.json keeps it."""
        return {"annotations": self.stop, "accuracy": self.stop_accuracy, "settled": self.settled}


def run_peer(name: str, td: TrackData, grid: Sequence[int], seed: int) -> PeerRun:
    """Strategy `name` on one seed: accuracy at every budget of `grid`, and its label-free stop.

    One model per budget: the curve's accuracy and the rule's pool predictions come from the
    same fit, so the accuracy at the stop is the curve's value there.
    """
    from threadpoolctl import threadpool_limits

    if name not in STRATEGIES:
        raise ValueError(f"unknown peer {name!r}; choose from {', '.join(STRATEGIES)}.")
    cap, on_grid = max(grid), set(grid)
    n_digits = len(np.unique(td.y_pool))
    # One thread: thousands of tiny logistic-regression fits (and k-means) ran 3-30x
    # slower when OpenBLAS/OpenMP spread each over the busy cores of the 2-core machine.
    with threadpool_limits(limits=THREADS):
        picked = STRATEGIES[name](td, grid, seed)
        if len(set(picked.tolist())) != len(picked) or len(picked) < cap:
            raise RuntimeError(f"{name} returned {len(picked)} picks with repeats for budget {cap}.")
        at: dict[int, float] = {}
        history: list[np.ndarray] = []
        stop: tuple[int, float] | None = None
        for budget in range(1, cap + 1):
            if budget not in on_grid and stop is not None:
                continue
            model = LabelModel(random_state=seed).fit(td.X_pool[picked[:budget]], td.y_pool[picked[:budget]])
            if budget in on_grid:
                at[budget] = _test_accuracy(model, td)
            if stop is None:
                history.append(model.predict(td.X_pool))  # one prediction per label, as notebook 05 keeps
                if should_stop(history, td.y_pool[picked[:budget]], n_digits):
                    stop = (budget, at[budget] if budget in at else _test_accuracy(model, td))
        curve = np.array([at[b] for b in grid])
        if stop is None:
            return PeerRun(curve, cap, at[cap], settled=False)
        return PeerRun(curve, stop[0], stop[1], settled=True)


def learning_curve(name: str, td: TrackData, grid: Sequence[int], seed: int) -> np.ndarray:
    """Accuracy of strategy `name` at every budget of `grid` (one seed)."""
    return run_peer(name, td, grid, seed).curve
