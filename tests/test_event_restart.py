"""kill -9 of the event server in the middle of a load, then a restart: nothing that got a reply is lost.

Participants annotate in small batches (and some submit) from threads; the server is
killed with SIGKILL while they run, restarted on the same store, and every participant's
count equals their own tally of answered requests (plus, at most, the one request that
was in flight when the server died), their ledger is in the same order, every answered
submission is on the board, and the rules rebuilt from the store go on charging correctly.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.helpers import events as es

N_PARTICIPANTS = 6
BATCH = 3
MAX_BATCHES = 300  # per participant: bounds the load whatever the machine's speed
LOAD_TIMEOUT_S = 600  # a hang bound for reaching the load, not a speed claim


@pytest.fixture
def event(tmp_path_factory):
    with es.own(tmp_path_factory, "restart", "restart", rate=1000.0) as started:
        yield started


def test_kill_9_mid_load_loses_nothing_that_was_answered(event):
    server, code, truth = event["server"], event["code"], event["truth"]
    c_all = np.flatnonzero(np.isin(truth["pool_digits"], truth["track"]))
    stop = threading.Event()
    clients, errors = [], []

    def participant(k: int) -> None:
        try:
            load(k)
        except BaseException as exc:  # reported to the test's own thread below (an assert here would be lost)
            errors.append((k, repr(exc)))
        finally:
            progress.set()

    def load(k: int) -> None:
        me = {"k": k, "name": f"load {k}", "charged": [], "tally": 0, "pending": [], "submitted": None}
        clients.append(me)
        status, reply = es.call(f"{server.url}/api/events/{code}/join", {"name": me["name"]})
        me["token"] = reply["result"]["token"]
        mine = c_all[k::N_PARTICIPANTS]
        for b in range(MAX_BATCHES):
            if stop.is_set():
                return
            batch = [int(i) for i in mine[b * BATCH:(b + 1) * BATCH]]
            if k % 2 == 0 and b == 5:  # half of them submit along the way
                request = {"op": "score", "split": "private", "predictions": truth["private_digits"].tolist()}
            else:
                request = {"op": "annotate", "indices": batch}
            me["pending"] = batch if request["op"] == "annotate" else []
            try:
                status, reply = es.call(f"{server.url}/api/events/{code}/op", request, token=me["token"])
            except Exception:  # the server died under this request
                return
            me["pending"] = []
            progress.set()
            assert status == 200, reply
            if request["op"] == "score":  # the oracle closes at the counted submission: this one is done
                me["submitted"] = reply["result"]
                return
            else:
                me["charged"] += batch
                me["tally"] = reply["result"]["count"]

    def ready() -> bool:  # every participant has some answered charges (and half of them a submission)
        return len(clients) == N_PARTICIPANTS and all(
            c["submitted"] is not None if c["k"] % 2 == 0 else c["tally"] >= 30 for c in clients)

    progress = threading.Event()  # set by a participant after each answered request
    threads = [threading.Thread(target=participant, args=(k,), daemon=True) for k in range(N_PARTICIPANTS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + LOAD_TIMEOUT_S  # a hang bound only: the wait ends when the load is ready
    while not ready() and not errors and time.monotonic() < deadline:
        progress.wait(1.0)
        progress.clear()
    server.kill9()
    stop.set()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    assert ready(), [(c["name"], c["tally"], c["submitted"]) for c in clients]

    server.start()  # the same store, a new process
    status, view = es.call(f"{server.url}/api/admin/{code}", token=event["admin"])
    stored = {p["name"]: p for p in view["participants"]}
    for me in clients:
        row = stored[me["name"]]
        assert row["annotations"] in (me["tally"], me["tally"] + len(me["pending"])), me["name"]
        assert me["tally"] == len(me["charged"])
        status, history = es.call(f"{server.url}/api/events/{code}/op", {"op": "history"}, token=me["token"])
        assert [r[1] for r in history["result"]][:me["tally"]] == me["charged"]  # same order
        if me["submitted"] is not None:
            assert row["accuracy"] == me["submitted"]["accuracy"]
            assert row["submitted_annotations"] == me["submitted"]["count"]
            status, reply = es.call(f"{server.url}/api/events/{code}/op", {"op": "score", "split": "private",
                                    "predictions": truth["private_digits"].tolist()}, token=me["token"])
            assert status == 409  # the counted submission survived the crash: no second one
        # the rebuilt rules keep charging: a repeat is free, a new index costs one
        status, reply = es.call(f"{server.url}/api/events/{code}/op",
                                {"op": "annotate", "indices": me["charged"][:2]}, token=me["token"])
        assert status == 200 and reply["result"]["count"] == row["annotations"]
    status, board = es.call(f"{server.url}/api/events/{code}/board")
    assert board["submitted"] == sum(c["submitted"] is not None for c in clients) > 0  # the board is back
