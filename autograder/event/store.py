"""The event store: events, participants, charges, ledgers and submissions (SQLAlchemy).

SQLite in WAL mode by default (``sqlite:///path/events.db``); any SQLAlchemy URL works
(e.g. ``postgresql+psycopg://...`` for a larger event). Every state change is one
transaction, committed before the server replies, so a reply the participant saw is
never lost: `load_participant` rebuilds a participant's ledger from these rows after a
restart. Secrets (the event's shuffle seed, its truth, the admin token's hash) live only
here; participant and admin tokens are stored as SHA-256 hashes.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import io
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from autograder.event.tables import (CHARGES, ENTRIES, EVENTS, INVITES, META, NOTEBOOKS, PARTICIPANTS, REFUSALS, SUBMISSIONS, VERIFICATIONS,
                                     VERIFY_STATUSES, add_new_columns, database_url)
from autograder.results.spreadsheet import safe_cell
from course import config

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a projector
CODE_LENGTH = 6
INVITE_LENGTH = 8  # a personal code: "<event code>-" and 8 characters (32**8 guesses)
MAX_NAME = 40
WORKER_CONNECTIONS = 20  # PostgreSQL connections a server process may open (PostgreSQL's max_connections: 100)
ADJECTIVES = ("Amber", "Brave", "Calm", "Clever", "Coral", "Crimson", "Dapper", "Eager", "Fuzzy", "Gentle",
              "Golden", "Happy", "Indigo", "Jolly", "Keen", "Lucky", "Mellow", "Misty", "Nimble", "Olive",
              "Plucky", "Quiet", "Rapid", "Rusty", "Silver", "Sunny", "Swift", "Teal", "Tidy", "Violet",
              "Witty", "Zesty")
ANIMALS = ("Otter", "Badger", "Heron", "Lynx", "Panda", "Falcon", "Koala", "Marmot", "Newt", "Owl", "Puffin",
           "Quokka", "Raven", "Seal", "Tapir", "Urchin", "Vole", "Walrus", "Yak", "Zebra", "Bison", "Crane",
           "Dingo", "Egret", "Ferret", "Gecko", "Ibis", "Jackal", "Lemur", "Moose", "Okapi", "Wombat")


class NameTaken(Exception):
    """A second join under a name that is already in the event."""


class InviteRefused(Exception):
    """A roster event's join without a valid personal code (the message says what to do)."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def pseudonym(seed: str, name: str) -> str:
    """A stable display name for `name` in one event ("Amber Otter"): the board never shows real names."""
    digest = hmac.new(seed.encode(), name.encode(), hashlib.sha256).digest()
    return f"{ADJECTIVES[digest[0] % len(ADJECTIVES)]} {ANIMALS[digest[1] % len(ANIMALS)]}"


@dataclass(frozen=True)
class Event:
    code: str
    assignment: str
    track: tuple[int, ...]
    seed: str
    created: float
    frozen_at: float | None
    closed_at: float | None
    roster: bool = False  # joins need a personal code (`autograder event create --roster`)

    @property
    def track_name(self) -> str:
        return ",".join(map(str, self.track))


@dataclass(frozen=True)
class Participant:
    id: int
    event: str
    name: str
    display: str
    joined: float
    budget: int | None


@dataclass
class Saved:
    """One participant's state as stored: enough to rebuild their `protocol.Rules`."""

    charges: list[tuple[int, int]]  # (pool index, digit) in charge order
    budget: int | None
    submission: dict | None  # accuracy, annotations, n, time
    n_entries: int
    refusals: dict[str, dict] = field(default_factory=dict)  # reason -> {"n", "last", "message"}


class Store:
    """All reads and writes of the event server; each write is one committed transaction."""

    def __init__(self, url: str | Path, *, synchronous: str = "NORMAL"):
        self.url = database_url(url)
        self.sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:  # a worker of several answers requests in its threads, each holding one connection (`shared`)
            kwargs.update(pool_size=WORKER_CONNECTIONS // 2, max_overflow=WORKER_CONNECTIONS - WORKER_CONNECTIONS // 2)
        self.engine = sa.create_engine(self.url, **kwargs)
        if self.sqlite:
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_connection, _record):
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                # NORMAL (WAL): a commit survives a crash or kill -9 of the server; FULL: power loss too (slower)
                cursor.execute(f"PRAGMA synchronous={synchronous}")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.close()
        META.create_all(self.engine)
        add_new_columns(self.engine)
        self._writer = None  # SQLite: the one connection `commit` writes through (opened on first use)
        self._writer_lock = threading.Lock()

    def dispose(self) -> None:
        with self._writer_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self.engine.dispose()

    # --- events ------------------------------------------------------------------------------

    def create_event(self, track: tuple[int, ...], assignment: str, seed: str, pool: bytes,
                     truth: bytes) -> tuple[str, str]:
        """Store a new event; returns (join code, admin token). The token is shown once."""
        admin = secrets.token_urlsafe(24)
        for _ in range(20):
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            try:
                with self.engine.begin() as conn:
                    conn.execute(EVENTS.insert().values(
                        code=code, assignment=assignment, track=",".join(map(str, track)), seed=seed,
                        admin_hash=token_hash(admin), created=time.time(), pool=pool, truth=truth))
                return code, admin
            except IntegrityError:
                continue
        raise RuntimeError("could not draw a free join code")

    _EVENT_COLUMNS = (EVENTS.c.code, EVENTS.c.assignment, EVENTS.c.track, EVENTS.c.seed, EVENTS.c.created,
                      EVENTS.c.frozen_at, EVENTS.c.closed_at,
                      sa.exists().where(INVITES.c.event == EVENTS.c.code).label("roster"))

    @staticmethod
    def _event(row) -> Event:
        return Event(row.code, row.assignment, tuple(int(d) for d in row.track.split(",")), row.seed,
                     row.created, row.frozen_at, row.closed_at, bool(row.roster))

    def event(self, code: str) -> Event | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*self._EVENT_COLUMNS).where(EVENTS.c.code == code)).first()
        return self._event(row) if row else None

    def events(self) -> list[Event]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*self._EVENT_COLUMNS).order_by(EVENTS.c.created)).all()
        return [self._event(r) for r in rows]

    def blob(self, code: str, which: str) -> bytes:
        column = {"pool": EVENTS.c.pool, "truth": EVENTS.c.truth}[which]
        with self.engine.connect() as conn:
            return conn.execute(sa.select(column).where(EVENTS.c.code == code)).scalar_one()

    def is_admin(self, code: str, token: str) -> bool:
        with self.engine.connect() as conn:
            stored = conn.execute(sa.select(EVENTS.c.admin_hash).where(EVENTS.c.code == code)).scalar()
        return stored is not None and hmac.compare_digest(stored, token_hash(token))

    def admin_hashes(self) -> dict[str, str]:
        """{join code: its admin token's hash} of every event (the board links' keys derive from them)."""
        with self.engine.connect() as conn:
            return {row.code: row.admin_hash for row in conn.execute(sa.select(EVENTS.c.code, EVENTS.c.admin_hash))}

    def set_frozen(self, code: str, frozen: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(EVENTS.update().where(EVENTS.c.code == code).values(frozen_at=time.time() if frozen else None))

    def close(self, code: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(EVENTS.update().where(EVENTS.c.code == code, EVENTS.c.closed_at.is_(None))
                         .values(closed_at=time.time()))

    # --- participants ----------------------------------------------------------------------------

    def add_invites(self, code: str, names: list[str]) -> dict[str, str]:
        """Give each name of `names` a personal join code for event `code` (makes it a roster event).

        Returns {name: personal code}. Names already on the roster keep their code.
        """
        out: dict[str, str] = {}
        with self.engine.begin() as conn:
            known = dict(conn.execute(sa.select(INVITES.c.name, INVITES.c.code).where(INVITES.c.event == code)).all())
            for name in names:
                if name in known:
                    out[name] = known[name]
                    continue
                personal = f"{code}-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(INVITE_LENGTH))
                conn.execute(INVITES.insert().values(code=personal, event=code, name=name))
                out[name] = known[name] = personal
        return out

    def invite_name(self, code: str, invite: str) -> str | None:
        """The roster name personal code `invite` of event `code` carries, or None."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(INVITES.c.name).where(INVITES.c.event == code,
                                                                INVITES.c.code == invite)).scalar()

    def invites(self, code: str) -> list[dict]:
        """The roster: name, personal code and whether (and as which participant) it joined."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(INVITES.c.name, INVITES.c.code, INVITES.c.participant)
                                .where(INVITES.c.event == code).order_by(INVITES.c.name)).all()
        return [{"name": r.name, "code": r.code, "participant": r.participant} for r in rows]

    def join(self, event: Event, name: str | None, token: str | None,
             invite: str | None = None) -> tuple[Participant, str, bool]:
        """(participant, token, rejoined). A taken name needs its token (a kernel restart rejoins).

        In a roster event the personal code `invite` names the participant (raises `InviteRefused`
        without one); presenting it again rejoins from any machine with a new token (the old one
        stops working).
        """
        with self.engine.begin() as conn:
            held = None
            if invite is not None or event.roster:
                held = conn.execute(sa.select(INVITES).where(INVITES.c.event == event.code,
                                                             INVITES.c.code == (invite or ""))).first()
                if held is None:
                    raise InviteRefused("unknown" if invite else "needed")
                if name is not None and name != held.name:
                    raise InviteRefused("other name")
                name = held.name
            if name is None:
                raise InviteRefused("no name")
            row = conn.execute(sa.select(PARTICIPANTS).where(PARTICIPANTS.c.event == event.code,
                                                             PARTICIPANTS.c.name == name)).first()
            if row is not None:
                if token and hmac.compare_digest(row.token_hash, token_hash(token)):
                    return self._participant(row), token, True
                if held is not None:  # the personal code proves who this is: a new token
                    token = secrets.token_urlsafe(24)
                    conn.execute(PARTICIPANTS.update().where(PARTICIPANTS.c.id == row.id)
                                 .values(token_hash=token_hash(token)))
                    return self._participant(row), token, True
                raise NameTaken(name)
            taken = set(conn.execute(sa.select(PARTICIPANTS.c.display)
                                     .where(PARTICIPANTS.c.event == event.code)).scalars())
            display = base = pseudonym(event.seed, name)
            k = 2
            while display in taken:
                display, k = f"{base} {k}", k + 1
            token = secrets.token_urlsafe(24)
            try:
                pid = conn.execute(PARTICIPANTS.insert().values(
                    event=event.code, name=name, display=display, token_hash=token_hash(token),
                    joined=time.time())).inserted_primary_key[0]
                if held is not None:
                    conn.execute(INVITES.update().where(INVITES.c.code == held.code).values(participant=pid))
            except IntegrityError:  # a concurrent join took the name first
                raise NameTaken(name) from None
        return Participant(pid, event.code, name, display, time.time(), None), token, False

    @staticmethod
    def _participant(row) -> Participant:
        return Participant(row.id, row.event, row.name, row.display, row.joined, row.budget)

    def participant(self, code: str, token: str) -> Participant | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(PARTICIPANTS).where(PARTICIPANTS.c.token_hash == token_hash(token),
                                                             PARTICIPANTS.c.event == code)).first()
        return self._participant(row) if row else None

    def participant_count(self, code: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(PARTICIPANTS)
                                .where(PARTICIPANTS.c.event == code)).scalar_one()

    def load_participant(self, pid: int, conn: sa.engine.Connection | None = None) -> Saved:
        with contextlib.nullcontext(conn) if conn is not None else self.engine.connect() as conn:
            charges = [(r.pool_index, r.digit) for r in conn.execute(
                sa.select(CHARGES.c.pool_index, CHARGES.c.digit).where(CHARGES.c.participant == pid)
                .order_by(CHARGES.c.ord))]
            budget = conn.execute(sa.select(PARTICIPANTS.c.budget).where(PARTICIPANTS.c.id == pid)).scalar()
            sub = conn.execute(sa.select(SUBMISSIONS).where(SUBMISSIONS.c.participant == pid)).first()
            n_entries = conn.execute(sa.select(sa.func.count()).select_from(ENTRIES)
                                     .where(ENTRIES.c.participant == pid)).scalar_one()
            refusals = {r.reason: {"n": r.n, "last": r.last, "message": r.message} for r in conn.execute(
                sa.select(REFUSALS).where(REFUSALS.c.participant == pid))}
        submission = None if sub is None else {"accuracy": sub.accuracy, "annotations": sub.annotations,
                                               "n": sub.n, "time": sub.time}
        return Saved(charges, budget, submission, n_entries, refusals)

    def commit(self, pid: int, entries: list[dict], charges: list[tuple[int, int, int]],
               budget: tuple[int | None] | None = None, submission: dict | None = None,
               refusals: dict[str, dict] | None = None, conn: sa.engine.Connection | None = None) -> None:
        """One request's changes in one transaction: ledger entries, new charges (ord, index, digit),
        a new budget (a 1-tuple, None: unchanged), the counted submission and the participant's refusal
        counts (reason -> {"n", "last", "message"}: they replace the stored ones of those reasons); in `conn`'s
        open transaction when given (several workers: the one that locked the participant, `shared`)."""
        now = time.time()
        entry_rows = [(pid, e["seq"], e["time"], _short(e.get("op")), bool(e.get("ok")), e.get("error"),
                       json.dumps(e)) for e in entries]
        charge_rows = [(pid, o, i, d, now) for o, i, d in charges]
        refusal_rows = [(pid, reason[:40], int(c["n"]), float(c["last"]), str(c["message"]))
                        for reason, c in (refusals or {}).items()]
        if self.sqlite and conn is None:  # every request's hot path: plain DB-API on one connection (a fifth of the cost)
            self._commit_sqlite(pid, now, entry_rows, charge_rows, budget, submission, refusal_rows)
            return
        keys = ("participant", "seq", "time", "op", "ok", "error", "entry")
        with contextlib.nullcontext(conn) if conn is not None else self.engine.begin() as conn:
            if entry_rows:
                conn.execute(ENTRIES.insert(), [dict(zip(keys, row)) for row in entry_rows])
            if charge_rows:
                conn.execute(CHARGES.insert(), [dict(zip(("participant", "ord", "pool_index", "digit", "time"), row))
                                                for row in charge_rows])
            if budget is not None:
                conn.execute(PARTICIPANTS.update().where(PARTICIPANTS.c.id == pid).values(budget=budget[0]))
            if submission is not None:
                conn.execute(SUBMISSIONS.insert().values(participant=pid, time=now, **submission))
            if refusal_rows:
                conn.execute(REFUSALS.delete().where(REFUSALS.c.participant == pid,
                                                     REFUSALS.c.reason.in_([r[1] for r in refusal_rows])))
                conn.execute(REFUSALS.insert(), [dict(zip(("participant", "reason", "n", "last", "message"), row))
                                                 for row in refusal_rows])

    def _commit_sqlite(self, pid, now, entry_rows, charge_rows, budget, submission, refusal_rows=()) -> None:
        with self._writer_lock:
            if self._writer is None:
                self._writer = self.engine.raw_connection()  # the engine's pragmas (WAL, synchronous) apply
            db = self._writer.driver_connection
            try:
                db.execute("BEGIN IMMEDIATE")
                if entry_rows:
                    db.executemany("INSERT INTO entries (participant, seq, time, op, ok, error, entry) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?)", entry_rows)
                if charge_rows:
                    db.executemany("INSERT INTO charges (participant, ord, pool_index, digit, time) "
                                   "VALUES (?, ?, ?, ?, ?)", charge_rows)
                if budget is not None:
                    db.execute("UPDATE participants SET budget = ? WHERE id = ?", (budget[0], pid))
                if submission is not None:
                    db.execute("INSERT INTO submissions (participant, time, accuracy, annotations, n) "
                               "VALUES (?, ?, ?, ?, ?)", (pid, now, submission["accuracy"],
                                                          submission["annotations"], submission["n"]))
                if refusal_rows:
                    db.executemany("INSERT INTO refusals (participant, reason, n, last, message) VALUES (?, ?, ?, ?, ?) "
                                   "ON CONFLICT (participant, reason) DO UPDATE SET n = excluded.n, "
                                   "last = excluded.last, message = excluded.message", refusal_rows)
                db.execute("COMMIT")
            except BaseException:
                try:
                    db.execute("ROLLBACK")
                except Exception:  # the connection is broken: a new one next time
                    self._writer.invalidate()
                    self._writer = None
                raise

    # --- notebooks and verification (`autograder verify`) -----------------------------------------

    def save_notebook(self, pid: int, content: bytes) -> dict:
        """Store the participant's notebook (the last upload wins); returns its size, hash and time."""
        info = {"time": time.time(), "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        with self.engine.begin() as conn:
            conn.execute(NOTEBOOKS.delete().where(NOTEBOOKS.c.participant == pid))
            conn.execute(NOTEBOOKS.insert().values(participant=pid, content=content, **info))
        return info

    def notebook(self, pid: int) -> bytes | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(NOTEBOOKS.c.content).where(NOTEBOOKS.c.participant == pid)).scalar()

    def save_verification(self, pid: int, status: str, *, accuracy: float | None, annotations: int | None,
                          live_accuracy: float | None, live_annotations: int | None, grader_status: str | None,
                          detail: str, source: str | None, hidden_track: str | None = None,
                          hidden_accuracy: float | None = None, hidden_annotations: int | None = None) -> None:
        """Store one participant's verification (replacing an earlier one)."""
        if status not in VERIFY_STATUSES:
            raise ValueError(f"status must be one of {VERIFY_STATUSES}, got {status!r}")
        with self.engine.begin() as conn:
            conn.execute(VERIFICATIONS.delete().where(VERIFICATIONS.c.participant == pid))
            conn.execute(VERIFICATIONS.insert().values(
                participant=pid, time=time.time(), status=status, accuracy=accuracy, annotations=annotations,
                live_accuracy=live_accuracy, live_annotations=live_annotations, grader_status=grader_status,
                detail=detail[:2000], source=None if source is None else source[:200],
                hidden_track=hidden_track, hidden_accuracy=hidden_accuracy, hidden_annotations=hidden_annotations))

    def verifications(self, code: str) -> dict[int, dict]:
        """{participant id: its last verification} of event `code`."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(VERIFICATIONS).select_from(VERIFICATIONS.join(
                PARTICIPANTS, VERIFICATIONS.c.participant == PARTICIPANTS.c.id))
                .where(PARTICIPANTS.c.event == code)).all()
        return {r.participant: {k: v for k, v in r._mapping.items() if k != "participant"} for r in rows}

    def verify_stamp(self, code: str) -> tuple:
        """(number, newest time) of event `code`'s verifications: changes when `autograder verify` stores one."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(sa.func.count(), sa.func.max(VERIFICATIONS.c.time)).select_from(
                VERIFICATIONS.join(PARTICIPANTS, VERIFICATIONS.c.participant == PARTICIPANTS.c.id))
                .where(PARTICIPANTS.c.event == code)).one()
        return tuple(row)

    def uploads(self, code: str) -> dict[int, dict]:
        """{participant id: time, size and hash of the uploaded notebook} of event `code`."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(NOTEBOOKS.c.participant, NOTEBOOKS.c.time, NOTEBOOKS.c.size,
                                          NOTEBOOKS.c.sha256).select_from(NOTEBOOKS.join(
                                              PARTICIPANTS, NOTEBOOKS.c.participant == PARTICIPANTS.c.id))
                                .where(PARTICIPANTS.c.event == code)).all()
        return {r.participant: {"time": r.time, "size": r.size, "sha256": r.sha256} for r in rows}

    # --- the board and the instructor's views ---------------------------------------------------

    def standings(self, code: str, as_of: float | None = None) -> list[dict]:
        """Every participant with their live count and counted submission (as of a freeze time)."""
        charge_filter = [CHARGES.c.participant == PARTICIPANTS.c.id]
        sub_filter = [SUBMISSIONS.c.participant == PARTICIPANTS.c.id]
        if as_of is not None:
            charge_filter.append(CHARGES.c.time <= as_of)
            sub_filter.append(SUBMISSIONS.c.time <= as_of)
        count = (sa.select(sa.func.count()).select_from(CHARGES).where(*charge_filter)
                 .correlate(PARTICIPANTS).scalar_subquery())
        query = (sa.select(PARTICIPANTS.c.id, PARTICIPANTS.c.name, PARTICIPANTS.c.display, PARTICIPANTS.c.joined,
                           count.label("count"), SUBMISSIONS.c.accuracy, SUBMISSIONS.c.annotations,
                           SUBMISSIONS.c.n, SUBMISSIONS.c.time.label("submitted"))
                 .select_from(PARTICIPANTS.outerjoin(SUBMISSIONS, sa.and_(*sub_filter)))
                 .where(PARTICIPANTS.c.event == code))
        if as_of is not None:
            query = query.where(PARTICIPANTS.c.joined <= as_of)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def ledger(self, pid: int) -> list[dict]:
        with self.engine.connect() as conn:
            return [json.loads(t) for t in conn.execute(
                sa.select(ENTRIES.c.entry).where(ENTRIES.c.participant == pid).order_by(ENTRIES.c.seq)).scalars()]

    def failures(self, code: str, limit: int = 200) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(PARTICIPANTS.c.name, ENTRIES.c.entry).select_from(ENTRIES.join(
                    PARTICIPANTS, ENTRIES.c.participant == PARTICIPANTS.c.id))
                .where(PARTICIPANTS.c.event == code, ENTRIES.c.ok.is_(False))
                .order_by(ENTRIES.c.time.desc()).limit(limit)).all()
        return [{"name": r.name, **json.loads(r.entry)} for r in rows]

    def refusals(self, code: str) -> dict[int, dict[str, dict]]:
        """{participant id: {reason: {"n", "last", "message"}}} of event `code`: every refused request, counted."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(REFUSALS).select_from(REFUSALS.join(
                PARTICIPANTS, REFUSALS.c.participant == PARTICIPANTS.c.id)).where(PARTICIPANTS.c.event == code)).all()
        out: dict[int, dict[str, dict]] = {}
        for r in rows:
            out.setdefault(r.participant, {})[r.reason] = {"n": r.n, "last": r.last, "message": r.message}
        return out

    def charge_times(self, code: str) -> dict[int, list[float]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(CHARGES.c.participant, CHARGES.c.time).select_from(CHARGES.join(
                PARTICIPANTS, CHARGES.c.participant == PARTICIPANTS.c.id)).where(PARTICIPANTS.c.event == code)).all()
        out: dict[int, list[float]] = {}
        for pid, t in rows:
            out.setdefault(pid, []).append(t)
        return out

    def results_csv(self, code: str) -> str:
        rows = rank(self.standings(code))
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["rank", "name", "display_name", "passed", "annotations", "accuracy", "n_images",
                         "submitted_at", "live_annotations"])
        for r in rows:
            writer.writerow([r["rank"] or "", safe_cell(r["name"]), r["display"], int(bool(r["passed"])),
                             "" if r["annotations"] is None else r["annotations"],
                             "" if r["accuracy"] is None else f"{r['accuracy']:.6f}", r["n"] or "",
                             "" if r["submitted"] is None else time.strftime(
                                 "%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["submitted"])), r["count"]])
        return out.getvalue()


def rank(rows: list[dict]) -> list[dict]:
    """The ranking rule: passed first, then fewest annotations, then accuracy, then earliest submission.

    Participants without a counted submission follow, by live annotation count; they have no rank.
    """
    for r in rows:
        r["passed"] = r["accuracy"] is not None and r["accuracy"] >= config.TARGET_ACCURACY
    submitted = sorted((r for r in rows if r["accuracy"] is not None),
                       key=lambda r: (not r["passed"], r["annotations"], -r["accuracy"], r["submitted"]))
    waiting = sorted((r for r in rows if r["accuracy"] is None), key=lambda r: (r["count"], r["joined"]))
    for k, r in enumerate(submitted, 1):
        r["rank"] = k
    for r in waiting:
        r["rank"] = None
    return submitted + waiting


def _short(value: Any) -> Any:
    return value if value is None or (isinstance(value, str) and len(value) <= 100) else str(value)[:100]
