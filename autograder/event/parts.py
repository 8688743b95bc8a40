"""A large annotate call in parts: the event server keeps its parts until the last one.

One annotate request carries at most `protocol.MAX_ANNOTATE_INDICES` indices, so each request's
work stays small; yet one `oracle.annotate` call may hold more (C of a four-digit track has about
24,000 images, and locally such a call works). `course.event` then sends the call in parts
(`protocol.PART_FIELDS`: ``batch``, ``part``, ``more``). The server keeps them here, charging
nothing and sending no label, and hands the whole call to the participant's `protocol.Rules` with
its last part: the charge, the labels, a refusal's message and the ledger entry are those of one
call, so a refused call in parts charges nothing, not even for its first parts. A part whose
indices are not all integers in the pool ends the call at once: the whole call would be refused,
and `Rules` says why with the message one call gets.

Bounds: a participant has at most one unfinished call (a new part 0 replaces it) of at most the
pool's size (the oracle sends each index once); all unfinished calls together hold at most
`MAX_PENDING` indices (int32), and a call untouched for `STALE_S` is dropped when room is needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from course import protocol

MAX_PENDING = 4_000_000  # indices all unfinished calls may hold (16 MB as int32; 66 full pools)
STALE_S = 60.0  # an unfinished call untouched this long may be dropped (the client sends parts back to back)
MAX_BATCH_ID = 32  # characters of a batch id


class PartError(Exception):
    """A part the server cannot keep: its HTTP status and what to do. Nothing was charged."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class _Call:
    batch: str
    next_part: int
    chunks: list[np.ndarray] = field(default_factory=list)
    size: int = 0
    touched: float = field(default_factory=time.monotonic)


class Parts:
    """The unfinished calls in parts, per participant id."""

    def __init__(self, max_pending: int = MAX_PENDING, stale_s: float = STALE_S):
        self.max_pending, self.stale_s = int(max_pending), float(stale_s)
        self.calls: dict[int, _Call] = {}
        self.pending = 0  # indices held by all unfinished calls

    @staticmethod
    def is_part(body: Any) -> bool:
        """An annotate request that is a part of a call (it names a batch)."""
        return isinstance(body, dict) and body.get("op") == protocol.Op.ANNOTATE.value and "batch" in body

    def take(self, pid: int, body: dict, pool_size: int) -> dict | None:
        """Keep one part: None while more parts are to come, else the whole call's request.

        Raises `PartError` for a part out of sequence or without room (the call is dropped).
        """
        batch, part, more, indices = body.get("batch"), body.get("part"), body.get("more", False), body.get("indices")
        if not (isinstance(batch, str) and 0 < len(batch) <= MAX_BATCH_ID) or type(part) is not int or part < 0 \
                or not isinstance(more, bool):
            self.drop(pid)
            raise PartError(400, f"a part of a large annotate call needs batch (1 to {MAX_BATCH_ID} characters), "
                                 "part (its number, from 0) and more (true but for the last part); "
                                 "course.event sends them for you. Nothing was charged.")
        call = self.calls.get(pid)
        if part == 0:
            self.drop(pid)
            call = self.calls[pid] = _Call(batch, 0)
        elif call is None or call.batch != batch or call.next_part != part:
            self.drop(pid)
            raise PartError(409, "this part of a large annotate call does not follow the part before it (the server "
                                 "restarted, or another large call of yours came in between), so the call was "
                                 "dropped. Nothing was charged: call oracle.annotate again.")
        good = isinstance(indices, list) and all(type(i) is int and 0 <= i < pool_size for i in indices)
        if not (more and good):  # the last part, or a bad one: the whole call goes to the rules now
            kept = np.concatenate(call.chunks).tolist() if call.chunks else []
            self.drop(pid)
            return protocol.request(protocol.Op.ANNOTATE, indices=kept + indices if isinstance(indices, list)
                                    else indices)
        if call.size + len(indices) > pool_size:
            self.drop(pid)
            raise PartError(400, f"a large annotate call may hold at most {pool_size} indices (the pool's size); "
                                 "ask for each index once (oracle.annotate does). Nothing was charged.")
        if self.pending + len(indices) > self.max_pending:
            self._drop_stale()
            if self.pending + len(indices) > self.max_pending:
                self.drop(pid)
                raise PartError(503, "the event server holds too many unfinished large calls right now; call "
                                     "oracle.annotate again in a moment. Nothing was charged.")
        call.chunks.append(np.asarray(indices, dtype=np.int32))
        call.size += len(indices)
        call.next_part += 1
        call.touched = time.monotonic()
        self.pending += len(indices)
        return None

    def drop(self, pid: int) -> None:
        call = self.calls.pop(pid, None)
        if call is not None:
            self.pending -= call.size

    def _drop_stale(self) -> None:
        now = time.monotonic()
        for pid in [p for p, c in self.calls.items() if now - c.touched > self.stale_s]:
            self.drop(pid)
