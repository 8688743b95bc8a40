"""course.protocol: operations, error kinds, the rules both backends share, the bounded ledger."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from autograder.grading import service
from course import exceptions as ex
from course import oracle, protocol

TRACK = (7, 1)
POOL = np.array([7, 1, 3, 7, 1, 0])  # indices 2 and 5 are not in C
TRUTH = {"public": np.array([7, 1, 1, 7]), "private": np.array([1, 7, 7])}


def rules(exam: bool = False, **kw) -> protocol.Rules:
    return protocol.Rules(TRACK, POOL, TRUTH, exam=exam, **kw)


def call(r: protocol.Rules, op: str, **fields):
    return protocol.result(r.handle({"op": op, **fields}))


# --- the wire ---------------------------------------------------------------------------------


def test_ops_and_error_kinds_are_defined_once():
    assert [o.value for o in protocol.Op] == ["hello", "annotate", "count", "history", "set_budget", "budget",
                                              "score"]
    for kind, cls in protocol.ERRORS.items():
        assert cls.__name__ == kind and issubclass(cls, ex.CourseError)
        assert protocol.refusal(cls("why")) == {"ok": False, "error": kind, "message": "why"}
        with pytest.raises(cls, match="why"):
            protocol.result(protocol.refusal(cls("why")))
    with pytest.raises(ex.ServiceError):  # an unknown kind is still a course error
        protocol.result({"ok": False, "error": "Bogus", "message": "x"})
    with pytest.raises(ex.ServiceError, match="malformed"):
        protocol.result([1, 2])
    assert protocol.decode(protocol.encode({"a": 1})) == {"a": 1}
    with pytest.raises(ex.ServiceError, match="not valid JSON"):
        protocol.decode(b"{nope")


def test_old_import_paths_name_the_same_classes():
    from course import data, evaluate

    assert oracle.OracleError is ex.OracleError and oracle.NotInCError is ex.NotInCError
    assert oracle.ServiceError is ex.ServiceError and evaluate.PredictionError is ex.PredictionError
    assert data.DataError is ex.DataError and data.TrackError is ex.TrackError
    assert issubclass(ex.OracleError, ValueError) and issubclass(ex.DataError, RuntimeError)
    assert issubclass(ex.SubmissionRefusedError, ex.CourseError)


def test_protocol_and_service_import_without_torch():
    code = ("import sys, course.protocol, autograder.grading.service; "
            "assert not {'torch', 'sklearn', 'torchvision'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_both_backends_run_the_same_rules(ds):
    assert isinstance(oracle.backend()._rules, protocol.Rules)
    assert isinstance(service.make_rules({"track": np.array(TRACK), "pool_digits": POOL,
                                          "public_digits": TRUTH["public"], "private_digits": TRUTH["private"]},
                                         "/dev/null"), protocol.Rules)
    assert not any(name.startswith("op_") for name in dir(service)) and not hasattr(service, "Oracle")


# --- the rules -------------------------------------------------------------------------------


def test_charging_repeats_and_whole_call_refusals():
    r = rules()
    assert call(r, "annotate", indices=[1, 0, 1]) == {"labels": [1, 7, 1], "count": 2}
    assert call(r, "annotate", indices=[0, 3]) == {"labels": [7, 7], "count": 3}
    assert call(r, "history") == [[0, 1, 1], [1, 0, 7], [2, 3, 7]]
    for bad, error, message in [([4, 2], ex.NotInCError, "index 2 is not in class C"),
                                ([4, 6], ex.OutOfRangeError, "index 6 is outside the pool; valid indices are 0..5"),
                                ([4, True], ex.IndexTypeError, "True is not an integer"),
                                ([4, 1.0], ex.IndexTypeError, "1.0 is not an integer"),
                                ("4", ex.IndexTypeError, "list of integer pool indices"),
                                ([4, 2**70], ex.IndexTypeError, "is not an integer")]:
        with pytest.raises(error, match=message):
            call(r, "annotate", indices=bad)
    assert r.count == 3


def test_budget():
    r = rules()
    call(r, "set_budget", n=2)
    call(r, "annotate", indices=[0])
    with pytest.raises(ex.BudgetExceededError, match="needs 2 new annotations but only 1 of the budget of 2"):
        call(r, "annotate", indices=[0, 1, 3])
    assert call(r, "annotate", indices=[0, 1]) == {"labels": [7, 1], "count": 2}
    assert call(r, "budget") == 2 and call(r, "count") == 2
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ex.OracleError, match="budget must be a non-negative integer or None"):
            call(r, "set_budget", n=bad)


def test_practice_mode_scores_public_only():
    r = rules(exam=False)
    for _ in range(3):
        assert call(r, "score", split="public", predictions=[7, 1, 7, 7])["accuracy"] == 0.75
    with pytest.raises(ex.SubmissionRefusedError, match="private split is scored only once"):
        call(r, "score", split="private", predictions=[1, 7, 7])
    with pytest.raises(ex.ServiceError, match="split must be"):
        call(r, "score", split="secret", predictions=[1, 7, 7])


def test_exam_mode_one_counted_submission_and_no_public_score():
    r = rules(exam=True)
    call(r, "annotate", indices=[0, 1])
    with pytest.raises(ex.SubmissionRefusedError, match="no held-out score"):
        call(r, "score", split="public", predictions=[7, 1, 1, 7])
    with pytest.raises(ex.PredictionError, match="expected 3 predictions"):  # a broken one does not count
        call(r, "score", split="private", predictions=[1, 7])
    first = call(r, "score", split="private", predictions=[1, 7, 1])
    assert first == {"split": "private", "accuracy": pytest.approx(2 / 3), "count": 2, "n": 3}
    with pytest.raises(ex.OracleError, match="closes the oracle at the counted submission"):
        call(r, "annotate", indices=[3])  # no label is sold after the counted submission ...
    assert call(r, "annotate", indices=[1])["count"] == 2  # ... repeats of paid ones stay free
    with pytest.raises(ex.SubmissionRefusedError,
                       match=r"only the first submission.*66\.7% on 3 private images with 2 annotations\)"):
        call(r, "score", split="private", predictions=[1, 7, 7])
    assert r.counted == first and r.count == 2


@pytest.mark.parametrize("predictions, message", [
    ([1, 7], "expected 3 predictions for the private split, got 2"),
    ({"a": 1}, "got dict"),
    ([1, 7, 7.0], "integer digits"),
    ([1, 7, False], "integer digits"),
    ([1, 7, 10], r"hold \[10\]; expected only the track's digits 7,1"),
])
def test_prediction_checks(predictions, message):
    with pytest.raises(ex.PredictionError, match=message):
        call(rules(exam=True), "score", split="private", predictions=predictions)


# --- the ledger ---------------------------------------------------------------------------------


def test_ledger_entries_follow_the_schema():
    r = rules(exam=True)
    r.handle({"op": "annotate", "indices": [0, 1, 0]})
    r.handle({"op": "annotate", "indices": [2]})
    r.handle({"op": "score", "split": "public", "predictions": [7, 1, 1, 7]})
    r.handle({"op": "score", "split": "private", "predictions": [1, 7, 7]})
    r.handle({"op": "set_budget", "n": 5})
    entries = r.ledger.entries
    assert [e["seq"] for e in entries] == list(range(5))
    for e in entries:
        assert {"seq", "time", "op", "ok", "error", "message"} <= set(e)
        assert (e["error"] is None) == e["ok"] and (e["message"] is None) == e["ok"]
    assert entries[0] | {"time": 0} == {"seq": 0, "time": 0, "op": "annotate", "ok": True, "error": None,
                                        "message": None, "indices": [0, 1, 0], "n_indices": 3, "new": [0, 1],
                                        "n_new": 2, "count": 2}
    assert entries[1]["error"] == "NotInCError" and entries[1]["indices"] == [2] and "new" not in entries[1]
    assert entries[2]["split"] == "public" and entries[2]["error"] == "SubmissionRefusedError"
    assert {k: entries[3][k] for k in ("split", "accuracy", "count", "n")} == {
        "split": "private", "accuracy": 1.0, "count": 2, "n": 3}
    assert entries[4]["n"] == 5
    assert all("predictions" not in e and "token" not in e and "labels" not in e for e in entries)


def test_hostile_fields_stay_short_in_the_ledger():
    r = rules(exam=True)
    r.handle({"op": "x" * 100_000})
    r.handle({"op": "annotate", "indices": list(range(100_000))})
    r.handle({"op": "annotate", "indices": ["y" * 100_000]})
    r.handle({"op": "score", "split": "z" * 100_000, "predictions": []})
    r.handle({"op": "set_budget", "n": "w" * 100_000})
    r.handle([1, 2, 3])
    for entry in r.ledger.entries:
        assert len(json.dumps(entry)) < 1500, entry
    assert r.ledger.entries[1]["n_indices"] == 100_000
    assert len(r.ledger.entries[1]["indices"]) == protocol.LEDGER_MAX_INDICES
    assert r.ledger.entries[2]["indices"] is None


def test_request_cap_logs_the_first_refusal_and_a_tally():
    r = rules(exam=True, max_requests=3)
    for _ in range(3):
        call(r, "count")
    for _ in range(4):
        with pytest.raises(ex.ServiceError, match="more than 3 requests"):
            call(r, "count")
    r.close()
    assert len(r.ledger.entries) == 5
    assert r.ledger.entries[3]["error"] == "ServiceError" and r.ledger.entries[3]["op"] == "count"
    assert r.ledger.entries[4]["message"].startswith("3 more requests were refused after the cap of 3")


def test_ledger_file_read_back(tmp_path):
    path = tmp_path / "ledger.jsonl"
    writer = protocol.LedgerWriter(path)
    r = rules(exam=True, ledger=writer)
    r.handle({"op": "annotate", "indices": [0, 1, 3]})
    r.handle({"op": "score", "split": "public", "predictions": [7, 1, 1, 7]})
    r.handle({"op": "score", "split": "private", "predictions": [1, 7, 1]})
    r.handle({"op": "score", "split": "private", "predictions": [1, 7, 7]})
    writer.close()
    text = path.read_text() + '{"seq": 9, "op": "sco'  # a torn last line
    entries = protocol.read_ledger("not json\n[1, 2]\n" + text)
    assert [e["seq"] for e in entries] == [0, 1, 2, 3]
    assert protocol.summarize(entries) == protocol.LedgerSummary(
        accuracy=pytest.approx(2 / 3), annotations=3, n_images=3, evaluations=1, submissions=2)
    assert protocol.summarize([]) == protocol.LedgerSummary(None, None, None, 0, 0)
