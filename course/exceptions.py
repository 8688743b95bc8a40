"""Every error a participant can meet from `course`, in one place.

All of them derive from `CourseError`, so ``except CourseError`` catches anything
the course refuses, and each keeps the built-in base it always had (an
`OracleError` is still a `ValueError`, a `DataError` a `RuntimeError`), so older
``except ValueError`` code keeps working. The messages say what was wrong and what
to do; a refused request never charges an annotation.

The old import paths stay valid: `course.oracle.OracleError`,
`course.evaluate.PredictionError`, `course.data.DataError` and friends are these
same classes. This module imports nothing, so the annotation service can use it.
"""

from __future__ import annotations


class CourseError(Exception):
    """Base class of every error the `course` package raises on purpose."""


# --- the oracle ------------------------------------------------------------------


class OracleError(CourseError, ValueError):
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


# --- scoring -----------------------------------------------------------------------


class PredictionError(CourseError, ValueError):
    """`predict` broke its contract (shape, dtype or labels)."""


class SubmissionRefusedError(CourseError):
    """A held-out scoring that exam mode forbids; nothing was charged.

    Raised for a second `course.grading.submit` in exam mode (the first one is
    the one that counts) and for any scoring of the public split that reaches
    the annotation service (it never answers one).
    """


# --- data --------------------------------------------------------------------------


class DataError(CourseError, RuntimeError):
    """The MNIST files could not be found, verified or read."""


class TrackError(CourseError, ValueError):
    """A track string that does not name two or more distinct digits."""


__all__ = [
    "CourseError", "OracleError", "IndexTypeError", "OutOfRangeError", "NotInCError",
    "BudgetExceededError", "ServiceError", "PredictionError", "SubmissionRefusedError",
    "DataError", "TrackError",
]
