"""Graded attempts of one student: what makes a new attempt, and which attempt the leaderboard ranks.

Exam mode lets one graded run make one counted submission, and the board shows its accuracy. A
participant who could be regraded with a changed notebook would read that accuracy and try again
(name two clusters with 0 annotations, read the board, submit the other naming): the board would
be a scoring oracle across runs. So every graded attempt is kept (`autograder.results.store`, one set of
rows per attempt, keyed by `key` of the submitted notebook's bytes), the row says how many there
were, and the rule below picks the attempt the leaderboard ranks.

An attempt is a graded notebook whose bytes differ from every earlier one of the same student
and assignment; a regrade of the same bytes (a grader fix, a rotated secret) replaces that
attempt's rows and keeps its number, so it gives the same row as before.

RULE, the one place that decides it: the FIRST attempt that counted is ranked. An attempt counts
when it made a counted submission, or when it bought labels without one (its row shows them as
``annotations``, `autograder.grading.judge`). A counted submission's accuracy was on the board; nothing
learnt from it can change the rank, which is exam mode's "one counted submission" carried across
runs. Summing every attempt's annotations instead would still let a 0-annotation guesser try the
other naming for free (0 + 0 annotations, then a pass). Bought labels reached the kernel (printed,
raised into the row's detail on the board, saved), and every grading of an assignment shuffles the
pool the same way, so a later attempt could type them in and pay for none; and a union of the
attempts' ledgers cannot charge them, as a ledger entry keeps only the first indices of a call.
So an attempt that bought labels is spent like one that submitted: ranked if it is the first,
not passed, with what it bought. An attempt that bought nothing and submitted nothing (no
notebook, a crash before any label, a points-only assignment) learnt nothing graded, so it does
not use up the counted one: while no attempt counted, the latest attempt is ranked. Once an
attempt has counted it stays counted: a regrade of
the same bytes that makes no counted submission (a notebook that submits only before some date,
handed in again after it) keeps the counted rows and is noted for review beside them, and a
regraded row carries ``counted_at`` (`autograder.results.store`), so no regrade can void the ranked attempt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

RULE = "first counted"  # the ranked attempt: the first that submitted or bought labels, else the latest
UNKNOWN = ""  # the notebook key of rows saved without one (before attempts were kept, or by an old caller)
KEY_CHARS = 32  # hex characters of a notebook key (128 bits of SHA-256)


class _Graded(Protocol):  # a store.Row, without importing the store
    accuracy: float | None
    annotations: int | None
    attempt: int
    counted_at: str | None


def key(files: Iterable[tuple[str, bytes]]) -> str:
    """The attempt key of a submission: a hash of its notebooks' names and bytes (order-free).

    A submission with no gradable notebook (``files`` empty) has the key of nothing, so repeated
    empty or broken hand-ins are one attempt, not a new one each time.
    """
    digest = hashlib.sha256()
    for name, raw in sorted(files):
        for part in (name.encode("utf-8", errors="replace"), raw):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()[:KEY_CHARS]


def counts(accuracy: float | None, annotations: int | None) -> bool:
    """Whether one graded row spends an attempt: a counted submission, or labels bought without one."""
    return accuracy is not None or (annotations or 0) > 0


def counted(rows: Sequence[_Graded]) -> bool:
    """Whether an attempt ever counted on some track: the service scored it or sold it labels."""
    return any(counts(row.accuracy, row.annotations) or row.counted_at for row in rows)


def ranked(attempts: Mapping[int, Sequence[_Graded]]) -> int:
    """The number of the attempt the leaderboard ranks (RULE), from every attempt's rows by number."""
    if not attempts:
        raise ValueError("no attempt to rank")
    with_submission = [number for number, rows in attempts.items() if counted(rows)]
    return min(with_submission) if with_submission else max(attempts)


def note(chosen: int, attempts: Mapping[int, Sequence[_Graded]], passed_latest: bool | None) -> str:
    """The row's detail addition when a student has more than one attempt ('' for one)."""
    if len(attempts) < 2:
        return ""
    latest = max(attempts)
    rows = attempts[chosen]
    if any(row.accuracy is not None or row.counted_at for row in rows):
        why = "the first with a counted submission"
    elif counted(rows):
        why = "the first that counted: it bought labels and made no counted submission"
    else:
        why = "the latest; none made a counted submission or bought labels"
    text = f"ranked: attempt {chosen} of {len(attempts)} ({why})"
    if latest != chosen:
        verdict = "passed" if passed_latest else "did not pass"
        text += f"; the latest, attempt {latest}, {verdict} and is not ranked"
    return text
