"""The event store's tables (SQLAlchemy) and what opening one needs: a URL from a path
(`database_url`), and the columns an earlier version's store lacks (`add_new_columns`). The reads and
writes are `autograder.event.store.Store`'s."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

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
    # several workers (`autograder.event.shared`): the committed changes counted, and the rate limit's bucket
    sa.Column("seq", sa.Integer),
    sa.Column("tokens", sa.Float),
    sa.Column("stamp", sa.Float),  # wall clock of `tokens`
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
INVITES = sa.Table(  # a roster event's personal join codes: one name per code (`event create --roster`)
    "invites", META,
    sa.Column("code", sa.String(40), primary_key=True),  # "<event code>-<8 characters>"
    sa.Column("event", sa.String(16), sa.ForeignKey("events.code"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("participant", sa.Integer, sa.ForeignKey("participants.id")),  # set at the first join
    sa.UniqueConstraint("event", "name"),
)
NOTEBOOKS = sa.Table(  # the participant's uploaded notebook for `autograder verify`: the last upload wins
    "notebooks", META,
    sa.Column("participant", sa.Integer, sa.ForeignKey("participants.id"), primary_key=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),  # the .ipynb without outputs
)
VERIFICATIONS = sa.Table(  # the last `autograder verify` of a participant's counted submission
    "verifications", META,
    sa.Column("participant", sa.Integer, sa.ForeignKey("participants.id"), primary_key=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # one of VERIFY_STATUSES
    sa.Column("accuracy", sa.Float),  # the re-run's numbers (None: no counted submission in the re-run)
    sa.Column("annotations", sa.Integer),
    sa.Column("live_accuracy", sa.Float),  # the board's numbers the re-run was compared with
    sa.Column("live_annotations", sa.Integer),
    sa.Column("grader_status", sa.String(16)),  # the grader's row status (ok, error, timeout, ...)
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("source", sa.String(200)),  # "upload" or the collected file's name
    sa.Column("hidden_track", sa.String(16)),  # the hidden track's re-run (None: not run there); added later:
    sa.Column("hidden_accuracy", sa.Float),  # `_add_new_columns` adds these to an older store
    sa.Column("hidden_annotations", sa.Integer),
)
REFUSALS = sa.Table(  # how many requests of a participant were refused, per reason (the ledger logs each refusal
    "refusals", META,  # only up to a cap: a flood of refusals grows these counts, never the store)
    sa.Column("participant", sa.Integer, sa.ForeignKey("participants.id"), primary_key=True),
    sa.Column("reason", sa.String(40), primary_key=True),  # a protocol error kind, or the server's (rate_limited...)
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("last", sa.Float, nullable=False),  # when the last one was refused
    sa.Column("message", sa.Text, nullable=False),  # the last one's message (clipped)
)
BUCKETS = sa.Table(  # several workers: the per-address token buckets (`shared.SharedBuckets`)
    "buckets", META,
    sa.Column("key", sa.String(80), primary_key=True),  # "<bucket>:<address>"
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("stamp", sa.Float, nullable=False),
)
STREAMS = sa.Table(  # several workers: the open board streams of every worker (`shared.SharedStreams`)
    "streams", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(80), nullable=False),  # the client address (a projector's: the event code)
    sa.Column("projector", sa.Boolean, nullable=False),
    sa.Column("worker", sa.String(120), nullable=False),
    sa.Column("opened", sa.Float, nullable=False),
    sa.Column("seen", sa.Float, nullable=False),  # refreshed by its worker: a dead worker's rows go stale
    sa.Column("evicted", sa.Boolean, nullable=False),
)
PARTS = sa.Table(  # several workers: a participant's unfinished annotate call in parts (`parts`, `shared`)
    "parts", META,
    sa.Column("participant", sa.Integer, sa.ForeignKey("participants.id"), primary_key=True),
    sa.Column("batch", sa.String(40), nullable=False),
    sa.Column("next_part", sa.Integer, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("indices", sa.LargeBinary, nullable=False),  # int32, the parts so far
)
VERIFY_STATUSES = ("verified", "differs", "review", "missing")
NEW_COLUMNS = {"verifications": ("hidden_track", "hidden_accuracy", "hidden_annotations"),  # nullable, added later
               "participants": ("seq", "tokens", "stamp")}


def database_url(value: str | Path) -> str:
    """A SQLAlchemy URL, or a path to an SQLite file (made into ``sqlite:///...``)."""
    text = str(value)
    if "://" in text:
        return text
    path = Path(text).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def add_new_columns(engine: sa.engine.Engine) -> None:
    """Add the `NEW_COLUMNS` an event store made by an earlier version lacks (all nullable)."""
    inspector = sa.inspect(engine)
    for table_name, columns in NEW_COLUMNS.items():
        have = {c["name"] for c in inspector.get_columns(table_name)}
        table = META.tables[table_name]
        for name in columns:
            if name not in have:
                kind = table.c[name].type.compile(engine.dialect)
                try:
                    with engine.begin() as conn:
                        conn.execute(sa.text(f"ALTER TABLE {table_name} ADD COLUMN {name} {kind}"))
                except sa.exc.DBAPIError:  # another process (the server, `autograder verify`) added it just now
                    if name not in {c["name"] for c in sa.inspect(engine).get_columns(table_name)}:
                        raise
