"""The oracle backend used under the autograder: a client of the annotation service.

When env ``COURSE_SERVICE`` names a service (``unix:/path/to/socket`` or just the
socket path), `course.oracle.backend()` builds a `ServiceBackend` instead of the
in-process ledger. Every call becomes one request (newline-delimited JSON on a
Unix socket, with the per-run token from ``COURSE_SERVICE_TOKEN``); the service
keeps the labels and the authoritative count, and it refuses bad requests with
the same error classes and messages as the local ledger, charging nothing.
"""

from __future__ import annotations

import json
import os
import socket

import numpy as np

from course import config, data, evaluate, oracle

TIMEOUT_S = 120.0  # one request; the service answers in milliseconds unless it is gone
ERRORS = {
    "OracleError": oracle.OracleError,
    "IndexTypeError": oracle.IndexTypeError,
    "OutOfRangeError": oracle.OutOfRangeError,
    "NotInCError": oracle.NotInCError,
    "BudgetExceededError": oracle.BudgetExceededError,
    "ServiceError": oracle.ServiceError,
    "PredictionError": evaluate.PredictionError,
}


class ServiceBackend:
    """`course.oracle.Backend` that forwards everything to the annotation service."""

    submit_split = "private"

    def __init__(self, address: str, token: str, track: tuple[int, ...]):
        self.address = address.removeprefix("unix:")
        self._token = token
        self.track = track
        info = self._request("hello")
        if tuple(info["track"]) != tuple(track):
            raise oracle.ServiceError(
                f"the annotation service grades track {data.track_name(tuple(info['track']))}, not "
                f"{data.track_name(track)}; call course.data.load() without a track.")

    @classmethod
    def from_env(cls, track: tuple[int, ...]) -> "ServiceBackend":
        """Connect to the service named by ``COURSE_SERVICE`` with ``COURSE_SERVICE_TOKEN``."""
        address = os.environ.get(config.ENV_SERVICE, "")
        if not address:
            raise oracle.ServiceError(f"${config.ENV_SERVICE} is not set; there is no annotation service.")
        return cls(address, os.environ.get(config.ENV_SERVICE_TOKEN, ""), track)

    def _request(self, op: str, **fields):
        message = json.dumps({"op": op, "token": self._token, **fields}).encode() + b"\n"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(TIMEOUT_S)
                sock.connect(self.address)
                sock.sendall(message)
                with sock.makefile("rb") as reply_file:
                    line = reply_file.readline()
        except OSError as exc:
            raise oracle.ServiceError(
                f"cannot reach the annotation service at {self.address}: {exc}. "
                "It runs only while the autograder grades this notebook.") from None
        if not line:
            raise oracle.ServiceError("the annotation service closed the connection without an answer.")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise ERRORS.get(reply.get("error"), oracle.ServiceError)(reply.get("message", "refused."))
        return reply.get("result")

    def annotate(self, indices: np.ndarray) -> np.ndarray:
        result = self._request("annotate", indices=[int(i) for i in indices])
        return np.asarray(result["labels"], dtype=np.int64)

    def count(self) -> int:
        return int(self._request("count"))

    def history(self) -> list[oracle.Annotation]:
        return [oracle.Annotation(*map(int, row)) for row in self._request("history")]

    def set_budget(self, n: int | None) -> None:
        self._request("set_budget", n=n)

    def budget(self) -> int | None:
        return self._request("budget")

    def score(self, predictions: np.ndarray, split: str) -> tuple[float, int]:
        result = self._request("score", split=split, predictions=[int(p) for p in predictions])
        return float(result["accuracy"]), int(result["count"])
