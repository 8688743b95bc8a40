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
        with server.lock:
            server.admit(server.session(participant))
        return Response(server.pool_file(code), media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="event-{code}.npz"'})

    async def op(request: Request):
        start = time.perf_counter()
        code = request.path_params["code"]
        too_big = None
        try:
            raw = await read_body(request, MAX_BODY, "request")  # read to its end (a refusal is then no broken pipe)
        except Refused as exc:
            too_big, raw = exc, b""
        try:
            participant = server.participant(code, request)
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
            # answered on the event loop: the work is one short critical section (rules + one SQLite commit,
            # a fraction of a millisecond), cheaper than a hop to a worker thread that would wait for the same lock
            status, reply = server.op(participant, body, admitted=True)
        except Refused as exc:
            if exc.reason != STORE_FAILED:
                server.refused(participant, body, exc)
            raise
        took = 1000 * (time.perf_counter() - start)
        return JSONResponse(reply, status, headers={"Server-Timing": f"app;dur={took:.2f}"})

    # the hot route, as a plain Starlette route: it reads the raw request itself, so FastAPI's parameter
    # solving and validation would be pure overhead on every annotation
    router.add_route("/api/events/{code}/op", op, methods=["POST"])

    @router.post("/api/events/{code}/notebook")
    async def upload(code: str, request: Request):
        participant = server.participant(code, request)
        raw = await read_body(request, MAX_NOTEBOOK, "notebook")
        return await run_in_threadpool(server.upload, participant, raw)

    return router
