"""Issue 21, hole 5: a forged X-Forwarded-For passed every per-address limit of the real `autograder serve`.

uvicorn believes X-Forwarded-For from 127.0.0.1 by default, and the event's per-address limits key on
the client address it yields: 100 joins each naming another address all passed the join limit (60 at
once), and 400 board streams each naming another address filled the server's 400 stream slots with 400
"addresses" holding one each, so the projector's board was refused (429). Now the header is ignored
unless the instructor names a reverse proxy (``--trusted-proxy``), and the instructor's board link
(``/board/CODE?key=...``) is never refused, whatever a room on the projector's own address opens.

Cost: three event servers on copies of the session's event template (~5 s each, plus the template
once per session when no other event test built it).
"""

from __future__ import annotations

import math
import socket
import time
from urllib.parse import urlsplit

import event_server as es
from autograder.event import export, limits

JOINS = limits.JOIN_BURST + 40
FLOOD = limits.MAX_STREAMS  # streams, each with an address of its own in the header


def _server(tmp_path_factory, name: str, *args: str) -> tuple[es.Server, str, str]:
    """A started `autograder serve` on a copy of the template: (server, the api event's code, its admin token)."""
    db, events = es.template(tmp_path_factory.getbasetemp())
    folder = tmp_path_factory.mktemp(name)
    server = es.Server(es.copy_db(db, folder / "events.db"), args=args).start()
    code, admin = events["api"]
    return server, code, admin


def _joins(server: es.Server, code: str, forwarded, who: str = "sock puppet") -> tuple[int, float]:
    """JOINS joins under new names, the k-th with ``X-Forwarded-For: forwarded(k)``: (accepted, seconds taken)."""
    accepted, start = 0, time.monotonic()
    for k in range(JOINS):
        status, reply = es.call(f"{server.url}/api/events/{code}/join", {"name": f"{who} {k}"},
                                headers={"X-Forwarded-For": forwarded(k)})
        assert status in (200, 429), (status, reply)
        accepted += status == 200
    return accepted, time.monotonic() - start


def _most_joins(seconds: float) -> int:
    """What the join limit admits from one address in `seconds`: the burst, then the rate."""
    return limits.JOIN_BURST + math.ceil(seconds * limits.JOIN_RATE) + 1


def test_a_forged_forwarded_for_does_not_pass_the_join_limit(tmp_path_factory):
    server, code, _ = _server(tmp_path_factory, "forwarded-joins")
    try:
        accepted, seconds = _joins(server, code, lambda k: f"10.66.{k // 200}.{k % 200 + 1}")
    finally:
        server.stop()
    assert accepted <= _most_joins(seconds), (
        f"{accepted} of {JOINS} joins from one machine passed in {seconds:.1f} s, each naming another address "
        f"in X-Forwarded-For (the limit: {limits.JOIN_BURST} at once, then {limits.JOIN_RATE:g} a second)")


def test_a_trusted_proxy_is_believed_for_the_address_it_adds(tmp_path_factory):
    """Behind `--trusted-proxy 127.0.0.1` (nginx appends the client's address): clients are told apart by the
    address the proxy added, never by what a client wrote in front of it."""
    server, code, _ = _server(tmp_path_factory, "forwarded-proxy", "--trusted-proxy", "127.0.0.1")
    try:
        many, _ = _joins(server, code, lambda k: f"10.66.{k // 200}.{k % 200 + 1}")  # a class, each its own
        one, seconds = _joins(server, code, lambda k: f"10.77.{k // 200}.{k % 200 + 1}, 192.0.2.7",  # one client
                              "forger")
    finally:
        server.stop()
    assert many == JOINS, many
    assert one <= _most_joins(seconds), (one, seconds)


def _open_stream(port: int, path: str, forwarded: str | None = None) -> tuple[socket.socket, bytes]:
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    header = f"X-Forwarded-For: {forwarded}\r\n" if forwarded else ""
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: board\r\n{header}\r\n".encode())
    return conn, conn.recv(64)


def test_a_stream_flood_cannot_lock_the_projectors_board_out(tmp_path_factory):
    server, code, admin = _server(tmp_path_factory, "forwarded-streams")
    link = urlsplit(export.board_link(code, admin))
    keyed = f"/api/events/{code}/stream?{link.query}"
    held, statuses = [], {}
    try:
        wrong, wrong_head = _open_stream(server.port, f"/api/events/{code}/stream?key={'0' * limits.BOARD_KEY_CHARS}")
        held.append(wrong)
        for k in range(FLOOD):  # the room (or one script) on the projector's own address
            conn, head = _open_stream(server.port, f"/api/events/{code}/stream", f"10.66.{k // 200}.{k % 200 + 1}")
            held.append(conn)
            statuses[head[9:12]] = statuses.get(head[9:12], 0) + 1
        projector, head = _open_stream(server.port, keyed)
        held.append(projector)
        page, page_head = _open_stream(server.port, f"{link.path}?{link.query}")
        held.append(page)
    finally:
        for conn in held:
            conn.close()
        server.stop()
    assert head.startswith(b"HTTP/1.1 200"), (head, statuses)
    assert page_head.startswith(b"HTTP/1.1 200"), page_head
    assert wrong_head.startswith(b"HTTP/1.1 403"), wrong_head  # a made-up key opens nothing
    assert statuses.get(b"200", 0) <= limits.STREAMS_PER_ADDRESS, statuses  # the flood is one address
