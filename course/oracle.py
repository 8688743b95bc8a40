"""The oracle: the only way to learn the original digit of a C sample.

Every distinct pool index costs one annotation; asking again is free. The ledger
lives in a *backend*: locally a `LocalBackend` in this process, under the
autograder a client of the annotation service (a separate process that holds the
labels and keeps the authoritative count). Bad requests raise a subclass of
`OracleError` and charge nothing, not even for the valid part of the call.

    >>> from course import oracle
    >>> oracle.annotate([12, 40])          # doctest: +SKIP
    array([7, 1])
    >>> oracle.count()                     # doctest: +SKIP
    2
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple, Protocol

import numpy as np

from course import config, data


class OracleError(ValueError):
    """Base class of every refused annotation request; nothing was charged."""


class IndexTypeError(OracleError, TypeError):
    """Indices that are not integers (floats, bools, strings) or not 0-D/1-D."""


class OutOfRangeError(OracleError, IndexError):
    """An index that is negative or past the end of the pool."""


class NotInCError(OracleError):
    """An index whose label is already known (it is not in the merged class C)."""


class BudgetExceededError(OracleError):
    """The call would charge more annotations than the budget has left."""


class ServiceError(OracleError):
    """The annotation service refused or could not answer the request."""


class Annotation(NamedTuple):
    """One charged annotation: its order in the ledger, the pool index, the digit."""

    order: int
    index: int
    label: int


class Backend(Protocol):
    """Where the ledger lives. `indices` arrive validated as a 1-D int64 array."""

    def annotate(self, indices: np.ndarray) -> np.ndarray: ...
    def count(self) -> int: ...
    def history(self) -> list[Annotation]: ...
    def set_budget(self, n: int | None) -> None: ...
    def budget(self) -> int | None: ...
    def score(self, predictions: np.ndarray, split: str) -> tuple[float, int]:
        """Accuracy of `predictions` on the track images of `split`, and the count."""
        ...

    submit_split: str  # the split `course.grading.submit` scores: "public" or "private"


class LocalBackend:
    """The in-process ledger used outside the autograder."""

    submit_split = "public"

    def __init__(self, track: tuple[int, ...]):
        split = data._split(track)
        if split.pool_digits is None:
            raise ServiceError(
                "this data folder is prepared for the autograder and holds no labels; "
                f"the oracle needs the annotation service named by ${config.ENV_SERVICE}."
            )
        self.track = track
        self._digits = split.pool_digits
        self._truth = {"public": split.public_test_digits, "private": split.private_test_digits}
        self._in_c = np.isin(self._digits, track)
        self._ledger: dict[int, int] = {}  # index -> digit, in charge order
        self._budget: int | None = None

    def annotate(self, indices: np.ndarray) -> np.ndarray:
        bad = indices[(indices < 0) | (indices >= len(self._digits))]
        if bad.size:
            raise OutOfRangeError(
                f"index {int(bad[0])} is outside the pool; valid indices are 0..{len(self._digits) - 1}."
            )
        known = indices[~self._in_c[indices]]
        if known.size:
            raise NotInCError(
                f"index {int(known[0])} is not in class C, so its label is already known "
                "(dataset.labels); annotate only indices from dataset.c_indices."
            )
        new = [int(i) for i in dict.fromkeys(indices.tolist()) if int(i) not in self._ledger]
        if self._budget is not None and len(self._ledger) + len(new) > self._budget:
            raise BudgetExceededError(
                f"this call needs {len(new)} new annotations but only "
                f"{self._budget - len(self._ledger)} of the budget of {self._budget} are left; "
                "nothing was charged. Ask for fewer indices."
            )
        for i in new:
            self._ledger[i] = int(self._digits[i])
        return self._digits[indices].copy()

    def count(self) -> int:
        return len(self._ledger)

    def history(self) -> list[Annotation]:
        return [Annotation(k, i, d) for k, (i, d) in enumerate(self._ledger.items())]

    def set_budget(self, n: int | None) -> None:
        self._budget = n

    def budget(self) -> int | None:
        return self._budget

    def score(self, predictions: np.ndarray, split: str) -> tuple[float, int]:
        truth = self._truth[split]
        truth = truth[np.isin(truth, self.track)]
        return float(np.mean(predictions == truth)), self.count()


# --- the process-wide session -------------------------------------------------

_BACKENDS: dict[tuple[int, ...], Backend] = {}
_LISTENERS: list[Callable[[int, int | None], None]] = []


def backend(track: tuple[int, ...] | None = None) -> Backend:
    """The ledger for `track` (default: the active track); created on first use."""
    track = track or data.active_track()
    if track not in _BACKENDS:
        if os.environ.get(config.ENV_SERVICE):
            from course import service_client

            _BACKENDS[track] = service_client.ServiceBackend.from_env(track)
        else:
            _BACKENDS[track] = LocalBackend(track)
    return _BACKENDS[track]


def use_backend(new: Backend | None, track: tuple[int, ...] | None = None) -> None:
    """Install `new` as the ledger for `track` (None: forget it, a fresh one comes next).

    This is the seam for the autograder and for tests; a participant never needs it.
    """
    track = track or data.active_track()
    if new is None:
        _BACKENDS.pop(track, None)
    else:
        _BACKENDS[track] = new


def subscribe(listener: Callable[[int, int | None], None]) -> None:
    """Call `listener(count, budget)` after every successful annotation (for widgets)."""
    _LISTENERS.append(listener)


def unsubscribe(listener: Callable[[int, int | None], None]) -> None:
    if listener in _LISTENERS:
        _LISTENERS.remove(listener)


def _as_indices(indices) -> tuple[np.ndarray, tuple[int, ...]]:
    """Validate `indices` (int, list, numpy array or torch tensor): a 1-D int64 array and the input's shape."""
    if hasattr(indices, "detach") and hasattr(indices, "numpy"):  # a torch tensor
        indices = indices.detach().cpu().numpy()
    if isinstance(indices, (bool, np.bool_)):
        raise IndexTypeError("got a bool; expected integer pool indices such as 12 or [12, 40].")
    if isinstance(indices, (str, bytes)):
        raise IndexTypeError(f"got the string {indices!r}; expected integer pool indices.")
    try:
        array = np.asarray(indices)
    except ValueError as exc:  # ragged nested lists
        raise IndexTypeError(
            "got a ragged nested list; expected a single index or a flat list of integer indices."
        ) from None
    if array.ndim > 1:
        raise IndexTypeError(f"expected a single index or a 1-D list of indices, got shape {array.shape}.")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64), array.shape
    if array.dtype.kind not in "iu":
        kind = {"b": "bools", "f": "floats", "c": "complex numbers", "U": "strings", "O": "mixed objects"}
        raise IndexTypeError(
            f"got {kind.get(array.dtype.kind, array.dtype.name)}; expected integer pool indices "
            "(cast with .astype(int) if they are whole numbers)."
        )
    return array.astype(np.int64).reshape(-1), array.shape


def annotate(indices) -> np.ndarray:
    """Return the original digits of the pool samples at `indices` (charged once each).

    `indices`: an int, a list, a numpy array or a torch tensor of pool indices in C.
    Returns an int64 array of digits, shaped like `indices` (a 0-D array for an int).
    Raises an `OracleError` subclass, charging nothing, for any bad index.
    """
    flat, shape = _as_indices(indices)
    if flat.size == 0:
        return np.zeros(shape, dtype=np.int64)
    session = backend()
    digits = np.asarray(session.annotate(flat), dtype=np.int64).reshape(shape)
    for listener in list(_LISTENERS):
        listener(session.count(), session.budget())
    return digits


def count() -> int:
    """Number of distinct pool indices annotated so far in this session."""
    return backend().count()


def history() -> list[Annotation]:
    """Every charged annotation in order, as `Annotation(order, index, label)`."""
    return backend().history()


def set_budget(n: int | None) -> None:
    """Cap the total number of annotations of this session at `n` (None: no cap)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0):
        raise OracleError(f"budget must be a non-negative integer or None, got {n!r}.")
    backend().set_budget(None if n is None else int(n))
    for listener in list(_LISTENERS):
        listener(count(), budget())


def budget() -> int | None:
    """The budget set with `set_budget`, or None when there is no cap."""
    return backend().budget()


def remaining() -> int | None:
    """Annotations left in the budget, or None when there is no cap."""
    cap = budget()
    return None if cap is None else max(cap - count(), 0)
