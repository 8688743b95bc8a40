"""Per-address limits of the event server: every limit on a client address, in one place.

The board and its stream need no token (a projector shows them), so without a limit any
script could open hundreds of streams a second and starve the participants' annotations.
Each public route and the pool download therefore take a token from their client address's
bucket before any work (a 429 with a JSON error and ``Retry-After`` otherwise), and open board
streams are capped per address and in all. Every limit leaves room for a class behind one
NAT: 50 participants joining and downloading the pool at once, each maybe with the board open.
A participant's own requests (annotate, submit) have their per-participant bucket in `app`
(``--rate``, ``--burst``) and no per-address one.

The client address is the TCP peer's. ``X-Forwarded-For`` is read only from the reverse proxies
the instructor names (``autograder serve --trusted-proxy ADDR``, uvicorn's ``forwarded_allow_ips``;
the client is then the rightmost address the proxy did not get from the client): from anyone
else it would let one script pose as any number of addresses, each with buckets of its own.

The projector's board cannot be locked out: the instructor's board link (``/board/CODE?key=KEY``,
printed by ``autograder event create`` and shown on the admin page; the key is `board_key`, derived
from the admin token's hash, so it grants nothing else) takes no token from any bucket, and its
streams have `PROJECTOR_STREAMS` slots per event of their own, outside the per-address and total
caps (a new one takes the oldest one's slot: a reloaded projector always gets in).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs

JOIN_BURST = 60  # joins at once from one address (a class behind one NAT joins in one go)
JOIN_RATE = 1.0  # joins per second per address after that (a script cannot squat every name)
PUBLIC_BURST = 200  # board page, board JSON and board-stream requests at once from one address: 50 people
# opening the board (redirect, page, stream) and a reconnect
PUBLIC_RATE = 5.0  # such requests per second per address after that (each admitted stream costs a set-up)
POOL_BURST = 60  # pool downloads (12 MB each) at once from one address: a class downloads at the start
POOL_RATE = 2.0  # pool downloads per second per address after that (kernel restarts download again)
STREAMS_PER_ADDRESS = 100  # open board streams per address: a class behind one NAT, each with the board open
MAX_STREAMS = 400  # open board streams in all (each costs a wake-up every SSE_POLL_S, never a query)
MAX_ADDRESSES = 10_000  # buckets kept; beyond it the full (idle) ones are forgotten
RETRY_STREAM_S = 10  # Retry-After of a refused stream (the board page tries again after it)
PROJECTOR_STREAMS = 8  # board-link streams per event, beside every cap: the projector, a second screen, a spare tab
BOARD_KEY_CHARS = 32  # hex digits of a board link's key
KEYS_RELOAD_S = 1.0  # an unknown event's key is looked up at most this often (a flood of made-up codes: one query a second)

PUBLIC, POOL = "public", "pool"


def refill(tokens: float, since: float, now: float, burst: float, rate: float) -> float:
    """A token bucket's tokens at `now`: `tokens` at `since`, `rate` more each second, at most `burst`. The one
    rule of every bucket here: per address (`Buckets`), per participant (`server.EventServer.admit`) and in the
    store (`shared.SharedBuckets`)."""
    return min(burst, tokens + max(0.0, now - since) * rate)


class Buckets:
    """Token buckets keyed by client address: `burst` at once, then `rate` per second."""

    def __init__(self, burst: int, rate: float):
        self.burst, self.rate = float(burst), float(rate)
        self.state: dict[str, tuple[float, float]] = {}  # address -> (tokens, stamp)
        self.lock = threading.Lock()

    def take(self, key: str) -> float:
        """0.0 if a token was taken, else the seconds until one is back (nothing taken)."""
        now = time.monotonic()
        with self.lock:
            tokens, stamp = self.state.get(key, (self.burst, now))
            tokens = refill(tokens, stamp, now, self.burst, self.rate)
            if tokens < 1.0:
                self.state[key] = (tokens, now)
                return (1.0 - tokens) / self.rate
            if len(self.state) >= MAX_ADDRESSES and key not in self.state:
                self.forget(now)
            self.state[key] = (tokens - 1.0, now)
            return 0.0

    def forget(self, now: float) -> None:
        """Drop the buckets that are full again (their addresses lose nothing)."""
        self.state = {k: (t, s) for k, (t, s) in self.state.items()
                      if refill(t, s, now, self.burst, self.rate) < self.burst}


def board_key(admin_hash: str, code: str) -> str:
    """The key of event `code`'s board link: a keyed hash of its admin token's hash (it opens the board only)."""
    return hmac.new(admin_hash.encode(), f"board:{code}".encode(), hashlib.sha256).hexdigest()[:BOARD_KEY_CHARS]


class BoardKeys:
    """Which (event, key) pairs are the instructor's board links; `load` reads {code: admin hash} from the store."""

    def __init__(self, load: Callable[[], dict[str, str]]):
        self.load = load
        self.keys: dict[str, str] = {}
        self.loaded = -math.inf
        self.lock = threading.Lock()

    def valid(self, code: str, key: str | None) -> bool:
        """Whether `key` is event `code`'s board key (an unknown event: looked up at most every KEYS_RELOAD_S)."""
        if not key or len(key) != BOARD_KEY_CHARS:
            return False
        expected = self.keys.get(code)
        if expected is None:
            with self.lock:
                if code not in self.keys and time.monotonic() - self.loaded >= KEYS_RELOAD_S:
                    self.loaded = time.monotonic()
                    self.keys = {c: board_key(h, c) for c, h in self.load().items()}
                expected = self.keys.get(code)
        return expected is not None and hmac.compare_digest(expected, key)


def query_key(query_string: bytes | str) -> str | None:
    """The ``key`` parameter of a query string, or None."""
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    values = parse_qs(query_string).get("key")
    return values[0] if values else None


def board_code(path: str) -> str | None:
    """The event code of a board route (``/board/CODE``, ``/api/events/CODE/board|stream``), or None."""
    parts = path.split("/")
    if len(parts) == 3 and parts[1] == "board":
        return parts[2]
    if len(parts) == 5 and parts[1] == "api" and parts[2] == "events" and parts[4] in ("board", "stream"):
        return parts[3]
    return None


class Held:
    """One open board stream: its address (or event, for a board link's), and whether another stream took its
    slot (it then ends itself)."""

    __slots__ = ("key", "evicted", "projector", "row")

    def __init__(self, key: str, projector: bool = False):
        self.key, self.evicted, self.projector, self.row = key, False, projector, None  # row: `shared`'s


class Streams:
    """Open board streams per address and in all.

    When all `total` are open, a new stream takes the slot of the oldest stream of the address holding the
    most (fair share): a few addresses holding every stream cannot lock the projector's board out; it is
    refused only when no address holds more than one beyond what the new one's would.
    """

    def __init__(self, per_address: int = STREAMS_PER_ADDRESS, total: int = MAX_STREAMS,
                 projector: int = PROJECTOR_STREAMS):
        self.per_address, self.total, self.projector = per_address, total, projector
        self.open: dict[str, list[Held]] = {}
        self.count = 0
        self.projectors: dict[str, list[Held]] = {}  # event -> its board-link streams (outside every other cap)
        self.lock = threading.Lock()

    def enter_projector(self, event: str) -> Held:
        """A board-link stream of `event`: always admitted; the oldest of the event's `projector` slots ends."""
        with self.lock:
            mine = self.projectors.setdefault(event, [])
            if len(mine) >= self.projector:
                mine.pop(0).evicted = True
            held = Held(event, projector=True)
            mine.append(held)
            return held

    def enter(self, key: str) -> tuple[Held | None, str | None]:
        """(the new stream of `key`, None); or (None, why not) with nothing counted."""
        with self.lock:
            mine = self.open.get(key, [])
            if len(mine) >= self.per_address:
                return None, (f"{self.per_address} board streams are open from your address already; close a board "
                              f"tab (the board page tries again by itself in {RETRY_STREAM_S} s).")
            if self.count >= self.total:
                most = max(self.open, key=lambda k: len(self.open[k]), default=None)
                if most is None or len(self.open[most]) <= len(mine) + 1:
                    return None, (f"the event server has {self.total} board streams open, its limit; the board "
                                  f"page tries again by itself in {RETRY_STREAM_S} s.")
                oldest = self.open[most].pop(0)  # it sees `evicted` within SSE_WAKE_S and ends
                oldest.evicted = True
                self.count -= 1
                if not self.open[most]:
                    del self.open[most]
            held = Held(key)
            self.open.setdefault(key, []).append(held)
            self.count += 1
            return held, None

    def leave(self, held: Held) -> None:
        with self.lock:
            if held.evicted:
                return  # its slot was given away already
            if held.projector:
                mine = self.projectors.get(held.key, [])
                if held in mine:
                    mine.remove(held)
                if not mine:
                    self.projectors.pop(held.key, None)
                return
            mine = self.open.get(held.key, [])
            if held in mine:
                mine.remove(held)
                self.count -= 1
            if not mine:
                self.open.pop(held.key, None)


def kind(path: str) -> str | None:
    """Which per-address bucket a request path takes from: PUBLIC, POOL, or None (no per-address limit)."""
    if path == "/board" or path.startswith("/board/"):
        return PUBLIC
    parts = path.split("/")
    if len(parts) == 5 and parts[1] == "api" and parts[2] == "events":
        if parts[4] in ("board", "stream"):
            return PUBLIC
        if parts[4] == "pool":
            return POOL
    return None


def refusal(message: str, wait: float, close: bool = True) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A 429: (status, ASGI headers, JSON body), the protocol's refusal shape with ``Retry-After``."""
    body = json.dumps({"ok": False, "error": "ServiceError", "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"retry-after", str(max(1, math.ceil(wait))).encode())]
    if close:  # a flood's connections are not kept alive
        headers.append((b"connection", b"close"))
    return 429, headers, body


class PerAddress:
    """ASGI middleware: the public routes and the pool take a token from their address's bucket before routing
    (a request of the instructor's board link, valid for its event in `board_keys`, takes none)."""

    def __init__(self, app, public: Buckets | None = None, pool: Buckets | None = None,
                 board_keys: BoardKeys | None = None):
        self.app = app
        self.buckets = {PUBLIC: public or Buckets(PUBLIC_BURST, PUBLIC_RATE), POOL: pool or Buckets(POOL_BURST, POOL_RATE)}
        self.board_keys = board_keys

    def _board_link(self, scope) -> bool:
        code = board_code(scope.get("path", ""))
        key = query_key(scope.get("query_string", b"")) if code else None
        return bool(key) and self.board_keys is not None and self.board_keys.valid(code, key)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            which = kind(scope.get("path", ""))
            if which is not None and not (which == PUBLIC and self._board_link(scope)):
                client = scope.get("client")
                wait = self.buckets[which].take(client[0] if client else "")
                if wait > 0:
                    what = ("board requests" if which == PUBLIC else "pool downloads")
                    status, headers, body = refusal(
                        f"too many {what} from your address; wait {max(1, math.ceil(wait))} s and try again "
                        "(course.event does by itself). Nothing was charged.", wait)
                    await send({"type": "http.response.start", "status": status, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)
