"""The annotation service: the only process of a grading run that knows the labels.

One service runs per graded submission. It holds the original digits of the
(secretly shuffled) pool, the track digits of the public and the private test
split, answers the kernel's requests over a Unix socket (newline-delimited JSON,
every request carrying the per-run token), counts distinct annotated indices and
scores predictions. It trusts nothing the kernel sends: every request is
validated again here, a refused request charges nothing, and every request,
answered or refused, is appended to the ledger (JSON lines, one whole line per
write, in a folder the kernel cannot see).

Run by the grader (`autograder.runner`), never by a participant:

    AUTOGRADER_TOKEN=... python -m autograder.service --socket S --truth T --ledger L

It prints one line ``ready`` on stdout once it listens, and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import signal
import socketserver
import sys
import time
from pathlib import Path

import numpy as np

TOKEN_ENV = "AUTOGRADER_TOKEN"  # the per-run secret reaches the service through its environment
MAX_PUBLIC_SCORES = 200  # each public evaluation leaks a little about public labels
MAX_SUBMISSIONS = 20  # private scorings per run; the last one counts
MAX_REQUEST_BYTES = 16 * 1024 * 1024  # a request bigger than this is refused unread
SPLITS = ("public", "private")


class Refused(Exception):
    """A request the service will not honour; `kind` names the `course` error class."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class Ledger:
    """Every request in order: kept in memory and appended to a JSONL file as it happens.

    Each entry is one ``os.write`` of a whole line on an O_APPEND descriptor, so the
    file always holds complete entries (the grader reads it after the service stops),
    and a long run of small requests costs O(1) per request, not a rewrite of the file.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries: list[dict] = []
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)

    def add(self, entry: dict) -> None:
        entry = {"seq": len(self.entries), "time": round(time.time(), 3), **entry}
        self.entries.append(entry)
        os.write(self._fd, (json.dumps(entry) + "\n").encode())


class Oracle:
    """The labels, the annotation count, the budget and the scoring of one run."""

    def __init__(self, track: tuple[int, ...], pool_digits: np.ndarray,
                 public_digits: np.ndarray, private_digits: np.ndarray, ledger: Ledger):
        self.track = tuple(int(d) for d in track)
        self.digits = np.asarray(pool_digits, dtype=np.int64)
        self.in_c = np.isin(self.digits, self.track)
        self.truth = {"public": np.asarray(public_digits, dtype=np.int64),
                      "private": np.asarray(private_digits, dtype=np.int64)}
        self.ledger = ledger
        self.charged: dict[int, int] = {}  # index -> digit, in charge order
        self.budget: int | None = None
        self.scorings = {"public": 0, "private": 0}

    # --- validation: the kernel is never trusted ------------------------------

    def _indices(self, value) -> list[int]:
        if not isinstance(value, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in value):
            raise Refused("IndexTypeError", "expected a list of integer pool indices.")
        n = len(self.digits)
        for i in value:
            if not 0 <= i < n:
                raise Refused("OutOfRangeError", f"index {i} is outside the pool; valid indices are 0..{n - 1}.")
        for i in value:
            if not self.in_c[i]:
                raise Refused("NotInCError",
                              f"index {i} is not in class C, so its label is already known "
                              "(dataset.labels); annotate only indices from dataset.c_indices.")
        return value

    def _predictions(self, value, split: str) -> np.ndarray:
        n = len(self.truth[split])
        if not isinstance(value, list) or len(value) != n:
            got = len(value) if isinstance(value, list) else type(value).__name__
            raise Refused("PredictionError", f"expected {n} predictions for the {split} split, got {got}.")
        if any(isinstance(p, bool) or not isinstance(p, int) for p in value):
            raise Refused("PredictionError", "predictions must be integer digits.")
        array = np.asarray(value, dtype=np.int64)
        unexpected = sorted(set(np.unique(array).tolist()) - set(self.track))
        if unexpected:
            raise Refused("PredictionError",
                          f"predictions hold {unexpected}; expected only the track's digits "
                          f"{','.join(map(str, self.track))}.")
        return array

    # --- the operations ---------------------------------------------------------

    def op_hello(self, req: dict) -> dict:
        return {"track": list(self.track), "pool_size": len(self.digits), "submit_split": "private"}

    def op_annotate(self, req: dict) -> dict:
        indices = self._indices(req.get("indices"))
        new = [i for i in dict.fromkeys(indices) if i not in self.charged]
        if self.budget is not None and len(self.charged) + len(new) > self.budget:
            raise Refused("BudgetExceededError",
                          f"this call needs {len(new)} new annotations but only "
                          f"{self.budget - len(self.charged)} of the budget of {self.budget} are left; "
                          "nothing was charged. Ask for fewer indices.")
        for i in new:
            self.charged[i] = int(self.digits[i])
        return {"labels": self.digits[indices].tolist(), "count": len(self.charged), "new": new}

    def op_count(self, req: dict) -> int:
        return len(self.charged)

    def op_history(self, req: dict) -> list[list[int]]:
        return [[k, i, d] for k, (i, d) in enumerate(self.charged.items())]

    def op_set_budget(self, req: dict) -> None:
        n = req.get("n")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise Refused("OracleError", f"budget must be a non-negative integer or None, got {n!r}.")
        self.budget = n

    def op_budget(self, req: dict) -> int | None:
        return self.budget

    def op_score(self, req: dict) -> dict:
        split = req.get("split")
        if split not in SPLITS:
            raise Refused("ServiceError", f"split must be 'public' or 'private', got {split!r}.")
        cap = MAX_SUBMISSIONS if split == "private" else MAX_PUBLIC_SCORES
        if self.scorings[split] >= cap:
            what = "submissions" if split == "private" else "evaluations on the public split"
            raise Refused("ServiceError",
                          f"this run has used all {cap} {what}; the grader allows no more. "
                          "Evaluate less often (e.g. only at the end).")
        predictions = self._predictions(req.get("predictions"), split)
        self.scorings[split] += 1
        accuracy = float(np.mean(predictions == self.truth[split]))
        return {"accuracy": accuracy, "count": len(self.charged), "n": int(len(predictions))}

    # --- dispatch -----------------------------------------------------------------

    def handle(self, req: dict) -> dict:
        op = req.get("op") if isinstance(req, dict) else None
        method = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
        try:
            if method is None:
                raise Refused("ServiceError", f"unknown request {op!r}.")
            result = method(req)
        except Refused as exc:
            self.ledger.add({"op": op, "ok": False, "error": exc.kind, "message": str(exc),
                             **_summary(op, req)})
            return {"ok": False, "error": exc.kind, "message": str(exc)}
        self.ledger.add({"op": op, "ok": True, **_summary(op, req), **_result_summary(op, result)})
        if op == "annotate":
            result = {k: result[k] for k in ("labels", "count")}
        return {"ok": True, "result": result}


def _summary(op, req: dict) -> dict:
    """What the ledger keeps of a request (never the token)."""
    if op == "annotate":
        indices = req.get("indices")
        return {"indices": indices if isinstance(indices, list) and len(indices) <= 100_000 else "<invalid>"}
    if op == "score":
        return {"split": req.get("split")}
    if op == "set_budget":
        return {"n": req.get("n")}
    return {}


def _result_summary(op, result) -> dict:
    if op == "annotate":
        return {"new": result["new"], "count": result["count"]}
    if op == "score":
        return {"accuracy": result["accuracy"], "count": result["count"], "n": result["n"]}
    if op == "set_budget":
        return {}
    return {"result": result} if op in ("count", "budget") else {}


class _Handler(socketserver.StreamRequestHandler):
    """One connection: any number of newline-terminated JSON requests."""

    def handle(self) -> None:
        server: Server = self.server  # type: ignore[assignment]
        while True:
            line = self.rfile.readline(MAX_REQUEST_BYTES + 1)
            if not line:
                return
            if len(line) > MAX_REQUEST_BYTES:
                reply = {"ok": False, "error": "ServiceError", "message": "request too large."}
                server.oracle.ledger.add({"op": None, "ok": False, "error": "ServiceError",
                                          "message": "request too large"})
                self.wfile.write((json.dumps(reply) + "\n").encode())
                return
            reply = server.answer(line)
            self.wfile.write((json.dumps(reply) + "\n").encode())
            self.wfile.flush()


class Server(socketserver.UnixStreamServer):
    """Serves one `Oracle` on a Unix socket; requests are answered one at a time, in order."""

    def __init__(self, socket_path: Path, token: str, oracle: Oracle):
        self.token = token
        self.oracle = oracle
        super().__init__(str(socket_path), _Handler)
        os.chmod(socket_path, 0o600)

    def answer(self, line: bytes) -> dict:
        try:
            req = json.loads(line)
        except ValueError:
            self.oracle.ledger.add({"op": None, "ok": False, "error": "ServiceError", "message": "not JSON"})
            return {"ok": False, "error": "ServiceError", "message": "the request is not valid JSON."}
        token = req.get("token") if isinstance(req, dict) else None
        if not isinstance(token, str) or not hmac.compare_digest(token, self.token):
            self.oracle.ledger.add({"op": req.get("op") if isinstance(req, dict) else None, "ok": False,
                                    "error": "ServiceError", "message": "wrong token"})
            return {"ok": False, "error": "ServiceError",
                    "message": "wrong or missing service token; nothing was done."}
        return self.oracle.handle(req)


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
    args = parser.parse_args(argv)
    token = os.environ.pop(TOKEN_ENV, "")
    if not token:
        sys.exit(f"the service needs its token in ${TOKEN_ENV}.")
    truth = load_truth(args.truth)
    oracle = Oracle(tuple(truth["track"].tolist()), truth["pool_digits"], truth["public_digits"],
                    truth["private_digits"], Ledger(args.ledger))
    server = Server(args.socket, token, oracle)
    signal.signal(signal.SIGTERM, _stop)
    print("ready", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
