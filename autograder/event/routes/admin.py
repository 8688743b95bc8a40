"""The instructor's routes (``Authorization: Bearer <admin token>`` except the page itself): the admin page,
an event's view, a participant's ledger, the results and invites as CSV, freeze and close."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from autograder.event import pages
from autograder.event.errors import Refused
from autograder.event.export import board_link, invites_csv, results, results_csv
from autograder.event.routes.body import read_json
from autograder.event.server import STATUS, EventServer
from autograder.event.store import rank
from course import protocol


def router(server: EventServer) -> APIRouter:
    """The instructor's routes of `server`."""
    router = APIRouter()
    store = server.store

    @router.get("/admin", response_class=HTMLResponse)
    def admin_page():
        return pages.admin()

    @router.get("/api/admin/{code}")
    def admin_view(code: str, request: Request):
        event = server.admin(code, request)
        server.flush_refusals(code)
        rows = rank(store.standings(code))
        checks, uploads, refusals = store.verifications(code), store.uploads(code), store.refusals(code)
        return {"event": code, "assignment": event.assignment, "track": event.track_name,
                "board_link": board_link(code, request.headers.get("authorization", "")[7:].strip()),
                "frozen": event.frozen_at is not None, "closed": event.closed_at is not None,
                "roster": store.invites(code) if event.roster else None,
                "now": time.time(),
                # the HTTP status of a refusal by the rules (their ledger entries carry none): the page shows it
                "refusal_status": {**{kind: 400 for kind in protocol.ERRORS}, **STATUS},
                "participants": [{"id": r["id"], "name": r["name"], "display_name": r["display"],
                                  "joined": r["joined"], "annotations": r["count"], "rank": r["rank"],
                                  "passed": r["passed"], "accuracy": r["accuracy"],
                                  "submitted_annotations": r["annotations"], "submitted": r["submitted"],
                                  "notebook": uploads.get(r["id"]), "verification": checks.get(r["id"]),
                                  "refusals": refusals.get(r["id"], {})}
                                 for r in rows],
                "failures": failures(code, rows)}

    def failures(code: str, rows: list[dict]) -> list[dict]:
        ids = {r["name"]: r["id"] for r in rows}  # names are unique in an event
        return [{**f, "participant": ids.get(f["name"])} for f in store.failures(code)]

    @router.get("/api/admin/{code}/invites.csv")
    def admin_invites(code: str, request: Request):
        server.admin(code, request)
        return PlainTextResponse(invites_csv(store.invites(code)), media_type="text/csv",
                                 headers={"Content-Disposition": f'attachment; filename="invites-{code}.csv"'})

    @router.get("/api/admin/{code}/ledger/{pid}")
    def admin_ledger(code: str, pid: int, request: Request):
        server.admin(code, request)
        server.flush_refusals(code)
        if not any(r["id"] == pid for r in store.standings(code)):
            raise Refused(404, f"no participant {pid} in event {code}.")
        return {"participant": pid, "entries": store.ledger(pid),
                "refusals": store.refusals(code).get(pid, {})}

    @router.get("/api/admin/{code}/results.csv")
    def admin_csv(code: str, request: Request):
        server.admin(code, request)
        server.flush_refusals(code)
        return PlainTextResponse(results_csv(results(store, code)), media_type="text/csv",
                                 headers={"Content-Disposition": f'attachment; filename="event-{code}.csv"'})

    @router.post("/api/admin/{code}/freeze")
    async def admin_freeze(code: str, request: Request):
        await run_in_threadpool(server.admin, code, request)
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("frozen"), bool):
            raise Refused(400, 'send {"frozen": true} to freeze the board or {"frozen": false} to reveal it.')
        await run_in_threadpool(store.set_frozen, code, body["frozen"])
        server.event(code, fresh=True)
        server.bump(code)
        return protocol.ok({"frozen": body["frozen"]})

    @router.post("/api/admin/{code}/close")
    def admin_close(code: str, request: Request):
        server.admin(code, request)
        store.close(code)
        server.event(code, fresh=True)
        server.bump(code)
        return protocol.ok({"closed": True})

    return router
