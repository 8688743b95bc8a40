"""The client of a live event's server: the join handshake, the ledger, the pool, the upload.

The HTTP half of `course.event` (the participant's calls) without any state of the kernel:
which event this kernel is in is `course.context`'s to know, and it joins through `join`
here when the environment names an event. `EventBackend` is the oracle's ledger on the
event server (`course.remote`), one `course.protocol` request per call.

A request refused for its rate (429: more requests per second than the event allows; the
server charged nothing) is sent again after the server's Retry-After, a bounded number of
times. An annotate call of more indices than one request carries
(`protocol.MAX_ANNOTATE_INDICES`) is sent in parts and answered as one call.

Talks HTTP with the standard library only (urllib); needs nothing beyond numpy.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from course import config, files, protocol
from course.exceptions import ServiceError
from course.remote import RemoteBackend

TIMEOUT_S = 60.0  # one request
POOL_TIMEOUT_S = 600.0  # the pool download (about 12 MB)
RETRY_S = 60.0  # how long a rate-limited request (429) is retried before it gives up
MAX_RETRIES = 20  # and how many times at most
MAX_NOTEBOOK_BYTES = 4 * 2**20  # an uploaded notebook, outputs dropped (the server's cap)
POOL_FILE = "course-grading.npz"  # the `course.data` grading-file name: data.load() reads it


@dataclass(frozen=True)
class Joined:
    """The event this kernel takes part in."""

    url: str
    code: str
    name: str
    display_name: str  # the pseudonym the board shows
    track: tuple[int, ...]
    assignment: str
    pool_bytes: int
    token: str

    def __repr__(self) -> str:  # never print the token
        return (f"Joined(url={self.url!r}, code={self.code!r}, name={self.name!r}, "
                f"display_name={self.display_name!r}, track={self.track}, assignment={self.assignment!r})")


def join(url: str, code: str, name: str | None = None) -> Joined:
    """Join event `code` on the server at `url` as `name` (default: your login name); print who joined.

    The handshake only (`course.event.join` is the participant's call): `code` may be a
    personal code (``"K7QX2P-AB3CD4EF"``) that brings its name; the token is kept in the
    cache folder, so joining again under the same name from this machine rejoins.
    """
    url = _check_url(url)
    code = str(code).strip().upper()
    invite = code if "-" in code else None
    code = code.split("-", 1)[0]
    if name is None and invite is None:
        name = getpass.getuser()
    name = None if name is None else name.strip()
    saved = _token_file(url, code, name if name is not None else invite)
    token = None
    if saved.is_file():
        try:
            token = json.loads(saved.read_text()).get("token")
        except (OSError, ValueError):
            token = None
    body = {"name": name, "token": token}
    if invite is not None:
        body["invite"] = invite
    reply = protocol.result(_http(f"{url}/api/events/{urllib.parse.quote(code)}/join", body))
    joined = Joined(url=url, code=code, name=reply["name"], display_name=reply["display_name"],
                    track=tuple(int(d) for d in reply["track"]), assignment=reply["assignment"],
                    pool_bytes=int(reply["pool_bytes"]), token=reply["token"])
    saved.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "code": code, "name": joined.name, "token": joined.token}, handle)
    print(f"{'rejoined' if reply['rejoined'] else 'joined'} event {code} ({joined.assignment}, track "
          f"{','.join(map(str, joined.track))}) as {joined.name!r}, shown on the board as {joined.display_name!r}. "
          "Exam mode: your first course.grading.submit is your one counted submission.")
    return joined


def upload(joined: Joined, path: str | os.PathLike) -> dict:
    """Send the notebook file at `path` to the event server, outputs left out; the server's reply."""
    path = Path(path)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ServiceError(f"cannot read the notebook {str(path)!r} ({type(exc).__name__}); give the path of the "
                           ".ipynb file, e.g. course.event.upload(\"03_clustering.ipynb\").") from None
    for cell in nb.get("cells", []) if isinstance(nb, dict) else []:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":  # outputs are not needed to re-run it
            cell["outputs"], cell["execution_count"] = [], None
    raw = json.dumps(nb).encode()
    reply = protocol.result(_http(f"{joined.url}/api/events/{joined.code}/notebook", raw=raw, token=joined.token,
                                  limit=MAX_NOTEBOOK_BYTES))
    print(f"uploaded {path.name} ({reply['bytes']} bytes) to event {joined.code}; the last upload counts.")
    return reply


_POOL_DIR: dict[str, Path] = {}


def pool_dir(joined: Joined) -> Path:
    """The folder holding the event's pool file, downloaded on first use."""
    key = f"{joined.url} {joined.code}"
    if key not in _POOL_DIR:
        folder = config.cache_dir() / "events" / hashlib.sha256(key.encode()).hexdigest()[:16]
        target = folder / POOL_FILE
        if not (target.is_file() and target.stat().st_size == joined.pool_bytes):
            _download(joined, target)
        install_baseline(target)
        _POOL_DIR[key] = folder
    return _POOL_DIR[key]


BASELINE_FILE = re.compile(r"baseline-v[0-9]+-track[0-9]+-seed[0-9]+\.pt")  # `course.models.checkpoint_path`'s names


def install_baseline(pool_file: Path) -> Path | None:
    """Put the baseline checkpoint that came with the event's pool (``autograder event create`` adds it) into
    the model cache, where `course.models.baseline()` finds it, so nobody trains it on the day; a checkpoint
    already there is kept. It saw only merged labels. Returns its path, None if the pool has none.

    The file name comes from the server, so only a plain checkpoint name is used (never a path), and
    `course.models` loads it as weights only."""
    try:
        with np.load(pool_file) as f:
            if "baseline" not in f.files or "baseline_file" not in f.files:
                return None
            name = str(f["baseline_file"])
            if not BASELINE_FILE.fullmatch(name):
                return None
            target = config.cache_dir() / "models" / name
            if target.is_file():
                return target
            files.write_atomic(target, f["baseline"].tobytes())
    except (OSError, ValueError, KeyError):  # a pool without one, or a cache that cannot be written: trained later
        return None
    return target


class EventBackend(RemoteBackend):
    """`course.oracle.Backend` on the event server: every call is one `course.protocol` request over HTTP."""

    def __init__(self, joined: Joined, track: tuple[int, ...]):
        self.joined = joined
        self.track = tuple(track)
        info = self._hello()
        if tuple(info["track"]) != self.track:
            raise ServiceError(f"event {joined.code} is on track {','.join(map(str, info['track']))}, not "
                               f"{','.join(map(str, self.track))}; call course.data.load() without a track.")

    def _request(self, op: protocol.Op, **fields) -> Any:
        return protocol.result(_http(f"{self.joined.url}/api/events/{self.joined.code}/op",
                                     protocol.request(op, **fields), token=self.joined.token))

    def annotate(self, indices: np.ndarray) -> np.ndarray:
        """One call, whatever its size: more indices than one request may carry go in parts
        (`protocol.PART_FIELDS`), which the server answers as one call (one charge, or one refusal and
        nothing charged, with the message and labels one request would get)."""
        limit = protocol.MAX_ANNOTATE_INDICES
        if len(indices) <= limit:
            return super().annotate(indices)
        batch = secrets.token_hex(8)
        starts = range(0, len(indices), limit)
        for part, start in enumerate(starts):
            reply = self._request(protocol.Op.ANNOTATE, indices=[int(i) for i in indices[start:start + limit]],
                                  batch=batch, part=part, more=part < len(starts) - 1)
        self._count = int(reply["count"])
        return np.asarray(reply["labels"], dtype=np.int64)


# --- HTTP ---------------------------------------------------------------------------------------


def _check_url(url: str) -> str:
    url = str(url).strip().rstrip("/")
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ServiceError(f"{url!r} is not an event server address; expected e.g. \"http://10.0.0.5:8000\".")
    return url


def _http(url: str, body: Any | None = None, token: str | None = None, timeout: float = TIMEOUT_S,
          stream: bool = False, raw: bytes | None = None, limit: int = protocol.MAX_REQUEST_BYTES) -> Any:
    """One request (POST JSON if `body`, POST `raw` bytes if given, else GET); the reply's JSON, or the
    open response if `stream`.

    A refusal's JSON (``{"ok": false, ...}``) is returned as it is, for `protocol.result`. A
    rate-limited request (429: the server read and charged nothing) is sent again after the
    server's Retry-After, at most `MAX_RETRIES` times and for at most `RETRY_S` seconds; then
    the server's refusal is returned.
    """
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    if data is not None and len(data) > limit:
        raise ServiceError(f"this request would be {len(data)} bytes, more than the {limit} the event server "
                           "reads; nothing was sent or charged." + (" Send fewer indices per call." if raw is None
                                                                    else ""))
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    deadline = time.monotonic() + RETRY_S
    retries = 0
    while True:
        request = urllib.request.Request(url, data=data, headers=headers, method="GET" if data is None else "POST")
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
            if stream:
                return response
            with response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                text = exc.read(protocol.MAX_REQUEST_BYTES)
                wait = _retry_after(exc.headers.get("Retry-After"))
            if exc.code == 429 and retries < MAX_RETRIES and time.monotonic() + wait <= deadline:
                retries += 1
                time.sleep(wait)
                continue
            try:
                reply = json.loads(text)
            except ValueError:
                reply = None
            if isinstance(reply, dict) and "ok" in reply:
                return reply
            raise ServiceError(f"the event server answered {exc.code} {exc.reason} for {url}.") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceError(f"cannot reach the event server at {url}: {reason}. Check the address and that the "
                               "server runs; oracle.count() tells what was charged once it answers again.") from None


def _retry_after(value: str | None) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds; 1 s if absent or unreadable)."""
    try:
        wait = float(value) if value is not None else 1.0
    except ValueError:
        return 1.0
    return wait if wait >= 0 and wait == wait else 1.0


def _download(joined: Joined, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    response = _http(f"{joined.url}/api/events/{joined.code}/pool", token=joined.token, timeout=POOL_TIMEOUT_S,
                     stream=True)
    if isinstance(response, dict):  # a refusal
        protocol.result(response)
        raise ServiceError("the event server sent no pool file.")
    with response, open(part, "wb") as out:
        while True:
            block = response.read(1 << 20)
            if not block:
                break
            out.write(block)
    if part.stat().st_size != joined.pool_bytes:
        part.unlink()
        raise ServiceError("the event's pool download was cut short; call course.data.load() again.")
    os.replace(part, target)


def _token_file(url: str, code: str, name: str) -> Path:
    key = hashlib.sha256(f"{url} {code} {name}".encode()).hexdigest()[:24]
    return config.cache_dir() / "events" / f"token-{key}.json"

