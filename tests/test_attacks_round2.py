"""Attacks, round 2: holes found by a hostile participant on surfaces the other attack tests do not cover.

Each attack runs for real (the real `autograder verify`, the real `autograder grade`, a real
event server). A hole still open is a strict xfail whose reason names the owner, what works
and the fix at the root; it turns into a failure (XPASS) the day the hole is closed, so
remove the mark then.

- `autograder verify --notebooks DIR` finds a participant's collected notebook by the name
  they chose when they joined (``DIR/<name>.ipynb``, then its safe form). In an open event the
  name is free text: a participant who joins as ``ADA LOVELACE`` (the same safe form as Ada
  Lovelace's) or as ``../collected/ada-lovelace`` (a path) is re-run with *Ada's* collected
  notebook and marked verified, without any notebook of their own.
- A student folder name that starts with ``=`` and a digit (``=1+HYPERLINK(...)``) gets an
  error row whose student cell reaches the leaderboard CSV unescaped: the formula guard keeps
  cells like ``-1`` as numbers, so ``=1+...`` passes as a formula.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from autograder.event import pool, store
from course import data
from tests import event_server as es
from tests.helpers.courses import TOY, make_course, run_cli, tool_env

BWRAP = pytest.mark.skipif(shutil.which("bwrap") is None, reason="the grader's sandbox needs bubblewrap")


# --- autograder verify: a name that points at another participant's collected notebook -------------------------

ADA = "Ada Lovelace"  # honest; the instructor collected her notebook under its safe form, collected/ada-lovelace.ipynb
IMPOSTORS = ("ADA LOVELACE", "../collected/ada-lovelace")  # the same safe form; a path to Ada's file


def _honest_predictions(pool_blob: bytes, truth: dict) -> tuple[list[int], list[int]]:
    """What the toy's honest notebook annotates and predicts on the event's pool (its re-run does the same)."""
    with np.load(io.BytesIO(pool_blob)) as f:
        images, labels, private = f["images"], f["labels"], f["private_test_images"]
    indices = np.flatnonzero(labels == data.C)[:60]
    digits = truth["pool_digits"][indices].astype(int)
    model = LogisticRegression(max_iter=1000).fit(images[indices].reshape(len(indices), -1) / 255.0, digits)
    return indices.tolist(), model.predict(private.reshape(len(private), -1) / 255.0).astype(int).tolist()


@pytest.fixture(scope="module")
def verified(tmp_path_factory):
    """A toy event: the impostors submit Ada's numbers live (no notebook of theirs anywhere); then
    the real `autograder verify --top 2 --notebooks collected/`."""
    db, events = es.template(tmp_path_factory.getbasetemp())
    folder = tmp_path_factory.mktemp("round2-verify")
    copy = store.Store(es.copy_db(db, folder / "events.db"))
    blobs = copy.blob(events["api"][0], "pool"), copy.blob(events["api"][0], "truth")
    code, _ = copy.create_event((7, 1), "toy", str(es.SEED), *blobs)
    copy.dispose()
    truth = pool.read_truth(blobs[1])
    course = make_course(folder, {})
    collected = folder / "collected"
    collected.mkdir()
    shutil.copyfile(TOY, collected / "ada-lovelace.ipynb")  # Ada's notebook, the honest toy solution
    indices, predictions = _honest_predictions(blobs[0], truth)
    server = es.Server(folder / "events.db").start()
    try:
        api = f"{server.url}/api/events/{code}"
        for name in IMPOSTORS:  # they submit before Ada, so they rank above her on a tie
            status, reply = es.call(f"{api}/join", {"name": name})
            assert status == 200, reply
            token = reply["result"]["token"]
            assert es.call(f"{api}/op", {"op": "annotate", "indices": indices}, token=token)[0] == 200
            status, reply = es.call(f"{api}/op", {"op": "score", "split": "private", "predictions": predictions},
                                    token=token)
            assert status == 200 and reply["result"]["count"] == 60, reply
        status, reply = es.call(f"{api}/join", {"name": ADA})
        assert status == 200, reply
    finally:
        server.stop()
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "autograder.cli", "verify", code, "--top", "2",
                           "--course", str(course), "--db", str(folder / "events.db"), "--notebooks", str(collected)],
                          capture_output=True, text=True, timeout=900, env=tool_env())
    print(f"autograder verify --top 2: {time.monotonic() - started:.1f} s")
    events_after = store.Store(folder / "events.db")
    standings = {r["id"]: r["name"] for r in events_after.standings(code)}
    checks = {standings[pid]: check for pid, check in events_after.verifications(code).items()}
    events_after.dispose()
    return {"done": done, "checks": checks}


@BWRAP
@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "owner E (autograder/event/verify.py `collected`): a participant's collected notebook is looked up by the "
    "free-text name they joined with, first as DIR/<name>.ipynb (a name with '/' or '..' reaches any file), then "
    "by its safe form (ADA LOVELACE and Ada Lovelace share ada-lovelace.ipynb): an impostor with no notebook is "
    "re-run with Ada's and marked verified. Fix at the root: resolve a candidate and require it inside DIR "
    "(no separators or '..' in the name part), and when two participants of the event map to the same file, "
    "verify neither from it (report 'ambiguous: rename to p<id>-<slug>.ipynb'); accept the unique "
    "p<id>-<slug> form (verify.safe_id) first"))
def test_verify_never_re_runs_another_participants_collected_notebook(verified):
    checks, done = verified["checks"], verified["done"]
    assert set(checks) == set(IMPOSTORS), done.stdout + done.stderr
    for name in IMPOSTORS:
        assert checks[name]["status"] == "missing", (name, checks[name], done.stdout)
