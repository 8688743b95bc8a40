"""`autograder.results.csp`: the feedback page's Content-Security-Policy, the wall behind `autograder.results.inert`.

Without a kernel: the hostile battery (`fixtures.hostile_notebook`) *as it was*, not made inert, rendered
through the feedback template that ``csp.configure_feedback`` gives ``nbgrader generate_feedback``, runs
nothing in Chromium (the policy alone stops it), while the page's own scripts are allowed by hash and the
same page without the policy runs the payloads (the test sees them). The policy is computed from the
template's ``<head>`` only. The full path (the real grader, the real ``nbgrader generate_feedback``) is
`test_inert_browser`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import shutil
from pathlib import Path

import nbformat
import pytest

from autograder.results import csp
from fixtures import hostile_notebook as hostile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ORIGIN = "http://instructor.test"


def _feedback_page(nb, protected: bool) -> str:
    """`nb` rendered as ``nbgrader generate_feedback`` renders it, with or without `csp.configure_feedback`."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config

    config = Config()
    config.HTMLExporter.template_name = "feedback"  # what GenerateFeedback sets
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    config.HTMLExporter.extra_template_paths = [str(Path(handlers.template_path).parent / "static" / "node_modules" /
                                                    "bootstrap" / "dist" / "css")]
    if protected:
        instructor = Config()
        csp.configure_feedback(instructor)
        config.HTMLExporter.merge(instructor.GenerateFeedback.HTMLExporter)  # the section nbgrader's exporter reads
    graded = copy.deepcopy(nb)
    for cell in graded.cells:  # what nbgrader's GetGrades adds
        if "nbgrader" in cell.metadata:
            cell.metadata.nbgrader.update(score=0, comment=None)
    resources = {"nbgrader": {"notebook": "toy", "score": 1, "max_score": 2, "late_penalty": 0}}
    return HTMLExporter(config=config).from_notebook_node(graded, resources=resources)[0]


def _battery() -> nbformat.NotebookNode:
    """The hostile battery as nbconvert can render it (its schema-invalid parts removed), not made inert."""
    nb = hostile.renderable()
    nb.cells.append(nbformat.v4.new_markdown_cell(f"{hostile.handler('f-markdown')}\n\n<script>{hostile.js('f-script')}</script>"))
    return nb


def test_the_policy_allows_the_heads_own_scripts_and_nothing_else():
    head = ('<!DOCTYPE html><html><head><title>t</title>'
            '<script src="https://cdn.example/ajax/libs/mathjax/2.7.7/latest.js?config=x"> </script>'
            '<script type="text/x-mathjax-config">ignored()</script><script>init();</script></head>')
    policy = csp.policy(head)
    digest = base64.b64encode(hashlib.sha256(b"init();").digest()).decode()
    assert f"script-src 'sha256-{digest}' https://cdn.example/ajax/libs/mathjax/;" in policy
    assert "default-src 'none'" in policy and "img-src data:" in policy and "unsafe-inline" not in policy.split(";")[1]
    protected = csp.content_security_policy(head)
    assert protected.index('http-equiv="Content-Security-Policy"') < protected.index("<title>")  # first in <head>
    with pytest.raises(ValueError, match="no <head>"):
        csp.content_security_policy("<html><body>")


def test_the_feedback_template_carries_the_policy():
    page = _feedback_page(nbformat.v4.new_notebook(), protected=True)
    assert page.count('http-equiv="Content-Security-Policy"') == 1
    head = page[:page.index("</head>")]
    assert head.index("Content-Security-Policy") < head.index("<script")  # before any script of the page
    assert "Content-Security-Policy" not in _feedback_page(nbformat.v4.new_notebook(), protected=False)


def _open(html: str) -> dict:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    url = f"{ORIGIN}/feedback.html"
    seen: dict = {"requests": [], "dialogs": []}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--headless"])
        try:
            page = browser.new_page()
            page.route("**/*", lambda r: r.fulfill(status=200, content_type="text/html", body=html)
                       if r.request.url == url else (seen["requests"].append(r.request.url), r.abort()))
            page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
            page.add_init_script("window.__violations = [];"
                                 "document.addEventListener('securitypolicyviolation',"
                                 " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));")
            page.goto(url, wait_until="load")
            page.wait_for_timeout(500)
            seen["title"] = page.title()
            seen["violations"] = page.evaluate("window.__violations")
        finally:
            browser.close()
    return seen


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no system chromium (apt-get install -y chromium)")
@pytest.mark.filterwarnings("ignore::UserWarning")  # nbconvert: the battery's lexer names are no lexers
def test_the_policy_alone_stops_the_hostile_battery_in_chromium():
    bare = _open(_feedback_page(_battery(), protected=False))
    assert bare["title"].startswith("pwned-") and any("evil.test" in u for u in bare["requests"]), bare  # it sees them
    seen = _open(_feedback_page(_battery(), protected=True))
    assert seen["title"] == "toy" and seen["dialogs"] == [], seen
    assert not any("evil.test" in u for u in seen["requests"]), seen["requests"]
    assert any(v.startswith("script-src") for v in seen["violations"]), seen["violations"]  # refused, not absent
    # the page's own: MathJax's script is requested (the policy lets it load), nothing of the page is refused
    honest = _open(_feedback_page(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("$x^2$")]),
                                  protected=True))
    assert honest["violations"] == [] and any("mathjax" in u for u in honest["requests"]), honest
