"""The instructor's side of a live event (issue 23, item 4): a readable admin ledger, `autograder event
export`, invites kept out of the repository.

The admin page (system chromium) shows readable headers, clock times (no Unix timestamps), the pool
indices of each annotate request, an HTTP status and a reason for every refusal (the rules' own
too), sorts by a clicked column, opens a participant's ledger from their name, and takes only a
whole-number id; a hostile name stays text. `autograder event export` writes CSV or JSON atomically
(mode 600, under the git-ignored ``.autograder/events/<CODE>/`` by default); ``event create --roster``
writes the personal codes there, never into the current folder.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess

import pytest

from autograder.event import cli, export, store
from tests.helpers import events as es

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = '<img src=x onerror="window.pwned=1">'
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def event(tmp_path_factory):
    with es.own(tmp_path_factory, "roster", name="admin") as started:
        op = f"{started['api']}/op"
        tokens = {}
        for name in ("Ada Lovelace", "Grace Hopper", HOSTILE):
            tokens[name] = es.call(f"{started['api']}/join", {"name": name})[1]["result"]["token"]
        c = started["c"].tolist()
        assert es.call(op, {"op": "annotate", "indices": c[:3]}, token=tokens["Ada Lovelace"])[0] == 200
        not_c = next(i for i in range(1000) if i not in set(c))
        status, reply = es.call(op, {"op": "annotate", "indices": [not_c]}, token=tokens["Grace Hopper"])
        assert status == 400 and reply["error"] == "NotInCError"  # a refusal of the rules: no status in the ledger
        assert es.call(op, raw=b"{oops", token=tokens[HOSTILE])[0] == 400  # one of the server's own
        predictions = started["truth"]["private_digits"].tolist()
        assert es.call(op, {"op": "score", "split": "private", "predictions": predictions},
                       token=tokens["Ada Lovelace"])[0] == 200
        started["annotated"], started["not_c"] = c[:3], not_c
        yield started


def test_every_refusal_has_a_status_and_a_reason(event):
    """The rules' refusals are stored without an HTTP status (the ledger's format); the admin view gives the
    page the status the server answered for each kind, and each refusal's participant id for its link."""
    status, view = es.call(f"{event['url']}/api/admin/{event['code']}", token=event["admin"])
    assert status == 200
    ids = {p["name"]: p["id"] for p in view["participants"]}
    refused = {f["name"]: f for f in view["failures"]}
    assert refused["Grace Hopper"]["error"] == "NotInCError" and view["refusal_status"]["NotInCError"] == 400
    assert view["refusal_status"]["SubmissionRefusedError"] == 409
    assert refused["Grace Hopper"]["participant"] == ids["Grace Hopper"]
    assert refused[HOSTILE]["status"] == 400 and refused[HOSTILE]["reason"] == "bad_json"


def test_the_admin_page_is_readable_sorted_and_linked(event):
    if CHROMIUM is None:
        pytest.skip("no system chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                   "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            dialogs = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"{event['url']}/admin#code={event['code']}&token={event['admin']}")
            page.wait_for_function("document.querySelectorAll('#participants tr').length === 4", timeout=WAIT_MS)
            heads = page.eval_on_selector_all("#participants th", "t => t.map(h => h.textContent)")
            assert {"id", "name", "on the board", "annotations bought", "submitted at", "joined at"} <= set(heads)
            assert not any("_" in h for h in heads), heads  # no raw field names
            text = page.inner_text("#participants") + page.inner_text("#failures")
            assert not re.search(r"\b1[0-9]{9}(\.[0-9]+)?\b", text), text  # no Unix timestamps
            assert re.search(r"\b[0-2][0-9]:[0-5][0-9]:[0-5][0-9]\b", text)  # clock times
            assert HOSTILE in page.inner_text("#participants")  # a hostile name is text
            assert page.evaluate("window.pwned") is None and page.query_selector("img") is None and not dialogs
            rows = page.eval_on_selector_all("#failures tr", "t => t.map(r => r.innerText)")
            grace = next(r for r in rows if "Grace Hopper" in r)  # a refusal of the rules: status and reason shown
            assert "\t400\t" in grace and "NotInCError" in grace and str(event["not_c"]) in grace, grace
            assert any("bad_json" in r and "\t400\t" in r for r in rows), rows  # one of the server's own

            # sorted by a clicked column, both ways
            column = heads.index("annotations bought")
            page.click(f"#participants th:nth-child({column + 1}) button")
            values = lambda: page.eval_on_selector_all(  # noqa: E731
                f"#participants tr td:nth-child({column + 1})", "t => t.map(c => Number(c.textContent))")
            assert values() == sorted(values()) and values()[-1] == 3
            page.click(f"#participants th:nth-child({column + 1}) button")
            assert values() == sorted(values(), reverse=True)

            # a participant's name opens their ledger: times, pool indices, refusals with status and reason
            page.click("#participants a:text('Ada Lovelace')")
            page.wait_for_function("document.querySelectorAll('#ledger tr').length === 3", timeout=WAIT_MS)
            assert "Ada Lovelace" in page.inner_text("#ledger-who")
            ledger = page.inner_text("#ledger")
            assert ", ".join(map(str, event["annotated"])) in ledger and "pool indices" in ledger
            page.click("#participants a:text('Grace Hopper')")
            page.wait_for_function("document.querySelector('#ledger').innerText.includes('NotInCError')",
                                   timeout=WAIT_MS)
            row = page.inner_text("#ledger tr:nth-child(2)")
            assert "refused" in row and "400" in row and str(event["not_c"]) in row

            # the id is a whole number
            assert page.get_attribute("#pid", "type") == "number"
            page.evaluate("document.getElementById('pid').type = 'text'")  # what a script or paste could put
            page.fill("#pid", "2; DROP")
            page.evaluate("ledger()")
            assert "whole number" in page.inner_text("#ledger-error")
            page.screenshot(path=str(event["db"].with_name("admin.png")), full_page=True)
        finally:
            browser.close()


def test_export_writes_csv_and_json_atomically(event, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    db = str(event["db"])
    assert cli.main(["event", "export", event["code"], "--db", db]) == 0
    default = tmp_path / ".autograder" / "events" / event["code"] / "results.csv"
    assert str(default.relative_to(tmp_path)) in capsys.readouterr().out
    rows = list(csv.DictReader(default.open()))
    assert [r["name"] for r in rows][0] == "Ada Lovelace" and rows[0]["rank"] == "1" and rows[0]["passed"] == "1"
    assert {r["name"] for r in rows} == {"Ada Lovelace", "Grace Hopper", HOSTILE}
    assert rows[0]["submitted_at"].endswith("Z") and rows[0]["id"].isdigit()
    grace = next(r for r in rows if r["name"] == "Grace Hopper")
    assert grace["refused"] == "NotInCError 1" and grace["rank"] == "" and grace["live_annotations"] == "0"
    assert oct(default.stat().st_mode)[-3:] == "600"

    target = tmp_path / "out" / "results.json"
    assert cli.main(["event", "export", event["code"].lower(), "--db", db, "--format", "json", "-o",
                     str(target)]) == 0
    doc = json.loads(target.read_text())
    assert doc["event"] == event["code"] and doc["track"] == "7,1" and len(doc["participants"]) == 3
    first = doc["participants"][0]
    assert first["name"] == "Ada Lovelace" and first["annotations"] == 3 and first["accuracy"] == 1.0
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]  # no temp file left behind

    with _held(event["db"]) as held:
        assert export.results_csv(export.results(held, event["code"])) == default.read_bytes().decode()  # the admin page's CSV
    assert cli.main(["event", "export", "NOSUCH", "--db", db]) == 2


class _held:
    def __init__(self, db):
        self.store = store.Store(db)

    def __enter__(self):
        return self.store

    def __exit__(self, *exc):
        self.store.dispose()


def test_invites_go_to_a_git_ignored_folder(tmp_path, tmp_path_factory, monkeypatch, capsys):
    es.reuse_pool(monkeypatch, tmp_path_factory.getbasetemp())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "names.txt").write_text("Ada Lovelace\nGrace Hopper\n")
    assert cli.main(["event", "create", "--track", "7,1", "--assignment", "03_clustering", "--db", "ev.db",
                     "--roster", "names.txt", "--no-baseline"]) == 0
    new_code = capsys.readouterr().out.split("join code:")[1].split()[0]
    invites = tmp_path / ".autograder" / "events" / new_code / "invites.csv"
    assert [r["name"] for r in csv.DictReader(invites.open())] == ["Ada Lovelace", "Grace Hopper"]
    assert oct(invites.stat().st_mode)[-3:] == "600"
    assert not list(tmp_path.glob("invites*"))  # nothing in the current folder
    if shutil.which("git"):
        paths = ["grades.csv", "invites-ABC234.csv", f".autograder/events/{new_code}/invites.csv",
                 ".autograder/events/ABC234/results.json", "event-ABC234.csv"]
        done = subprocess.run(["git", "check-ignore", *paths], cwd=es.REPO, capture_output=True, text=True)
        assert done.stdout.split() == paths, done.stdout + done.stderr
