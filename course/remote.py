"""The oracle's backend on the far side of a connection: one `course.protocol` request per call.

Two transports share it: the autograder's annotation service (a Unix socket,
`course.service_client`) and a live event's server (HTTP, `course.event_client`). A
subclass says only how one request travels (`_request`); what each oracle call
sends and what it keeps of the reply (the count and budget, cached so that the
widgets cost no request) lives here, once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from course import protocol


class RemoteBackend:
    """`course.oracle.Backend` whose ledger lives elsewhere; subclasses implement `_request`."""

    track: tuple[int, ...]
    _count: int = 0
    _budget: int | None = None

    def _request(self, op: protocol.Op, **fields) -> Any:
        """Send one request; its result, or raise the `course.exceptions` error named in the reply."""
        raise NotImplementedError

    def _hello(self) -> protocol.HelloReply:
        """Greet the far side; remember the count and budget it already holds (e.g. after a restart)."""
        info: protocol.HelloReply = self._request(protocol.Op.HELLO)
        self._count = int(info["count"])
        self._budget = info["budget"]
        return info

    def annotate(self, indices: np.ndarray) -> np.ndarray:
        reply: protocol.AnnotateReply = self._request(protocol.Op.ANNOTATE, indices=[int(i) for i in indices])
        self._count = int(reply["count"])
        return np.asarray(reply["labels"], dtype=np.int64)

    def count(self) -> int:
        return self._count

    def history(self) -> list[protocol.Annotation]:
        rows = self._request(protocol.Op.HISTORY)
        self._count = len(rows)
        return [protocol.Annotation(*map(int, row)) for row in rows]

    def set_budget(self, n: int | None) -> None:
        self._request(protocol.Op.SET_BUDGET, n=n)
        self._budget = n

    def budget(self) -> int | None:
        return self._budget

    def score(self, predictions: np.ndarray, split: str) -> tuple[float, int]:
        reply: protocol.ScoreReply = self._request(protocol.Op.SCORE, split=split,
                                                   predictions=[int(p) for p in predictions])
        self._count = int(reply["count"])
        return float(reply["accuracy"]), int(reply["count"])
