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
first use after a restart), so run it with a single worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from autograder.event import limits, pages, parts, pool
from autograder.event import store as store_module
from autograder.event.store import MAX_NAME, NameTaken, Participant, Store, rank
from autograder.results.spreadsheet import safe_cell
from course import config, protocol

MAX_BODY = protocol.MAX_REQUEST_BYTES
DRAIN_BODY = 8 * MAX_BODY  # a larger body is refused without reading it
MAX_NOTEBOOK = 4 * 2**20  # an uploaded notebook (outputs are dropped: a notebook's code is far smaller)
MAX_CELLS = 300  # cells of an uploaded notebook (the course's have 27-36); checked before nbformat's validation,
# which costs ~0.1 s per 200 cells holding the interpreter
UPLOAD_INTERVAL_S = 2.0  # between a participant's uploads that get as far as validation (one at a time)
MAX_PARTICIPANTS = 2000  # per event
MAX_REQUESTS = 20_000  # per participant and event: bounds a ledger (at 20 requests/s, over 16 minutes of flooding)
RATE = 20.0  # requests per second per participant (sustained)
JOIN_BURST, JOIN_RATE = limits.JOIN_BURST, limits.JOIN_RATE  # every per-address limit is in `limits`
BURST = 40  # requests a participant may make at once
INDICES_PER_TOKEN = 1000  # an annotate request takes one more token of its sender's bucket per 1,000 indices
# beyond the first (its cost grows with them; the bucket may go below zero: the next requests wait)
MAX_INDICES = protocol.MAX_ANNOTATE_INDICES  # indices in one annotate request: a larger one is refused (a larger
# call comes in parts, `parts`)
SSE_POLL_S = 0.2  # how often an event's board feed looks for a new version (one ticker per event, not per stream)
SSE_WAKE_S = 1.0  # an idle stream wakes this often to notice a disconnect or the server stopping
SSE_PING_S = 15.0
VERIFY_POLL_S = 2.0  # how often an open board looks for new `autograder verify` results
RULE = ("Ranking: passed (accuracy at least {target:.0%}) first, then fewest annotations, then higher accuracy, "
        "then earlier submission. One counted submission per participant.")
STATUS = {"SubmissionRefusedError": 409, "BudgetExceededError": 409}  # other refusals: 400
MAX_LOGGED_REFUSALS = 100  # the server's own refusals of a participant's requests (rate, size, closed event...)
# get a ledger entry each up to this many; later ones are only counted per reason (the `refusals` table), so a
# flood of refused requests cannot grow the store without limit (the rules' refusals: MAX_REQUESTS entries)
STORE_FAILED = "store_failed"  # the reason of a refusal because the store could not commit (not logged: it cannot be)
REFUSAL_FLUSH_S = 10.0  # counts not written with a ledger entry are written at most this often per participant
# (and before the admin routes read them, and at shutdown)


class Refused(Exception):
    """An HTTP refusal: status and the protocol's refusal body."""

    def __init__(self, status: int, message: str, kind: str = "ServiceError", headers: dict | None = None,
                 reason: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers
        self.reason = reason or f"http_{status}"  # what the admin's refusal counts call it


class _Sink(protocol.LedgerWriter):
    """The Rules' ledger writer: entries wait here until the request's transaction takes them."""

    def __init__(self) -> None:
        super().__init__(None, keep=True)

    def take(self) -> list[dict]:
        entries, self.entries = self.entries, []
        return entries


@dataclass
class _Session:
    participant: Participant
    rules: protocol.Rules
    sink: _Sink
    tokens: float = float(BURST)
    stamp: float = field(default_factory=time.monotonic)
    uploaded: float = -math.inf  # when the last upload reached validation (monotonic)
    uploading: bool = False
    refusals: dict[str, dict] = field(default_factory=dict)  # reason -> {"n", "last", "message"}: every refusal
    server_refused: int = 0  # the server's own refusals (not the rules'): the first MAX_LOGGED_REFUSALS are logged
    refusals_dirty: bool = False  # counts not yet in the store
    refusals_flushed: float = -math.inf  # monotonic


@dataclass
class _Feed:
    """One event's board for its open streams: the newest board JSON, and an asyncio.Event set when it changes."""

    version: int | None = None
    text: str | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    watchers: int = 0
    task: Any = None


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


def board_link(code: str, admin_token: str) -> str:
    """The projector's board link of event `code` (its key never locked out: `limits`), from its admin token."""
    return f"/board/{code}?key={limits.board_key(store_module.token_hash(admin_token), code)}"


def invites_csv(invites: list[dict]) -> str:
    """The roster with its personal codes, for the instructor to hand out."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "personal_code", "joined"])
    for row in invites:
        writer.writerow([safe_cell(row["name"]), row["code"], int(row["participant"] is not None)])
    return out.getvalue()


def _iso(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def results(store: Store, code: str) -> dict:
    """Everything an event's results are, for `autograder event export` and the admin's CSV: the ranking
    (never frozen), each participant's counts, submission, verification, upload and refusals."""
    event = store.event(code)
    rows = rank(store.standings(code))
    checks, uploads, refusals = store.verifications(code), store.uploads(code), store.refusals(code)
    out = []
    for r in rows:
        check, upload = checks.get(r["id"]), uploads.get(r["id"])
        out.append({
            "rank": r["rank"], "id": r["id"], "name": r["name"], "display_name": r["display"],
            "passed": bool(r["passed"]), "accuracy": r["accuracy"], "annotations": r["annotations"],
            "n_images": r["n"], "live_annotations": r["count"], "joined_at": _iso(r["joined"]),
            "submitted_at": _iso(r["submitted"]),
            "verified": None if check is None else check["status"],
            "verification": None if check is None else {**check, "time": _iso(check["time"])},
            "notebook_uploaded_at": None if upload is None else _iso(upload["time"]),
            "refusals": {reason: c["n"] for reason, c in sorted(refusals.get(r["id"], {}).items())},
        })
    return {"event": code, "assignment": event.assignment, "track": event.track_name,
            "created_at": _iso(event.created), "frozen_at": _iso(event.frozen_at), "closed_at": _iso(event.closed_at),
            "exported_at": _iso(time.time()), "rule": RULE.format(target=config.TARGET_ACCURACY),
            "participants": out}


RESULT_COLUMNS = ("rank", "name", "display_name", "passed", "annotations", "accuracy", "n_images", "submitted_at",
                  "live_annotations", "id", "joined_at", "verified", "verified_detail", "notebook_uploaded_at",
                  "refused")  # the first nine as `Store.results_csv` has them


def results_csv(doc: dict) -> str:
    """The results as CSV (one row per participant, ranked; names as inert spreadsheet text)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(RESULT_COLUMNS)
    for r in doc["participants"]:
        check = r["verification"] or {}
        writer.writerow([
            "" if r["rank"] is None else r["rank"], safe_cell(r["name"]), r["display_name"], int(r["passed"]),
            "" if r["annotations"] is None else r["annotations"],
            "" if r["accuracy"] is None else f"{r['accuracy']:.6f}", r["n_images"] or "", r["submitted_at"] or "",
            r["live_annotations"], r["id"], r["joined_at"] or "", r["verified"] or "",
            safe_cell(check.get("detail") or ""),
            r["notebook_uploaded_at"] or "", "; ".join(f"{k} {n}" for k, n in r["refusals"].items())])
    return out.getvalue()


def results_json(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def verified(check: dict | None) -> dict:
    """What the board shows of a verification: its status, and the re-run's numbers when they differ."""
    if check is None:
        return {"verified": None}
    out = {"verified": check["status"]}
    if check["status"] == "differs":
        out.update(verified_accuracy=check["accuracy"], verified_annotations=check["annotations"])
    if check["status"] == "review":
        out["verified_note"] = review_note(check)
    return out


def review_note(check: dict) -> str:
    """Why a verification asks for review, as the board says it: the hidden track is not named (it stays
    the instructor's; the admin page gives its numbers)."""
    accuracy, annotations = check.get("hidden_accuracy"), check.get("hidden_annotations")
    if accuracy is None or annotations is None:
        return "no submission on a hidden track"
    if accuracy < config.TARGET_ACCURACY:
        return f"fails on a hidden track ({accuracy:.1%})"
    return f"{annotations} annotations on a hidden track"


def _warm_nbformat() -> None:
    with contextlib.suppress(Exception):
        clean_notebook(b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')


def check_structure(raw: bytes) -> dict:
    """The cheap checks before nbformat's validation: a JSON object with a list of at most MAX_CELLS cells.

    Returns the parsed notebook with every code cell's outputs already dropped: nbformat's
    validation walks every output (one cell with 60,000 outputs held the server's interpreter
    for 9-30 s), and the stored notebook keeps none anyway.
    """
    try:
        nb = json.loads(raw)
    except (ValueError, RecursionError):
        nb = None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise Refused(400, "this is not a valid Jupyter notebook (not a JSON object with a list of cells); upload "
                           "the .ipynb file itself, e.g. course.event.upload(\"03_clustering.ipynb\"). Nothing was "
                           "stored.", "NotebookError")
    if len(cells) > MAX_CELLS:
        raise Refused(400, f"this notebook has {len(cells)} cells, more than the {MAX_CELLS} an assignment's notebook "
                           "could need; upload the notebook you worked in. Nothing was stored.", "NotebookError")
    for cell in cells:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            if "outputs" in cell:
                cell["outputs"] = []
            if "execution_count" in cell:
                cell["execution_count"] = None
    return nb


def clean_notebook(raw: bytes | dict) -> bytes:
    """A participant's upload as stored: a valid nbformat-4 notebook without outputs; Refused otherwise.

    `raw` is the uploaded bytes or what `check_structure` made of them (outputs already dropped).
    """
    import nbformat

    try:
        text = json.dumps(raw) if isinstance(raw, dict) else raw.decode("utf-8")
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:
        detail = protocol.clip(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise Refused(400, f"this is not a valid Jupyter notebook ({type(exc).__name__}: {detail}); upload the "
                           ".ipynb file itself, e.g. course.event.upload(\"03_clustering.ipynb\"). Nothing was "
                           "stored.", "NotebookError") from None
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nbformat.writes(nb).encode()


def event_second_submission(counted: protocol.ScoreReply) -> str:
    n = int(counted["count"])
    return (f"this event counts one submission per participant, and you already made it (accuracy "
            f"{float(counted['accuracy']):.1%} on {int(counted['n'])} private images with {n} "
            f"annotation{'s' if n != 1 else ''}); that one stands on the board. This later submission was "
            "refused and charged nothing.")


def event_oracle_closed(counted: protocol.ScoreReply) -> str:
    return (f"your counted submission is made (accuracy {float(counted['accuracy']):.1%} with "
            f"{int(counted['count'])} annotations), so the event sells you no new label: it would count on no row. "
            "The labels you bought before it are still yours (asking again is free). Nothing was charged.")


class EventServer:
    """The state behind the routes: the store, each participant's rules, the board's version."""

    def __init__(self, store: Store, rate: float = RATE, burst: int = BURST):
        self.store = store
        self.rate, self.burst = float(rate), int(burst)
        self.lock = threading.Lock()  # one request changes state at a time (SQLite has one writer anyway)
        self.sessions: dict[int, _Session] = {}
        self.truths: dict[str, dict[str, np.ndarray]] = {}
        self.pools: dict[str, bytes] = {}
        self.versions: dict[str, int] = {}
        self.events: dict[str, Any] = {}  # code -> Event; this process is the only one that freezes or closes
        self.tokens: dict[str, Participant] = {}  # token hash -> participant (tokens never change)
        self.join_buckets = limits.Buckets(JOIN_BURST, JOIN_RATE)  # per client address
        self.verify_stamps: dict[str, tuple] = {}  # code -> the verifications last seen (count, newest time)
        self.verify_checked: dict[str, float] = {}  # code -> when an open board last looked for them (monotonic)
        self.boards: dict[str, tuple[int, str]] = {}  # code -> (version, the board's JSON): shared by every stream
        self.board_lock: asyncio.Lock | None = None  # one board built at a time (on the event loop)
        self.streams = limits.Streams()
        self.board_keys = limits.BoardKeys(store.admin_hashes)  # the instructor's board links (`limits`)
        self.feeds: dict[str, _Feed] = {}  # code -> its board feed, while streams are open
        self.parts = parts.Parts()  # the unfinished annotate calls sent in parts
        self.stopping = False

    def bump(self, code: str) -> None:
        self.versions[code] = self.versions.get(code, 0) + 1

    # --- lookups -------------------------------------------------------------------------------

    def event(self, code: str, fresh: bool = False):
        found = self.events.get(code) if not fresh else None
        if found is None:
            found = self.store.event(code) if isinstance(code, str) and len(code) <= 16 else None
            if found is not None:
                self.events[code] = found
        if found is None:
            raise Refused(404, f"there is no event with join code {protocol.clip(code)}; check the code on the "
                               "board or ask the instructor.")
        return found

    def participant(self, code: str, request: Request) -> Participant:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not token:
            raise Refused(401, "this request needs your participant token: join first with "
                               "course.event.join(url, code, name).")
        key = f"{code} {store_module.token_hash(token)}"
        found = self.tokens.get(key) or self.store.participant(code, token)
        if found is not None:
            self.tokens[key] = found
        if found is None:
            self.event(code)  # an unknown code says so first
            raise Refused(401, f"unknown participant token for event {code}; join again with "
                               "course.event.join(url, code, name) (the same name rejoins from the same machine).")
        return found

    def truth(self, code: str) -> dict[str, np.ndarray]:
        if code not in self.truths:
            self.truths[code] = pool.read_truth(self.store.blob(code, "truth"))
        return self.truths[code]

    def pool_file(self, code: str) -> bytes:
        if code not in self.pools:
            self.pools[code] = self.store.blob(code, "pool")
        return self.pools[code]

    def session(self, participant: Participant) -> _Session:
        """The participant's rules: in memory, or rebuilt from the store (after a restart)."""
        found = self.sessions.get(participant.id)
        if found is not None:
            return found
        truth = self.truth(participant.event)
        sink = _Sink()
        rules = protocol.Rules(tuple(truth["track"].tolist()), truth["pool_digits"],
                               {protocol.PUBLIC: truth["public_digits"], protocol.PRIVATE: truth["private_digits"]},
                               exam=True, ledger=sink, max_requests=MAX_REQUESTS)
        saved = self.store.load_participant(participant.id)
        if saved.charges:  # replay the charges in their order through the rules themselves
            protocol.result(rules.handle(protocol.request(protocol.Op.ANNOTATE,
                                                          indices=[i for i, _ in saved.charges])))
        if saved.budget is not None:
            protocol.result(rules.handle(protocol.request(protocol.Op.SET_BUDGET, n=saved.budget)))
        if saved.submission is not None:
            rules.counted = protocol.ScoreReply(split=protocol.PRIVATE, accuracy=saved.submission["accuracy"],
                                                count=saved.submission["annotations"], n=saved.submission["n"])
        if rules.count != len(saved.charges):
            raise RuntimeError(f"participant {participant.id}: replay gave {rules.count} charges, "
                               f"the store has {len(saved.charges)}")
        sink.take()
        sink.n = saved.n_entries
        server_refused = sum(c["n"] for reason, c in saved.refusals.items() if reason not in protocol.ERRORS)
        # every request the rules saw left one entry, up to their cap; the server's own refusals' entries are not theirs
        rules.requests = saved.n_entries - min(server_refused, MAX_LOGGED_REFUSALS)
        found = self.sessions[participant.id] = _Session(participant, rules, sink, tokens=float(self.burst),
                                                         refusals=saved.refusals, server_refused=server_refused)
        return found

    # --- the operations ------------------------------------------------------------------------

    def admit(self, session: _Session) -> None:
        """The per-participant rate limit (a token bucket)."""
        now = time.monotonic()
        session.tokens = min(float(self.burst), session.tokens + (now - session.stamp) * self.rate)
        session.stamp = now
        if session.tokens < 1.0:
            wait = max(1, math.ceil((1.0 - session.tokens) / self.rate))  # whole seconds until a token is back
            raise Refused(429, f"more than {self.rate:g} requests per second from you; wait {wait} s and annotate "
                               "in batches (one call with many indices is one request). Nothing was charged.",
                          headers={"Retry-After": str(wait)}, reason="rate_limited")
        session.tokens -= 1.0

    def admit_join(self, client: str) -> None:
        """Joins per client address (a token bucket): a class joins at once, a name-squatting script does not."""
        if self.join_buckets.take(client) > 0:
            raise Refused(429, f"more than {JOIN_BURST} joins from your address in a short time; wait a "
                               "moment and join again. Nothing was changed.", headers={"Retry-After": "2"})

    def join(self, code: str, body: Any, client: str = "") -> dict:
        invite = body.get("invite") if isinstance(body, dict) else None
        if not (isinstance(invite, str) and isinstance(code, str) and len(code) <= 16 and 0 < len(invite) <= 40
                and self.store.invite_name(code, invite.strip().upper()) is not None):
            # joins per address are limited (name squatting, guessing codes); a valid personal code never is (a
            # 40-bit secret), so wrong guesses from a room behind one address cannot lock its class out
            self.admit_join(client)
        event = self.event(code)
        if event.closed_at is not None:
            raise Refused(403, f"event {code} is closed; no one can join it any more.")
        if not isinstance(body, dict):
            raise Refused(400, 'send a JSON object {"name": "your name"}.')
        name, token = body.get("name"), body.get("token")
        if invite is not None and (not isinstance(invite, str) or not 0 < len(invite) <= 40):
            raise Refused(400, f"invite must be your personal code as a string, got {protocol.clip(invite)}.")
        if invite is not None and not event.roster:
            raise Refused(400, f"event {code} has no roster, so there are no personal codes; join with "
                               f"course.event.join(url, \"{code}\", \"your name\").")
        if event.roster and invite is None:
            raise Refused(403, f"event {code} is invite-only: join with the personal code the instructor gave you, "
                               "course.event.join(url, \"<your personal code>\"). Nothing was changed.")
        if name is None and invite is not None:
            pass  # the personal code names the participant
        elif not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME \
                or any(not ch.isprintable() for ch in name):
            raise Refused(400, f"the name must be 1 to {MAX_NAME} printable characters, got {protocol.clip(name)}.")
        if token is not None and not isinstance(token, str):
            raise Refused(400, "token must be a string (the one an earlier join gave) or null.")
        with self.lock:
            if len(self.store.standings(code)) >= MAX_PARTICIPANTS:
                raise Refused(403, f"event {code} is full ({MAX_PARTICIPANTS} participants).")
            try:
                participant, new_token, rejoined = self.store.join(
                    event, None if name is None else name.strip(), token or None,
                    invite.strip().upper() if invite else None)
            except NameTaken:
                raise Refused(409, f"the name {name.strip()!r} is already taken in event {code}; join under "
                                   "another name (a restarted kernel on the same machine rejoins by itself).") from None
            except store_module.InviteRefused as refused:
                why = str(refused)
                raise Refused(403, f"{protocol.clip(invite)} is not a personal code of event {code}; check it "
                                   f"(it looks like {code}-XXXXXXXX) or ask the instructor. Nothing was changed."
                              if why == "unknown" else
                              "this personal code belongs to another name; join with course.event.join(url, "
                              "\"<your personal code>\") and no name. Nothing was changed.") from None
            if rejoined and new_token != token:  # a personal code rejoined from another machine: the old token ends
                self.tokens = {k: p for k, p in self.tokens.items() if p.id != participant.id}
        self.bump(code)
        return protocol.ok({"token": new_token, "name": participant.name, "display_name": participant.display,
                            "rejoined": rejoined, "track": list(event.track), "assignment": event.assignment,
                            "pool_bytes": len(self.pool_file(code))})

    def admit_request(self, participant: Participant) -> None:
        """The participant's rate limit, before the body is parsed: a flood of big bodies is refused unparsed."""
        with self.lock:
            self.admit(self.session(participant))

    def op(self, participant: Participant, body: Any, admitted: bool = False) -> tuple[int, dict]:
        event = self.event(participant.event)
        with self.lock:
            session = self.session(participant)
            if not admitted:
                self.admit(session)
            indices = body.get("indices") if isinstance(body, dict) else None
            n = len(indices) if isinstance(indices, list) else 0
            session.tokens -= max(0, n - 1) // INDICES_PER_TOKEN  # a big request costs its size
            if n > MAX_INDICES:
                raise Refused(400, f"one annotate request may carry at most {MAX_INDICES} indices and this one has "
                                   f"{n}; split it into parts (course.event does so for you; see "
                                   "course.protocol.PART_FIELDS) or ask for each index once. Nothing was charged.",
                              reason="too_many_indices")
            if event.closed_at is not None:
                raise Refused(403, f"event {event.code} is closed: no more annotations or submissions. "
                                   "Nothing was charged.", reason="event_closed")
            rules = session.rules
            if self.parts.is_part(body):  # a part of a large call: kept until its last part (`parts`)
                try:
                    body = self.parts.take(participant.id, body, rules.pool_size)
                except parts.PartError as exc:
                    raise Refused(exc.status, str(exc), reason="part_refused") from None
                if body is None:
                    return 200, protocol.ok({"kept": self.parts.calls[participant.id].size})
            before, budget_before, counted_before = rules.count, rules.budget, rules.counted
            reply = rules.handle(body)
            entries = session.sink.take()
            if not reply["ok"] and counted_before is not None and isinstance(body, dict):
                if reply["error"] == "SubmissionRefusedError" and body.get("split") == protocol.PRIVATE:
                    reply["message"] = event_second_submission(counted_before)  # no "fresh kernel" in an event
                elif reply["error"] == "OracleError" and body.get("op") == protocol.Op.ANNOTATE.value:
                    reply["message"] = event_oracle_closed(counted_before)
                if entries:
                    entries[-1]["message"] = reply["message"][:protocol.LEDGER_MAX_TEXT]
            charges = self.new_charges(rules, before, body, entries, participant.event)
            submission = None
            if rules.counted is not None and counted_before is None:
                submission = {"accuracy": rules.counted["accuracy"], "annotations": rules.counted["count"],
                              "n": rules.counted["n"]}
            if not reply["ok"]:
                self.count_refusal(session, reply["error"], reply["message"])
            try:
                self.store.commit(participant.id, entries, charges,
                                  (rules.budget,) if rules.budget != budget_before else None, submission,
                                  self.refusals_due(session, bool(entries)))
            except Exception:
                self.sessions.pop(participant.id, None)  # rebuilt from the store next time: nothing happened
                raise Refused(503, "the event server could not save this request, so nothing was charged; "
                                   "try again in a moment.", reason=STORE_FAILED) from None
        if charges or submission:
            self.bump(participant.event)
        return (200 if reply["ok"] else STATUS.get(reply["error"], 400)), reply

    # --- refusals: every refused request of a participant is counted; the server's own are logged up to a cap ---

    def count_refusal(self, session: _Session, reason: str, message: str) -> None:
        counted = session.refusals.setdefault(reason, {"n": 0, "last": 0.0, "message": ""})
        counted["n"] += 1
        counted["last"] = round(time.time(), 3)
        counted["message"] = message[:protocol.LEDGER_MAX_TEXT]
        session.refusals_dirty = True

    def refusals_due(self, session: _Session, writing: bool, force: bool = False) -> dict | None:
        """The counts to write now: when they changed and a write happens anyway, or REFUSAL_FLUSH_S passed."""
        now = time.monotonic()
        if not session.refusals_dirty or not (writing or force or now - session.refusals_flushed >= REFUSAL_FLUSH_S):
            return None
        session.refusals_dirty, session.refusals_flushed = False, now
        return {reason: dict(c) for reason, c in session.refusals.items()}

    def refused(self, participant: Participant, body: Any, refused: Refused) -> None:
        """Record a refusal of the server's own (rate, size, closed event, ...; the rules log theirs) of a
        participant's request: counted, and logged in the ledger up to MAX_LOGGED_REFUSALS. Nothing is charged."""
        with self.lock:
            try:
                session = self.session(participant)
            except Exception:  # the store is unreachable: the refusal itself stands
                return
            self.count_refusal(session, refused.reason, refused.message)
            session.server_refused += 1
            entries = []
            if session.server_refused <= MAX_LOGGED_REFUSALS:
                op = body.get("op") if isinstance(body, dict) else None
                indices = body.get("indices") if isinstance(body, dict) else None
                session.sink.add({"op": op if op is None or (isinstance(op, str) and len(op) <= 100)
                                  else protocol.clip(op), "ok": False, "error": refused.kind,
                                  "message": refused.message[:protocol.LEDGER_MAX_TEXT], "status": refused.status,
                                  "reason": refused.reason,
                                  **({"n_indices": len(indices)} if isinstance(indices, list) else {})})
                entries = session.sink.take()
            counts = self.refusals_due(session, bool(entries))
            if entries or counts:
                try:
                    self.store.commit(participant.id, entries, [], refusals=counts)
                except Exception:
                    self.sessions.pop(participant.id, None)  # rebuilt from the store next time

    def flush_refusals(self, code: str | None = None) -> None:
        """Write the refusal counts not yet stored (of event `code`, or all): before the admin reads them."""
        with self.lock:
            for session in list(self.sessions.values()):
                if code is None or session.participant.event == code:
                    counts = self.refusals_due(session, False, force=True)
                    if counts:
                        self.store.commit(session.participant.id, [], [], refusals=counts)

    def upload(self, participant: Participant, raw: bytes) -> dict:
        """Store the participant's notebook for `autograder verify` (the last upload wins)."""
        with self.lock:
            session = self.session(participant)
            self.admit(session)
            wait = max(session.uploaded + UPLOAD_INTERVAL_S - time.monotonic(), 1.0 if session.uploading else 0.0)
            if wait > 0:  # validating a notebook holds the interpreter: one at a time, a pause between
                raise Refused(429, f"another upload of yours is being checked, or came less than "
                                   f"{UPLOAD_INTERVAL_S:g} s ago; wait {math.ceil(wait)} s and upload again (the last "
                                   "upload counts). Nothing was stored.", headers={"Retry-After": str(math.ceil(wait))})
            session.uploading = True
        try:
            parsed = check_structure(raw)
            session.uploaded = time.monotonic()
            content = clean_notebook(parsed)
        finally:
            session.uploading = False
        with self.lock:
            info = self.store.save_notebook(participant.id, content)
        return protocol.ok({"bytes": info["size"], "sha256": info["sha256"],
                            "message": "notebook stored; the instructor's `autograder verify` re-runs the last "
                                       "one you upload."})

    def new_charges(self, rules: protocol.Rules, before: int, body: Any, entries: list[dict],
                    code: str) -> list[tuple[int, int, int]]:
        """The (order, index, digit) rows a request charged, in O(batch): from its ledger entry (which
        keeps the first new indices) or its own indices when all were new; `rules.history()` (a copy of
        every charge so far, which made a request's cost grow with the count) only in the rare rest."""
        added = rules.count - before
        if added <= 0:
            return []
        new = entries[-1].get("new") if entries and entries[-1].get("op") == protocol.Op.ANNOTATE.value else None
        if not (isinstance(new, list) and len(new) == added):
            distinct = list(dict.fromkeys(body.get("indices") or [])) if isinstance(body, dict) else []
            new = distinct if len(distinct) == added else None
        if new is None:
            return [tuple(row) for row in rules.history()[before:]]
        digits = self.truth(code)["pool_digits"]
        return [(before + k, int(i), int(digits[i])) for k, i in enumerate(new)]

    # --- the board ---------------------------------------------------------------------------

    def board(self, code: str) -> dict:
        event = self.event(code)
        rows = rank(self.store.standings(code, as_of=event.frozen_at))
        checks = self.store.verifications(code)
        return {
            "event": code, "assignment": event.assignment, "track": event.track_name,
            "frozen": event.frozen_at is not None, "closed": event.closed_at is not None,
            "target": config.TARGET_ACCURACY, "rule": RULE.format(target=config.TARGET_ACCURACY),
            "participants": len(rows), "submitted": sum(r["accuracy"] is not None for r in rows),
            "rows": [{"rank": r["rank"], "name": r["display"], "passed": r["passed"], "accuracy": r["accuracy"],
                      "annotations": r["annotations"], "live": r["count"], **verified(checks.get(r["id"]))}
                     for r in rows],
        }

    async def board_json(self, code: str) -> str:
        """The board of event `code` as JSON, built once per version and shared by every stream and request."""
        version = self.versions.get(code, 0)
        cached = self.boards.get(code)
        if cached is not None and cached[0] == version:
            return cached[1]
        if self.board_lock is None:
            self.board_lock = asyncio.Lock()
        async with self.board_lock:
            version = self.versions.get(code, 0)  # another stream may have built it meanwhile
            cached = self.boards.get(code)
            if cached is not None and cached[0] == version:
                return cached[1]
            text = json.dumps(await run_in_threadpool(self.board, code))
            self.boards[code] = (version, text)  # a change meanwhile bumped the version: built again next time
            return text

    def watch(self, code: str) -> "_Feed":
        """The board feed of event `code` (its ticker started by the first open stream)."""
        feed = self.feeds.get(code)
        if feed is None:
            feed = self.feeds[code] = _Feed()
            feed.task = asyncio.get_running_loop().create_task(self.tick(code, feed))
        feed.watchers += 1
        return feed

    async def tick(self, code: str, feed: "_Feed") -> None:
        """While streams of event `code` are open: every SSE_POLL_S, a new version's board is built once and
        every stream woken to send it."""
        while feed.watchers > 0 and not self.stopping:
            try:
                await self.check_verifications(code)  # `autograder verify` writes from another process
                version = self.versions.get(code, 0)
                if version != feed.version:
                    feed.text, feed.version = await self.board_json(code), version
                    feed.changed.set()
                    feed.changed = asyncio.Event()
            except Exception:  # a failed build (the store busy) is tried again at the next tick
                pass
            await asyncio.sleep(SSE_POLL_S)
        if self.feeds.get(code) is feed:
            del self.feeds[code]
        feed.changed.set()  # the server is stopping: wake the streams

    async def check_verifications(self, code: str) -> None:
        """Bump the board when `autograder verify` (another process) stored results: one query per event every
        VERIFY_POLL_S, whatever the number of open streams."""
        now = time.monotonic()
        if now - self.verify_checked.get(code, -math.inf) < VERIFY_POLL_S:
            return
        self.verify_checked[code] = now
        stamp = await run_in_threadpool(self.store.verify_stamp, code)
        if self.verify_stamps.get(code) != stamp:  # the first look too: a cached board may predate them
            self.verify_stamps[code] = stamp
            self.bump(code)

    def admin(self, code: str, request: Request):
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        event = self.event(code)
        if not token or not self.store.is_admin(code, token):
            raise Refused(401, f"this needs the admin token of event {code} (printed by `autograder event "
                               "create`), as 'Authorization: Bearer <token>'.")
        return event


def create_app(store: Store, *, rate: float = RATE, burst: int = BURST, public_url: str | None = None) -> FastAPI:
    """The FastAPI application serving every event in `store`; `public_url` is the address the board tells
    participants to join (``autograder serve --public-url``; default: the address the board was opened at)."""
    server = EventServer(store, rate, burst)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        # nbformat (for uploads) takes seconds to import and holds the interpreter meanwhile: at start,
        # before anyone joins, not at the first upload in the middle of the event
        threading.Thread(target=_warm_nbformat, name="warm-nbformat", daemon=True).start()
        yield
        server.stopping = True  # ends the board streams
        with contextlib.suppress(Exception):
            server.flush_refusals()

    app = FastAPI(title="dcai-hackathon live event", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.server = server
    # the public routes and the pool: a per-address bucket before any work (the instructor's board link: none)
    app.add_middleware(limits.PerAddress, board_keys=server.board_keys)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused):
        return JSONResponse({"ok": False, "error": exc.kind, "message": exc.message}, exc.status,
                            headers=exc.headers)

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

    @app.get("/api/health")
    def health():
        return {"ok": True}

    @app.post("/api/events/{code}/join")
    async def join(code: str, request: Request):
        body = await read_json(request)
        client = request.client.host if request.client else ""
        return await run_in_threadpool(server.join, code, body, client)

    @app.get("/api/events/{code}/pool")
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
    app.add_route("/api/events/{code}/op", op, methods=["POST"])

    @app.post("/api/events/{code}/notebook")
    async def upload(code: str, request: Request):
        participant = server.participant(code, request)
        raw = await read_body(request, MAX_NOTEBOOK, "notebook")
        return await run_in_threadpool(server.upload, participant, raw)

    @app.get("/api/events/{code}/board")
    async def board(code: str):
        if code not in server.events:
            await run_in_threadpool(server.event, code)  # an unknown code: a 404 before any other query
        await server.check_verifications(code)  # at most one query per event every VERIFY_POLL_S
        return Response(await server.board_json(code), media_type="application/json")

    @app.get("/api/events/{code}/stream")
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

    @app.get("/board", response_class=HTMLResponse)
    def board_latest():
        events = [e for e in store.events() if e.closed_at is None] or store.events()
        if not events:
            return HTMLResponse(pages.message("No event yet: create one with `autograder event create`."), 404)
        return RedirectResponse(f"/board/{events[-1].code}", 307)

    @app.get("/board/{code}", response_class=HTMLResponse)
    def board_page(code: str, request: Request):
        event = server.event(code)
        url = public_url or str(request.base_url).rstrip("/")
        return pages.board(event.code, event.assignment, event.track_name, event.roster, public_url=url)

    @app.get("/", include_in_schema=False)
    def root():  # the join address itself (the board's QR code): a phone that scans it lands on the board
        return RedirectResponse("/board", 307)

    @app.get("/admin", response_class=HTMLResponse)
    def admin_page():
        return pages.admin()

    @app.get("/api/admin/{code}")
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

    @app.get("/api/admin/{code}/invites.csv")
    def admin_invites(code: str, request: Request):
        server.admin(code, request)
        return PlainTextResponse(invites_csv(store.invites(code)), media_type="text/csv",
                                 headers={"Content-Disposition": f'attachment; filename="invites-{code}.csv"'})

    @app.get("/api/admin/{code}/ledger/{pid}")
    def admin_ledger(code: str, pid: int, request: Request):
        server.admin(code, request)
        server.flush_refusals(code)
        if not any(r["id"] == pid for r in store.standings(code)):
            raise Refused(404, f"no participant {pid} in event {code}.")
        return {"participant": pid, "entries": store.ledger(pid),
                "refusals": store.refusals(code).get(pid, {})}

    @app.get("/api/admin/{code}/results.csv")
    def admin_csv(code: str, request: Request):
        server.admin(code, request)
        server.flush_refusals(code)
        return PlainTextResponse(results_csv(results(store, code)), media_type="text/csv",
                                 headers={"Content-Disposition": f'attachment; filename="event-{code}.csv"'})

    @app.post("/api/admin/{code}/freeze")
    async def admin_freeze(code: str, request: Request):
        await run_in_threadpool(server.admin, code, request)
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("frozen"), bool):
            raise Refused(400, 'send {"frozen": true} to freeze the board or {"frozen": false} to reveal it.')
        await run_in_threadpool(store.set_frozen, code, body["frozen"])
        server.event(code, fresh=True)
        server.bump(code)
        return protocol.ok({"frozen": body["frozen"]})

    @app.post("/api/admin/{code}/close")
    def admin_close(code: str, request: Request):
        server.admin(code, request)
        store.close(code)
        server.event(code, fresh=True)
        server.bump(code)
        return protocol.ok({"closed": True})

    return app
