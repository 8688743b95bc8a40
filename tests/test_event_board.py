"""The live board in a real browser (the system chromium, driven by Playwright): issue 14, step 3.

A submission made through the API appears on an open board without a reload (pushed by its stream);
the ranking rule is stated, the scatter has one point per submission, names are
pseudonyms, the freeze switch holds the board still until the reveal, and nothing is
loaded from anywhere but the event server.
"""

from __future__ import annotations

import shutil
import time

import pytest

from autograder.event import store
from tests.helpers import events as es

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system chromium (apt-get install -y chromium)")
WAIT_MS = 60_000  # a hang bound for each update, not a speed claim (a loaded machine is slow, not wrong)


@pytest.fixture(scope="module")
def event(tmp_path_factory):
    return es.live(tmp_path_factory, "board")


def submit(event, name, n_annotations, correct=True):
    """Join, annotate `n_annotations` C images and submit, all through the API; the display name."""
    status, reply = es.call(f"{event['url']}/api/events/{event['code']}/join", {"name": name})
    token, display = reply["result"]["token"], reply["result"]["display_name"]
    truth = event["truth"]
    in_c = [int(i) for i in (truth["pool_digits"] == truth["track"][0]).nonzero()[0][:n_annotations]]
    op = f"{event['url']}/api/events/{event['code']}/op"
    if in_c:
        assert es.call(op, {"op": "annotate", "indices": in_c}, token=token)[0] == 200
    predictions = truth["private_digits"].tolist() if correct else [int(truth["track"][0])] * len(truth["private_digits"])
    assert es.call(op, {"op": "score", "split": "private", "predictions": predictions}, token=token)[0] == 200
    return display


def names(page):
    return page.eval_on_selector_all("#board tbody td.name", "cells => cells.map(c => c.textContent)")


def test_board_updates_live_and_freezes(event):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--headless"])
        page = browser.new_page()
        requested = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(f"{event['url']}/board")  # redirects to the newest open event's board
        assert page.url.endswith(f"/board/{event['code']}")
        loads = []
        page.on("load", lambda _: loads.append(page.url))  # every update below must come without a reload
        page.wait_for_function("document.getElementById('count').textContent.includes('joined')", timeout=10000)
        assert "fewest annotations" in page.inner_text("#rule")
        assert event["code"] in page.inner_text("#join")

        first = submit(event, "Alan Turing", 3)
        page.wait_for_function(f"[...document.querySelectorAll('#board td.name')].some(c => c.textContent === "
                               f"'{first}')", timeout=WAIT_MS)

        second = submit(event, "Joan Clarke", 1)
        third = submit(event, "Gordon Welchman", 0, correct=False)
        page.wait_for_function("document.querySelectorAll('#scatter circle.point').length === 3", timeout=WAIT_MS)
        assert names(page)[:3] == [second, first, third]  # passed, then fewest annotations; failed last
        text = page.inner_text("body")
        assert "Alan Turing" not in text and "Joan Clarke" not in text  # pseudonyms only

        admin = f"{event['url']}/api/admin/{event['code']}/freeze"
        assert es.call(admin, {"frozen": True}, token=event["admin"])[0] == 200
        page.wait_for_selector("#frozen", state="visible", timeout=WAIT_MS)
        hidden = submit(event, "Tommy Flowers", 0)
        status, frozen_board = es.call(f"{event['url']}/api/events/{event['code']}/board")
        assert hidden not in [r["name"] for r in frozen_board["rows"]]  # what every stream is sent while frozen
        time.sleep(1)  # (a check that something stays absent: a pause can only weaken it, never fail it)
        assert hidden not in names(page)  # frozen: a later submission waits for the reveal
        assert es.call(admin, {"frozen": False}, token=event["admin"])[0] == 200
        page.wait_for_function(f"[...document.querySelectorAll('#board td.name')].some(c => c.textContent === "
                               f"'{hidden}')", timeout=WAIT_MS)
        assert names(page)[0] == hidden  # 0 annotations, passed: first

        # `autograder verify` stores its results from another process: the open board shows them
        status, view = es.call(f"{event['url']}/api/admin/{event['code']}", token=event["admin"])
        ids = {p["display_name"]: p["id"] for p in view["participants"]}
        results = store.Store(event["db"])
        results.save_verification(ids[first], "verified", accuracy=1.0, annotations=3, live_accuracy=1.0,
                                  live_annotations=3, grader_status="ok", detail="", source="upload")
        results.save_verification(ids[second], "differs", accuracy=0.9, annotations=9, live_accuracy=1.0,
                                  live_annotations=1, grader_status="ok", detail="annotations 1 live, 9 in the re-run.",
                                  source="upload")
        results.save_verification(ids[hidden], "review", accuracy=1.0, annotations=0, live_accuracy=1.0,
                                  live_annotations=0, grader_status="ok", detail="it fails on a hidden track (2,5: ...",
                                  source="upload", hidden_track="2,5", hidden_accuracy=0.4636, hidden_annotations=0)
        results.dispose()
        verdicts = ("[...document.querySelectorAll('#board tr')].map(tr => [tr.querySelector('td.name')?.textContent, "
                    "tr.querySelector('td.verified')?.textContent])")
        page.wait_for_function(f"({verdicts}).some(([n, v]) => n === '{second}' && v === 'differs: 90.0% with 9')",
                               timeout=WAIT_MS)
        shown = dict(page.evaluate(verdicts)[1:])
        assert shown[first] == "verified" and shown[third] == ""
        assert shown[hidden] == "review: fails on a hidden track (46.4%)"  # the hidden track is not named

        assert all(url.startswith(event["url"]) for url in requested), requested  # nothing from the internet
        assert loads == [], loads  # never reloaded: every change came through the stream

        # the instructor's page: real names, behind the admin token (kept in the URL fragment), refusals counted
        status, reply = es.call(f"{event['url']}/api/events/{event['code']}/join", {"name": "Ada Refused"})
        status, reply = es.call(f"{event['url']}/api/events/{event['code']}/op", raw=b"{not json",
                                token=reply["result"]["token"])
        assert status == 400
        admin_page = browser.new_page()
        admin_page.goto(f"{event['url']}/admin#code={event['code']}&token={event['admin']}")
        admin_page.wait_for_function("document.querySelectorAll('#participants tr').length >= 5", timeout=WAIT_MS)
        assert "Alan Turing" in admin_page.inner_text("#participants")
        assert "review: re-run 100.00% with 0; hidden track 2,5: 46.36% with 0; it fails on a hidden track" in \
            admin_page.inner_text("#participants")  # the instructor sees the hidden track's numbers and why
        assert "bad_json 1" in admin_page.inner_text("#participants")  # the refusal counts per reason
        failures = admin_page.inner_text("#failures")
        assert "Ada Refused" in failures and "bad_json" in failures and "not valid JSON" in failures
        browser.close()
