"""The oracle backend used under the autograder: a client of the annotation service.

When env ``COURSE_SERVICE`` names a service (``unix:/path/to/socket`` or just the
socket path), `course.context` says so and `course.oracle.backend()` builds a
`ServiceBackend` instead of the in-process ledger. Every call becomes one request of `course.protocol` (a JSON
line on a Unix socket, with the per-run token from ``COURSE_SERVICE_TOKEN``); the
service keeps the labels and the authoritative count, applies the same
`course.protocol.Rules` as the local ledger (always in exam mode) and refuses bad
requests with the same error classes and messages, charging nothing.

The count and the budget come back with every reply that changes them, so reading
them (`oracle.count()`, the widgets after each annotation) costs no request.
"""

from __future__ import annotations

import socket

from course import config, protocol
from course.context import CONTEXT, track_name
from course.exceptions import ServiceError
from course.remote import RemoteBackend

TIMEOUT_S = 120.0  # one request; the service answers in milliseconds unless it is gone
MAX_REPLY_BYTES = 16 << 20  # a history of a whole pool is ~1 MB; the service is trusted, this is a fuse
ERRORS = protocol.ERRORS  # the old name of the error-kind table


class ServiceBackend(RemoteBackend):
    """`course.oracle.Backend` that forwards everything to the annotation service."""

    def __init__(self, address: str, token: str, track: tuple[int, ...]):
        self.address = address.removeprefix("unix:")
        self._token = token
        self.track = tuple(track)
        info = self._hello()
        if tuple(info["track"]) != self.track:
            raise ServiceError(
                f"the annotation service grades track {track_name(tuple(info['track']))}, not "
                f"{track_name(self.track)}; call course.data.load() without a track.")

    @classmethod
    def from_env(cls, track: tuple[int, ...]) -> "ServiceBackend":
        """Connect to the service named by ``COURSE_SERVICE`` with ``COURSE_SERVICE_TOKEN``."""
        address, token = CONTEXT.service()
        if not address:
            raise ServiceError(f"${config.ENV_SERVICE} is not set; there is no annotation service.")
        return cls(address, token, track)

    def _request(self, op: protocol.Op | str, **fields):
        """Send one request; its result, or the `course.exceptions` error the service named."""
        message = protocol.encode({**protocol.request(op, **fields), "token": self._token})
        if len(message) > protocol.MAX_REQUEST_BYTES:
            raise ServiceError(
                f"this request would be {len(message)} bytes, more than the {protocol.MAX_REQUEST_BYTES} the "
                "annotation service reads; nothing was sent or charged. Send fewer indices per call.")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(TIMEOUT_S)
                sock.connect(self.address)
                sock.sendall(message)
                with sock.makefile("rb") as reply_file:
                    line = reply_file.readline(MAX_REPLY_BYTES)
        except OSError as exc:
            raise ServiceError(
                f"cannot reach the annotation service at {self.address}: {exc}. "
                "It runs only while the autograder grades this notebook.") from None
        if not line:
            raise ServiceError("the annotation service closed the connection without an answer.")
        return protocol.result(protocol.decode(line))
