"""Several event-server workers on one PostgreSQL store agree (`autograder.event.shared`).

Two workers are two applications (``create_app(..., shared=True)``) on one database, as ``autograder serve
--workers 2`` runs them: a participant's rate limit is counted across both, a participant continues on the
other worker where the first left off (the rules rebuilt from the store), a board page open on one worker
sees an annotation answered by the other, the open-stream caps count both workers' streams, and a close on
one refuses the other's requests. A small made-up pool: no MNIST needed. Skipped without PostgreSQL
(tests/helpers/postgres.py), never in CI.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time

import httpx
import numpy as np
import pytest

from autograder.event import app as event_app
from autograder.event import cli, shared, store
from helpers.events import SMALL_TRACK as TRACK, small_event



@pytest.fixture
def event(postgres_url):
    """The event: code, admin token, truth, the C indices, and `worker(**limits)` making a worker's app."""
    pool_blob, truth_blob, truth = small_event()
    events = store.Store(postgres_url)
    code, admin = events.create_event(TRACK, "toy", "1", pool_blob, truth_blob)
    stores = [events]

    def worker(rate: float = 1e6, burst: int = 10**6):
        held = store.Store(postgres_url)
        stores.append(held)
        return event_app.create_app(held, rate=rate, burst=burst, shared=True)

    c = [int(i) for i in np.flatnonzero(np.isin(truth["pool_digits"], TRACK))]
    yield {"code": code, "admin": admin, "truth": truth, "c": c, "worker": worker, "url": postgres_url}
    for held in stores:
        held.dispose()


class _Uvicorn:
    """One worker's app served by uvicorn in a thread, on a port of its own."""

    def __init__(self, app):
        import uvicorn

        from tests.helpers.events import free_port

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@contextlib.contextmanager
def served(app):
    """A client of `app` served by uvicorn (one worker)."""
    with _Uvicorn(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def join(client: httpx.Client, code: str, name: str) -> str:
    reply = client.post(f"/api/events/{code}/join", json={"name": name})
    assert reply.status_code == 200, reply.text
    return reply.json()["result"]["token"]


def annotate(client: httpx.Client, code: str, token: str, indices: list[int]):
    return client.post(f"/api/events/{code}/op", json={"op": "annotate", "indices": indices},
                       headers={"Authorization": f"Bearer {token}"})


def test_a_rate_limit_is_counted_across_workers(event):
    code, c = event["code"], event["c"]
    with served(event["worker"](rate=0.001, burst=3)) as a, served(event["worker"](rate=0.001, burst=3)) as b:
        token = join(a, code, "ada")
        replies = [annotate(client, code, token, [c[k]]) for k, client in enumerate([a, b, a, b])]
    assert [r.status_code for r in replies] == [200, 200, 200, 429]  # one bucket of 3 for both, not 3 each
    assert replies[3].json()["error"] == "ServiceError" and "requests per second" in replies[3].json()["message"]
    assert replies[2].json()["result"]["count"] == 3


def test_a_participant_continues_on_the_other_worker(event):
    code, c, truth = event["code"], event["c"], event["truth"]
    with served(event["worker"]()) as a, served(event["worker"]()) as b:
        token = join(a, code, "ada")
        assert annotate(a, code, token, c[:5]).json()["result"]["count"] == 5
        assert annotate(b, code, token, c[5:10]).json()["result"]["count"] == 10  # b rebuilt ada's rules
        assert annotate(b, code, token, c[:5]).json()["result"]["count"] == 10  # asking again is free, on b too
        assert annotate(a, code, token, c[10:12]).json()["result"]["count"] == 12  # a saw b's charges
        predictions = truth["private_digits"].tolist()
        first = b.post(f"/api/events/{code}/op", json={"op": "score", "split": "private", "predictions": predictions},
                       headers={"Authorization": f"Bearer {token}"})
        again = a.post(f"/api/events/{code}/op", json={"op": "score", "split": "private", "predictions": predictions},
                       headers={"Authorization": f"Bearer {token}"})
        assert first.status_code == 200 and first.json()["result"]["accuracy"] == 1.0
        assert again.status_code == 409 and again.json()["error"] == "SubmissionRefusedError"  # a knows of b's
        admin = a.get(f"/api/admin/{code}", headers={"Authorization": f"Bearer {event['admin']}"}).json()
    (row,) = admin["participants"]
    assert (row["annotations"], row["submitted_annotations"], row["accuracy"]) == (12, 12, 1.0)
    assert row["refusals"]["SubmissionRefusedError"]["n"] == 1


def test_a_call_in_parts_may_send_each_part_to_another_worker(event):
    code, c = event["code"], event["c"]
    with served(event["worker"]()) as a, served(event["worker"]()) as b:
        token = join(a, code, "ada")

        def part(client, k, indices, more, batch="b1"):
            return client.post(f"/api/events/{code}/op", headers={"Authorization": f"Bearer {token}"},
                               json={"op": "annotate", "indices": indices, "batch": batch, "part": k, "more": more})

        assert part(a, 0, c[:3], True).json()["result"] == {"kept": 3}
        assert part(b, 1, c[3:5], True).json()["result"] == {"kept": 5}  # b found a's part 0
        whole = part(a, 2, c[5:6], False).json()["result"]
        assert whole["count"] == 6 and len(whole["labels"]) == 6  # one call of 6, charged at its last part
        assert part(b, 0, c[6:8], True).status_code == 200
        out_of_order = part(a, 2, c[8:9], False)  # part 1 never came: the call is dropped, nothing charged
        assert out_of_order.status_code == 409 and "does not follow" in out_of_order.json()["message"]
        assert part(b, 1, c[8:9], False).status_code == 409  # dropped on every worker
        assert annotate(a, code, token, c[:1]).json()["result"]["count"] == 6  # a repeat: free


def test_a_close_on_one_worker_refuses_the_other_workers_requests(event):
    code, c = event["code"], event["c"]
    with served(event["worker"]()) as a, served(event["worker"]()) as b:
        token = join(a, code, "ada")
        assert annotate(b, code, token, c[:1]).status_code == 200
        assert a.post(f"/api/admin/{code}/close", headers={"Authorization": f"Bearer {event['admin']}"}).status_code == 200
        refused = annotate(b, code, token, c[1:2])
        assert refused.status_code == 403 and "is closed" in refused.json()["message"]
        assert b.post(f"/api/events/{code}/join", json={"name": "late"}).status_code == 403


def test_the_open_stream_caps_count_every_workers_streams(event):
    engine = store.Store(event["url"]).engine
    one, other = (shared.SharedStreams(shared.Shared(engine), per_address=2, total=3) for _ in range(2))
    first, _ = one.enter("10.0.0.1")
    second, _ = other.enter("10.0.0.1")
    held, why = one.enter("10.0.0.1")
    assert held is None and "2 board streams are open from your address" in why  # one's 1 + other's 1
    third, _ = other.enter("10.0.0.2")
    newcomer, why = one.enter("10.0.0.3")  # all 3 open: the oldest stream of the address holding most goes
    assert newcomer is not None and why is None
    other.refresh()
    one.refresh()
    assert first.evicted and not second.evicted and not third.evicted
    one.leave(first)
    other.leave(second)
    again, _ = one.enter("10.0.0.1")
    assert again is not None
    for held in (third, newcomer, again):
        (one if held in one.mine.values() else other).leave(held)
    assert not one.mine and not other.mine
    engine.dispose()


def test_several_workers_need_postgresql(tmp_path, capsys):
    assert cli.main(["serve", "--db", str(tmp_path / "events.db"), "--workers", "2", "--port", "1"]) == 2
    assert "--workers 2 needs a PostgreSQL store" in capsys.readouterr().err


@pytest.mark.slow
def test_a_board_page_on_one_worker_sees_an_annotation_answered_by_the_other(event):
    code, c = event["code"], event["c"]
    with _Uvicorn(event["worker"]()) as a, _Uvicorn(event["worker"]()) as b:
        token = httpx.post(f"{a}/api/events/{code}/join", json={"name": "ada"}).json()["result"]["token"]
        seen: list[int] = []
        with httpx.stream("GET", f"{b}/api/events/{code}/stream", timeout=30) as page:  # the page is on b
            lines = page.iter_lines()
            for line in lines:
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:])["rows"][0]["live"])
                    break
            reply = httpx.post(f"{a}/api/events/{code}/op", json={"op": "annotate", "indices": c[:4]},
                               headers={"Authorization": f"Bearer {token}"})  # answered by a
            assert reply.status_code == 200
            for line in lines:  # bounded: the stream's read timeout
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:])["rows"][0]["live"])
                    if seen[-1] == 4:
                        break
    assert seen[0] == 0 and seen[-1] == 4


@pytest.mark.slow
def test_serve_runs_several_workers_on_postgresql(event, tmp_path):
    """``autograder serve --workers 2``: each request on a new connection (any worker); the counts add up."""
    import subprocess
    import sys

    from tests.helpers.events import REPO, free_port

    code, c = event["code"], event["c"]
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "autograder.event.cli", "serve", "--db", event["url"],
                                "--port", str(port), "--workers", "2", "--rate", "1000"], cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        token = httpx.post(f"{url}/api/events/{code}/join", json={"name": "ada"}, timeout=30).json()["result"]["token"]
        counts = [httpx.post(f"{url}/api/events/{code}/op", json={"op": "annotate", "indices": c[k:k + 2]},
                             headers={"Authorization": f"Bearer {token}"}, timeout=30).json()["result"]["count"]
                  for k in range(0, 40, 2)]
        assert counts == list(range(2, 42, 2))
        live = []
        for _ in range(100):  # bounded; a worker that answered none of them sees the count at its next poll
            live.append(httpx.get(f"{url}/api/events/{code}/board", timeout=30).json()["rows"][0]["live"])
            if live[-1] == 40:
                break
            time.sleep(0.1)
        assert live[-1] == 40
    finally:
        import os
        import signal

        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
