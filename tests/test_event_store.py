"""The live event's store and ranking on both backends: SQLite (the default) and PostgreSQL (a large event).

An event on a small made-up pool (no MNIST needed) is run through `event_server.EventServer` as the routes run it:
joins, charges, counted submissions, refusals, a restart on the same store, the board, the admin's CSV.
The ranking rule's tie-breaks (passed, fewest annotations, higher accuracy, earlier submission) are
checked on the rule itself and on the board built from each store.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from autograder.event import store
from autograder.event import server as event_server
from course import config
from helpers.events import SMALL_TRACK as TRACK, small_event



@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    return str(tmp_path / "events.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def test_rank_breaks_ties_by_accuracy_then_the_earlier_submission():
    def entry(pid, accuracy, annotations, submitted, count=0, joined=0.0):
        return {"id": pid, "accuracy": accuracy, "annotations": annotations, "submitted": submitted,
                "count": count, "joined": joined}

    rows = [entry(1, 0.95, 10, 5.0), entry(2, 0.99, 10, 9.0),  # same count: the higher accuracy first
            entry(3, 0.95, 10, 3.0),  # same count and accuracy as 1: the earlier submission first
            entry(4, 0.50, 0, 1.0),  # failed: after every passed one, whatever its count
            entry(5, 0.91, 2, 8.0),  # fewest annotations among the passed
            entry(6, None, None, None, count=4, joined=1.0), entry(7, None, None, None, count=1, joined=2.0)]
    ranked = store.rank(rows)
    assert [r["id"] for r in ranked] == [5, 2, 3, 1, 4, 7, 6]
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4, 5, None, None]
    assert [r["passed"] for r in ranked[:5]] == [True, True, True, True, False]
    at_target = store.rank([entry(1, config.TARGET_ACCURACY, 3, 1.0)])
    assert at_target[0]["passed"]  # the target itself passes


def test_an_event_on_either_store_charges_ranks_restarts_and_exports(url):
    pool_blob, truth_blob, truth = small_event()
    events = store.Store(url)
    code, admin = events.create_event(TRACK, "toy", "1", pool_blob, truth_blob)
    assert events.is_admin(code, admin) and events.blob(code, "pool") == pool_blob
    server = event_server.EventServer(events, rate=1e6, burst=10**6)
    c = [int(i) for i in np.flatnonzero(np.isin(truth["pool_digits"], TRACK))]
    private = truth["private_digits"]

    tokens = {}

    def join(name):
        tokens[name] = server.join(code, {"name": name})["result"]["token"]
        return events.participant(code, tokens[name])

    def annotate(who, indices):
        status, reply = server.op(who, {"op": "annotate", "indices": indices})
        assert status == 200, reply
        return reply["result"]

    def submit(who, n_wrong=0):
        predictions = private.copy()
        predictions[:n_wrong] = np.where(predictions[:n_wrong] == 7, 1, 7)
        status, reply = server.op(who, {"op": "score", "split": "private", "predictions": predictions.tolist()})
        assert status == 200, reply
        return reply["result"]

    # joined in this order; each later one wins its tie against an earlier one, so the store's order is no help
    ada, bo, cy, di, ed, fay = (join(n) for n in ("ada", "bo", "cy", "di", "ed", "fay"))
    assert annotate(ada, c[:3] + c[:2])["labels"] == truth["pool_digits"][c[:3] + c[:2]].tolist()
    annotate(bo, c[3:6])
    annotate(cy, c[6:9])
    annotate(di, c[:2])
    annotate(fay, c[:1])
    submit(di, n_wrong=20)  # failed, with the fewest annotations
    submit(cy)  # 3 annotations, 100%, submitted before bo
    submit(bo)  # 3 annotations, 100%, later than cy
    assert submit(ada, n_wrong=2)["accuracy"] == pytest.approx(38 / 40)  # 3 annotations, 95%
    status, reply = server.op(ada, {"op": "score", "split": "private", "predictions": private.tolist()})
    assert status == 409 and reply["error"] == "SubmissionRefusedError"
    status, reply = server.op(ed, {"op": "annotate", "indices": [c[0], 300]})
    assert status == 400 and reply["error"] == "OutOfRangeError"  # refused: charged nothing, logged
    expected = ["cy", "bo", "ada", "di", "ed", "fay"]  # ed and fay wait (no rank): fewer live annotations first

    def check(store_now, server_now):
        board = server_now.board(code)
        names = {p["display"]: p["name"] for p in map(dict, store_now.standings(code))}
        assert [names[r["name"]] for r in board["rows"]] == expected
        assert [r["rank"] for r in board["rows"]] == [1, 2, 3, 4, None, None]
        assert [r["live"] for r in board["rows"]] == [3, 3, 3, 2, 0, 1]
        assert board["submitted"] == 4 and board["participants"] == 6
        rows = list(csv.DictReader(io.StringIO(store_now.results_csv(code))))
        assert [r["name"] for r in rows] == expected and [r["passed"] for r in rows] == ["1", "1", "1", "0", "0", "0"]

    check(events, server)
    ledger = events.ledger(ada.id)
    assert [e["op"] for e in ledger] == ["annotate", "score", "score"] and [e["ok"] for e in ledger] == [True, True, False]
    assert any(f["name"] == "ed" and f["error"] == "OutOfRangeError" for f in events.failures(code))
    events.dispose()

    # a restart: a new store and server on the same database rebuild every participant's rules
    again_store = store.Store(url)
    again = event_server.EventServer(again_store, rate=1e6, burst=10**6)
    check(again_store, again)
    ada_again = again_store.participant(code, tokens["ada"])
    assert again.op(ada_again, {"op": "count"}) == (200, {"ok": True, "result": 3})
    status, reply = again.op(ada_again, {"op": "score", "split": "private", "predictions": private.tolist()})
    assert status == 409  # the counted submission is in the store
    saved = again_store.load_participant(ada.id)
    assert [i for i, _ in saved.charges] == c[:3] and saved.submission["annotations"] == 3
    status, reply = again.op(ada_again, {"op": "annotate", "indices": c[:3]})
    assert status == 200 and reply["result"]["count"] == 3  # repeats stay free after the restart
    again_store.dispose()
