"""The event store: events, participants, charges, ledgers and submissions (SQLAlchemy).

SQLite in WAL mode by default (``sqlite:///path/events.db``); any SQLAlchemy URL works
(e.g. ``postgresql+psycopg://...`` for a larger event). Every state change is one
transaction, committed before the server replies, so a reply the participant saw is
never lost: `load_participant` rebuilds a participant's ledger from these rows after a
restart. Secrets (the event's shuffle seed, its truth, the admin token's hash) live only
here; participant and admin tokens are stored as SHA-256 hashes.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from course import config

META = sa.MetaData()
EVENTS = sa.Table(
    "events", META,
    sa.Column("code", sa.String(16), primary_key=True),
    sa.Column("assignment", sa.String(100), nullable=False),
    sa.Column("track", sa.String(40), nullable=False),
    sa.Column("seed", sa.String(40), nullable=False),  # the shuffle seed (for `autograder verify`)
    sa.Column("admin_hash", sa.String(64), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("frozen_at", sa.Float),
    sa.Column("closed_at", sa.Float),
    sa.Column("pool", sa.LargeBinary, nullable=False),  # what participants download (npz, no C label)
    sa.Column("truth", sa.LargeBinary, nullable=False),  # the labels only the server reads (npz)
)
PARTICIPANTS = sa.Table(
    "participants", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event", sa.String(16), sa.ForeignKey("events.code"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("display", sa.String(64), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("joined", sa.Float, nullable=False),
    sa.Column("budget", sa.Integer),
    sa.UniqueConstraint("event", "name"),
)
CHARGES = sa.Table(  # one row per charged annotation, in charge order
    "charges", META,
    sa.Column("participant", sa.Integer, sa.ForeignKey("participants.id"), primary_key=True),
    sa.Column("ord", sa.Integer, primary_key=True),
    sa.Column("pool_index", sa.Integer, nullable=False),
    sa.Column("digit", sa.Integer, nullable=False),
    sa.Column("time", sa.Float, nullable=False),
)
ENTRIES = sa.Table(  # the participant's ledger: one `course.protocol` entry per request
    "entries", META,
    sa.Column("participant", sa.Integer, sa.ForeignKey("participants.id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("op", sa.String(100)),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("error", sa.String(40)),
    sa.Column("entry", sa.Text, nullable=False),
)
SUBMISSIONS = sa.Table(  # the counted submission: at most one per participant
    "submissions", META,
    sa.Column("participant", sa.Integer, sa.ForeignKey("participants.id"), primary_key=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("accuracy", sa.Float, nullable=False),
    sa.Column("annotations", sa.Integer, nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
)

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a projector
CODE_LENGTH = 6
MAX_NAME = 40
ADJECTIVES = ("Amber", "Brave", "Calm", "Clever", "Coral", "Crimson", "Dapper", "Eager", "Fuzzy", "Gentle",
              "Golden", "Happy", "Indigo", "Jolly", "Keen", "Lucky", "Mellow", "Misty", "Nimble", "Olive",
              "Plucky", "Quiet", "Rapid", "Rusty", "Silver", "Sunny", "Swift", "Teal", "Tidy", "Violet",
              "Witty", "Zesty")
ANIMALS = ("Otter", "Badger", "Heron", "Lynx", "Panda", "Falcon", "Koala", "Marmot", "Newt", "Owl", "Puffin",
           "Quokka", "Raven", "Seal", "Tapir", "Urchin", "Vole", "Walrus", "Yak", "Zebra", "Bison", "Crane",
           "Dingo", "Egret", "Ferret", "Gecko", "Ibis", "Jackal", "Lemur", "Moose", "Okapi", "Wombat")


class NameTaken(Exception):
    """A second join under a name that is already in the event."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def pseudonym(seed: str, name: str) -> str:
    """A stable display name for `name` in one event ("Amber Otter"): the board never shows real names."""
    digest = hmac.new(seed.encode(), name.encode(), hashlib.sha256).digest()
    return f"{ADJECTIVES[digest[0] % len(ADJECTIVES)]} {ANIMALS[digest[1] % len(ANIMALS)]}"


def database_url(value: str | Path) -> str:
    """A SQLAlchemy URL, or a path to an SQLite file (made into ``sqlite:///...``)."""
    text = str(value)
    if "://" in text:
        return text
    path = Path(text).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


@dataclass(frozen=True)
class Event:
    code: str
    assignment: str
    track: tuple[int, ...]
    seed: str
    created: float
    frozen_at: float | None
    closed_at: float | None

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


class Store:
    """All reads and writes of the event server; each write is one committed transaction."""

    def __init__(self, url: str | Path, *, synchronous: str = "NORMAL"):
        self.url = database_url(url)
        self.sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
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

    def dispose(self) -> None:
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
                      EVENTS.c.frozen_at, EVENTS.c.closed_at)

    @staticmethod
    def _event(row) -> Event:
        return Event(row.code, row.assignment, tuple(int(d) for d in row.track.split(",")), row.seed,
                     row.created, row.frozen_at, row.closed_at)

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

    def set_frozen(self, code: str, frozen: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(EVENTS.update().where(EVENTS.c.code == code).values(frozen_at=time.time() if frozen else None))

    def close(self, code: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(EVENTS.update().where(EVENTS.c.code == code, EVENTS.c.closed_at.is_(None))
                         .values(closed_at=time.time()))

    # --- participants ----------------------------------------------------------------------------

    def join(self, event: Event, name: str, token: str | None) -> tuple[Participant, str, bool]:
        """(participant, token, rejoined). A taken name needs its token (a kernel restart rejoins)."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(PARTICIPANTS).where(PARTICIPANTS.c.event == event.code,
                                                             PARTICIPANTS.c.name == name)).first()
            if row is not None:
                if token and hmac.compare_digest(row.token_hash, token_hash(token)):
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

    def load_participant(self, pid: int) -> Saved:
        with self.engine.connect() as conn:
            charges = [(r.pool_index, r.digit) for r in conn.execute(
                sa.select(CHARGES.c.pool_index, CHARGES.c.digit).where(CHARGES.c.participant == pid)
                .order_by(CHARGES.c.ord))]
            budget = conn.execute(sa.select(PARTICIPANTS.c.budget).where(PARTICIPANTS.c.id == pid)).scalar()
            sub = conn.execute(sa.select(SUBMISSIONS).where(SUBMISSIONS.c.participant == pid)).first()
            n_entries = conn.execute(sa.select(sa.func.count()).select_from(ENTRIES)
                                     .where(ENTRIES.c.participant == pid)).scalar_one()
        submission = None if sub is None else {"accuracy": sub.accuracy, "annotations": sub.annotations,
                                               "n": sub.n, "time": sub.time}
        return Saved(charges, budget, submission, n_entries)

    def commit(self, pid: int, entries: list[dict], charges: list[tuple[int, int, int]],
               budget: tuple[int | None] | None = None, submission: dict | None = None) -> None:
        """One request's changes in one transaction: ledger entries, new charges (ord, index, digit),
        a new budget (a 1-tuple, None: unchanged) and the counted submission."""
        now = time.time()
        with self.engine.begin() as conn:
            if entries:
                conn.execute(ENTRIES.insert(), [
                    {"participant": pid, "seq": e["seq"], "time": e["time"], "op": _short(e.get("op")),
                     "ok": bool(e.get("ok")), "error": e.get("error"), "entry": json.dumps(e)} for e in entries])
            if charges:
                conn.execute(CHARGES.insert(), [{"participant": pid, "ord": o, "pool_index": i, "digit": d,
                                                 "time": now} for o, i, d in charges])
            if budget is not None:
                conn.execute(PARTICIPANTS.update().where(PARTICIPANTS.c.id == pid).values(budget=budget[0]))
            if submission is not None:
                conn.execute(SUBMISSIONS.insert().values(participant=pid, time=now, **submission))

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
            writer.writerow([r["rank"] or "", _csv_safe(r["name"]), r["display"], int(bool(r["passed"])),
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


def _csv_safe(text: str) -> str:
    """Names are participant input: keep a spreadsheet from reading one as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
