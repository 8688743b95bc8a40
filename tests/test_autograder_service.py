"""The annotation service and its client, the grading data, the store and the leaderboard.

Fast tests: a real service process on a real Unix socket, the real grading file
read back through `course.data`, but no notebook execution.
"""

from __future__ import annotations

import datetime as dt
import json
import socket

import numpy as np
import pytest

from autograder.grading import prepare
from autograder.results import leaderboard, store
from course import config, data, evaluate, grading, oracle, protocol
from course.exceptions import SubmissionRefusedError
from course.service_client import ServiceBackend
from helpers import service as service_process
from helpers.service import TOKEN, TRACK, ledger_entries, raw_request
from helpers.rows import row as stored_row

CAP = 12  # requests the `capped` service answers


@pytest.fixture()
def capped(prepared, tmp_path, monkeypatch):
    """A live service that answers only CAP requests."""
    process, sock, ledger, truth = service_process.start(prepared, tmp_path, "--max-requests", str(CAP),
                                                         monkeypatch=monkeypatch)
    yield process, sock, ledger, truth
    service_process.stop(process)


# --- grading data -------------------------------------------------------------------


def test_grading_file_has_no_labels_and_is_shuffled(prepared, ds):
    root, info, truth = prepared
    with np.load(info.data_file) as f:
        assert set(f.files) == {"track", "images", "labels", "test_images", "test_labels", "private_test_images"}
        labels, images = f["labels"], f["images"]
        assert not np.isin(labels, TRACK).any() and (labels == data.C).sum() == len(ds.c_indices)
        assert not np.array_equal(images[:50], ds.images[:50]), "the pool order is shuffled"
        assert not np.isin(f["test_labels"], TRACK).any()
    # the truth matches what the kernel sees, index for index
    assert np.array_equal(data.merge(truth["pool_digits"], TRACK), labels)
    assert np.isin(truth["private_digits"], TRACK).all() and np.isin(truth["public_digits"], TRACK).all()
    other = prepare.prepare(TRACK, root / "other", root / "other-truth.npz")  # a secret seed
    with np.load(other.data_file) as f:
        assert not np.array_equal(f["labels"], labels)


def test_course_data_reads_the_grading_file(prepared, monkeypatch):
    root, info, truth = prepared
    monkeypatch.setenv(config.ENV_DATA_DIR, str(root / "data"))
    data._cached_split.cache_clear()
    try:
        ds = data.load()
        assert ds.source == "grading" and len(ds.c_indices) == int(np.isin(truth["pool_digits"], TRACK).sum())
        assert len(evaluate.track_test_images("private")) == len(truth["private_digits"])
        # without a service the oracle has no labels at all (the LocalBackend cheat is refused)
        with pytest.raises(oracle.ServiceError, match="holds no labels"):
            oracle.annotate(ds.c_indices[:1])
    finally:
        data._cached_split.cache_clear()


# --- the service through course.oracle ---------------------------------------------------


def test_oracle_uses_the_service(running):
    sock, ledger, truth = running
    ds = data.load()
    assert isinstance(oracle.backend(), ServiceBackend)
    idx = ds.c_indices[:5]
    assert oracle.annotate(idx).tolist() == truth["pool_digits"][idx].tolist()
    assert oracle.annotate(idx[:2]).tolist() == truth["pool_digits"][idx[:2]].tolist()  # repeats are free
    assert oracle.count() == 5 and oracle.budget() is None  # from the replies: no request
    assert [a.index for a in oracle.history()] == idx.tolist()
    # a reset of the kernel-side state changes nothing: the count lives in the service
    oracle._BACKENDS.clear()
    assert oracle.count() == 5
    ops = [e["op"] for e in ledger_entries(ledger)]
    assert ops == ["hello", "annotate", "annotate", "history", "hello"], "one request per annotate call"


def test_listeners_cost_no_request(running):
    sock, ledger, truth = running
    ds = data.load()
    seen = []
    oracle.subscribe(lambda n, cap: seen.append((n, cap)))
    oracle.set_budget(10)
    for i in ds.c_indices[:3]:
        oracle.annotate(int(i))
    assert seen == [(0, 10), (1, 10), (2, 10), (3, 10)]
    assert [e["op"] for e in ledger_entries(ledger)] == ["hello", "set_budget"] + ["annotate"] * 3


@pytest.mark.parametrize("bad, error, message", [
    ("out_of_range", oracle.OutOfRangeError, "outside the pool"),
    ("not_in_c", oracle.NotInCError, "not in class C"),
    ("float", oracle.IndexTypeError, "floats"),
])
def test_refused_requests_charge_nothing(running, bad, error, message):
    sock, ledger, truth = running
    ds = data.load()
    good = list(ds.c_indices[:3])
    wrong = {"out_of_range": good + [len(ds.images)], "not_in_c": good + [int(np.flatnonzero(ds.labels != data.C)[0])],
             "float": [1.5, 2.0]}[bad]
    with pytest.raises(error, match=message):
        oracle.annotate(wrong)
    assert oracle.count() == 0


def test_budget_is_enforced_by_the_service(running):
    sock, ledger, truth = running
    ds = data.load()
    oracle.set_budget(3)
    assert oracle.budget() == 3
    oracle.annotate(ds.c_indices[:2])
    with pytest.raises(oracle.BudgetExceededError, match="only 1 of the budget of 3"):
        oracle.annotate(ds.c_indices[2:5])
    assert oracle.count() == 2 and oracle.remaining() == 1


def test_submit_scores_the_private_split_once(running, capsys):
    sock, ledger, truth = running
    ds = data.load()
    oracle.annotate(ds.c_indices[:4])
    perfect = truth["private_digits"]
    result = grading.submit(lambda images: perfect.copy())
    assert result.split == "private" and result.accuracy == 1.0 and result.annotations == 4 and result.passed
    assert "PASSED" in capsys.readouterr().out
    with pytest.raises(oracle.OracleError, match="closes the oracle at the counted submission"):
        oracle.annotate(ds.c_indices[4:6])  # a label after the counted submission would count on no row
    with pytest.raises(SubmissionRefusedError, match=r"only the first submission.*100\.0%.*4 annotations"):
        grading.submit(lambda images: np.full(len(images), 7))
    assert oracle.count() == 4
    entries = ledger_entries(ledger)
    scores = [e for e in entries if e["op"] == "score"]
    assert [(e["split"], e["ok"], e["error"]) for e in scores] == [
        ("private", True, None), ("private", False, "SubmissionRefusedError")]
    summary = protocol.summarize(protocol.read_ledger(ledger.read_text()))
    assert summary == protocol.LedgerSummary(accuracy=1.0, annotations=4, n_images=len(perfect),
                                             evaluations=0, submissions=2)


def test_service_validates_predictions_itself(running):
    """A kernel that bypasses course.evaluate's checks is refused by the service too."""
    sock, ledger, truth = running
    n = len(truth["private_digits"])
    backend = ServiceBackend(f"unix:{sock}", TOKEN, TRACK)
    for bad, message in [([7] * (n - 1), f"expected {n} predictions"), ([7.0] * n, "integer digits"),
                         ([data.C] * n, "only the track's digits"), ([True] * n, "integer digits")]:
        with pytest.raises(evaluate.PredictionError, match=message):
            backend._request("score", split="private", predictions=bad)
    with pytest.raises(oracle.ServiceError, match="split"):
        backend._request("score", split="secret", predictions=[7] * n)
    assert not [e for e in ledger_entries(ledger) if e["op"] == "score" and e["ok"]]


def test_request_cap(capped):
    process, sock, ledger, truth = capped
    backend = ServiceBackend(f"unix:{sock}", TOKEN, TRACK)  # request 1
    for _ in range(CAP - 1):
        backend.history()
    for _ in range(5):
        with pytest.raises(oracle.ServiceError, match=f"more than {CAP} requests"):
            backend.history()
    service_process.stop(process)  # the service writes its closing tally on SIGTERM
    entries = ledger_entries(ledger)
    assert len(entries) == CAP + 2 and not entries[CAP]["ok"] and entries[CAP]["op"] == "history"
    assert entries[-1]["op"] is None and entries[-1]["message"].startswith("4 more requests were refused")


def test_oversized_requests_and_floods_keep_the_ledger_small(running):
    """A 36 MB flood: oversized lines are refused unread, big refused requests keep ~32 indices each."""
    sock, ledger, truth = running
    too_big = b'{"op": "annotate", "token": "' + TOKEN.encode() + b'", "indices": [' + b"1," * (1 << 20)
    reply = raw_request(sock, too_big)
    assert not reply["ok"] and "refused unread" in reply["message"]
    huge_list = list(range(0, 120_000))  # ~850 kB: below the size cap, out of range past 60000
    payload = json.dumps({"op": "annotate", "token": TOKEN, "indices": huge_list}).encode()
    assert len(payload) < protocol.MAX_REQUEST_BYTES
    sent = len(too_big)
    while sent < 36e6:
        assert "outside the pool" in raw_request(sock, payload)["message"]
        sent += len(payload)
    size = ledger.stat().st_size
    assert size < 40 * 1024, f"a {sent / 1e6:.0f} MB flood grew the ledger to {size} bytes"
    entries = protocol.read_ledger(ledger.read_text())
    assert all(len(e.get("indices") or []) <= protocol.LEDGER_MAX_INDICES for e in entries)
    assert entries[-1]["n_indices"] == len(huge_list)
    assert ServiceBackend(f"unix:{sock}", TOKEN, TRACK).count() == 0


def test_a_silent_connection_does_not_stall_the_service(prepared, tmp_path, monkeypatch):
    process, sock, ledger, truth = service_process.start(prepared, tmp_path, "--idle-timeout", "0.5",
                                                         monkeypatch=monkeypatch)
    try:
        with socket.socket(socket.AF_UNIX) as idle:
            idle.connect(str(sock))
            idle.sendall(b'{"op": "count"')  # no newline, and then nothing
            with socket.socket(socket.AF_UNIX) as other:
                other.settimeout(10)
                other.connect(str(sock))
                other.sendall(json.dumps({"op": "count", "token": TOKEN}).encode() + b"\n")
                assert json.loads(other.makefile("rb").readline()) == {"ok": True, "result": 0}
    finally:
        service_process.stop(process)


def test_client_refuses_to_send_an_oversized_request(running):
    sock, ledger, truth = running
    backend = ServiceBackend(f"unix:{sock}", TOKEN, TRACK)
    with pytest.raises(oracle.ServiceError, match="nothing was sent"):
        backend._request("annotate", indices=[59_999] * 200_000)
    assert [e["op"] for e in ledger_entries(ledger)] == ["hello"]


def test_tampering_with_the_socket_is_refused_and_logged(running):
    sock, ledger, truth = running
    assert raw_request(sock, json.dumps({"op": "count", "token": "guess"}).encode())["message"].startswith("wrong")
    assert "unknown request" in raw_request(sock, json.dumps({"op": "reset", "token": TOKEN}).encode())["message"]
    assert "not valid JSON" in raw_request(sock, b"{nope")["message"]
    backend = ServiceBackend(f"unix:{sock}", TOKEN, TRACK)
    with pytest.raises(oracle.IndexTypeError):
        backend._request("annotate", indices=[True, 3])
    with pytest.raises(oracle.OracleError, match="non-negative"):
        backend._request("set_budget", n=-1)
    assert backend.count() == 0
    refused = [e for e in ledger_entries(ledger) if not e["ok"]]
    assert len(refused) == 5 and all("token" not in e for e in ledger_entries(ledger))


def test_client_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ENV_SERVICE, f"unix:{tmp_path / 'none.sock'}")
    with pytest.raises(oracle.ServiceError, match="cannot reach the annotation service"):
        ServiceBackend.from_env(TRACK)


def test_client_refuses_another_track(running):
    sock, ledger, truth = running
    with pytest.raises(oracle.ServiceError, match="grades track 7,1, not 4,9"):
        ServiceBackend(f"unix:{sock}", TOKEN, (4, 9))


# --- the store and the leaderboard --------------------------------------------------------


def make_row(student, accuracy, annotations, status="ok", **kw):
    return stored_row(student, accuracy, annotations, assignment="a", status=status, score=kw.get("score", 1.0),
                    detail=kw.get("detail", "fine"))


ROWS = [make_row("bea", 0.95, 30), make_row("al", 0.99, 30), make_row("cy", 0.91, 12),
        make_row("dee", 0.80, 3), make_row("eve", None, None, status="timeout", detail="stopped"),
        make_row("fay", 0.93, 30)]


def test_store_replaces_rows_and_keeps_one_line(tmp_path):
    for row in ROWS:
        store.save(tmp_path, row)
    store.save(tmp_path, make_row("al", 0.97, 40, detail="line one\nline two"))
    rows = {r.student: r for r in store.load(tmp_path, "a")}
    assert len(rows) == 6 and rows["al"].annotations == 40 and rows["al"].detail == "line one line two"
    assert rows["eve"].accuracy is None and rows["eve"].passed is False
    with pytest.raises(ValueError, match="status"):
        store.save(tmp_path, make_row("x", 1.0, 1, status="great"))
    assert store.load(tmp_path, "other") == []


def test_ranking():
    ranked = leaderboard.rank(ROWS)
    assert [(r, row.student) for r, row in ranked] == [
        (1, "cy"), (2, "al"), (3, "bea"), (4, "fay"), (5, "dee"), (6, "eve")]
    tie = leaderboard.rank([make_row("a1", 0.95, 5), make_row("a2", 0.95, 5), make_row("a3", 0.9, 9)])
    assert [r for r, _ in tie] == [1, 1, 3]


def test_leaderboard_files(tmp_path):
    for row in ROWS:
        store.save(tmp_path, row)
    paths = leaderboard.build(tmp_path, "a", now=dt.datetime(2026, 11, 27, 8, 30, tzinfo=dt.timezone.utc))
    lines = paths["csv"].read_text().splitlines()
    assert lines[0] == ",".join(leaderboard.CSV_COLUMNS)
    assert lines[0].startswith("rank,student,accuracy,annotations,passed,score,max_score,status,")
    assert lines[1].startswith("1,cy,0.91,12,yes,1,2,ok,") and lines[-1].startswith("6,eve,,,no,")
    page = paths["html"].read_text()
    assert "2026-11-27 08:30 UTC" in page and "at least <strong>90%</strong>" in page and "<script>" in page
    assert page.count("<tr class=\"passed\">") == 4
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_leaderboard_escapes_html(tmp_path):
    store.save(tmp_path, make_row("<script>alert(1)</script>", 0.95, 3, detail="<b>kernel</b> & text"))
    page = leaderboard.build(tmp_path, "a")["html"].read_text()
    assert "<script>alert(1)" not in page and "&lt;script&gt;" in page  # the name: escaped text
    assert "kernel" not in page and leaderboard.DETAIL_WITHHELD in page  # the detail: only the grader's words
