"""The state behind the event server's routes (`EventServer`): the store, each participant's
`course.protocol.Rules` (always in exam mode), rate limits, the board's versions and feeds.
The routes themselves are in `autograder.event.routes`; `autograder.event.app` assembles them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from autograder.event import limits, parts, pool, shared as shared_state
from autograder.event import store as store_module
from autograder.event.errors import Refused
from autograder.event.export import RULE, verified
from autograder.event.store import MAX_NAME, NameTaken, Participant, Store, rank
from autograder.event.uploads import UPLOAD_INTERVAL_S, check_structure, clean_notebook
from course import config, protocol

MAX_BODY = protocol.MAX_REQUEST_BYTES
DRAIN_BODY = 8 * MAX_BODY  # a larger body is refused without reading it
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
STATUS = {"SubmissionRefusedError": 409, "BudgetExceededError": 409}  # other refusals: 400
MAX_LOGGED_REFUSALS = 100  # the server's own refusals of a participant's requests (rate, size, closed event...)
# get a ledger entry each up to this many; later ones are only counted per reason (the `refusals` table), so a
# flood of refused requests cannot grow the store without limit (the rules' refusals: MAX_REQUESTS entries)
STORE_FAILED = "store_failed"  # the reason of a refusal because the store could not commit (not logged: it cannot be)
REFUSAL_FLUSH_S = 10.0  # counts not written with a ledger entry are written at most this often per participant
# (and before the admin routes read them, and at shutdown)


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
    seq: int = 0  # several workers: the participant's committed changes this copy has seen (`shared`)


@dataclass
class _Feed:
    """One event's board for its open streams: the newest board JSON, and an asyncio.Event set when it changes."""

    version: int | None = None
    text: str | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    watchers: int = 0
    task: Any = None


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

    def __init__(self, store: Store, rate: float = RATE, burst: int = BURST, shared: bool = False):
        self.store = store
        # several workers (PostgreSQL): what they must agree on lives in the store (`shared`), else in memory
        self.shared = shared_state.Shared(store.engine) if shared else None
        self.shared_stamps: dict[str, tuple] = {}  # code -> (when looked, the board's version in the store)
        self.rate, self.burst = float(rate), int(burst)
        self.lock = threading.Lock()  # one request changes state at a time (SQLite has one writer anyway)
        self.sessions: dict[int, _Session] = {}
        self.truths: dict[str, dict[str, np.ndarray]] = {}
        self.pools: dict[str, bytes] = {}
        self.versions: dict[str, int] = {}
        self.events: dict[str, Any] = {}  # code -> Event; this process is the only one that freezes or closes
        self.tokens: dict[str, Participant] = {}  # token hash -> participant (tokens never change)
        self.join_buckets = (shared_state.SharedBuckets(store.engine, "join", JOIN_BURST, JOIN_RATE) if shared
                             else limits.Buckets(JOIN_BURST, JOIN_RATE))  # per client address
        self.verify_stamps: dict[str, tuple] = {}  # code -> the verifications last seen (count, newest time)
        self.verify_checked: dict[str, float] = {}  # code -> when an open board last looked for them (monotonic)
        self.boards: dict[str, tuple[int, str]] = {}  # code -> (version, the board's JSON): shared by every stream
        self.board_lock: asyncio.Lock | None = None  # one board built at a time (on the event loop)
        self.streams = shared_state.SharedStreams(self.shared) if shared else limits.Streams()
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
        found = (None if self.shared else self.tokens.get(key)) or self.store.participant(code, token)
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

    def session(self, participant: Participant, conn=None) -> _Session:
        """The participant's rules: in memory, or rebuilt from the store (after a restart; through `conn`)."""
        found = self.sessions.get(participant.id)
        if found is not None:
            return found
        truth = self.truth(participant.event)
        sink = _Sink()
        rules = protocol.Rules(tuple(truth["track"].tolist()), truth["pool_digits"],
                               {protocol.PUBLIC: truth["public_digits"], protocol.PRIVATE: truth["private_digits"]},
                               exam=True, ledger=sink, max_requests=MAX_REQUESTS)
        saved = self.store.load_participant(participant.id, conn)
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

    def guard(self):
        """One request changes state at a time; several workers: one per participant (its row's lock, `holding`)."""
        return contextlib.nullcontext() if self.shared else self.lock

    @contextlib.contextmanager
    def holding(self, participant: Participant):
        """Several workers: the participant's row locked for this request (`shared.Held`, its transaction), their
        rules rebuilt if another worker changed them, their rate limit's bucket read and written back. Else None."""
        if self.shared is None:
            yield None
            return
        self.truth(participant.event)  # read before a connection is held: a request holds one at a time
        with self.shared.hold(participant.id) as held:
            if participant.id in self.sessions and self.sessions[participant.id].seq != held.seq:
                del self.sessions[participant.id]
            session = self.session(participant, held.conn)
            session.seq, now = held.seq, time.monotonic()
            session.tokens = float(self.burst) if held.tokens is None else held.tokens
            session.stamp = now if held.stamp is None else now - max(0.0, time.time() - held.stamp)
            yield held
            session.seq = self.shared.release(held, participant.id, session.tokens,
                                              time.time() - (time.monotonic() - session.stamp))

    # --- the operations ------------------------------------------------------------------------

    def admit(self, session: _Session) -> None:
        """The per-participant rate limit (a token bucket)."""
        now = time.monotonic()
        session.tokens = limits.refill(session.tokens, session.stamp, now, float(self.burst), self.rate)
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
        event = self.event(code, fresh=self.shared is not None)  # another worker may have closed it
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
        with self.guard():
            if self.store.participant_count(code) >= MAX_PARTICIPANTS:  # not `standings`: it counts every charge
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

    def admit_request(self, participant: Participant, before_parse: bool = True) -> None:
        """The participant's rate limit, before the body is parsed: a flood of big bodies is refused unparsed
        (several workers: `op` takes it in its transaction)."""
        if self.shared is not None and before_parse:
            return
        with self.guard(), self.holding(participant):
            self.admit(self.session(participant))

    def op(self, participant: Participant, body: Any, admitted: bool = False) -> tuple[int, dict]:
        event = self.event(participant.event)
        with self.guard(), self.holding(participant) as held:
            session = self.session(participant)
            if not admitted or held is not None:
                self.admit(session)
            indices = body.get("indices") if isinstance(body, dict) else None
            n = len(indices) if isinstance(indices, list) else 0
            session.tokens -= max(0, n - 1) // INDICES_PER_TOKEN  # a big request costs its size
            if n > MAX_INDICES:
                raise Refused(400, f"one annotate request may carry at most {MAX_INDICES} indices and this one has "
                                   f"{n}; split it into parts (course.event does so for you; see "
                                   "course.protocol.PART_FIELDS) or ask for each index once. Nothing was charged.",
                              reason="too_many_indices")
            if (event if held is None else held).closed_at is not None:
                raise Refused(403, f"event {event.code} is closed: no more annotations or submissions. "
                                   "Nothing was charged.", reason="event_closed")
            rules = session.rules
            if self.parts.is_part(body):  # a part of a large call: kept until its last part (`parts`)
                try:
                    body = (self.parts.take(participant.id, body, rules.pool_size) if held is None else  # any worker:
                            self.shared.take_part(held, self.parts, participant.id, body, rules.pool_size))  # stored
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
                                  self.refusals_due(session, bool(entries)), conn=held and held.conn)
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
        if not session.refusals_dirty or not (writing or force or self.shared or  # several workers: at once
                                              now - session.refusals_flushed >= REFUSAL_FLUSH_S):
            return None
        session.refusals_dirty, session.refusals_flushed = False, now
        return {reason: dict(c) for reason, c in session.refusals.items()}

    def refused(self, participant: Participant, body: Any, refused: Refused) -> None:
        """Record a refusal of the server's own (rate, size, closed event, ...; the rules log theirs) of a
        participant's request: counted, and logged in the ledger up to MAX_LOGGED_REFUSALS. Nothing is charged."""
        with self.guard(), contextlib.ExitStack() as stack:
            try:
                held = stack.enter_context(self.holding(participant))
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
                    self.store.commit(participant.id, entries, [], refusals=counts, conn=held and held.conn)
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
        with self.guard(), self.holding(participant):
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
                await self.check_shared(code)
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

    async def check_shared(self, code: str) -> None:
        """Several workers: bump the board when the store's version of it changed (another worker's change); one
        query per event every SSE_POLL_S."""
        looked, stamp = self.shared_stamps.get(code, (-math.inf, None))
        if self.shared is None or time.monotonic() - looked < SSE_POLL_S:
            return
        now = await run_in_threadpool(self.shared.board_version, code)
        self.shared_stamps[code] = (time.monotonic(), now)
        if now != stamp:
            await run_in_threadpool(self.event, code, True)  # a freeze or close elsewhere
            self.bump(code)

    def admin(self, code: str, request: Request):
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        event = self.event(code)
        if not token or not self.store.is_admin(code, token):
            raise Refused(401, f"this needs the admin token of event {code} (printed by `autograder event "
                               "create`), as 'Authorization: Bearer <token>'.")
        return event
