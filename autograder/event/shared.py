"""The state several server processes share (``autograder serve --workers N``, PostgreSQL only): in the database,
never in one process's memory.

One process (``--workers 1``, the default) keeps its participants' rules, rate limits, open board streams and
the board's version in memory (`server.EventServer`). A larger event runs several worker processes on one
PostgreSQL store; a participant's requests may then reach any of them, so whatever they must agree on lives
here, in the store:

- a participant's state: each request locks its participant's row (``SELECT ... FOR UPDATE``) for its one
  transaction, and the row's ``seq`` counts the participant's committed changes; a worker whose copy of the
  rules is older (another worker answered meanwhile) rebuilds it from the store first (`Held`);
- the participant's rate limit: their token bucket is the row's ``tokens`` and ``stamp`` (wall clock),
  taken in the same transaction;
- the per-address buckets (joins, the pool, the public board routes): rows of ``buckets`` (`SharedBuckets`);
- the open board streams, per address, in all and the projector's slots: rows of ``streams`` (`SharedStreams`;
  a stream evicted by another worker ends within ``SSE_WAKE_S``: each worker looks for its own every second,
  and a worker that died leaves rows that stop counting after `STALE_S`);
- a participant's unfinished annotate call in parts (`parts`): a row of ``parts``, so the next part may reach
  any worker (`Shared.take_part`);
- the board's version: the participants' ``seq`` summed, their number and the event's freeze and close times
  (`board_version`, polled once per event every ``SSE_POLL_S`` by each worker), so a page open on one worker
  sees an annotation answered by another.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from autograder.event import limits, parts
from autograder.event.tables import BUCKETS, EVENTS, PARTICIPANTS, PARTS, STREAMS

STALE_S = 30.0  # a stream row not refreshed for this long is a dead worker's: it no longer counts
REFRESH_S = 1.0  # how often a worker refreshes its streams' rows and looks for the ones evicted elsewhere
STREAM_LOCK = 0x5EA7  # the advisory lock that makes stream admission one at a time across workers


class NeedsPostgres(ValueError):
    """Several workers on a store that cannot share them (SQLite)."""


def check(url: str, workers: int) -> None:
    if workers > 1 and not url.startswith("postgresql"):
        raise NeedsPostgres(f"--workers {workers} needs a PostgreSQL store (--db postgresql+psycopg://...): the "
                            "workers share participants, rate limits and the board through it; an SQLite file "
                            "serves one worker.")


@dataclass
class Held:
    """A participant's locked row in the request's open transaction."""

    conn: sa.engine.Connection
    seq: int
    tokens: float | None  # None: a full bucket (never used)
    stamp: float | None  # wall clock of `tokens`
    closed_at: float | None  # the event's, read now (another worker may have closed it)


class Shared:
    """The database side of several workers: a participant's lock, the board's version, buckets and streams."""

    def __init__(self, engine: sa.engine.Engine):
        self.engine = engine
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{time.time():.3f}"

    @contextlib.contextmanager
    def hold(self, pid: int):
        """The participant's row, locked until the transaction ends (committed when the block ends without error)."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(PARTICIPANTS.c.seq, PARTICIPANTS.c.tokens, PARTICIPANTS.c.stamp, EVENTS.c.closed_at)
                .select_from(PARTICIPANTS.join(EVENTS, PARTICIPANTS.c.event == EVENTS.c.code))
                .where(PARTICIPANTS.c.id == pid).with_for_update(of=PARTICIPANTS)).one()
            yield Held(conn, row.seq or 0, row.tokens, row.stamp, row.closed_at)

    @staticmethod
    def release(held: Held, pid: int, tokens: float, stamp: float) -> int:
        """Write the participant's bucket and count one more change; the new seq."""
        held.conn.execute(PARTICIPANTS.update().where(PARTICIPANTS.c.id == pid)
                          .values(seq=held.seq + 1, tokens=tokens, stamp=stamp))
        return held.seq + 1

    def take_part(self, held: Held, kept: parts.Parts, pid: int, body: dict, pool_size: int) -> dict | None:
        """`parts.Parts.take` with the participant's unfinished call read from and written to the store."""
        row = held.conn.execute(sa.select(PARTS).where(PARTS.c.participant == pid)).first()
        kept.drop(pid)
        if row is not None:
            kept.calls[pid] = parts._Call(row.batch, row.next_part, [np.frombuffer(row.indices, np.int32)], row.size)
            kept.pending += row.size
        try:
            whole = kept.take(pid, body, pool_size)
        except parts.PartError:  # the call is dropped (its own transaction: this one rolls back)
            with self.engine.begin() as conn:
                conn.execute(PARTS.delete().where(PARTS.c.participant == pid))
            raise
        held.conn.execute(PARTS.delete().where(PARTS.c.participant == pid))
        call = kept.calls.get(pid)
        if call is not None:
            held.conn.execute(PARTS.insert().values(participant=pid, batch=call.batch, next_part=call.next_part,
                                                    size=call.size, indices=np.concatenate(call.chunks)
                                                    .astype(np.int32).tobytes()))
        return whole

    def board_version(self, code: str) -> tuple:
        """What changes whenever any worker changes event `code`'s board (one query)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(PARTICIPANTS.c.seq), 0), sa.func.count(PARTICIPANTS.c.id),
                          EVENTS.c.frozen_at, EVENTS.c.closed_at)
                .select_from(EVENTS.outerjoin(PARTICIPANTS, PARTICIPANTS.c.event == EVENTS.c.code))
                .where(EVENTS.c.code == code).group_by(EVENTS.c.frozen_at, EVENTS.c.closed_at)).first()
        return tuple(row) if row is not None else ()


class SharedBuckets:
    """`limits.Buckets` in the store: token buckets keyed by `name` and client address, one row each."""

    def __init__(self, engine: sa.engine.Engine, name: str, burst: int, rate: float):
        self.engine, self.name, self.burst, self.rate = engine, name, float(burst), float(rate)

    def take(self, key: str) -> float:
        """0.0 if a token was taken, else the seconds until one is back (nothing taken)."""
        row_key = f"{self.name}:{key}"[:80]
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(pg_insert(BUCKETS).values(key=row_key, tokens=self.burst, stamp=now)
                         .on_conflict_do_nothing(index_elements=["key"]))
            row = conn.execute(sa.select(BUCKETS.c.tokens, BUCKETS.c.stamp).where(BUCKETS.c.key == row_key)
                               .with_for_update()).one()
            tokens = limits.refill(row.tokens, row.stamp, now, self.burst, self.rate)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
            conn.execute(BUCKETS.update().where(BUCKETS.c.key == row_key)
                         .values(tokens=tokens - 1.0 if wait == 0.0 else tokens, stamp=now))
        return wait


class SharedStreams:
    """`limits.Streams` in the store: the open board streams of every worker, one row each, with the same caps
    and the same fair-share eviction (a stream evicted here may be another worker's: it sees so within REFRESH_S)."""

    def __init__(self, shared: Shared, per_address: int = limits.STREAMS_PER_ADDRESS,
                 total: int = limits.MAX_STREAMS, projector: int = limits.PROJECTOR_STREAMS):
        self.shared, self.engine = shared, shared.engine
        self.per_address, self.total, self.projector = per_address, total, projector
        self.mine: dict[int, limits.Held] = {}  # row id -> this worker's open stream
        self.lock = threading.Lock()
        self.refresher: threading.Thread | None = None

    def _admit(self, conn) -> None:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(STREAM_LOCK)))
        conn.execute(STREAMS.delete().where(STREAMS.c.seen < time.time() - STALE_S))

    def _add(self, conn, key: str, projector: bool) -> limits.Held:
        now = time.time()
        rid = conn.execute(STREAMS.insert().values(key=key[:80], projector=projector, worker=self.shared.worker,
                                                   opened=now, seen=now, evicted=False)).inserted_primary_key[0]
        held = limits.Held(key, projector=projector)
        held.row = rid
        with self.lock:
            self.mine[rid] = held
        self._start()
        return held

    def enter_projector(self, event: str) -> limits.Held:
        with self.engine.begin() as conn:
            self._admit(conn)
            ids = conn.execute(sa.select(STREAMS.c.id).where(STREAMS.c.key == event, STREAMS.c.projector,
                                                             STREAMS.c.evicted.is_(False))
                               .order_by(STREAMS.c.opened, STREAMS.c.id)).scalars().all()
            if len(ids) >= self.projector:
                conn.execute(STREAMS.update().where(STREAMS.c.id == ids[0]).values(evicted=True))
            return self._add(conn, event, True)

    def enter(self, key: str) -> tuple[limits.Held | None, str | None]:
        live = [STREAMS.c.projector.is_(False), STREAMS.c.evicted.is_(False)]
        with self.engine.begin() as conn:
            self._admit(conn)
            counts = dict(conn.execute(sa.select(STREAMS.c.key, sa.func.count()).where(*live)
                                       .group_by(STREAMS.c.key)).all())
            mine = counts.get(key[:80], 0)
            if mine >= self.per_address:
                return None, (f"{self.per_address} board streams are open from your address already; close a board "
                              f"tab (the board page tries again by itself in {limits.RETRY_STREAM_S} s).")
            if sum(counts.values()) >= self.total:
                most = max(counts, key=counts.get)
                if counts[most] <= mine + 1:
                    return None, (f"the event server has {self.total} board streams open, its limit; the board "
                                  f"page tries again by itself in {limits.RETRY_STREAM_S} s.")
                oldest = conn.execute(sa.select(STREAMS.c.id).where(STREAMS.c.key == most, *live)
                                      .order_by(STREAMS.c.opened, STREAMS.c.id).limit(1)).scalar_one()
                conn.execute(STREAMS.update().where(STREAMS.c.id == oldest).values(evicted=True))
            return self._add(conn, key, False), None

    def leave(self, held: limits.Held) -> None:
        rid = getattr(held, "row", None)
        with self.lock:
            self.mine.pop(rid, None)
        with contextlib.suppress(Exception), self.engine.begin() as conn:
            conn.execute(STREAMS.delete().where(STREAMS.c.id == rid))

    def refresh(self) -> None:
        """Keep this worker's rows alive and end its streams another worker evicted."""
        with self.lock:
            ids = list(self.mine)
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(STREAMS.update().where(STREAMS.c.id.in_(ids)).values(seen=time.time()))
            gone = set(conn.execute(sa.select(STREAMS.c.id).where(STREAMS.c.id.in_(ids), STREAMS.c.evicted))
                       .scalars()) | set(ids) - set(conn.execute(sa.select(STREAMS.c.id)
                                                                 .where(STREAMS.c.id.in_(ids))).scalars())
        with self.lock:
            for rid in gone:
                held = self.mine.pop(rid, None)
                if held is not None:
                    held.evicted = True

    def _start(self) -> None:
        if self.refresher is not None:
            return

        def loop() -> None:
            while True:
                time.sleep(REFRESH_S)
                with contextlib.suppress(Exception):  # the store busy: the next round
                    self.refresh()

        self.refresher = threading.Thread(target=loop, name="stream-refresh", daemon=True)
        self.refresher.start()
