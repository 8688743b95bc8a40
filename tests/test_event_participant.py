"""A participant's notebook code works unchanged in event mode (issue 14, step 2).

`course.event.join(url, code, name)` (or the env variables), then `data.load()`,
`oracle.annotate`, `evaluate.accuracy` and `grading.submit` as in any notebook, against a
real uvicorn server on 127.0.0.1, with no MNIST file on the participant's side.
"""

from __future__ import annotations

import numpy as np
import pytest

from course import config, data, evaluate, event, event_client, grading, oracle, protocol
from course.exceptions import BudgetExceededError, NotInCError, ServiceError, SubmissionRefusedError
from tests import event_server as es


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running, events = es.shared(tmp_path_factory.getbasetemp())
    return running, events["participant"][0]


@pytest.fixture
def no_mnist(tmp_path, monkeypatch):
    """The participant's machine: an empty data folder, its own cache, and MNIST unreadable."""
    monkeypatch.setenv(config.ENV_DATA_DIR, str(tmp_path / "no-data"))
    monkeypatch.setenv(config.ENV_CACHE_DIR, str(tmp_path / "cache"))
    for name in (config.ENV_EVENT_URL, config.ENV_EVENT_CODE, config.ENV_EVENT_NAME, config.ENV_EXAM):
        monkeypatch.delenv(name, raising=False)

    def refuse():
        raise AssertionError("event mode must not read MNIST")

    monkeypatch.setattr(data, "_read_mnist", refuse)
    data._cached_split.cache_clear()
    yield tmp_path
    event.leave()
    data._cached_split.cache_clear()


def constant_predict(images):
    return np.full(len(images), 7)


def test_notebook_code_runs_unchanged_against_the_event(server, no_mnist, capsys):
    running, code = server
    joined = event.join(running.url, code, "Grace Hopper")
    assert "joined event" in capsys.readouterr().out and joined.token not in repr(joined)
    ds = data.load()
    assert ds.track == (7, 1) and ds.source == "grading" and len(ds) == 60000
    assert set(np.unique(ds.labels[ds.c_indices])) == {config.MERGED_LABEL}
    picked = ds.c_indices[:4]
    digits = oracle.annotate(picked)
    assert set(digits.tolist()) <= {7, 1} and oracle.count() == 4
    assert np.array_equal(oracle.annotate(picked[::-1]), digits[::-1]) and oracle.count() == 4  # repeats free
    not_c = int(np.flatnonzero(ds.labels != config.MERGED_LABEL)[0])
    with pytest.raises(NotInCError, match="not in class C"):
        oracle.annotate([picked[0], not_c])
    assert oracle.count() == 4 and [a.index for a in oracle.history()] == picked.tolist()
    assert grading.is_exam()
    assert np.isnan(evaluate.accuracy(constant_predict))  # no held-out score before the counted submission
    result = grading.submit(constant_predict)
    assert result.split == "private" and result.annotations == 4 and 0.3 < result.accuracy < 0.7
    with pytest.raises(SubmissionRefusedError, match="one submission per participant"):
        grading.submit(constant_predict)
    assert oracle.count() == 4

    # a kernel restart: the same name on the same machine rejoins and keeps the count
    event.leave()
    again = event.join(running.url, code, "Grace Hopper")
    assert again.token == joined.token and "rejoined" in capsys.readouterr().out
    data.load()
    assert oracle.count() == 4
    with pytest.raises(SubmissionRefusedError):
        grading.submit(constant_predict)


def test_env_variables_join_on_first_use(server, no_mnist, monkeypatch):
    running, code = server
    monkeypatch.setenv(config.ENV_EVENT_URL, running.url)
    monkeypatch.setenv(config.ENV_EVENT_CODE, code.lower())
    monkeypatch.setenv(config.ENV_EVENT_NAME, "Katherine Johnson")
    assert grading.is_exam()  # before any request
    ds = data.load()
    assert ds.source == "grading" and event.current().name == "Katherine Johnson"
    oracle.annotate(ds.c_indices[100:102])
    assert oracle.count() == 2


def test_join_refusals_say_what_to_do(server, no_mnist):
    running, code = server
    with pytest.raises(ServiceError, match="no event with join code"):
        event.join(running.url, "ZZZZZZ", "someone")
    with pytest.raises(ServiceError, match="not an event server address"):
        event.join("10.0.0.5:8000", code, "someone")
    with pytest.raises(ServiceError, match="cannot reach the event server"):
        event.join(f"http://127.0.0.1:{es.free_port()}", code, "someone")
    event.join(running.url, code, "Dorothy Vaughan")
    event.leave()
    for path in (no_mnist / "cache" / "events").glob("token-*.json"):  # another machine: no saved token
        path.unlink()
    with pytest.raises(ServiceError, match="already taken"):
        event.join(running.url, code, "Dorothy Vaughan")


def test_a_personal_code_joins_an_invite_only_event_from_any_machine(tmp_path_factory, no_mnist, capsys):
    from autograder.event import store

    running, events = es.shared(tmp_path_factory.getbasetemp())
    code = events["roster"][0]  # an event of its own, made a roster event here
    events = store.Store(running.db)
    personal = events.add_invites(code, ["Mary Jackson"])["Mary Jackson"]
    events.dispose()
    with pytest.raises(ServiceError, match="invite-only"):
        event.join(running.url, code, "Mary Jackson")
    joined = event.join(running.url, personal)  # the personal code alone: it carries the name
    assert joined.name == "Mary Jackson" and joined.code == code
    oracle.annotate(data.load().c_indices[:3])
    event.leave()
    for path in (no_mnist / "cache" / "events").glob("token-*.json"):  # another machine
        path.unlink()
    again = event.join(running.url, personal.lower())
    assert again.name == "Mary Jackson" and "rejoined" in capsys.readouterr().out and oracle.count() == 3


def test_a_call_larger_than_one_request_is_sent_in_parts_and_answered_as_one(server, no_mnist, monkeypatch):
    """More indices than one request may carry: `course.event` sends them in parts and the server answers
    them as one call, so the labels, the charge and a refusal are those of the same call made locally."""
    from autograder.event import pool, store

    running, code = server
    event.join(running.url, code, "Annie Easley")
    ds = data.load()
    events = store.Store(running.db)
    truth = pool.read_truth(events.blob(code, "truth"))
    local = protocol.Rules((7, 1), truth["pool_digits"], {protocol.PUBLIC: truth["public_digits"],
                                                           protocol.PRIVATE: truth["private_digits"]}, exam=True)
    sent = []
    real_http = event_client._http
    monkeypatch.setattr(event_client, "_http",
                        lambda url, body=None, **kw: (sent.append(body), real_http(url, body, **kw))[1])

    # a real call past the server's limit: the whole pool, 3 parts of 20,000, refused whole as one call is
    everything = np.arange(len(ds))
    with pytest.raises(NotInCError) as refused:
        oracle.annotate(everything)
    assert str(refused.value) == local.handle({"op": "annotate", "indices": everything.tolist()})["message"]
    parts = [b for b in sent if b and "batch" in b]
    assert [len(b["indices"]) for b in parts] == [protocol.MAX_ANNOTATE_INDICES] * 3 and oracle.count() == 0

    # every image of C (12,000+ indices) in parts of 1,000: the client's limit lowered, the server's unchanged
    monkeypatch.setattr(protocol, "MAX_ANNOTATE_INDICES", 1000)
    call = ds.c_indices[::-1]
    oracle.set_budget(len(call) - 1)
    local.handle({"op": "set_budget", "n": len(call) - 1})
    with pytest.raises(BudgetExceededError) as refused:
        oracle.annotate(call)
    assert str(refused.value) == local.handle({"op": "annotate", "indices": call.tolist()})["message"]
    assert oracle.count() == 0
    oracle.set_budget(None)
    sent.clear()
    digits = oracle.annotate(np.concatenate([call, call[:50]]))  # repeats: each index sent once, labelled twice
    assert np.array_equal(digits, truth["pool_digits"][np.concatenate([call, call[:50]])])
    assert oracle.count() == len(call) and [a.index for a in oracle.history()] == call.tolist()
    parts = [b for b in sent if b and "batch" in b]
    assert len(parts) == -(-len(call) // 1000) and max(len(b["indices"]) for b in parts) == 1000
    pid = next(r["id"] for r in events.standings(code) if r["name"] == "Annie Easley")
    calls = [(e["ok"], e["n_indices"]) for e in events.ledger(pid) if e["op"] == "annotate"]
    assert calls == [(False, len(ds)), (False, len(call)), (True, len(call))]  # one entry per call
    events.dispose()
