"""Graded attempts of one student: what makes a new attempt, and which attempt the leaderboard ranks.

Exam mode lets one graded run make one counted submission, and the board shows its accuracy. A
participant who could be regraded with a changed notebook would read that accuracy and try again
(name two clusters with 0 annotations, read the board, submit the other naming): the board would
be a scoring oracle across runs. So every graded attempt is kept (`autograder.store`, one set of
rows per attempt, keyed by `key` of the submitted notebook's bytes), the row says how many there
were, and the rule below picks the attempt the leaderboard ranks.

An attempt is a graded notebook whose bytes differ from every earlier one of the same student
and assignment; a regrade of the same bytes (a grader fix, a rotated secret) replaces that
attempt's rows and keeps its number, so it gives the same row as before.

RULE, the one place that decides it: the FIRST attempt with a counted submission is ranked.
Its accuracy was on the board; nothing learnt from it can change the rank, which is exam mode's
"one counted submission" carried across runs. Summing every attempt's annotations instead would
still let a 0-annotation guesser try the other naming for free (0 + 0 annotations, then a pass).
An attempt without a counted submission (no notebook, a crash before ``submit``, a points-only
assignment) showed no held-out number, so it does not use up the counted one: while no attempt
has one, the latest attempt is ranked. Once an attempt has counted it stays counted: a regrade of
the same bytes that makes no counted submission (a notebook that submits only before some date,
handed in again after it) keeps the counted rows and is noted for review beside them, and a
regraded row carries ``counted_at`` (`autograder.store`), so no regrade can void the ranked attempt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

RULE = "first counted"  # the ranked attempt: the first with a counted submission, else the latest
UNKNOWN = ""  # the notebook key of rows saved without one (before attempts were kept, or by an old caller)
KEY_CHARS = 32  # hex characters of a notebook key (128 bits of SHA-256)


class _Graded(Protocol):  # a store.Row, without importing the store
    accuracy: float | None
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


def counted(rows: Sequence[_Graded]) -> bool:
    """Whether an attempt ever made a counted submission on some track (the service scored it)."""
    return any(row.accuracy is not None or row.counted_at for row in rows)


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
    why = ("the first with a counted submission" if counted(attempts[chosen])
           else "the latest; none made a counted submission")
    text = f"ranked: attempt {chosen} of {len(attempts)} ({why})"
    if latest != chosen:
        verdict = "passed" if passed_latest else "did not pass"
        text += f"; the latest, attempt {latest}, {verdict} and is not ranked"
    return text
