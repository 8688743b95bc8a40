"""Issue 21, hole 1: nothing a kernel or a submitted file writes reaches the instructor's pages as active content.

One hostile submission (`fixtures.hostile_notebook`: every place nbconvert's and nbgrader's templates put a
notebook string into HTML, from the kernel and from the notebook file) is graded by the real
``autograder grade`` in the sandbox. Its kept notebook (``autograded/``) is then rendered twice, as the
instructor sees it:

- (a) the formgrader's page: nbconvert's HTML exporter with nbgrader's ``formgrade`` template, as
  ``nbgrader.server_extensions.formgrader`` configures it, and the real formgrader itself (a Jupyter
  server with nbgrader's extension on the graded course, its page opened with its own scripts running);
- (b) the feedback page: the real ``nbgrader generate_feedback`` on the graded course, once as nbgrader
  makes it and once with the course's ``csp.configure_feedback`` (a Content-Security-Policy: the second wall).

Each page is opened in Chromium on an origin of its own; every request but the page itself is recorded and
refused. A page passes when no payload ran: no dialog, the title is the page's own, no request to the
payloads' host, no navigation away, and no element of the loaded page holds a participant handler, a
``javascript:`` URL or a participant script. The same pages of the honest reference notebook show that
the check sees a page's own requests and what they are.

Cost: one toy batch of two students, two ``nbgrader generate_feedback``, a Jupyter server and a browser
start per page: 9 min wall for the module on 2 cores at load ~18 (other test runs), almost all of it waiting
for the CPU (test_attacks_round3 measured 10-19 s per student and track for the kernels themselves).

Before the allow-lists (the previous ``autograder/results/inert.py``), every page but the one behind the
Content-Security-Policy ran the image-size payloads (``k-width``, ``k-height``, ``k-jpeg``, ``k-top``,
``k-update``: title changed, requests to the payloads' host) and fetched a markdown image from it
(``f-remote``); behind the policy the same handlers were in the page but none ran.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from autograder.results import store
from fixtures import hostile_notebook as hostile
from helpers.courses import HONEST, TOY, make_course, run_cli, solution, tool_env

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")]

A = "toy"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ORIGIN = "http://instructor.test"  # the page's own origin (the instructor's Jupyter server)
LOGO = "![logo](attachment:logo.png)"  # an assignment's own markdown cell with an attached image


def _assignment() -> nbformat.NotebookNode:
    """The toy assignment with one markdown cell of its own that shows an attached PNG."""
    nb = nbformat.read(TOY, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(LOGO, attachments={"logo.png": {"image/png": hostile.PNG}}))
    return nb


def _hostile(nb: nbformat.NotebookNode) -> None:
    """The submission: the kernel's payloads before the honest answer, the file's payloads around it."""
    solution(hostile.KERNEL_CODE + "\n" + HONEST)(nb)
    hostile.edit_file(nb)
    logo = next(c for c in nb.cells if c.source == LOGO)  # the assignment's own cell, its image swapped
    logo.attachments = {"logo.png": {"image/png": '" onerror="' + hostile.js("f-own-attachment")}}


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    course = make_course(tmp_path_factory.mktemp("inert"), {"hostile": _hostile, "honest": None},
                         assignments={A: _assignment()})
    run = run_cli("grade", A, "--course", str(course), "--memory", "3", "--timeout", "300")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = {r.student: r for r in store.load(course, A)}
    assert rows["hostile"].status == "ok" and rows["hostile"].passed, rows["hostile"]  # kept, so the pages show it
    _feedback(course)  # inert pages alone: the first wall
    shutil.move(course / "feedback", course / "feedback-plain")
    with open(course / "nbgrader_config.py", "a") as config:  # as the course's own nbgrader_config.py does
        config.write("\nfrom autograder.results import csp\ncsp.configure_feedback(c)\n")
    _feedback(course)  # with the Content-Security-Policy: both walls
    return course


def _feedback(course: Path) -> None:
    """The real ``nbgrader generate_feedback`` of the graded course."""
    run = subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback", A, "--force"],
                         cwd=course, capture_output=True, text=True, env=tool_env(), timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]


def _formgrader_html(notebook: Path, student: str) -> str:
    """The page nbgrader's formgrader serves for a kept notebook (its exporter and template, as it sets them)."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config

    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    resources = {"assignment_id": A, "notebook_id": A, "submission_id": "s1", "index": 0, "total": 1,
                 "base_url": "", "student": student, "last_name": None, "first_name": None, "notebook_path": "n"}
    return HTMLExporter(config=config).from_filename(str(notebook), resources=resources)[0]


_ACTIVE_IN_DOM = """() => {
  const found = [];
  for (const el of document.querySelectorAll('*')) {
    for (const a of el.attributes) {
      const value = a.value || '';
      if ((a.name.startsWith('on') && /pwned|evil/.test(value)) || /^\\s*(java|vb)script:/i.test(value)
          || /pwned|evil\\.test/.test(a.name)) {
        found.push(`<${el.tagName.toLowerCase()} ${a.name}="${value.slice(0, 80)}">`);
      }
    }
    if (el.tagName === 'SCRIPT' && /pwned/.test(el.textContent)) found.push('<script>' + el.textContent.slice(0, 80));
  }
  return found;
}"""


def _open(html: str | None, url: str = f"{ORIGIN}/page.html", origin: str = ORIGIN) -> dict:
    """What the page did in Chromium: its title, dialogs, requests, navigations and active elements.

    `html`: the page, served at `url` (nothing else is); None: `url` is a live server's page, and every
    request to `origin` (the server) goes through, every other one is recorded and refused.
    """
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    seen: dict = {"requests": [], "dialogs": [], "navigations": [], "popups": [], "page": url}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--headless"])
        try:
            page = browser.new_page()

            def route(r):
                if html is not None and r.request.url == url:
                    r.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)
                elif html is None and r.request.url.startswith(origin + "/"):
                    r.continue_()
                else:
                    seen["requests"].append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
            page.on("popup", lambda popup: seen["popups"].append(popup.url))
            page.on("framenavigated", lambda frame: seen["navigations"].append(frame.url))
            page.goto(url, wait_until="load")
            page.wait_for_timeout(500)  # handlers of images that fail or load late
            seen["title"] = page.title()
            seen["active"] = page.evaluate(_ACTIVE_IN_DOM)
            seen["url"] = page.url
        finally:
            browser.close()
    return seen


def _ran(seen: dict, title: str) -> list[str]:
    """Every sign that a payload ran, or would run on a click (empty: none)."""
    signs = [f"dialog {m!r}" for m in seen["dialogs"]] + [f"popup {u}" for u in seen["popups"]]
    if seen["title"] != title:
        signs.append(f"title {seen['title']!r}")
    signs += [f"request {u}" for u in seen["requests"] if "evil.test" in u or "pwned" in u]
    signs += [f"navigation {u}" for u in seen["navigations"] if u.split("?")[0] != seen["page"].split("?")[0]]
    signs += [f"element {e}" for e in seen["active"]]
    return signs


def _own_requests(seen: dict) -> set[str]:
    return {u for u in seen["requests"] if "evil.test" not in u}


@pytest.mark.skipif(CHROMIUM is None, reason="no system chromium (apt-get install -y chromium)")
def test_the_formgrader_page_of_a_hostile_submission_runs_nothing(graded):
    honest = _open(_formgrader_html(graded / "autograded" / "honest" / A / f"{A}.ipynb", "honest"))
    assert _ran(honest, A) == [], honest
    assert any("/formgrader/static/" in u for u in honest["requests"])  # the check sees the page's own requests
    seen = _open(_formgrader_html(graded / "autograded" / "hostile" / A / f"{A}.ipynb", "hostile"))
    assert _ran(seen, A) == [], f"participant content ran in the formgrader page: {_ran(seen, A)}"
    assert _own_requests(seen) <= _own_requests(honest), _own_requests(seen) - _own_requests(honest)


@pytest.mark.skipif(CHROMIUM is None, reason="no system chromium (apt-get install -y chromium)")
@pytest.mark.parametrize("folder", ["feedback-plain", "feedback"])  # without, with the Content-Security-Policy
def test_the_feedback_page_of_a_hostile_submission_runs_nothing(graded, folder):
    honest_html = (graded / folder / "honest" / A / f"{A}.html").read_text()
    assert ('http-equiv="Content-Security-Policy"' in honest_html) == (folder == "feedback")
    honest = _open(honest_html)
    assert _ran(honest, A) == [], honest
    seen = _open((graded / folder / "hostile" / A / f"{A}.html").read_text())
    assert _ran(seen, A) == [], f"participant content ran in the feedback page: {_ran(seen, A)}"
    assert _own_requests(seen) <= _own_requests(honest), _own_requests(seen) - _own_requests(honest)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def formgrader(graded):
    """The instructor's Jupyter server with nbgrader's formgrader on the graded course: (base URL, token)."""
    port, token = _free_port(), secrets.token_hex(16)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False", "--allow-root",
         f"--ServerApp.root_dir={graded}"],
        cwd=graded, env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the Jupyter server did not start"
                time.sleep(1)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _submission_id(course: Path, student: str) -> str:
    from nbgrader.api import Gradebook

    from autograder import layout

    opened = layout.Course.open(course)
    with Gradebook(opened.db_url, opened.course_id) as gradebook:
        return gradebook.find_submission_notebook(A, A, student).id


@pytest.mark.skipif(CHROMIUM is None, reason="no system chromium (apt-get install -y chromium)")
def test_the_real_formgrader_serves_a_hostile_submission_inert(graded, formgrader):
    base, token = formgrader
    pages = {}
    for student in ("honest", "hostile"):
        pages[student] = _open(None, f"{base}/formgrader/submissions/{_submission_id(graded, student)}/?token={token}",
                               origin=base)
        assert _ran(pages[student], A) == [], (student, _ran(pages[student], A))
    assert _own_requests(pages["hostile"]) <= _own_requests(pages["honest"])
