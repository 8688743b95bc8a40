"""The public board (no token): ``/`` and ``/board`` (the newest event's board), ``/board/{code}``, its
JSON and its server-sent events stream. Per-address buckets and stream caps guard them (`limits`)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from autograder.event import limits, pages
from autograder.event.errors import Refused
from autograder.event.server import SSE_PING_S, SSE_WAKE_S, EventServer


class _Stream(StreamingResponse):
    """A board stream that calls `release` when it ends, however it ends (done, disconnected, cancelled)."""

    def __init__(self, content, release, **kwargs):
        super().__init__(content, **kwargs)
        self.release = release

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


def router(server: EventServer, public_url: str | None = None) -> APIRouter:
    """The board routes of `server`; `public_url` is the join address the board shows (default: its own)."""
    router = APIRouter()
    store = server.store

    @router.get("/api/events/{code}/board")
    async def board(code: str):
        if code not in server.events:
            await run_in_threadpool(server.event, code)  # an unknown code: a 404 before any other query
        await server.check_verifications(code)  # at most one query per event every VERIFY_POLL_S
        await server.check_shared(code)  # several workers: another's change (one query per event every SSE_POLL_S)
        return Response(await server.board_json(code), media_type="application/json")

    @router.get("/api/events/{code}/stream")
    async def stream(code: str, request: Request):
        client = request.client.host if request.client else ""
        key = request.query_params.get("key")
        if key is not None and not server.board_keys.valid(code, key):
            raise Refused(403, f"this board link's key is not event {code}'s; open the board link that `autograder "
                               "event create` printed (the admin page shows it too), or the board without ?key=.")
        if key is not None:  # the instructor's board link: a slot of its own, never refused (`limits`)
            held, refused = server.streams.enter_projector(code), None
        else:
            held, refused = server.streams.enter(client)  # counted before any work; left when the response ends
        if held is None:
            raise Refused(429, refused, headers={"Retry-After": str(limits.RETRY_STREAM_S), "Connection": "close"})
        try:
            if code not in server.events:
                await run_in_threadpool(server.event, code)
        except BaseException:
            server.streams.leave(held)
            raise

        feed = server.watch(code)

        def release() -> None:
            feed.watchers -= 1
            server.streams.leave(held)

        async def events():
            last, pinged = None, time.monotonic()
            while not server.stopping and not held.evicted and not await request.is_disconnected():
                if feed.text is not None and feed.version != last:
                    last = feed.version
                    yield f"data: {feed.text}\n\n"
                    pinged = time.monotonic()
                    continue
                if time.monotonic() - pinged > SSE_PING_S:
                    yield ": ping\n\n"
                    pinged = time.monotonic()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(feed.changed.wait(), SSE_WAKE_S)  # the feed's ticker sets it

        return _Stream(events(), release, media_type="text/event-stream",
                       headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @router.get("/board", response_class=HTMLResponse)
    def board_latest():
        events = [e for e in store.events() if e.closed_at is None] or store.events()
        if not events:
            return HTMLResponse(pages.message("No event yet: create one with `autograder event create`."), 404)
        return RedirectResponse(f"/board/{events[-1].code}", 307)

    @router.get("/board/{code}", response_class=HTMLResponse)
    def board_page(code: str, request: Request):
        event = server.event(code)
        url = public_url or str(request.base_url).rstrip("/")
        return pages.board(event.code, event.assignment, event.track_name, event.roster, public_url=url)

    @router.get("/", include_in_schema=False)
    def root():  # the join address itself (the board's QR code): a phone that scans it lands on the board
        return RedirectResponse("/board", 307)

    return router
