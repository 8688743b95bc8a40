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

from collections.abc import Callable
from typing import Protocol

import numpy as np

from course import config, data, protocol
from course.context import CONTEXT, Ledger
from course.event_client import EventBackend
from course.exceptions import (  # noqa: F401  (re-exported: course.oracle.OracleError etc. still work)
    BudgetExceededError, IndexTypeError, NotInCError, OracleError, OutOfRangeError, ServiceError,
)
from course.protocol import Annotation  # noqa: F401  (re-exported: course.oracle.Annotation)
from course.service_client import ServiceBackend


class Backend(Protocol):
    """Where the ledger lives. `indices` arrive validated as a 1-D int64 array."""

    def annotate(self, indices: np.ndarray) -> np.ndarray: ...
    def count(self) -> int: ...
    def history(self) -> list[Annotation]: ...
    def set_budget(self, n: int | None) -> None: ...
    def budget(self) -> int | None: ...
    def score(self, predictions: np.ndarray, split: str) -> tuple[float, int]:
        """Accuracy of `predictions` on the track images of `split`, and the count.

        Follows the exam-mode rule of `course.protocol.Rules`: raises
        `course.exceptions.SubmissionRefusedError` for a scoring it forbids.
        """
        ...


class LocalBackend:
    """The in-process ledger used outside the autograder.

    It answers through the same `course.protocol.Rules` as the annotation service
    (same rules, same messages, same ledger entries, kept in memory), in exam mode
    whenever `course.grading.is_exam()` says so.
    """

    def __init__(self, track: tuple[int, ...]):
        split = data.split(track)
        if split.pool_digits is None:
            raise ServiceError(
                "this data folder is prepared for the autograder and holds no labels; "
                f"the oracle needs the annotation service named by ${config.ENV_SERVICE}."
            )
        self.track = tuple(track)
        public = split.public_test_digits
        self._rules = protocol.Rules(
            self.track, split.pool_digits,
            {protocol.PUBLIC: public[np.isin(public, self.track)], protocol.PRIVATE: split.private_test_digits},
            exam=CONTEXT.exam())

    def _call(self, op: protocol.Op, **fields):
        self._rules.exam = CONTEXT.exam()
        return protocol.result(self._rules.handle(protocol.request(op, **fields)))

    def annotate(self, indices: np.ndarray) -> np.ndarray:
        reply = self._call(protocol.Op.ANNOTATE, indices=[int(i) for i in indices])
        return np.asarray(reply["labels"], dtype=np.int64)

    def count(self) -> int:
        return self._rules.count

    def history(self) -> list[Annotation]:
        return [Annotation(*row) for row in self._rules.history()]

    def set_budget(self, n: int | None) -> None:
        self._call(protocol.Op.SET_BUDGET, n=n)

    def budget(self) -> int | None:
        return self._rules.budget

    def score(self, predictions: np.ndarray, split: str) -> tuple[float, int]:
        reply = self._call(protocol.Op.SCORE, split=split, predictions=[int(p) for p in predictions])
        return float(reply["accuracy"]), int(reply["count"])

    def ledger(self) -> list[dict]:
        """The ledger entries of this session, as the service would write them."""
        return list(self._rules.ledger.entries)


# --- the process-wide session -------------------------------------------------

_BACKENDS: dict[tuple[int, ...], Backend] = {}
_EPOCH: list[int] = []  # the `CONTEXT.epoch` the ledgers above were made in
_LISTENERS: list[Callable[[int, int | None], None]] = []


def _current_ledgers() -> dict[tuple[int, ...], Backend]:
    """`_BACKENDS`, emptied first if the ledger moved since they were made (an event joined or left)."""
    if _EPOCH != [CONTEXT.epoch]:
        _BACKENDS.clear()
        _EPOCH[:] = [CONTEXT.epoch]
    return _BACKENDS


def backend(track: tuple[int, ...] | None = None) -> Backend:
    """The ledger for `track` (default: the active track); created on first use where `CONTEXT` says."""
    track = track or CONTEXT.track()
    ledgers = _current_ledgers()
    if track not in ledgers:
        where = CONTEXT.ledger()
        if where is Ledger.SERVICE:
            ledgers[track] = ServiceBackend.from_env(track)
        elif where is Ledger.EVENT:
            ledgers[track] = EventBackend(CONTEXT.event(), track)
        else:
            ledgers[track] = LocalBackend(track)
    return ledgers[track]


def use_backend(new: Backend | None, track: tuple[int, ...] | None = None) -> None:
    """Install `new` as the ledger for `track` (None: forget it, a fresh one comes next).

    This is the seam for the autograder and for tests; a participant never needs it.
    """
    track = track or CONTEXT.track()
    if new is None:
        _current_ledgers().pop(track, None)
    else:
        _current_ledgers()[track] = new


def subscribe(listener: Callable[[int, int | None], None]) -> None:
    """Call `listener(count, budget)` after every successful annotation (for widgets)."""
    _LISTENERS.append(listener)


def unsubscribe(listener: Callable[[int, int | None], None]) -> None:
    if listener in _LISTENERS:
        _LISTENERS.remove(listener)


_MASK_HINT = ("the oracle takes pool indices, not a mask: pass np.flatnonzero(mask) for a mask over the pool, "
              "or dataset.c_indices[mask] for a mask over dataset.c_indices.")


def _as_indices(indices) -> tuple[np.ndarray, tuple[int, ...]]:
    """Validate `indices` (int, list, numpy array, pandas Series or torch tensor).

    Returns a 1-D int64 array and the input's shape. Refusals name what was most
    likely passed (a mask, np.where's tuple, np.argwhere's column, scores...) and
    how to turn it into pool indices.
    """
    from_torch = hasattr(indices, "detach") and hasattr(indices, "numpy")
    if from_torch:
        indices = indices.detach().cpu().numpy()
    elif hasattr(indices, "to_numpy"):  # a pandas Series, Index or DataFrame
        indices = indices.to_numpy()
    if indices is None:
        raise IndexTypeError("got None; expected integer pool indices such as 12 or [12, 40].")
    if isinstance(indices, (bool, np.bool_)):
        raise IndexTypeError("got a bool; expected integer pool indices such as 12 or [12, 40]. " + _MASK_HINT)
    if isinstance(indices, (str, bytes)):
        raise IndexTypeError(f"got the string {indices!r}; expected integer pool indices such as 12 or [12, 40].")
    if isinstance(indices, (set, frozenset, dict)):
        raise IndexTypeError(f"got a {type(indices).__name__}; pass a list of integer pool indices, "
                             "e.g. sorted(...) of it.")
    if isinstance(indices, tuple) and indices and all(isinstance(a, np.ndarray) and a.ndim == 1 for a in indices):
        raise IndexTypeError("got a tuple of arrays, as np.where(mask) and np.nonzero(mask) return; pass its "
                             "first element, np.where(mask)[0], or use np.flatnonzero(mask).")
    try:
        array = np.asarray(indices)
    except ValueError:  # ragged nested lists
        raise IndexTypeError(
            "got a ragged nested list; expected a single index or a flat list of integer indices."
        ) from None
    if array.dtype.kind == "b":
        raise IndexTypeError("got booleans; " + _MASK_HINT)
    if array.ndim > 1:
        if array.size == max(array.shape):
            raise IndexTypeError(
                f"got shape {array.shape}, e.g. np.argwhere's one-column result; pass a flat list of indices: "
                "np.ravel(...) it, or use np.flatnonzero(mask) instead of np.argwhere(mask).")
        raise IndexTypeError(
            f"expected a single index or a 1-D list of indices, got shape {array.shape}; (row, column) pairs "
            "from np.argwhere or np.nonzero on a 2-D array are not pool indices.")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64), array.shape
    if array.dtype.kind == "f":
        values = array.reshape(-1)
        cast = ".long()" if from_torch else ".astype(int)"
        if np.all(np.isfinite(values)) and np.all(values == np.round(values)):
            raise IndexTypeError(f"got floats such as {values[0]!r}; pool indices are integers: cast with {cast}.")
        odd = values[~(np.isfinite(values) & (values == np.round(values)))][0]
        raise IndexTypeError(
            f"got floats such as {odd!r} that are not whole numbers; pass pool indices (integers), not scores or "
            "probabilities: e.g. np.argsort(scores)[-k:] gives the positions of the k highest scores.")
    if array.dtype.kind not in "iu":
        kind = {"c": "complex numbers", "U": "strings", "S": "bytes", "O": "mixed objects"}
        example = array.reshape(-1)[0]
        if array.dtype.kind == "O":
            example = next((v for v in array.reshape(-1) if not isinstance(v, (int, np.integer))), example)
        raise IndexTypeError(f"got {kind.get(array.dtype.kind, array.dtype.name)} such as {example!r}; "
                             "expected integer pool indices such as 12 or [12, 40].")
    return array.astype(np.int64).reshape(-1), array.shape


def annotate(indices) -> np.ndarray:
    """Return the original digits of the pool samples at `indices` (charged once each).

    `indices`: an int, a list, a numpy array, a pandas Series or a torch tensor of
    pool indices in C. Returns an int64 array of digits, shaped like `indices` (a
    0-D array for an int). Raises an `OracleError` subclass, charging nothing, for
    any bad index. Each distinct index is sent once, in order of first appearance.
    """
    flat, shape = _as_indices(indices)
    if flat.size == 0:
        return np.zeros(shape, dtype=np.int64)
    unique, inverse = _unique_in_order(flat)
    session = backend()
    digits = np.asarray(session.annotate(unique), dtype=np.int64)[inverse].reshape(shape)
    for listener in list(_LISTENERS):
        listener(session.count(), session.budget())
    return digits


def _unique_in_order(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values in order of first appearance, and where each element of `flat` is among them."""
    values, first, where = np.unique(flat, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return values[order], rank[where.reshape(-1)]


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
