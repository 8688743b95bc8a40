"""The event server (FastAPI): join, the event's pool, annotations and submissions, the board.

Participant routes (``Authorization: Bearer <participant token>`` except join):

    POST /api/events/{code}/join      {"name": "...", "token": null}  -> token, display name, track
                                      (a roster event: {"invite": "<personal code>"}, the name optional)
    GET  /api/events/{code}/pool      the event's pool file (npz, the `course.data` grading format)
    POST /api/events/{code}/op        one `course.protocol` request -> its reply
    POST /api/events/{code}/notebook  the participant's .ipynb (for `autograder verify`; the last one wins)

Public routes: ``GET /`` (redirects to ``/board``: the board's QR code is the join address), ``GET /board``,
``/board/{code}``, ``/api/events/{code}/board`` (JSON),
``/api/events/{code}/stream`` (server-sent events), ``/api/health``. They need no token, so they and
the pool take a token from a per-address bucket before any work, board streams are capped per
address and in all (`limits`), and every open stream sends the same board JSON, built once per
(event, version), never a query of its own.
Instructor routes (``Authorization: Bearer <admin token>``): ``GET /admin`` (the page),
``GET /api/admin/{code}``, ``GET /api/admin/{code}/ledger/{participant}``,
``GET /api/admin/{code}/results.csv`` (`results_csv`, as ``autograder event export``),
``GET /api/admin/{code}/invites.csv`` (a roster event),
(the admin view and a participant's ledger carry their refusal counts per reason, ``refusals``)
``POST /api/admin/{code}/freeze`` ``{"frozen": true}``,
``POST /api/admin/{code}/close``.

Every participant request is answered by that participant's `course.protocol.Rules`
(always in exam mode): the same validation, charging, budget and messages as the local
ledger and the grader's annotation service. The server adds what a network needs: tokens,
a body-size cap, a per-participant rate limit, and the store: a request's ledger entry,
its new charges and a counted submission are committed in one transaction before the
reply. A refusal is a 4xx whose JSON body is the protocol's refusal
``{"ok": false, "error": kind, "message": what to do}``; nothing is charged. Every refusal of a
participant's request is counted per reason for the instructor (``refusals``); the rules log each of
theirs in the ledger (up to MAX_REQUESTS entries), the server logs its own (rate limit, size, closed
event, bad JSON...) with their HTTP status and reason up to MAX_LOGGED_REFUSALS, then only counts them.
An annotate call of more than MAX_INDICES indices comes in parts and is answered as one (`parts`).

Resubmission rule: one counted submission per participant per event (exam mode's rule).
The first successful `course.grading.submit` counts; a later one is refused with
`SubmissionRefusedError` and charges nothing. Annotations are per participant, not per
kernel: a restarted kernel rejoins under the same name and keeps its count.

Open or invite-only: an event created with a roster (`autograder event create --roster
names.txt`) admits only joins with a personal code, one name per code; presenting the code
again rejoins from any machine (a new token). An open event admits any name, so it cannot
stop one person from joining under several names.

One server process holds the participants' rules in memory (rebuilt from the store on
first use after a restart), its rate limits, open streams and the board's version. Several
(``autograder serve --workers N``, a PostgreSQL store only) keep whatever they must agree on in the
store instead (`shared`): each request locks its participant's row, and a worker whose copy of the
rules is older than the store's rebuilds it first.

Where it lives: the routes in `autograder.event.routes` (`participant`, `board`, `admin`: one router per
audience), the state behind them in `server` (`EventServer`), uploads in `uploads`, results and exports
in `export`; this module assembles the application.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from autograder.event import limits, shared as shared_state
from autograder.event.errors import Refused
from autograder.event.routes import admin, board, participant
from autograder.event.server import BURST, RATE, EventServer
from autograder.event.store import Store
from autograder.event.uploads import warm_nbformat


SERVE_ENV = "AUTOGRADER_EVENT_SERVE"  # `from_env`'s settings (JSON): each worker process builds its own app


def create_app(store: Store, *, rate: float = RATE, burst: int = BURST, public_url: str | None = None,
               shared: bool = False) -> FastAPI:
    """The FastAPI application serving every event in `store`; `public_url` is the address the board tells
    participants to join (``autograder serve --public-url``; default: the address the board was opened at);
    `shared`: one of several workers on one PostgreSQL store (`shared`)."""
    server = EventServer(store, rate, burst, shared=shared)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        # nbformat (for uploads) takes seconds to import and holds the interpreter meanwhile: at start,
        # before anyone joins, not at the first upload in the middle of the event
        threading.Thread(target=warm_nbformat, name="warm-nbformat", daemon=True).start()
        yield
        server.stopping = True  # ends the board streams
        with contextlib.suppress(Exception):
            server.flush_refusals()

    app = FastAPI(title="dcai-hackathon live event", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.server = server
    # the public routes and the pool: a per-address bucket before any work (the instructor's board link: none)
    buckets = {} if not shared else {
        "public": shared_state.SharedBuckets(store.engine, "public", limits.PUBLIC_BURST, limits.PUBLIC_RATE),
        "pool": shared_state.SharedBuckets(store.engine, "pool", limits.POOL_BURST, limits.POOL_RATE)}
    app.add_middleware(limits.PerAddress, board_keys=server.board_keys, **buckets)
    app.add_middleware(participant.HotRoute, server=server)  # every annotation: straight to its endpoint

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused):
        return JSONResponse({"ok": False, "error": exc.kind, "message": exc.message}, exc.status,
                            headers=exc.headers)

    app.include_router(participant.router(server))
    app.include_router(board.router(server, public_url))
    app.include_router(admin.router(server))
    return app


def from_env() -> FastAPI:
    """The application of one worker of ``autograder serve --workers N`` (uvicorn's factory): its settings are
    `SERVE_ENV`'s."""
    settings = json.loads(os.environ[SERVE_ENV])
    return create_app(Store(settings["db"], synchronous=settings["synchronous"]), rate=settings["rate"],
                      burst=settings["burst"], public_url=settings["public_url"], shared=settings["workers"] > 1)
