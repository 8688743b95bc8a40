"""The annotation service: the only process of a grading run that knows the labels.

One service runs per graded submission. It holds the original digits of the
(secretly shuffled) pool, the track digits of the public and the private test
split, and answers the kernel's requests over a Unix socket: one JSON line per
request, every request carrying the per-run token. What a request means, how it is
validated and charged, and what goes into the ledger is `course.protocol`; the
same `Rules` run the participant's local ledger. The service always runs them in
exam mode: it never scores the public split and scores the private split once
(the counted submission), so no held-out label reaches the kernel before then.

It trusts nothing the kernel sends: every request is validated again here, a
refused request charges nothing, and every request, answered or refused, becomes
one bounded ledger entry (JSON lines, one whole line per write, in a folder the
kernel cannot see). A request larger than `protocol.MAX_REQUEST_BYTES` is refused
unread and its connection closed; a run gets at most `protocol.MAX_REQUESTS`
answers, so no flood of requests can make the ledger large.

Run by the grader (`autograder.grading.runner`), never by a participant:

    AUTOGRADER_TOKEN=... python -m autograder.grading.service --socket S --truth T --ledger L

It prints one line ``ready`` on stdout once it listens, and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import hmac
import os
import signal
import socketserver
import sys
from pathlib import Path

import numpy as np

from course import protocol
from course.exceptions import ServiceError

TOKEN_ENV = "AUTOGRADER_TOKEN"  # the per-run secret reaches the service through its environment
MAX_REQUEST_BYTES = protocol.MAX_REQUEST_BYTES
MAX_REQUESTS = protocol.MAX_REQUESTS
IDLE_TIMEOUT_S = 30.0  # a connection silent this long is closed (the client sends at once)


def make_rules(truth: dict[str, np.ndarray], ledger: Path, max_requests: int = MAX_REQUESTS) -> protocol.Rules:
    """The exam-mode rules of one run, writing their ledger to `ledger`."""
    return protocol.Rules(
        tuple(np.asarray(truth["track"]).tolist()), truth["pool_digits"],
        {protocol.PUBLIC: truth["public_digits"], protocol.PRIVATE: truth["private_digits"]},
        exam=True, ledger=protocol.LedgerWriter(ledger, keep=False), max_requests=max_requests)


class _Handler(socketserver.StreamRequestHandler):
    """One connection: any number of newline-terminated JSON requests.

    A connection that stays silent for `timeout` seconds is closed, so a kernel
    cannot stall the service (which answers one connection at a time).
    """

    timeout = IDLE_TIMEOUT_S

    def handle(self) -> None:
        server: Server = self.server  # type: ignore[assignment]
        while True:
            try:
                line = self.rfile.readline(MAX_REQUEST_BYTES + 1)
            except OSError:  # idle past the timeout, or the kernel hung up
                return
            if not line:
                return
            if len(line) > MAX_REQUEST_BYTES:
                reply = server.rules.refuse(None, ServiceError(
                    f"a request of more than {MAX_REQUEST_BYTES} bytes is refused unread and the connection "
                    "closed; no valid request is that large (send each index once, annotate in parts)."))
                self._reply(reply)
                return  # the rest of the line is never read
            if not self._reply(server.answer(line)):
                return

    def _reply(self, reply: dict) -> bool:
        """Send one reply; False if the kernel hung up (nothing to log: the request already is)."""
        try:
            self.wfile.write(protocol.encode(reply))
            self.wfile.flush()
            return True
        except OSError:
            return False


class Server(socketserver.UnixStreamServer):
    """Serves one run's `protocol.Rules` on a Unix socket; requests are answered one at a time.

    Whatever a line holds, it gets a reply and a ledger entry and counts toward the request
    cap: a request the service cannot read (JSON nested too deep, text that is not UTF-8) is
    a refusal like any other, never an exception. The service's own log (stderr, on the
    grader's disk) gets at most `MAX_LOGGED_FAULTS` short lines, so no flood can grow it.
    """

    request_queue_size = 64  # a kernel's parallel clients wait in the queue instead of EAGAIN
    MAX_LOGGED_FAULTS = 5

    def __init__(self, socket_path: Path, token: str, rules: protocol.Rules):
        self.token = token
        self.rules = rules
        self.faults = 0
        super().__init__(str(socket_path), _Handler)
        os.chmod(socket_path, 0o600)

    def answer(self, line: bytes) -> dict:
        try:
            return self._answer(line)
        except Exception as exc:  # a bug or a request no check foresaw: refused, logged, counted
            self._log_fault(exc)
            return self.rules.refuse(None, ServiceError("the request could not be read; nothing was done."))

    def _answer(self, line: bytes) -> dict:
        try:
            req = protocol.decode(line)
        except ServiceError:
            return self.rules.refuse(None, ServiceError("the request is not valid JSON."))
        token = req.get("token") if isinstance(req, dict) else None
        if not isinstance(token, str) or not hmac.compare_digest(_utf8(token), self.token.encode()):
            return self.rules.refuse(req.get("op") if isinstance(req, dict) else None,
                                     ServiceError("wrong or missing service token; nothing was done."))
        return self.rules.handle(req)

    def handle_error(self, request, client_address) -> None:
        """An exception escaped a connection's handler: one short line, for the first few only."""
        self._log_fault(sys.exc_info()[1])

    def _log_fault(self, exc: BaseException | None) -> None:
        self.faults += 1
        if self.faults <= self.MAX_LOGGED_FAULTS:
            sys.stderr.write(f"autograder.grading.service: {type(exc).__name__}: {protocol.clip(str(exc))}\n")
            sys.stderr.flush()


def _utf8(text: str) -> bytes:
    """`text` as UTF-8; a lone surrogate (valid in JSON, not in UTF-8) cannot match a token."""
    return text.encode("utf-8", "surrogatepass")


def load_truth(path: Path) -> dict[str, np.ndarray]:
    """Read the truth file the grader wrote for this run, then delete it."""
    with np.load(path) as f:
        truth = {k: f[k] for k in ("track", "pool_digits", "public_digits", "private_digits")}
    Path(path).unlink()
    return truth


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt  # leaves serve_forever; the ledger is already on disk


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument("--ledger", type=Path, required=True)
    parser.add_argument("--max-requests", type=int, default=MAX_REQUESTS,
                        help=f"requests answered per run (default {MAX_REQUESTS}; tests lower it)")
    parser.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_S,
                        help=f"seconds a silent connection stays open (default {IDLE_TIMEOUT_S:g})")
    args = parser.parse_args(argv)
    token = os.environ.pop(TOKEN_ENV, "")
    if not token:
        sys.exit(f"the service needs its token in ${TOKEN_ENV}.")
    rules = make_rules(load_truth(args.truth), args.ledger, args.max_requests)
    _Handler.timeout = args.idle_timeout
    server = Server(args.socket, token, rules)
    signal.signal(signal.SIGTERM, _stop)
    print("ready", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        rules.close()
        rules.ledger.close()


if __name__ == "__main__":
    main()
