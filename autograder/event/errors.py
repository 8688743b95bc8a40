"""An HTTP refusal of the event server: its status and the protocol's refusal body
(``{"ok": false, "error": kind, "message": what to do}``, `app` answers every one so)."""

from __future__ import annotations


class Refused(Exception):
    """An HTTP refusal: status and the protocol's refusal body."""

    def __init__(self, status: int, message: str, kind: str = "ServiceError", headers: dict | None = None,
                 reason: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers
        self.reason = reason or f"http_{status}"  # what the admin's refusal counts call it
