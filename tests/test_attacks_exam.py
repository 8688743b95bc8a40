"""A hostile participant against exam mode: the annotation service spoken to directly, a kernel that
switches exam mode off, and a graded notebook hunting for labels inside the real sandbox.

Every attack here tries to gain label information without paying for it, to get a better row than
it earned, or to hurt the grader. The service-level attacks run a real service process on a real
Unix socket (fast); the kernel-level ones run under the real `autograder grade` in one small batch
(slow, bubblewrap). What cannot be closed in code (public MNIST smuggled into a notebook) is marked
`xfail(strict=True)` with the reason, so it stays visible.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from course import config, data, evaluate, grading, oracle, protocol
from course.context import CONTEXT
from course.exceptions import ServiceError, SubmissionRefusedError
from helpers import probes, service as service_process
from helpers.service import TOKEN, TRACK, direct, ledger_entries


@pytest.fixture(autouse=True)
def fresh_kernel_state():
    """Each test starts like a fresh kernel: no backend, no exam switch, no notice shown."""
    oracle._BACKENDS.clear()
    CONTEXT.set_exam(None)
    evaluate._NOTICE_SHOWN.clear()
    yield
    oracle._BACKENDS.clear()
    CONTEXT.set_exam(None)
    evaluate._NOTICE_SHOWN.clear()


def _service(prepared, tmp_path, *extra: str):
    """A real service with its stderr in a file (what the grader keeps as the service log)."""
    err = tmp_path / "service.log"
    process, sock, ledger, truth = service_process.start(prepared, tmp_path, *extra, log=err)
    return process, sock, ledger, err, truth


def _stop(process) -> None:
    service_process.stop(process)


def _send(sock: Path, payload: bytes, read: bool = True) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        for _ in range(200):  # a full listen queue says EAGAIN on a Unix socket: try again
            try:
                s.connect(str(sock))
                break
            except BlockingIOError:
                time.sleep(0.05)
        s.sendall(payload + b"\n")
        return s.makefile("rb").readline() if read else b""


NESTED = b"[" * 200_000 + b"]" * 200_000  # valid JSON, below the size cap, deeper than json's recursion
HOSTILE_LINES = {
    "nested": NESTED,
    "nested_field": b'{"op": "count", "token": "' + TOKEN.encode() + b'", "x": ' + NESTED[:200_000] + b"}",
    "surrogate_token": b'{"op": "count", "token": "\\ud800"}',
    "surrogate_op": b'{"op": "\\ud800", "token": "' + TOKEN.encode() + b'"}',
    "latin1": b'{"op": "count", "token": "\xff\xfe"}',
    "nan_budget": b'{"op": "set_budget", "n": NaN, "token": "' + TOKEN.encode() + b'"}',
    "huge_int": b'{"op": "annotate", "indices": [' + b"9" * 5000 + b'], "token": "' + TOKEN.encode() + b'"}',
}


# --- the socket spoken to directly -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HOSTILE_LINES))
def test_unreadable_requests_are_refusals_not_crashes(prepared, tmp_path, name):
    """A request the service cannot read is refused, logged and counted like any other; it never
    kills the connection with a traceback (which escaped the ledger, the request cap and the log cap)."""
    process, sock, ledger, err, truth = _service(prepared, tmp_path)
    try:
        reply = json.loads(_send(sock, HOSTILE_LINES[name]) or b"null")
        assert isinstance(reply, dict) and reply["ok"] is False, reply
        assert reply["error"] in protocol.ERRORS and "result" not in reply
        assert json.loads(_send(sock, json.dumps({"op": "count", "token": TOKEN}).encode())) == \
               {"ok": True, "result": 0}
    finally:
        _stop(process)
    entries = protocol.read_ledger(ledger.read_text())
    assert len(entries) == 2 and entries[0]["ok"] is False, entries
    assert err.stat().st_size == 0, err.read_text()[-2000:]


def test_hang_up_and_crash_floods_keep_the_service_log_small_and_hit_the_request_cap(prepared, tmp_path):
    """Send-and-hang-up (a broken pipe per reply) and unreadable requests, a thousand times: the
    service's log stays small (it is on the grader's disk) and every one of them counts toward the cap."""
    cap = 40
    process, sock, ledger, err, truth = _service(prepared, tmp_path, "--max-requests", str(cap))
    try:
        for i in range(600):
            _send(sock, json.dumps({"op": "history", "token": TOKEN}).encode(), read=False)
            _send(sock, HOSTILE_LINES["surrogate_token"], read=False)
        time.sleep(0.5)
        reply = json.loads(_send(sock, json.dumps({"op": "count", "token": TOKEN}).encode()))
        assert reply["ok"] is False and f"more than {cap} requests" in reply["message"], reply
    finally:
        _stop(process)
    assert err.stat().st_size < 8 * 1024, f"the service log grew to {err.stat().st_size} bytes"
    assert len(ledger.read_text().splitlines()) <= cap + 2


def test_racing_connections_get_exactly_one_counted_submission(running):
    """Sixteen connections submit different labellings at the same instant: one counts, the rest are refused."""
    sock, ledger, truth = running
    private = truth["private_digits"]
    labellings = [np.where(np.arange(len(private)) % 16 == k, 8 - private, private).tolist() for k in range(16)]
    replies: list[dict] = []
    barrier = threading.Barrier(len(labellings))

    def submit(predictions):
        payload = json.dumps({"op": "score", "split": "private", "predictions": predictions, "token": TOKEN})
        barrier.wait()
        replies.append(json.loads(_send(sock, payload.encode())))

    threads = [threading.Thread(target=submit, args=(p,)) for p in labellings]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(replies) == 16 and sum(r["ok"] for r in replies) == 1
    assert all(r["error"] == "SubmissionRefusedError" for r in replies if not r["ok"])
    summary = protocol.summarize(protocol.read_ledger(ledger.read_text()))
    assert summary.submissions == 16 and summary.accuracy == next(r for r in replies if r["ok"])["result"]["accuracy"]


def _index_of(truth, digit: int, k: int = 0) -> int:
    return int(np.flatnonzero(truth["pool_digits"] == digit)[k])


def test_no_refusal_depends_on_the_hidden_digit(running):
    """Every refusal a C index can get reads the same for a 7 and for a 1 (once the index number is
    masked), and charges nothing: no refusal is an oracle."""
    sock, ledger, truth = running
    seven, one = _index_of(truth, 7), _index_of(truth, 1)
    known = int(np.flatnonzero(~np.isin(truth["pool_digits"], TRACK))[0])
    n_pool = len(truth["pool_digits"])

    def refusals(index: int) -> list[str]:
        out = []
        for fields in ({"indices": [index, n_pool]}, {"indices": [index, -1]}, {"indices": [index, known]},
                       {"indices": [index, 2.5]}, {"indices": [index, True]}, {"indices": [index, 2**70]}):
            out.append(direct(sock, "annotate", **fields))
        direct(sock, "set_budget", n=0)
        out.append(direct(sock, "annotate", indices=[index]))
        direct(sock, "set_budget", n=None)
        texts = []
        for reply in out:
            assert reply["ok"] is False and "result" not in reply, reply
            texts.append(re.sub(rf"(?<!\d){index}(?!\d)", "<i>", f"{reply['error']}: {reply['message']}"))
        return texts

    assert refusals(seven) == refusals(one)
    assert direct(sock, "count")["result"] == 0


def test_forged_operations_and_fields_gain_nothing(running):
    """Ops the protocol does not have, public scoring, fields that try to switch exam mode off,
    budgets shrunk under the count, negative and duplicate indices: refused or harmless."""
    sock, ledger, truth = running
    n_public, private = len(truth["public_digits"]), truth["private_digits"]
    for op in ("Score", "score ", "reset", "labels", "truth", "set_exam", ["score"], {"op": "score"}, None, 7):
        reply = direct(sock, op)
        assert reply["ok"] is False and reply["error"] == "ServiceError", (op, reply)
    for split in ("public", "PUBLIC", ["public"], None, "private "):
        reply = direct(sock, "score", split=split, predictions=[7] * n_public, exam=False, mode="practice")
        assert reply["ok"] is False, (split, reply)
    assert direct(sock, "hello", exam=False)["result"]["exam"] is True
    seven, one = _index_of(truth, 7), _index_of(truth, 1)
    reply = direct(sock, "annotate", indices=[seven, seven, one, seven])
    assert reply["result"] == {"labels": [7, 7, 1, 7], "count": 2}
    assert direct(sock, "annotate", indices=[-len(truth["pool_digits"]) + seven])["ok"] is False  # no wrap-around
    assert direct(sock, "set_budget", n=1)["ok"] is True  # below the count: nothing is refunded ...
    assert direct(sock, "count")["result"] == 2 and direct(sock, "history")["result"] == [[0, seven, 7], [1, one, 1]]
    assert direct(sock, "annotate", indices=[one])["result"] == {"labels": [1], "count": 2}  # repeats stay free
    assert direct(sock, "annotate", indices=[_index_of(truth, 7, 1)])["error"] == "BudgetExceededError"
    assert direct(sock, "score", split="private", predictions=private.tolist())["result"]["count"] == 2  # ... or hidden
    summary = protocol.summarize(protocol.read_ledger(ledger.read_text()))
    assert (summary.annotations, summary.submissions, summary.evaluations) == (2, 1, 1)



def test_labels_after_the_counted_submission_are_not_free(running):
    """Annotations after the counted submission would count on no row, yet they are labels: printed into
    the feedback, keyed by pool index (one shuffle per assignment, kept at regrades) or by image, they
    would serve a resubmission or another participant. Exam mode closes the oracle at the submission."""
    sock, ledger, truth = running
    c = np.flatnonzero(np.isin(truth["pool_digits"], TRACK))
    assert direct(sock, "annotate", indices=c[:3].tolist())["ok"]
    assert direct(sock, "score", split="private", predictions=[7] * len(truth["private_digits"]))["ok"]
    reply = direct(sock, "annotate", indices=c[3:500].tolist())
    assert reply["ok"] is False and "result" not in reply and "counted submission" in reply["message"], reply
    assert direct(sock, "annotate", indices=c[:2].tolist())["result"]["count"] == 3  # what was paid for stays
    assert direct(sock, "count")["result"] == 3 and len(direct(sock, "history")["result"]) == 3


# --- a kernel that switches exam mode off ----------------------------------------------------------


def test_a_kernel_that_switches_exam_mode_off_still_gets_no_held_out_score(running, monkeypatch):
    """exam_mode(False), COURSE_EXAM and COURSE_SERVICE deleted, is_exam patched, modules reloaded:
    the kernel-side course thinks it is in practice mode, yet no public score is answered and the
    grading file has no labels for a local ledger."""
    import importlib

    sock, ledger, truth = running
    ds = data.load()
    oracle.annotate(ds.c_indices[:1])  # the service backend exists from now on
    grading.exam_mode(False)
    monkeypatch.delenv(config.ENV_EXAM, raising=False)
    monkeypatch.setattr(grading, "is_exam", lambda: False)
    monkeypatch.setattr(CONTEXT, "exam", lambda: False)  # what evaluate and the local ledger ask
    public = truth["public_digits"]
    # 1. the cached service backend: asked for a public score, refused
    with pytest.raises(SubmissionRefusedError, match="no held-out score"):
        evaluate.accuracy(lambda images: public.copy())
    # 2. the service forgotten: a local ledger on the grading file has no labels to score with
    monkeypatch.delenv(config.ENV_SERVICE)
    oracle._BACKENDS.clear()
    for module in (protocol, oracle, evaluate, grading):
        importlib.reload(module)
    try:
        grading.exam_mode(False)
        assert not grading.is_exam()
        with pytest.raises(ServiceError, match="holds no labels"):
            evaluate.accuracy(lambda images: public.copy())
        with pytest.raises(ServiceError, match="holds no labels"):
            oracle.LocalBackend(TRACK)
    finally:
        for module in (protocol, oracle, evaluate, grading):
            importlib.reload(module)
    summary = protocol.summarize(protocol.read_ledger(ledger.read_text()))
    assert summary.evaluations == 1 and summary.accuracy is None
    assert not [e for e in ledger_entries(ledger) if e["op"] == "score" and e["ok"]]


def test_result_and_refusals_carry_only_the_counted_numbers(running):
    """The counted Result (and the refusal of a later submission) says accuracy, count and n: nothing
    per image that a second labelling could be tuned on."""
    sock, ledger, truth = running
    ds = data.load()
    result = grading.submit(lambda images: np.full(len(images), 7))
    fields = {k: v for k, v in vars(result).items()}
    assert set(fields) == {"accuracy", "annotations", "passed", "n_images", "split"}
    with pytest.raises(SubmissionRefusedError) as refused:
        grading.submit(lambda images: np.full(len(images), 1))
    assert str(len(truth["private_digits"])) in str(refused.value)  # n, as the Result already said
    assert f"{result.accuracy:.1%}" in str(refused.value)


# --- under the real `autograder grade`: a kernel that hunts for labels inside the sandbox -------------

SCAN = r'''
import gzip, os, time, zipfile
import numpy as np

def label_hunt(budget_s=90):
    """Every file the kernel can read whose CONTENT looks like labelled digits, whatever its name."""
    hits, start, seen = [], time.time(), 0
    for folder, dirs, files in os.walk('/'):
        if folder.startswith(('/proc', '/sys', '/dev')):
            dirs[:] = []
            continue
        for name in files:
            path = os.path.join(folder, name)
            try:
                if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) < 2000:
                    continue
                with open(path, 'rb') as f:
                    head = f.read(4)
                seen += 1
                if head in (b'\x00\x00\x08\x01', b'\x00\x00\x08\x03'):
                    hits.append(path)
                elif head[:2] == b'\x1f\x8b':
                    with gzip.open(path) as g:
                        inner = g.read(4)
                    if inner in (b'\x00\x00\x08\x01', b'\x00\x00\x08\x03') or 'digit' in name or 'mnist' in name.lower():
                        hits.append(path)
                elif head == b'PK\x03\x04' and os.path.getsize(path) < 400 * 2**20:
                    with zipfile.ZipFile(path) as z:
                        for info in z.infolist()[:50]:
                            if info.filename.endswith('.npy'):
                                with z.open(info) as m:
                                    version = np.lib.format.read_magic(m)
                                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                                    shape = read(m)[0]
                                if len(shape) >= 2 and (tuple(shape[-2:]) == (28, 28) or shape[-1] in (784, 64)) and shape[0] >= 100:
                                    hits.append(path + ':' + info.filename)
                            elif info.filename.endswith('data.pkl'):
                                hits.append('checkpoint ' + path)
                elif head == b'\x93NUM':
                    array = np.load(path, mmap_mode='r')
                    if array.ndim >= 2 and (array.shape[-2:] == (28, 28) or array.shape[-1] in (784, 64)) and array.shape[0] >= 100:
                        hits.append(path)
            except Exception:
                continue
        if time.time() - start > budget_s:
            hits.append('stopped at ' + folder)
            break
    return hits, seen
'''

SWITCHER = SCAN + r'''
import importlib, json, os, socket
import course
from course import config, data, evaluate, grading, models, oracle, protocol

saved = dict(os.environ)
seen = {}

def attempt(name, action):
    try:
        seen[name] = repr(action())[:300]
    except BaseException as exc:
        seen[name] = type(exc).__name__ + ': ' + str(exc)[:300]

ds = data.load()
oracle.annotate(ds.c_indices[:0])
backend = oracle.backend()  # the service backend, cached
public = evaluate.track_test_images('public')
# 1. every in-kernel switch turned to practice mode
grading.exam_mode(False)
for name in ('COURSE_EXAM', 'COURSE_SERVICE'):
    os.environ.pop(name, None)
seen['is_exam'] = grading.is_exam()
attempt('accuracy_cached_backend', lambda: evaluate.accuracy(lambda images: np.full(len(images), 7)))
# 2. the service forgotten, the course reloaded, the data folder dropped: MNIST anywhere for a local ledger?
oracle._BACKENDS.clear()
for name in ('COURSE_DATA_DIR', 'COURSE_CACHE_DIR', 'COURSE_OFFLINE'):
    os.environ.pop(name, None)
for module in (config, data, protocol, oracle, evaluate, grading):
    importlib.reload(module)
attempt('local_split', lambda: data.split((7, 1)).pool_digits[:5])
attempt('local_accuracy', lambda: evaluate.accuracy(lambda images: np.full(len(images), 7), track='7,1'))
attempt('download', lambda: data._download(config.cache_dir() / 'MNIST' / 'raw'))
attempt('sklearn_digits', lambda: __import__('sklearn.datasets', fromlist=['x']).load_digits().target[:5])
# 3. the socket spoken to directly: a public score, the exam flag in the request
def raw(req):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(saved['COURSE_SERVICE'].removeprefix('unix:'))
        s.sendall(json.dumps({**req, 'token': saved['COURSE_SERVICE_TOKEN']}).encode() + b'\n')
        return json.loads(s.makefile('rb').readline())
seen['direct_public'] = raw({'op': 'score', 'split': 'public', 'exam': False,
                             'predictions': [7] * int((ds.test_labels == data.C).sum())})
# 4. the baseline checkpoint: trained on merged labels only?
folder = '/tmp/cache/models'
seen['checkpoints'] = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
seen['checkpoint_classes'] = [models.CNNClassifier.load(os.path.join(folder, n)).classes_.tolist()
                              for n in seen['checkpoints']]
# 5. processes, the runtime folder, content that looks like labelled digits
seen['pids'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
seen['cmdlines'] = [open(f'/proc/{p}/cmdline', 'rb').read()[:80].decode(errors='replace') for p in seen['pids']]
import ipykernel
runtime = os.path.dirname(ipykernel.get_connection_file())
seen['runtime'] = sorted(os.listdir(runtime))
seen['hunt'], seen['files_read'] = label_hunt()
print('FOUND=' + json.dumps(seen, default=str))
# back to work, honestly
os.environ.clear()
os.environ.update(saved)
for module in (config, data, protocol, oracle, evaluate, grading):
    importlib.reload(module)
oracle._BACKENDS.clear()
ds = data.load()
''' + "\n"

FORGER = r'''
# No annotation, a coin-flip labelling, and the hidden test cell fooled: tracebacks hidden, asserts
# dropped before they run, and submit's Result dressed up after the service has counted the real one.
import dataclasses
get_ipython().showtraceback = lambda *args, **kwargs: None
get_ipython().input_transformers_post.append(
    lambda lines: [line for line in lines if not line.lstrip().startswith('assert')])
_real_submit = grading.submit
grading.submit = lambda predict: dataclasses.replace(_real_submit(predict), accuracy=1.0, passed=True)

def predict(images):
    return np.full(len(images), 7)
'''


WIDGETS = r'''
# 30 MB of "widget state": comm messages, which nbclient keeps in the notebook's metadata, not in outputs
from ipykernel.comm import Comm
for k in range(30):
    Comm(target_name='jupyter.widget', data={'state': {'_model_name': 'Flood', '_model_module': 'flood',
                                                      'blob': 'w' * 2**20}, 'buffer_paths': []})
'''


# Issue 10's three ways to learn labels from held-out scores, each run under the real grader.
TWO_MEANS = r"""
import json
from sklearn.cluster import KMeans
from course import evaluate
sub = ds.c_indices[:2000]
km = KMeans(2, n_init=3, random_state=0).fit(ds.images[sub].reshape(len(sub), -1) / 255.0)
a, b = ds.track
namings = [{0: a, 1: b}, {0: b, 1: a}]

def named(naming):
    return lambda images: np.array([naming[int(c)] for c in km.predict(images.reshape(len(images), -1) / 255.0)])
"""

NAMER = TWO_MEANS + r"""
# name the two clusters by comparing the held-out scores of both namings: 0 annotations
scores = [evaluate.accuracy(named(n)) for n in namings]
print('ATTACK=' + json.dumps([repr(x) for x in scores]))
predict = named(namings[0 if np.isnan(scores).all() else int(np.nanargmax(scores))])
"""

GROUP_TESTER = r"""
# read held-out labels one image at a time: flip one prediction, watch the score move
import json
from course import evaluate, oracle
a, b = ds.track
flips = []
for k in range(20):
    def flip(images, k=k):
        out = np.full(len(images), a)
        out[k] = b
        return out
    flips.append(repr(evaluate.accuracy(flip)))
try:  # the backend's own scoring, past evaluate's exam check
    n = len(evaluate.track_test_images('public'))
    direct = repr(oracle.backend().score(np.full(n, a), 'public'))
except Exception as exc:
    direct = type(exc).__name__ + ': ' + str(exc)
print('ATTACK=' + json.dumps({'flips': flips, 'direct': direct}))
"""

DOUBLE = TWO_MEANS + r"""
# submit both namings and keep the better one: only the first counts, the second is refused
first = grading.submit(named(namings[0]))
try:
    second = repr(grading.submit(named(namings[1])))
except Exception as exc:
    second = type(exc).__name__ + ': ' + str(exc)
print('ATTACK=' + json.dumps({'first': first.accuracy, 'annotations': first.annotations, 'second': second}))
predict = named(namings[1])
"""


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    import shutil

    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap (bwrap) is not installed")
    from helpers.courses import HONEST, make_course, run_cli, solution
    from autograder.results import store

    course_dir = make_course(tmp_path_factory.mktemp("exam-attacks"), {
        "switcher": solution(SWITCHER + HONEST), "forger": solution(FORGER), "widgets": solution(WIDGETS + HONEST),
        "namer": solution(NAMER), "grouptester": solution(GROUP_TESTER + HONEST), "double": solution(DOUBLE)})
    run = run_cli("grade", "toy", "--course", str(course_dir), "--timeout", "400")  # torch needs > 3 GB of address space
    rows = {r.student: r for r in store.load(course_dir, "toy")}
    return course_dir, run, rows


def _found(course_dir: Path, student: str) -> dict:
    return probes.found(course_dir, student, "toy")


@pytest.mark.slow
def test_graded_kernel_that_switches_exam_mode_off_finds_no_labels(graded):
    course_dir, run, rows = graded
    assert run.returncode == 0, run.stderr[-3000:]
    seen = _found(course_dir, "switcher")
    assert seen["is_exam"] is False  # the kernel-side course believes it is in practice mode ...
    assert seen["accuracy_cached_backend"].startswith("SubmissionRefusedError")  # ... the service does not
    for name in ("local_split", "local_accuracy", "download"):
        assert seen[name].startswith("DataError"), (name, seen[name])
    assert seen["sklearn_digits"].startswith(("FileNotFoundError", "OSError")), seen["sklearn_digits"]
    assert seen["direct_public"]["ok"] is False and "result" not in seen["direct_public"]
    assert seen["checkpoints"] == ["baseline-v1-track71-seed0.pt"]
    assert seen["checkpoint_classes"] == [[0, 2, 3, 4, 5, 6, 8, 9, data.C]]  # merged labels only
    assert not any("autograder.grading.service" in c or "nbgrader" in c for c in seen["cmdlines"]), seen["cmdlines"]
    # nothing whose content looks like digits, whatever its name, beyond the two files it is given
    expected = {"grading": f"/{data.GRADING_FILE}:", "checkpoint": "checkpoint /tmp/cache/models/"}
    assert [h for h in seen["hunt"] if not any(e in h for e in expected.values())] == [], seen["hunt"]
    assert all(any(e in h for h in seen["hunt"]) for e in expected.values()), seen["hunt"]  # the hunt works
    assert seen["files_read"] > 1000
    row = rows["switcher"]
    assert row.status == "ok" and row.passed and row.annotations == 60, row
    assert (row.evaluations, row.submissions) == (2, 1), row  # both public attempts are on the row


@pytest.mark.slow
def test_a_kernel_that_fools_its_test_cells_does_not_earn_their_points(graded):
    """nbgrader gives a test cell its points when its output holds no error, and the kernel decides what
    its outputs hold: this notebook (a coin flip, 0 annotations) hides tracebacks, drops asserts and dresses
    up submit's Result, so nbgrader sees every test cell pass. The points of the cells that check the
    submission are the service's ledger's (autograder/grading/judge.py): it did not pass, so they are withheld."""
    course_dir, run, rows = graded
    row = rows["forger"]
    assert row.status == "ok" and not row.passed and row.accuracy is not None and row.accuracy < 0.9, row
    assert "withheld" in row.detail and "check the notebook" in row.review, row
    assert row.score is not None and row.max_score and row.score < row.max_score, row
    assert row.score == 0  # the toy's only points are its submission's (test_passed, 2 points)



@pytest.mark.slow
def test_a_resubmission_after_a_failed_counted_submission_is_on_the_row(graded):
    """One counted submission holds per graded run; across runs the store keeps every graded attempt
    (`autograder.grading.attempts`). The forger above (47% with 0 annotations, its accuracy on the board) hands
    in an honest notebook and is regraded: that is attempt 2, kept with its own ledger, and the row
    still ranks the first counted attempt, so reading the board and trying again gains nothing."""
    from helpers.courses import HONEST, add_submission, run_cli, solution
    from autograder.results import leaderboard, store
    import csv
    import shutil

    course_dir, run, rows = graded
    before = rows["forger"]
    assert not before.passed and before.accuracy is not None and before.attempts == 1  # counted, failed, shown
    shutil.rmtree(course_dir / "submitted" / "forger")
    add_submission(course_dir, "forger", solution(HONEST), "toy")
    again = run_cli("grade", "toy", "--course", str(course_dir), "--student", "forger", "--timeout", "400")
    assert again.returncode == 0, again.stderr[-2000:]
    row = {r.student: r for r in store.load(course_dir, "toy")}["forger"]
    assert (row.accuracy, row.annotations, row.passed, row.attempt, row.attempts) == (
        before.accuracy, before.annotations, False, 1, 2), row
    assert "the latest, attempt 2, passed and is not ranked" in row.detail, row.detail
    first, second = store.load_attempts(course_dir, "toy", "forger")
    assert first.notebook != second.notebook and second.passed and second.annotations == 60, second
    kept = (course_dir / "ledgers" / "toy" / store.ATTEMPT_LEDGERS / "forger").glob("*.jsonl")
    assert sorted(p.stem for p in kept) == sorted([first.notebook, second.notebook])  # no ledger overwritten
    board = {r["student"]: r for r in csv.DictReader(leaderboard.build(course_dir, "toy")["csv"].open())}
    assert (board["forger"]["passed"], board["forger"]["attempts"]) == ("no", "2"), board["forger"]


@pytest.mark.slow
def test_widget_state_cannot_flood_the_kept_notebook(graded):
    """nbclient keeps widget comm state in the notebook's metadata, outside the output cap: the
    grader turns it off (Execute.store_widget_state = False), so 30 MB of comm state is not kept."""
    course_dir, run, rows = graded
    assert rows["widgets"].status == "ok" and rows["widgets"].annotations == 60, rows["widgets"]
    kept = course_dir / "autograded" / "widgets" / "toy" / "toy.ipynb"
    assert kept.stat().st_size < 10 * 2**20, f"{kept.stat().st_size / 2**20:.0f} MB kept"


def _attack(course_dir: Path, student: str):
    return probes.found(course_dir, student, "toy", marker="ATTACK=")


def _ledger(course_dir: Path, student: str) -> list[dict]:
    from autograder.results import store

    return protocol.read_ledger(store.ledger_path(course_dir, "toy", student).read_text())


@pytest.mark.slow
def test_naming_clusters_by_comparing_held_out_scores_learns_nothing(graded):
    course_dir, run, rows = graded
    assert _attack(course_dir, "namer") == ["nan", "nan"]  # both namings: no score at all
    row = rows["namer"]
    assert row.annotations == 0 and row.submissions == 1, row
    assert not any(e.get("op") == "score" and e.get("split") == "public" and e.get("ok")
                   for e in _ledger(course_dir, "namer"))  # the service scored nothing public
    if row.passed:  # a lucky coin flip with 0 annotations is flagged for the instructor
        assert row.review, row


@pytest.mark.slow
def test_group_testing_on_held_out_scores_reads_no_label(graded):
    course_dir, run, rows = graded
    seen = _attack(course_dir, "grouptester")
    assert seen["flips"] == ["nan"] * 20, seen["flips"]
    assert seen["direct"].startswith("ServiceError") or "exam" in seen["direct"], seen["direct"]
    row = rows["grouptester"]
    assert row.status == "ok" and row.annotations == 60 and row.evaluations == 1, row  # the refused direct one


@pytest.mark.slow
def test_submitting_twice_to_pick_the_better_labelling_gains_nothing(graded):
    course_dir, run, rows = graded
    seen = _attack(course_dir, "double")
    assert "SubmissionRefusedError" in seen["second"] and "nothing" in seen["second"], seen["second"]
    row = rows["double"]
    assert row.accuracy == pytest.approx(seen["first"]) and row.annotations == 0, (row, seen)  # the first counts
    assert row.submissions >= 1 and row.detail, row


# --- what no code can close: MNIST is public --------------------------------------------------------


# A table of MNIST hashes pasted into a notebook (every participant has MNIST at home) labels the course
# track's private split with 0 annotations; hidden tracks close it: graded for real, kernel and service, in
# tests/test_hidden_tracks.py (test_memorised_notebook_*). A table of all 10,000 MNIST test digits (40 kB)
# would pass every track: read the notebooks of 0-annotation rows before publishing.


# --- the live event server (owner E): participants are not sandboxed and choose their names ----------


@pytest.fixture(scope="module")
def event_server(tmp_path_factory):
    from tests.helpers import events as es

    with es.own(tmp_path_factory, "api", "sybil") as started:
        yield es, started["server"], started["code"], started["truth"]


def _sybil_buys_under_a_throwaway_name(es, url, main, throwaway, truth):
    """Buy 200 labels under `throwaway`, submit a centroid classifier under `main`: (status, reply) of the submit."""
    status, blob = es.call(f"{url}/pool", token=main)
    with np.load(io.BytesIO(blob)) as f:
        images, labels, private = f["images"], f["labels"], f["private_test_images"]
    bought = np.flatnonzero(labels == data.C)[:200]
    status, reply = es.call(f"{url}/op", {"op": "annotate", "indices": bought.tolist()}, token=throwaway)
    assert status == 200, reply
    digits = np.asarray(reply["result"]["labels"])
    centroids = {d: images[bought[digits == d]].reshape(-1, 784).mean(axis=0) for d in TRACK}
    flat = private.reshape(len(private), -1).astype(float)
    predictions = np.where(((flat - centroids[7]) ** 2).sum(1) < ((flat - centroids[1]) ** 2).sum(1), 7, 1)
    return es.call(f"{url}/op", {"op": "score", "split": "private", "predictions": predictions.tolist()},
                   token=main)


@pytest.mark.slow
def test_an_open_event_lets_one_person_join_under_several_names(event_server):
    """The open mode's documented limit (README, "Running a live event"): anyone may join an open event
    under any number of names; every name gets the same pool and its own counted submission. One person
    buys 200 labels under a throw-away name, and the name they play under passes with 0 annotations.
    An invite-only event (`autograder event create --roster`) closes this: the next test."""
    es, server, code, truth = event_server
    url = f"{server.url}/api/events/{code}"

    def join(name):
        status, reply = es.call(f"{url}/join", {"name": name})
        assert status == 200, reply
        return reply["result"]["token"]

    main, throwaway = join("sybil main"), join("sybil throw-away")
    status, reply = _sybil_buys_under_a_throwaway_name(es, url, main, throwaway, truth)
    assert status == 200 and reply["result"]["accuracy"] >= config.TARGET_ACCURACY, reply
    assert reply["result"]["count"] == 0  # the open mode's limit: the labels were bought under another name


@pytest.mark.slow
def test_a_roster_event_refuses_a_second_name(event_server):
    """Invite-only: every join needs a personal code, one name per code, so the throw-away name never
    gets in; the labels a person buys are charged to the one name their code carries."""
    from autograder.event import store as event_store

    es, server, _, truth = event_server
    events = event_store.Store(server.db)
    template = events.events()[0].code
    code, admin = events.create_event((7, 1), "03_clustering", str(es.SEED), events.blob(template, "pool"),
                                      events.blob(template, "truth"))
    codes = events.add_invites(code, ["sybil main", "a classmate"])
    events.dispose()
    url = f"{server.url}/api/events/{code}"

    for body in ({"name": "sybil throw-away"}, {"name": "sybil main"}):  # no personal code: refused
        status, reply = es.call(f"{url}/join", body)
        assert status == 403 and "invite-only" in reply["message"] and "personal code" in reply["message"], reply
    status, reply = es.call(f"{url}/join", {"name": "sybil throw-away", "invite": codes["sybil main"]})
    assert status == 403 and "belongs to another name" in reply["message"]  # one name per code
    status, reply = es.call(f"{url}/join", {"invite": f"{code}-AAAAAAAA"})
    assert status == 403 and "not a personal code" in reply["message"]

    status, reply = es.call(f"{url}/join", {"invite": codes["sybil main"]})
    assert status == 200 and reply["result"]["name"] == "sybil main"
    main = reply["result"]["token"]
    assert es.call(f"{url}/op", {"op": "count"}, token=main)[0] == 200
    status, reply = es.call(f"{url}/join", {"invite": codes["sybil main"].lower()})  # the same code again:
    assert status == 200 and reply["result"]["rejoined"]  # the same participant, from another machine
    second = reply["result"]["token"]
    assert es.call(f"{url}/op", {"op": "count"}, token=main)[0] == 401  # the old machine's token ended
    status, reply = _sybil_buys_under_a_throwaway_name(es, url, second, second, truth)
    assert status == 200 and reply["result"]["count"] == 200  # the labels count on the one name
    status, view = es.call(f"{server.url}/api/admin/{code}", token=admin)
    assert [p["name"] for p in view["participants"]] == ["sybil main"]
    assert {r["name"]: r["participant"] is not None for r in view["roster"]} == {"sybil main": True,
                                                                               "a classmate": False}
    status, board = es.call(f"{url}/board")
    assert [r["annotations"] for r in board["rows"]] == [200]


# --- a copied checkpoint ------------------------------------------------------------------------------


class _Payload:
    """Pickled into a checkpoint: loading it with plain pickle would create `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_planted_checkpoint_runs_no_code_when_loaded(tmp_path):
    """The README tells instructors to copy the model cache to every machine; a baseline file that
    carries a pickle payload must be refused, not executed (then `baseline()` retrains it)."""
    import torch

    from course import models

    marker = tmp_path / "pwned"
    path = tmp_path / "baseline.pt"
    torch.save({"state": {}, "classes": _Payload(marker), "version": models.CHECKPOINT_VERSION}, path)
    with pytest.raises(Exception):
        models.CNNClassifier.load(path)
    assert not marker.exists(), "loading a checkpoint ran code from it"
    honest = models.CNNClassifier(epochs=1, progress=False)
    honest.classes_ = np.array([0, 2, data.C])
    honest.net_ = models.Net(3)
    honest.save(tmp_path / "honest.pt")
    assert models.CNNClassifier.load(tmp_path / "honest.pt").classes_.tolist() == [0, 2, data.C]


@pytest.mark.slow
def test_the_event_server_refuses_deep_json_like_any_bad_body(event_server):
    """Valid JSON nested deeper than Python's json reads (a 200 kB body of '[') raised RecursionError,
    answered with a plain-text 500; it is a bad body like any other: the protocol's 400 refusal."""
    es, server, code, truth = event_server
    api = f"{server.url}/api/events/{code}"
    token = es.call(f"{api}/join", {"name": "deep nesting"})[1]["result"]["token"]  # op reads a body only with a token
    for route, key in (("op", token), ("join", None)):
        status, reply = es.call(f"{api}/{route}", raw=NESTED, token=key)
        assert status == 400 and isinstance(reply, dict) and reply["ok"] is False, (route, status, reply)
    status, reply = es.call(f"{api}/op", raw=NESTED)  # without a token: refused before the body is parsed
    assert status == 401 and reply["ok"] is False, (status, reply)


@pytest.mark.slow
def test_one_client_cannot_join_under_a_hundred_names_in_a_few_seconds(tmp_path_factory):
    """Joins are rate-limited per client address (a burst of JOIN_BURST, then JOIN_RATE per second):
    a script cannot take every name others would use, or fill the event, in a few seconds."""
    from autograder.event import limits
    from tests.helpers import events as es

    # a server of its own: the flood empties 127.0.0.1's join bucket, which other tests' joins must not meet
    with es.own(tmp_path_factory, "api", "squatters") as started:
        start, refused = time.monotonic(), 0
        for k in range(100):
            status, reply = es.call(f"{started['server'].url}/api/events/{started['code']}/join",
                                    {"name": f"squatter {k}"})
            refused += status != 200
        took = time.monotonic() - start
    # the bucket's own arithmetic: at most the burst, plus what refilled meanwhile, got in (one token of slack);
    # on a slow machine fewer are refused, never fewer than this
    allowed = limits.JOIN_BURST + int(took * limits.JOIN_RATE) + 1
    assert refused >= 100 - allowed, f"100 joins from one address in {took:.1f} s, {refused} refused"
