"""Reading a request's body within a size limit (a 413 otherwise) and as JSON (a 400 otherwise)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from autograder.event.errors import Refused
from autograder.event.server import MAX_BODY


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The body, up to `limit` bytes; a larger one is a 413 (a body up to 8 x `limit` is read to its
    end, so its sender gets the 413 rather than a broken pipe; a larger one is refused unread)."""
    length = request.headers.get("content-length")
    too_big = Refused(413, f"the request body is larger than {limit} bytes, more than any valid {what}; "
                           "nothing was read, stored or charged." + (" Send fewer indices per call."
                                                                    if what == "request" else ""),
                       reason="body_too_large")
    if length is not None and not length.isdigit():
        raise too_big
    if length is not None and int(length) > 8 * limit:
        raise too_big  # replied at once; such a client may see the connection closed instead
    body, seen = bytearray(), 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen <= limit:
            body += chunk
        elif seen > 8 * limit:
            raise too_big
    if seen > limit:
        raise too_big
    return bytes(body)

async def read_json(request: Request) -> Any:
    return parse_json(await read_body(request, MAX_BODY, "request"))

def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: valid JSON nested deeper than json reads
        raise Refused(400, "the request body is not valid JSON; send one JSON object such as "
                           '{"op": "annotate", "indices": [12, 40]}. Nothing was charged.',
                      reason="bad_json") from None
