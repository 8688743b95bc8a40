"""The participant API (``Authorization: Bearer <participant token>`` except join and health): join,
the event's pool, the protocol's operations (annotate, submit...), the notebook upload."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from autograder.event.errors import Refused
from autograder.event.routes.body import parse_json, read_body, read_json
from autograder.event.server import MAX_BODY, STORE_FAILED, EventServer
from autograder.event.uploads import MAX_NOTEBOOK


def router(server: EventServer) -> APIRouter:
    """The participant routes of `server`."""
    router = APIRouter()

    @router.get("/api/health")
    def health():
        return {"ok": True}

    @router.post("/api/events/{code}/join")
    async def join(code: str, request: Request):
        body = await read_json(request)
        client = request.client.host if request.client else ""
        return await run_in_threadpool(server.join, code, body, client)

    @router.get("/api/events/{code}/pool")
    def get_pool(code: str, request: Request):
        participant = server.participant(code, request)
        server.admit_request(participant, before_parse=False)
        return Response(server.pool_file(code), media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="event-{code}.npz"'})

    op = op_endpoint(server)

    # the hot route, as a plain Starlette route: it reads the raw request itself, so FastAPI's parameter
    # solving and validation would be pure overhead on every annotation (`app` answers it before routing too)
    router.add_route("/api/events/{code}/op", op, methods=["POST"])

    @router.post("/api/events/{code}/notebook")
    async def upload(code: str, request: Request):
        participant = server.participant(code, request)
        raw = await read_body(request, MAX_NOTEBOOK, "notebook")
        return await run_in_threadpool(server.upload, participant, raw)

    return router


def op_endpoint(server: EventServer):
    """The hot route's endpoint: one `course.protocol` request of a participant -> its reply."""

    async def run(function, *args, **kwargs):
        """One worker on SQLite: on the event loop (one short critical section, a fraction of a millisecond,
        cheaper than a hop to a thread that would wait for the same lock). Several workers: in a thread, since
        each request waits for PostgreSQL (its participant's row lock, a few round trips) and others may run."""
        if server.shared is None:
            return function(*args, **kwargs)
        return await run_in_threadpool(function, *args, **kwargs)

    async def op(request: Request):
        start = time.perf_counter()
        code = request.path_params["code"]
        too_big = None
        try:
            raw = await read_body(request, MAX_BODY, "request")  # read to its end (a refusal is then no broken pipe)
        except Refused as exc:
            too_big, raw = exc, b""
        try:
            participant = await run(server.participant, code, request)
        except Refused:
            if too_big is not None:
                raise too_big from None
            raise
        body = None
        try:  # a refusal of the server's own goes to the participant's ledger and refusal counts (the rules log
            # theirs); one because the store failed does not: it could not be written either
            if too_big is not None:
                raise too_big
            server.admit_request(participant)  # before parsing: a refused request costs no JSON parse
            body = parse_json(raw)
            status, reply = await run(server.op, participant, body, admitted=True)
        except Refused as exc:
            if exc.reason != STORE_FAILED:
                await run(server.refused, participant, body, exc)
            raise
        took = 1000 * (time.perf_counter() - start)
        return JSONResponse(reply, status, headers={"Server-Timing": f"app;dur={took:.2f}"})

    return op


class HotRoute:
    """ASGI middleware: ``POST /api/events/{code}/op`` (every annotation) goes straight to its endpoint, past
    FastAPI's route matching and exception layers that every annotation would pay for; a refusal is answered as
    the app's handler answers it (`autograder.event.app`)."""

    def __init__(self, app, server: EventServer):
        self.app, self.op = app, op_endpoint(server)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            parts = scope["path"].split("/")
            if len(parts) == 5 and parts[1] == "api" and parts[2] == "events" and parts[4] == "op" and parts[3]:
                request = Request({**scope, "path_params": {"code": parts[3]}}, receive)
                try:
                    response = await self.op(request)
                except Refused as exc:
                    response = JSONResponse({"ok": False, "error": exc.kind, "message": exc.message}, exc.status,
                                            headers=exc.headers)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
