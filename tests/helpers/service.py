"""The annotation service in the tests: grading data prepared once, a real `autograder.grading.service` process.

conftest.py's `prepared` (session) and `running` (per test) fixtures use these; a test that needs other
options (a request cap, its stderr in a file) calls `start` itself and `stop` when done.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from autograder.grading import prepare, service
from course import config, data

TOKEN = "t0ken-for-tests"
TRACK = (7, 1)


def prepare_run(root: Path) -> tuple[Path, prepare.Prepared, dict]:
    """Grading data and truth for track 7,1 with a fixed seed: (root, info, truth arrays)."""
    info = prepare.prepare(TRACK, root / "data", root / "truth.npz", seed=123)
    with np.load(info.truth_file) as f:
        truth = {k: f[k] for k in f.files}
    return root, info, truth


def start(prepared, tmp_path: Path, *extra: str, monkeypatch=None, log: Path | None = None):
    """Start a real service for `prepared`: (process, socket, ledger, truth).

    With `monkeypatch`, the kernel-side environment points at it (data folder, socket, token); with `log`,
    the service's stderr goes to that file (what the grader keeps as the service log).
    """
    root, info, truth = prepared
    truth_copy = tmp_path / "truth.npz"
    np.savez(truth_copy, **truth)
    sock, ledger = tmp_path / "s.sock", tmp_path / "ledger.jsonl"
    with open(log if log is not None else os.devnull, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "autograder.grading.service", "--socket", str(sock), "--truth", str(truth_copy),
             "--ledger", str(ledger), *extra], env={**os.environ, service.TOKEN_ENV: TOKEN},
            stdout=subprocess.PIPE, stderr=err if log is not None else None)
    assert process.stdout.readline().strip() == b"ready"
    assert not truth_copy.exists(), "the service deletes its truth file once read"
    if monkeypatch is not None:
        monkeypatch.setenv(config.ENV_DATA_DIR, str(root / "data"))
        monkeypatch.setenv(config.ENV_SERVICE, f"unix:{sock}")
        monkeypatch.setenv(config.ENV_SERVICE_TOKEN, TOKEN)
        data._cached_split.cache_clear()
    return process, sock, ledger, truth


def stop(process) -> None:
    process.terminate()
    process.wait(timeout=10)
    data._cached_split.cache_clear()


def ledger_entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def raw_request(sock, payload: bytes) -> dict:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        try:
            s.sendall(payload + b"\n")
        except (BrokenPipeError, ConnectionResetError):  # an oversized request: answered, then closed
            pass
        return json.loads(s.makefile("rb").readline())


def direct(sock, op: str, **fields) -> dict:
    """A request spoken straight to the socket with the right token, bypassing course."""
    return raw_request(sock, json.dumps({"op": op, "token": TOKEN, **fields}).encode())
