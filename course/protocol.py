"""The annotation protocol, defined once: operations, replies, errors, rules, ledger.

Two backends keep the annotation count: `course.oracle.LocalBackend` in the
participant's own process, and the annotation service (`autograder.grading.service`), a
separate process under the grader. Both hand every request to the same `Rules`
object, as the same dict, and get the same reply back:

    request  {"op": "annotate", "indices": [12, 40]}            (+ "token" on the socket)
    reply    {"ok": true, "result": {"labels": [7, 1], "count": 2}}
    refusal  {"ok": false, "error": "NotInCError", "message": "index 3 is not in class C, ..."}

so the charging, the budget, the validation, the exam-mode rule and every message
exist once. The error kind is the name of a `course.exceptions` class
(`ERRORS`); `result(reply)` turns a refusal back into that exception.

The rules (`Rules`):
- every distinct pool index in class C costs one annotation, once; repeats are
  free; a call with any bad index, or one that would pass the budget, is refused
  whole and charges nothing;
- practice mode (local, the default): the public split is scored as often as you
  like; the private split is never scored;
- exam mode (always under the grader; locally with ``COURSE_EXAM=1`` or
  `course.grading.exam_mode()`): the public split is never scored, the first
  scoring of the private split is the counted submission, and any later one is
  refused with `SubmissionRefusedError`. So no value computed from the held-out
  labels of the track's digits reaches the kernel before its counted submission
  (the merged test labels are public: `course.evaluate.merged_accuracy` scores them
  in both modes). After it the oracle sells no
  new label (an `OracleError`; repeats of paid labels stay free): a label bought
  then would count on no row, yet could be printed into the feedback and reused.

Every request, answered or refused, becomes one ledger entry (a JSON object; the
service appends them to a JSONL file). Entries are bounded: at most
`LEDGER_MAX_INDICES` indices and `LEDGER_MAX_TEXT` characters of text each, and the
service answers at most `MAX_REQUESTS` requests per run, so a flood of requests
cannot blow the ledger up. The grader reads it back with `read_ledger` and
`summarize`.

Entry schema (keys always present: ``seq, time, op, ok, error, message``; ``error``
and ``message`` are None when ``ok``):
- annotate: ``indices`` (the first `LEDGER_MAX_INDICES` requested, or None if they
  were not integers), ``n_indices``; when ok also ``new`` (the first newly charged
  indices), ``n_new`` and ``count`` (distinct annotations after the call);
- score: ``split`` ("public" = a held-out evaluation, "private" = a submission);
  when ok also ``accuracy``, ``count`` and ``n`` (images scored);
- set_budget: ``n``.

This module needs only numpy and `course.exceptions` (the service imports it
without torch).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

import numpy as np

from course import exceptions as ex


class Op(str, Enum):
    """The operations of the protocol; the value is what travels in ``"op"``."""

    HELLO = "hello"  # -> HelloReply
    ANNOTATE = "annotate"  # indices: list[int] -> AnnotateReply
    COUNT = "count"  # -> int
    HISTORY = "history"  # -> list of [order, index, label]
    SET_BUDGET = "set_budget"  # n: int | None -> None
    BUDGET = "budget"  # -> int | None
    SCORE = "score"  # split: "public" | "private", predictions: list[int] -> ScoreReply


PUBLIC = "public"  # the held-out split a participant may score in practice mode
PRIVATE = "private"  # the held-out split of the counted submission
SPLITS = (PUBLIC, PRIVATE)

# --- caps (service hardening; a valid request is far below each of them) ---------------
MAX_REQUEST_BYTES = 1 << 20  # all 60000 pool indices take ~420 kB of JSON
MAX_REQUESTS = 5000  # requests one graded run may make (one annotate call is one request)
LEDGER_MAX_INDICES = 32  # indices kept per ledger entry (the counts are always kept)
MAX_ANNOTATE_INDICES = 20_000  # indices one annotate request to the event server may carry (a two-digit track's C
# has under 13,000); `course.event` sends a larger call in parts (`PART_FIELDS`), which the server answers as one
PART_FIELDS = ("batch", "part", "more")  # a part of a large annotate call: batch id (a short string), part number
# from 0, and more (true but for the last part). The event server keeps the parts, charging nothing and sending no
# label, until the last one; then the whole call is answered by `Rules` as one request: one charge, one ledger entry
LEDGER_MAX_TEXT = 600  # characters kept of a message in the ledger
FIELD_MAX_TEXT = 80  # characters kept of an op name or of a bad field, in messages and the ledger
_INT64 = 2**63

ERRORS: dict[str, type[ex.CourseError]] = {cls.__name__: cls for cls in (
    ex.OracleError, ex.IndexTypeError, ex.OutOfRangeError, ex.NotInCError, ex.BudgetExceededError,
    ex.ServiceError, ex.PredictionError, ex.SubmissionRefusedError)}
"""Error kind on the wire -> the `course.exceptions` class it stands for."""


class HelloReply(TypedDict):
    track: list[int]
    pool_size: int
    exam: bool
    count: int
    budget: int | None


class AnnotateReply(TypedDict):
    labels: list[int]  # the digit of each requested index, in request order
    count: int  # distinct annotations charged so far, this call included


class ScoreReply(TypedDict):
    split: str
    accuracy: float
    count: int  # annotations charged when the predictions were scored
    n: int  # number of images scored


class Annotation(NamedTuple):
    """One charged annotation, a row of the history: its order in the ledger, the pool index, the digit."""

    order: int
    index: int
    label: int


# --- the wire ----------------------------------------------------------------------------


def request(op: Op, **fields: Any) -> dict:
    """A request dict (the socket client adds ``token``)."""
    return {"op": Op(op).value, **fields}


def encode(message: Mapping) -> bytes:
    """One message as one line of JSON."""
    return json.dumps(message).encode() + b"\n"


def decode(line: bytes | str) -> Any:
    """Parse one line; `ServiceError` if it is not JSON."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: valid JSON nested deeper than json reads
        raise ex.ServiceError("the message is not valid JSON.") from None


def ok(result: Any) -> dict:
    return {"ok": True, "result": result}


def refusal(exc: ex.CourseError) -> dict:
    """The reply for a refused request."""
    kind = type(exc).__name__ if type(exc).__name__ in ERRORS else "ServiceError"
    return {"ok": False, "error": kind, "message": str(exc)}


def result(reply: Any) -> Any:
    """The result of a reply, or raise the `course.exceptions` class its error names."""
    if not isinstance(reply, dict):
        raise ex.ServiceError(f"the annotation service sent a malformed reply ({_clip(reply)}).")
    if not reply.get("ok"):
        cls = ERRORS.get(str(reply.get("error")), ex.ServiceError)
        raise cls(str(reply.get("message") or "the request was refused."))
    return reply.get("result")


# --- messages shared by both sides ----------------------------------------------------------


def held_out_off_message() -> str:
    """Why no held-out score is given in exam mode (service refusal and local notice)."""
    return ("exam mode: no held-out score is given before the counted submission, so "
            "course.evaluate.accuracy returns nan and the grader's annotation service never scores the "
            "public split. Decide without test labels: cross-validate on the labels you bought, or check "
            "that two models or two clusterings agree. Nothing was charged.")


def second_submission_message(counted: Mapping) -> str:
    """Why a later submission is refused; `counted` is the counted `ScoreReply`."""
    n_ann = int(counted["count"])
    return (f"exam mode counts only the first submission, and this run already made it "
            f"(accuracy {float(counted['accuracy']):.1%} on {int(counted['n'])} private images with "
            f"{n_ann} annotation{'s' if n_ann != 1 else ''}); that one stands. This later submission was "
            "refused and charged nothing. To try another model, run the notebook again from a fresh "
            "kernel.")


def oracle_closed_message(counted: Mapping) -> str:
    """Why exam mode sells no new label after the counted submission."""
    return ("exam mode closes the oracle at the counted submission: labels bought after it would count on "
            "no row, so they are not sold (the labels you paid for before it are still yours). Nothing was "
            "charged. To try another model, run the notebook again from a fresh kernel.")


# --- the rules ------------------------------------------------------------------------------


class Rules:
    """The labels, the count, the budget and the scoring of one session, with its ledger.

    `handle(request) -> reply` is the whole protocol; the other public methods are
    read-only views for the local backend. `exam` may be switched between calls
    (the local backend follows `course.context`'s mode; the service is always in
    exam mode). `max_requests` caps the requests of a session (None: no cap).
    """

    def __init__(self, track: Sequence[int], pool_digits: np.ndarray, truth: Mapping[str, np.ndarray], *,
                 exam: bool, ledger: "LedgerWriter | None" = None, max_requests: int | None = None):
        self.track = tuple(int(d) for d in track)
        self._digits = np.asarray(pool_digits, dtype=np.int64)
        self._in_c = np.isin(self._digits, self.track)
        self._truth = {split: np.asarray(truth[split], dtype=np.int64) for split in SPLITS}
        self.exam = bool(exam)
        self.ledger = ledger if ledger is not None else LedgerWriter()
        self.max_requests = max_requests
        self.requests = 0  # requests seen, refused ones included
        self.unlogged = 0  # refusals past the request cap that got no ledger entry of their own
        self._charged: dict[int, int] = {}  # index -> digit, in charge order
        self._budget: int | None = None
        self.counted: ScoreReply | None = None  # the counted submission (exam mode)

    # --- read-only views ----------------------------------------------------------------

    @property
    def pool_size(self) -> int:
        return len(self._digits)

    @property
    def count(self) -> int:
        return len(self._charged)

    @property
    def budget(self) -> int | None:
        return self._budget

    def history(self) -> list[list[int]]:
        return [[k, i, d] for k, (i, d) in enumerate(self._charged.items())]

    # --- the whole protocol -----------------------------------------------------------------

    def handle(self, req: Any) -> dict:
        """Answer one request dict: a reply dict, and one ledger entry (bounded)."""
        op = req.get("op") if isinstance(req, dict) else None
        try:
            self._admit()
            try:
                operation = Op(op)
            except ValueError:
                raise ex.ServiceError(f"unknown request {_clip(op)}; the operations are "
                                      f"{', '.join(o.value for o in Op)}.") from None
            reply, logged = self._OPERATIONS[operation](self, req)
        except ex.CourseError as exc:
            return self._refuse(op, req, exc)
        self._log({"op": _op_field(op), "ok": True, "error": None, "message": None,
                   **_request_fields(op, req), **logged})
        return ok(reply)

    def refuse(self, op: Any, exc: ex.CourseError) -> dict:
        """Refuse a request that could not be read (too large, not JSON, wrong token); logged."""
        self._admit(raising=False)
        return self._refuse(op, None, exc)

    def close(self) -> None:
        """Write one entry for the refusals past the request cap that were not logged."""
        if self.unlogged:
            self.ledger.add({"op": None, "ok": False, "error": "ServiceError",
                             "message": f"{self.unlogged} more requests were refused after the cap of "
                                        f"{self.max_requests} requests and are not logged one by one."})
            self.unlogged = 0

    # --- the operations: each returns (reply, extra ledger fields) ------------------------------

    def _hello(self, req: dict) -> tuple[HelloReply, dict]:
        return HelloReply(track=list(self.track), pool_size=self.pool_size, exam=self.exam,
                          count=self.count, budget=self._budget), {}

    def _annotate(self, req: dict) -> tuple[AnnotateReply, dict]:
        indices = self.check_indices(req.get("indices"))
        new = [i for i in dict.fromkeys(indices) if i not in self._charged]
        if new and self.exam and self.counted is not None:
            raise ex.OracleError(oracle_closed_message(self.counted))
        if new and self._budget is not None and self.count + len(new) > self._budget:  # repeats stay free
            raise ex.BudgetExceededError(
                f"this call needs {len(new)} new annotations but only {self._budget - self.count} of the "
                f"budget of {self._budget} are left; nothing was charged. Ask for fewer indices.")
        for i in new:
            self._charged[i] = int(self._digits[i])
        reply = AnnotateReply(labels=self._digits[indices].tolist(), count=self.count)
        return reply, {"new": new[:LEDGER_MAX_INDICES], "n_new": len(new), "count": self.count}

    def _count(self, req: dict) -> tuple[int, dict]:
        return self.count, {}

    def _history(self, req: dict) -> tuple[list[list[int]], dict]:
        return self.history(), {}

    def _set_budget(self, req: dict) -> tuple[None, dict]:
        n = req.get("n")
        if n is not None and (not _is_int(n) or n < 0):
            raise ex.OracleError(f"budget must be a non-negative integer or None, got {_clip(n)}.")
        self._budget = n
        return None, {}

    def _get_budget(self, req: dict) -> tuple[int | None, dict]:
        return self._budget, {}

    def _score(self, req: dict) -> tuple[ScoreReply, dict]:
        split = req.get("split")
        if split not in SPLITS:
            raise ex.ServiceError(f"split must be 'public' or 'private', got {_clip(split)}.")
        self.check_scoring_allowed(split)
        predictions = self.check_predictions(req.get("predictions"), split)
        reply = ScoreReply(split=split, accuracy=float(np.mean(predictions == self._truth[split])),
                           count=self.count, n=int(len(predictions)))
        if split == PRIVATE:
            self.counted = reply
        return reply, {"accuracy": reply["accuracy"], "count": reply["count"], "n": reply["n"]}

    _OPERATIONS = {Op.HELLO: _hello, Op.ANNOTATE: _annotate, Op.COUNT: _count, Op.HISTORY: _history,
                   Op.SET_BUDGET: _set_budget, Op.BUDGET: _get_budget, Op.SCORE: _score}

    # --- the checks (public: the same messages wherever they are needed) ---------------------

    def check_indices(self, value: Any) -> list[int]:
        """Indices as they arrive on the wire: a list of ints, in the pool, in class C."""
        if not isinstance(value, list):
            raise ex.IndexTypeError(f"expected a list of integer pool indices, got {_clip(value)}.")
        bad = [i for i in value if not _is_int(i)][:1]
        if bad:
            raise ex.IndexTypeError(f"expected a list of integer pool indices; {_clip(bad[0])} is not an integer.")
        n = self.pool_size
        for i in value:
            if not 0 <= i < n:
                raise ex.OutOfRangeError(f"index {i} is outside the pool; valid indices are 0..{n - 1}.")
        for i in value:
            if not self._in_c[i]:
                raise ex.NotInCError(
                    f"index {i} is not in class C, so its label is already known (dataset.labels); "
                    "annotate only indices from dataset.c_indices.")
        return value

    def check_scoring_allowed(self, split: str) -> None:
        """The exam-mode rule: which split may be scored now."""
        if self.exam and split == PUBLIC:
            raise ex.SubmissionRefusedError(held_out_off_message())
        if self.exam and self.counted is not None:
            raise ex.SubmissionRefusedError(second_submission_message(self.counted))
        if not self.exam and split == PRIVATE:
            raise ex.SubmissionRefusedError(
                "the private split is scored only once, by the counted submission in exam mode "
                "(COURSE_EXAM=1 or course.grading.exam_mode()); in practice mode course.grading.submit "
                "scores the public split. Nothing was charged.")

    def check_predictions(self, value: Any, split: str) -> np.ndarray:
        """Predictions as they arrive on the wire: one track digit (int) per image of `split`."""
        n = len(self._truth[split])
        if not isinstance(value, list) or len(value) != n:
            got = len(value) if isinstance(value, list) else type(value).__name__
            raise ex.PredictionError(f"expected {n} predictions for the {split} split, got {got}.")
        if any(not _is_int(p) for p in value):
            raise ex.PredictionError("predictions must be integer digits.")
        array = np.asarray(value, dtype=np.int64)
        unexpected = sorted(set(np.unique(array).tolist()) - set(self.track))
        if unexpected:
            raise ex.PredictionError(f"predictions hold {unexpected}; expected only the track's digits "
                                     f"{','.join(map(str, self.track))}.")
        return array

    # --- bookkeeping ------------------------------------------------------------------------

    def _admit(self, raising: bool = True) -> None:
        self.requests += 1
        if raising and self.max_requests is not None and self.requests > self.max_requests:
            raise ex.ServiceError(
                f"this run has made more than {self.max_requests} requests to the annotation service, the most "
                "the grader answers; every later request is refused. Annotate in batches (one call with many "
                "indices is one request) and keep count() and evaluations out of tight loops.")

    def _refuse(self, op: Any, req: Any, exc: ex.CourseError) -> dict:
        reply = refusal(exc)
        fields = _request_fields(op, req) if isinstance(req, dict) else {}
        self._log({"op": _op_field(op), "ok": False, "error": reply["error"],
                   "message": reply["message"][:LEDGER_MAX_TEXT], **fields})
        return reply

    def _log(self, entry: dict) -> None:
        if self.max_requests is not None and self.requests > self.max_requests + 1:
            self.unlogged += 1  # only the first refusal past the cap gets its own entry
            return
        self.ledger.add(entry)



# --- the ledger -------------------------------------------------------------------------------


class LedgerWriter:
    """Appends ledger entries: in memory (`entries`) and/or to a JSONL file.

    With a `path`, each entry is one ``os.write`` of a whole line on an O_APPEND
    descriptor, so the file always holds complete entries and a long run costs
    O(1) per request. `keep` (default: only without a path) keeps them in memory too.
    """

    def __init__(self, path: Path | str | None = None, keep: bool | None = None):
        self.path = Path(path) if path is not None else None
        self.entries: list[dict] = []
        self.n = 0
        self._keep = self.path is None if keep is None else keep
        self._fd = (os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
                    if self.path is not None else None)

    def add(self, entry: Mapping) -> dict:
        """Stamp `entry` with ``seq`` and ``time`` and append it; returns the stamped entry."""
        entry = {"seq": self.n, "time": round(time.time(), 3), **entry}
        self.n += 1
        if self._keep:
            self.entries.append(entry)
        if self._fd is not None:
            os.write(self._fd, json.dumps(entry).encode() + b"\n")
        return entry

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_ledger(text: str) -> list[dict]:
    """The entries of a JSONL ledger; torn or foreign lines are skipped."""
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # only a service killed mid-write could leave a torn line
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


@dataclass(frozen=True)
class LedgerSummary:
    """What a run's ledger says. The numbers are those of the FIRST successful private
    score (the counted submission), None without one; `evaluations` and `submissions`
    count public- and private-score requests, answered or refused. `bought` is the run's
    distinct annotations, with or without a submission: labels a run bought reached its
    kernel (printed, raised, saved) even when it never submitted, so the grader counts
    that run as an attempt (`autograder.grading.attempts`). It is left out of ``==``: two
    summaries are equal when their counted submissions are."""

    accuracy: float | None
    annotations: int | None
    n_images: int | None
    evaluations: int
    submissions: int
    bought: int = field(default=0, compare=False)


def summarize(entries: Iterable[Mapping]) -> LedgerSummary:
    """Summarise ledger entries (from `read_ledger`) for the grader."""
    entries = list(entries)
    scores = [e for e in entries if isinstance(e, Mapping) and e.get("op") == Op.SCORE.value]
    counted = next((e for e in scores if e.get("split") == PRIVATE and e.get("ok") is True), None)
    return LedgerSummary(
        accuracy=float(counted["accuracy"]) if counted else None,
        annotations=int(counted["count"]) if counted else None,
        n_images=int(counted["n"]) if counted else None,
        evaluations=sum(e.get("split") == PUBLIC for e in scores),
        submissions=sum(e.get("split") == PRIVATE for e in scores),
        bought=_bought(entries),
    )


def _bought(entries: Iterable[Mapping]) -> int:
    """Distinct annotations of a run: the largest ``count`` an answered entry carries (0 if none).

    ``count`` only grows within a run, so a ledger's kept tail still holds its largest.
    """
    counts = [e.get("count") for e in entries if isinstance(e, Mapping) and e.get("ok") is True]
    return max((c for c in counts if _is_int(c) and c > 0), default=0)


# --- helpers -----------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    """A JSON integer (not a bool) that fits int64."""
    return isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64


def _clip(value: Any, limit: int = FIELD_MAX_TEXT) -> str:
    """repr of `value`, at most `limit` characters (a hostile field never grows a message)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


clip = _clip  # public name, for other servers of this protocol (e.g. the event app)


def _op_field(op: Any) -> Any:
    """The ``op`` of a ledger entry: the name as sent if short, else a clipped repr."""
    return op if op is None or (isinstance(op, str) and len(op) <= FIELD_MAX_TEXT) else _clip(op)


def _request_fields(op: Any, req: Mapping) -> dict:
    """What the ledger keeps of a request: bounded, never the token or the predictions."""
    if op == Op.ANNOTATE.value:
        indices = req.get("indices")
        if not isinstance(indices, list):
            return {"indices": None, "n_indices": None}
        head = indices[:LEDGER_MAX_INDICES]
        return {"indices": head if all(_is_int(i) for i in head) else None, "n_indices": len(indices)}
    if op == Op.SCORE.value:
        split = req.get("split")
        return {"split": split if split in SPLITS else _clip(split)}
    if op == Op.SET_BUDGET.value:
        n = req.get("n")
        return {"n": n if n is None or _is_int(n) else _clip(n)}
    return {}
