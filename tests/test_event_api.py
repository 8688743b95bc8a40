"""The live event server's API against a real uvicorn server on 127.0.0.1 (issue 14, step 1).

Join (a taken name refused, the same machine rejoins), the event's pool, annotations
charged through `course.protocol.Rules` with the same messages as the local ledger, one
counted submission, the admin routes, and bad input: every refusal is a 4xx JSON body
that says what to do, and nothing is charged.
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest

from autograder.event import pool, store
from course import config, protocol
from tests.helpers import events as es


@pytest.fixture(scope="module")
def event(tmp_path_factory):
    return es.live(tmp_path_factory, "api")


def join(event, name):
    status, reply = es.call(f"{event['url']}/api/events/{event['code']}/join", {"name": name})
    assert status == 200, reply
    return reply["result"]


def op(event, token, **request):
    return es.call(f"{event['url']}/api/events/{event['code']}/op", request, token=token)


def local_rules(truth):
    """The participant's local ledger on the same data: the messages must match the server's."""
    return protocol.Rules(tuple(truth["track"].tolist()), truth["pool_digits"],
                          {protocol.PUBLIC: truth["public_digits"], protocol.PRIVATE: truth["private_digits"]},
                          exam=True)


def c_indices(truth, k, start=0):
    return np.flatnonzero(np.isin(truth["pool_digits"], truth["track"]))[start:start + k].tolist()


def test_join_gives_a_pseudonym_and_refuses_a_taken_name(event):
    first = join(event, "Ada Lovelace")
    assert first["track"] == [7, 1] and first["assignment"] == "03_clustering"
    assert first["display_name"] != "Ada Lovelace" and len(first["display_name"].split()) >= 2
    status, reply = es.call(f"{event['url']}/api/events/{event['code']}/join", {"name": "Ada Lovelace"})
    assert status == 409 and reply["ok"] is False and "already taken" in reply["message"]
    status, again = es.call(f"{event['url']}/api/events/{event['code']}/join",
                            {"name": "Ada Lovelace", "token": first["token"]})
    assert status == 200 and again["result"]["rejoined"] and again["result"]["token"] == first["token"]
    for bad in ({"name": ""}, {"name": "x" * 41}, {"name": "a\nb"}, ["Ada"], {"name": 3}):
        status, reply = es.call(f"{event['url']}/api/events/{event['code']}/join", bad)
        assert status == 400 and reply["ok"] is False and reply["message"], bad


def test_unknown_code_and_token_are_refused(event):
    status, reply = es.call(f"{event['url']}/api/events/NOPE42/join", {"name": "x"})
    assert status == 404 and "no event with join code" in reply["message"]
    status, reply = op(event, "not-a-token", op="count")
    assert status == 401 and "course.event.join" in reply["message"]
    status, reply = es.call(f"{event['url']}/api/events/{event['code']}/op", {"op": "count"})
    assert status == 401 and "join first" in reply["message"]
    status, reply = es.call(f"{event['url']}/api/events/{event['code']}/pool")
    assert status == 401


def test_pool_has_merged_labels_and_no_label_of_c(event):
    token = join(event, "pool reader")["token"]
    status, blob = es.call(f"{event['url']}/api/events/{event['code']}/pool", token=token)
    assert status == 200 and isinstance(blob, bytes)
    with np.load(io.BytesIO(blob)) as f:
        assert sorted(f.files) == ["images", "labels", "private_test_images", "test_images", "test_labels", "track"]
        labels, images = f["labels"], f["images"]
        assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
        assert f["private_test_images"].shape[0] == len(event["truth"]["private_digits"])
        in_c = np.isin(event["truth"]["pool_digits"], event["truth"]["track"])
        assert np.all(labels[in_c] == config.MERGED_LABEL)  # no original label of C
        assert np.array_equal(labels[~in_c], event["truth"]["pool_digits"][~in_c])  # shuffled with the truth
        assert not set(f["test_labels"].tolist()) & {7, 1}
    assert len(blob) < 16e6  # compressed (MNIST raw: 55 MB)


def test_annotate_is_charged_with_the_local_rules_messages(event):
    token = join(event, "annotator")["token"]
    truth, rules = event["truth"], local_rules(event["truth"])
    idx = c_indices(truth, 5)
    status, reply = op(event, token, op="annotate", indices=idx + idx[:2])
    assert status == 200 and reply["result"]["count"] == 5
    assert reply["result"]["labels"] == truth["pool_digits"][idx + idx[:2]].tolist()
    not_c = int(np.flatnonzero(~np.isin(truth["pool_digits"], truth["track"]))[0])
    bad_requests = [
        {"op": "annotate", "indices": [idx[0], not_c]},  # NotInCError
        {"op": "annotate", "indices": [idx[0], 60000]},  # OutOfRangeError
        {"op": "annotate", "indices": [-1]},
        {"op": "annotate", "indices": [1.5]},  # IndexTypeError
        {"op": "annotate", "indices": "12"},
        {"op": "annotate", "indices": [2**70]},
        {"op": "nope"},
        {"op": "score", "split": "public", "predictions": [7]},  # exam mode: never a public score
    ]
    for request in bad_requests:
        status, reply = op(event, token, **request)
        expected = rules.handle(request)
        assert 400 <= status < 500 and reply == expected, request  # same kind, same message
        assert reply["message"]
    status, reply = op(event, token, op="count")
    assert status == 200 and reply["result"] == 5  # nothing charged by any refusal
    status, reply = op(event, token, op="history")
    assert [row[1] for row in reply["result"]] == idx


def test_bad_bodies_are_refused_and_charge_nothing(event):
    token = join(event, "bad bodies")["token"]
    url = f"{event['url']}/api/events/{event['code']}/op"
    status, reply = es.call(url, token=token, raw=b"{not json")
    assert status == 400 and "not valid JSON" in reply["message"]
    status, reply = es.call(url, token=token, raw=b'{"op": "annotate", "indices": [' + b"1," * 600_000 + b"1]}")
    assert status == 413 and "larger than" in reply["message"]
    try:  # far past the cap: refused without being read (413, or the connection closed)
        status, reply = es.call(url, token=token, raw=b"[" + b"1," * 5_000_000 + b"1]")
        assert status == 413
    except OSError:
        pass
    status, reply = es.call(url, token=token, raw=json.dumps(["annotate"]).encode())
    assert status == 400 and reply["ok"] is False
    status, reply = op(event, token, op="budget")
    assert status == 200
    status, reply = op(event, token, op="count")
    assert reply["result"] == 0


def test_one_counted_submission(event):
    joined = join(event, "submitter")
    token, display = joined["token"], joined["display_name"]
    truth = event["truth"]
    idx = c_indices(truth, 3, start=10)
    op(event, token, op="annotate", indices=idx)
    private = truth["private_digits"]
    for wrong in ([7] * (len(private) - 1), [3] * len(private), [7.0] * len(private)):
        status, reply = op(event, token, op="score", split="private", predictions=wrong)
        assert status == 400 and reply["error"] == "PredictionError", reply  # nothing scored, still to come
    status, reply = op(event, token, op="score", split="private", predictions=private.tolist())
    assert status == 200 and reply["result"] == {"split": "private", "accuracy": 1.0, "count": 3, "n": len(private)}
    status, reply = op(event, token, op="score", split="private", predictions=private.tolist())
    assert status == 409 and reply["error"] == "SubmissionRefusedError"
    assert "one submission per participant" in reply["message"] and "charged nothing" in reply["message"]
    status, reply = op(event, token, op="annotate", indices=idx + c_indices(truth, 1, start=20))
    assert status == 400 and "sells you no new label" in reply["message"]  # the oracle closed at the submission
    status, reply = op(event, token, op="annotate", indices=idx)
    assert status == 200 and reply["result"]["count"] == 3  # repeats stay free
    status, reply = op(event, token, op="score", split="public", predictions=[7])
    assert status == 409 and reply == local_rules(truth).handle({"op": "score", "split": "public"})  # held-out off
    status, board = es.call(f"{event['url']}/api/events/{event['code']}/board")
    [row] = [r for r in board["rows"] if r["name"] == display]
    assert row["passed"] and row["accuracy"] == 1.0 and row["annotations"] == 3 and row["live"] == 3
    ranked = [r for r in board["rows"] if r["rank"] is not None]
    assert [r["rank"] for r in ranked] == list(range(1, len(ranked) + 1)) and row in ranked  # the order: test_event_store
    assert "fewest annotations" in board["rule"]
    assert all(r["name"] != "submitter" for r in board["rows"])  # pseudonyms only
    assert token not in json.dumps(board)


def test_rate_limit_per_participant(tmp_path, tmp_path_factory):
    from autograder.event import errors, uploads
    from autograder.event import server as event_server

    db, events = es.template(tmp_path_factory.getbasetemp())
    code, _ = events["api"]
    copy = store.Store(es.copy_db(db, tmp_path / "rate.db"))
    server = event_server.EventServer(copy, rate=0.001, burst=3)
    flooder, neighbour = (copy.participant(code, server.join(code, {"name": n})["result"]["token"])
                          for n in ("flooder", "calm neighbour"))
    assert [server.op(flooder, {"op": "count"})[0] for _ in range(3)] == [200, 200, 200]  # the burst
    with pytest.raises(errors.Refused) as refused:
        server.op(flooder, {"op": "annotate", "indices": c_indices(server.truth(code), 1)})
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1000"}  # whole seconds to wait
    assert "requests per second" in refused.value.message and "Nothing was charged" in refused.value.message
    assert server.op(neighbour, {"op": "count"}) == (200, {"ok": True, "result": 0})  # not blocked by the flood
    assert event_server.EventServer(copy).op(flooder, {"op": "count"})[1]["result"] == 0  # from the store: nothing charged


def test_admin_routes_need_the_admin_token(event):
    import csv as csv_module

    base = f"{event['url']}/api/admin/{event['code']}"
    participant = join(event, "admin probe")["token"]
    formula = '=1+HYPERLINK("evil.example","x")'
    join(event, formula)
    truth = event["truth"]
    buyer = join(event, "admin buyer")["token"]  # this test's own participants: it runs alone too
    assert op(event, buyer, op="annotate", indices=c_indices(truth, 5, start=40))[0] == 200
    not_c = int(np.flatnonzero(~np.isin(truth["pool_digits"], truth["track"]))[0])
    assert op(event, buyer, op="annotate", indices=[not_c])[0] == 400
    finisher = join(event, "admin submitter")["token"]
    assert op(event, finisher, op="score", split="private", predictions=truth["private_digits"].tolist())[0] == 200
    for token in (None, participant, "wrong"):
        status, reply = es.call(base, token=token)
        assert status == 401 and "admin token" in reply["message"]
    status, view = es.call(base, token=event["admin"])
    assert status == 200
    names = {p["name"] for p in view["participants"]}
    assert {"admin probe", formula, "admin buyer", "admin submitter"} <= names
    annotator = next(p for p in view["participants"] if p["name"] == "admin buyer")
    assert annotator["annotations"] == 5
    assert any(f["name"] == "admin buyer" and f["error"] == "NotInCError" for f in view["failures"])
    status, ledger = es.call(f"{base}/ledger/{annotator['id']}", token=event["admin"])
    assert status == 200 and ledger["entries"][0]["op"] == "annotate" and ledger["entries"][0]["count"] == 5
    assert protocol.summarize(ledger["entries"]).submissions == 0
    status, csv_text = es.call(f"{base}/results.csv", token=event["admin"])
    assert status == 200 and b"rank,name,display_name,passed,annotations" in csv_text
    assert b"admin submitter" in csv_text
    names = [row["name"] for row in csv_module.DictReader(io.StringIO(csv_text.decode()))]
    assert "'" + formula in names and formula not in names  # the leaderboard's formula guard (`spreadsheet`)
    status, page = es.call(f"{event['url']}/admin")
    assert status == 200 and event["admin"].encode() not in page


def test_close_stops_joins_and_charges(tmp_path_factory, event):
    # an event of its own: closing must not disturb the other tests' event
    server, events = es.shared(tmp_path_factory.getbasetemp())
    code, admin = events["close"]
    status, reply = es.call(f"{server.url}/api/events/{code}/join", {"name": "late"})
    token = reply["result"]["token"]
    assert es.call(f"{server.url}/api/admin/{code}/close", {}, token=token)[0] == 401
    assert es.call(f"{server.url}/api/admin/{code}/close", {}, token=admin)[0] == 200
    status, reply = es.call(f"{server.url}/api/events/{code}/op", {"op": "annotate", "indices": [0]}, token=token)
    assert status == 403 and "closed" in reply["message"]
    status, reply = es.call(f"{server.url}/api/events/{code}/join", {"name": "later"})
    assert status == 403 and "closed" in reply["message"]
    status, board = es.call(f"{server.url}/api/events/{code}/board")
    assert status == 200 and board["closed"]


def test_cli_event_create_prints_the_join_code_and_admin_token(tmp_path, tmp_path_factory, monkeypatch, capsys):
    from autograder import cli
    from autograder.event import pool as pool_module

    db, events = es.template(tmp_path_factory.getbasetemp())
    code, _ = events["api"]
    template = store.Store(db)
    blobs = (7, template.blob(code, "pool"), template.blob(code, "truth"))  # the shuffle is tested above
    monkeypatch.setattr(pool_module, "build", lambda track, seed=None: blobs)
    target = tmp_path / "cli.db"
    assert cli.main(["event", "create", "--track", "7,1", "--assignment", "03_clustering", "--db", str(target)]) == 0
    out = capsys.readouterr().out
    new_code = out.split("join code:")[1].split()[0]
    admin = out.split("admin token:")[1].split()[0]
    created = store.Store(target)
    assert created.event(new_code).track == (7, 1) and created.event(new_code).assignment == "03_clustering"
    assert created.is_admin(new_code, admin) and not created.is_admin(new_code, "guess")
    args = cli._parser().parse_args(["serve", "--db", str(target), "--port", "8123"])
    assert args.command == "serve" and args.host == "127.0.0.1"  # loopback unless asked


def test_requests_per_participant_are_capped_and_the_ledger_stays_small(tmp_path, tmp_path_factory, monkeypatch):
    from autograder.event import errors, uploads
    from autograder.event import server as event_server

    db, events = es.template(tmp_path_factory.getbasetemp())
    code, _ = events["api"]
    copy = store.Store(es.copy_db(db, tmp_path / "cap.db"))
    monkeypatch.setattr(event_server, "MAX_REQUESTS", 5)
    server = event_server.EventServer(copy, rate=1e6, burst=10**6)
    participant = copy.participant(code, server.join(code, {"name": "capped"})["result"]["token"])
    idx = c_indices(server.truth(code), 8)
    for i in idx[:5]:
        assert server.op(participant, {"op": "annotate", "indices": [i]})[0] == 200
    for i in idx[5:]:
        status, reply = server.op(participant, {"op": "annotate", "indices": [i]})
        assert status == 400 and "more than 5 requests" in reply["message"]
    assert len(copy.ledger(participant.id)) == 6  # only the first refusal past the cap is logged
    for _ in range(2):  # the server's own refusals (logged by the route) are not the rules' requests
        server.refused(participant, None, errors.Refused(429, "wait", reason="rate_limited"))
    assert len(copy.ledger(participant.id)) == 8
    again = event_server.EventServer(copy, rate=1e6, burst=10**6)  # a restart: the cap still holds
    status, reply = again.op(participant, {"op": "count"})
    assert status == 400 and again.session(participant).rules.count == 5
    assert again.session(participant).rules.requests == 7 and again.session(participant).server_refused == 2


def test_notebook_upload_is_capped_validated_and_the_last_one_wins(event):
    import nbformat

    token = join(event, "uploader")["token"]
    url = f"{event['url']}/api/events/{event['code']}/notebook"
    for bad in (b"{not json", b'{"cells": 3}', json.dumps({"nbformat": 4}).encode()):  # refused at once
        status, reply = es.call(url, token=token, raw=bad)
        assert status == 400 and "not a valid Jupyter notebook" in reply["message"], reply
    many = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("") for _ in range(301)])
    status, reply = es.call(url, token=token, raw=nbformat.writes(many).encode())
    assert status == 400 and "301 cells" in reply["message"]
    status, reply = es.call(url, token=token, raw=b" " * (5 * 2**20))
    assert status == 413 and "larger than" in reply["message"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    assert es.call(url, raw=nbformat.writes(nb).encode())[0] == 401  # a participant's token is needed
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="a large output " * 1000)]
    status, reply = es.call(url, token=token, raw=nbformat.writes(nb).encode())
    assert status == 200 and reply["ok"] and reply["result"]["bytes"] < 2000  # stored without outputs
    nb.cells[0].source = "x = 2"
    status, reply = es.call(url, token=token, raw=nbformat.writes(nb).encode())
    assert status == 429 and "upload again" in reply["message"]  # validation holds the interpreter: a pause
    time.sleep(int(reply["message"].split("wait ")[1].split(" s")[0]))
    assert es.call(url, token=token, raw=nbformat.writes(nb).encode())[0] == 200
    pid = store.Store(event["server"].db).participant(event["code"], token).id
    kept = nbformat.reads(store.Store(event["server"].db).notebook(pid).decode(), as_version=4)
    assert kept.cells[0].source == "x = 2" and kept.cells[0].outputs == []  # the last upload wins
    status, reply = op(event, token, op="count")
    assert status == 200 and reply["result"] == 0  # nothing charged


def test_an_upload_with_60000_outputs_is_stripped_before_validation_and_the_server_stays_responsive(event,
                                                                                                      monkeypatch):
    """nbformat's validation walks every output: one cell with 60,000 outputs held the server for 9-30 s.
    So the outputs are dropped before validation (checked on what the validator is given, not on a clock)."""
    import nbformat

    from autograder.event import errors, uploads
    from autograder.event import server as event_server

    token = join(event, "many outputs")["token"]
    output = {"output_type": "stream", "name": "stdout", "text": "x"}
    nb = {"cells": [{"cell_type": "code", "id": "a1", "source": "print(1)", "metadata": {}, "execution_count": 1,
                     "outputs": [output] * 60_000}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    raw = json.dumps(nb).encode()
    assert 3 * 2**20 < len(raw) < 4 * 2**20  # under the upload cap: it reaches the checks
    status, reply = es.call(f"{event['url']}/api/events/{event['code']}/notebook", token=token, raw=raw)
    assert status == 200 and reply["result"]["bytes"] < 1000, reply  # stored without its outputs
    assert es.call(f"{event['url']}/api/health")[0] == 200
    validated, real_validate = [], nbformat.validate
    monkeypatch.setattr(nbformat, "validate", lambda nb, *a, **k: (
        validated.append(sum(len(c.get("outputs", [])) for c in nb["cells"])), real_validate(nb, *a, **k))[1])
    uploads.clean_notebook(uploads.check_structure(raw))  # the server's own two steps, in this process
    assert validated and max(validated) == 0  # the validator never saw the 60,000 outputs


def test_cli_event_create_with_a_roster_prints_and_exports_personal_codes(tmp_path, tmp_path_factory,
                                                                          monkeypatch, capsys):
    import csv as csv_module

    from autograder import cli
    from autograder.event import pool as pool_module

    db, events = es.template(tmp_path_factory.getbasetemp())
    code, _ = events["api"]
    template = store.Store(db)
    blobs = (7, template.blob(code, "pool"), template.blob(code, "truth"))
    monkeypatch.setattr(pool_module, "build", lambda track, seed=None: blobs)
    roster = tmp_path / "names.txt"
    roster.write_text("# my class\nAda Lovelace\n\nGrace Hopper\n")
    target, invites = tmp_path / "cli.db", tmp_path / "codes.csv"
    assert cli.main(["event", "create", "--track", "7,1", "--assignment", "03_clustering", "--db", str(target),
                     "--roster", str(roster), "--invites", str(invites)]) == 0
    out = capsys.readouterr().out
    new_code = out.split("join code:")[1].split()[0]
    rows = list(csv_module.DictReader(invites.open()))
    assert [r["name"] for r in rows] == ["Ada Lovelace", "Grace Hopper"] and oct(invites.stat().st_mode)[-3:] == "600"
    assert all(r["personal_code"].startswith(f"{new_code}-") and r["personal_code"] in out for r in rows)
    assert "invite-only" in out and store.Store(target).event(new_code).roster
    roster.write_text("Ada\nAda\n")
    with pytest.raises(SystemExit, match="more than once"):
        cli.main(["event", "create", "--track", "7,1", "--assignment", "x", "--db", str(target),
                  "--roster", str(roster)])
    assert cli.main(["event", "create", "--track", "7,1", "--assignment", "03_clustering", "--db", str(target)]) == 0
    assert "one person can join under several" in capsys.readouterr().out  # an open event says its limit


def test_a_rate_limited_client_waits_and_retries_and_is_charged_once(tmp_path, tmp_path_factory, monkeypatch):
    """course.event against a real server with --rate 5 --burst 3: every 429 is retried after Retry-After,
    every annotation is charged once, and each 429 is in the admin's ledger as a refusal with its reason and
    time. A flood of refusals is logged one by one only up to MAX_LOGGED_REFUSALS, then counted, across a
    restart too."""
    from autograder.event import errors, uploads
    from autograder.event import server as event_server
    from course import event as course_event, event_client, oracle

    db, events = es.template(tmp_path_factory.getbasetemp())
    code, admin = events["participant"]
    server = es.Server(es.copy_db(db, tmp_path / "rate.db"), rate=5.0, burst=3).start()
    monkeypatch.setenv(config.ENV_CACHE_DIR, str(tmp_path / "cache"))
    for name in (config.ENV_EVENT_URL, config.ENV_EVENT_CODE, config.ENV_SERVICE):
        monkeypatch.delenv(name, raising=False)
    waits = []

    class ClientClock:  # course.event_client's own `time`: its sleeps are recorded, no other code's (patching
        def __getattr__(self, name):  # time.sleep itself counted every thread's sleeps: flaky under load)
            return getattr(time, name)

        @staticmethod
        def sleep(seconds):
            waits.append(seconds)
            time.sleep(seconds)

    monkeypatch.setattr(event_client, "time", ClientClock())
    started = time.time()
    try:
        course_event.join(server.url, code, "patient")
        truth = pool.read_truth(store.Store(server.db).blob(code, "truth"))
        picked = c_indices(truth, 8)
        backend = oracle.backend((7, 1))
        for i in picked:  # 8 requests after the hello: past the burst of 3
            backend.annotate(np.array([i]))
        assert backend.count() == 8 and len(waits) >= 1 and all(w >= 1 for w in waits)
        assert [row.index for row in backend.history()] == picked  # each charged once, in order
        view = store.Store(server.db)
        pid = next(r["id"] for r in view.standings(code) if r["name"] == "patient")
        base = f"{server.url}/api/admin/{code}"
        status, ledger = es.call(f"{base}/ledger/{pid}", token=admin)
        refused = [e for e in ledger["entries"] if not e["ok"]]
        assert len(refused) == len(waits) and all(e["status"] == 429 and e["reason"] == "rate_limited"
                                                  and "Nothing was charged" in e["message"] for e in refused)
        assert all(started - 1 <= e["time"] <= time.time() for e in refused)  # when it was refused
        assert ledger["refusals"]["rate_limited"]["n"] == len(waits)
        assert len([e for e in ledger["entries"] if e["ok"] and e["op"] == "annotate"]) == 8

        monkeypatch.setattr(event_client, "MAX_RETRIES", 0)  # bounded: then the server's message
        with pytest.raises(course_event.ServiceError, match="requests per second"):
            for i in picked * 3:
                backend.annotate(np.array([i]))
        assert len(view.load_participant(pid).charges) == 8

        # a flood: past MAX_LOGGED_REFUSALS of the server's own refusals, they are counted, not logged
        token = course_event.current().token
        flood = [es.call(f"{server.url}/api/events/{code}/op", {"op": "count"}, token=token)[0]
                 for _ in range(event_server.MAX_LOGGED_REFUSALS + 30)]
        status, view_json = es.call(base, token=admin)
        counted = next(p for p in view_json["participants"] if p["id"] == pid)["refusals"]
        n_429 = counted["rate_limited"]["n"]
        assert n_429 == len(waits) + 1 + flood.count(429) and flood.count(429) >= event_server.MAX_LOGGED_REFUSALS
        assert any(f["name"] == "patient" and f["reason"] == "rate_limited" for f in view_json["failures"])
        logged = [e for e in view.ledger(pid) if e.get("reason") == "rate_limited"]
        assert len(logged) == event_server.MAX_LOGGED_REFUSALS < n_429
        server.stop()
        server.start()  # the counts and the cap survive a restart
        status, reply = es.call(f"{server.url}/api/events/{code}/op", {"op": "count"}, token=token)
        assert status == 200 and reply["result"] == 8
        for _ in range(10):
            es.call(f"{server.url}/api/events/{code}/op", {"op": "count"}, token=token)
        status, view_json = es.call(base, token=admin)
        again = next(p for p in view_json["participants"] if p["id"] == pid)
        assert again["refusals"]["rate_limited"]["n"] > n_429 and again["annotations"] == 8
        assert len([e for e in view.ledger(pid) if e.get("reason") == "rate_limited"]) == event_server.MAX_LOGGED_REFUSALS
    finally:
        course_event.leave()
        server.stop()


def test_per_address_limits_refuse_before_any_work_and_leave_room_for_a_class_behind_one_nat():
    """The board, its stream and the pool take a token from their address's bucket before routing (a 429 with
    a JSON error and Retry-After; the app is never called); open streams are capped per address and in all.
    The flood itself, against a real server: tests/test_attacks_round2.py."""
    import asyncio

    from autograder.event import limits

    class_size = 50  # one NAT: each opens the board (redirect, page, stream) and downloads the pool at once
    assert limits.PUBLIC_BURST >= 3 * class_size and limits.STREAMS_PER_ADDRESS > class_size
    assert limits.POOL_BURST > class_size and limits.JOIN_BURST > class_size
    buckets = limits.Buckets(3, 1.0)
    assert [buckets.take("a") for _ in range(3)] == [0.0] * 3 and buckets.take("a") > 0 and buckets.take("b") == 0
    assert limits.kind("/board") == limits.kind("/board/ABC") == limits.kind("/api/events/ABC/stream") \
        == limits.kind("/api/events/ABC/board") == limits.PUBLIC
    assert limits.kind("/api/events/ABC/pool") == limits.POOL
    assert limits.kind("/api/events/ABC/op") is None and limits.kind("/api/admin/ABC") is None
    streams = limits.Streams(per_address=2, total=3)
    a1, a2 = streams.enter("a")[0], streams.enter("a")[0]
    assert a1 and a2 and "close a board tab" in streams.enter("a")[1]
    b1 = streams.enter("b")[0]
    c1 = streams.enter("c")[0]  # all 3 open: the oldest stream of the address holding most makes room
    assert b1 and c1 and a1.evicted and not a2.evicted and streams.count == 3
    assert "its limit" in streams.enter("d")[1]  # no address holds more than one beyond d's: refused
    streams.leave(a1)  # the evicted stream ends: its slot is c's already
    streams.leave(b1)
    assert streams.count == 2 and streams.enter("d")[0]

    called, sent = [], []

    async def app(scope, receive, send):
        called.append(scope["path"])

    async def send(message):
        sent.append(message)

    middleware = limits.PerAddress(app, public=limits.Buckets(1, 0.5))
    scope = {"type": "http", "path": "/api/events/ABC/stream", "client": ("10.0.0.1", 5000)}
    for path in ("/api/events/ABC/stream", "/board", "/api/events/ABC/op"):
        asyncio.run(middleware({**scope, "path": path}, None, send))
    assert called == ["/api/events/ABC/stream", "/api/events/ABC/op"]  # the second board request never routed
    assert sent[0]["status"] == 429 and (b"retry-after", b"2") in sent[0]["headers"]
    reply = json.loads(sent[1]["body"])
    assert reply["ok"] is False and "too many board requests from your address" in reply["message"]


def test_a_big_annotate_request_costs_its_size_and_a_huge_one_is_refused(event):
    """One more bucket token per 1,000 indices (a 1 MB request of 120,000 repeated indices held the server for
    ~0.5 s at the cost of one request); more than MAX_INDICES is refused, and the debt makes the next wait."""
    from autograder.event import errors, uploads
    from autograder.event import server as event_server

    token = join(event, "big requests")["token"]
    c = [int(i) for i in np.flatnonzero(np.isin(event["truth"]["pool_digits"], event["truth"]["track"]))[:10]]
    status, reply = op(event, token, op="annotate", indices=c * 5000)  # 50,000: 49 tokens more than one request
    assert status == 400 and f"at most {event_server.MAX_INDICES} indices" in reply["message"] and "split" in reply["message"]
    status, reply = op(event, token, op="annotate", indices=c)
    assert status == 429 and "wait" in reply["message"], reply  # the burst went to the big request's size
    status, view = es.call(f"{event['url']}/api/admin/{event['code']}", token=event["admin"])
    assert {p["name"]: p for p in view["participants"]}["big requests"]["annotations"] == 0  # nothing charged


def in_parts(event, token, indices, size, batch="b1"):
    """One annotate call sent in parts of `size` (as course.event sends a call past MAX_ANNOTATE_INDICES)."""
    starts = range(0, len(indices), size)
    return [op(event, token, op="annotate", indices=indices[k:k + size], batch=batch, part=n,
               more=n < len(starts) - 1) for n, k in enumerate(starts)]


def test_a_call_in_parts_is_answered_as_one_call(event):
    """The parts are kept (nothing charged, no label) until the last; then the rules answer the whole call:
    the labels, the charge, a refusal's message and the one ledger entry of the same call in one request."""
    token = join(event, "in parts")["token"]
    truth, rules = event["truth"], local_rules(event["truth"])
    idx = c_indices(truth, 30)
    not_c = int(np.flatnonzero(~np.isin(truth["pool_digits"], truth["track"]))[0])

    def same_as_one_call(call, replies):
        expected = rules.handle({"op": "annotate", "indices": call})
        assert replies[-1][1] == expected, (replies[-1], expected)
        return replies

    # refused whole, though the bad index is in the first part: nothing charged for any part
    replies = same_as_one_call([not_c] + idx[:19], in_parts(event, token, [not_c] + idx[:19], 10))
    assert replies[0] == (200, {"ok": True, "result": {"kept": 10}}) and replies[-1][0] == 400
    # an index outside the pool in a middle part ends the call at once, with one call's message
    call = idx[:10] + [60000] + idx[10:19] + idx[19:29]
    replies = in_parts(event, token, call, 10)
    assert replies[1][0] == 400 and replies[1][1] == rules.handle({"op": "annotate", "indices": call})
    assert replies[2][0] == 409 and "does not follow" in replies[2][1]["message"]  # the call was dropped
    status, reply = op(event, token, op="annotate", indices=[idx[0]], batch="other", part=1, more=False)
    assert status == 409 and "Nothing was charged" in reply["message"]
    assert op(event, token, op="count")[1]["result"] == 0
    # answered: the labels of the whole call in order (repeats across parts are free), charged once
    call = idx + idx[:5]
    replies = same_as_one_call(call, in_parts(event, token, call, 10))
    assert replies[-1][1]["result"]["labels"] == truth["pool_digits"][call].tolist()
    assert replies[-1][1]["result"]["count"] == 30
    # a budget: the whole call's new annotations count against it, as in one call
    rules.handle({"op": "set_budget", "n": 35})
    assert op(event, token, op="set_budget", n=35)[0] == 200
    call = c_indices(truth, 10, start=30)
    replies = same_as_one_call(call, in_parts(event, token, call, 4, batch="b2"))
    assert replies[-1][0] == 409 and replies[-1][1]["error"] == "BudgetExceededError"
    status, ledger = es.call(f"{event['url']}/api/admin/{event['code']}/ledger/"
                             f"{participant_id(event, 'in parts')}", token=event["admin"])
    annotate = [(e["ok"], e["n_indices"], e.get("reason")) for e in ledger["entries"] if e["op"] == "annotate"]
    assert annotate == [(False, 20, None), (False, 20, None), (False, 10, "part_refused"), (False, 1, "part_refused"),
                        (True, 35, None), (False, 10, None)]  # one entry per call (and one per refused part)
    assert ledger["refusals"]["part_refused"]["n"] == 2 and ledger["refusals"]["NotInCError"]["n"] == 1
    assert ledger["refusals"]["OutOfRangeError"]["n"] == 1 and ledger["refusals"]["BudgetExceededError"]["n"] == 1


def participant_id(event, name):
    status, view = es.call(f"{event['url']}/api/admin/{event['code']}", token=event["admin"])
    return next(p["id"] for p in view["participants"] if p["name"] == name)


def test_every_refused_request_is_in_the_admin_view_with_its_reason_and_time(event):
    """The server's own refusals (too many indices, bad JSON, a body too large; a rate-limited request: in
    test_a_rate_limited_client_...) and the rules' are all in the admin's view: logged with HTTP status, reason
    and time, counted per reason; nothing charged."""
    token = join(event, "often refused")["token"]
    url = f"{event['url']}/api/events/{event['code']}/op"
    c = c_indices(event["truth"], 10)
    started = time.time()
    assert es.call(url, token=token, raw=b"{not json")[0] == 400
    assert es.call(url, token=token, raw=b'{"op": "annotate", "indices": [' + b"1," * 600_000 + b"1]}")[0] == 413
    assert op(event, token, op="annotate", indices=c * 2001)[0] == 400  # 20,010 indices in one request
    assert op(event, token, op="annotate", indices=[c[0], -1])[0] == 400  # the rules' refusal (17 tokens left)
    status, view = es.call(f"{event['url']}/api/admin/{event['code']}", token=event["admin"])
    me = next(p for p in view["participants"] if p["name"] == "often refused")
    assert me["annotations"] == 0
    counted = {reason: c["n"] for reason, c in me["refusals"].items()}
    assert counted["bad_json"] == 1 and counted["body_too_large"] == 1 and counted["too_many_indices"] == 1
    assert counted["OutOfRangeError"] == 1 and len(counted) == 4
    mine = [f for f in view["failures"] if f["name"] == "often refused"]
    assert sorted(str(f.get("reason")) for f in mine) == ["None", "bad_json", "body_too_large", "too_many_indices"]
    assert next(f for f in mine if "reason" not in f)["error"] == "OutOfRangeError"  # logged by the rules
    big = next(f for f in mine if f.get("reason") == "too_many_indices")
    assert big["status"] == 400 and big["n_indices"] == 20_010 and big["op"] == "annotate"
    assert all(started - 1 <= f["time"] <= time.time() for f in mine)
    assert all("charged" in f["message"] and f["status"] >= 400 for f in mine if "reason" in f)
    assert all(f["ok"] is False for f in mine)
