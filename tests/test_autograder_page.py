"""The leaderboard page in a real browser: the system chromium, driven by Playwright.

Clicking a column header sorts the table by that column (numbers as numbers,
empty cells last), a second click reverses it.
"""

from __future__ import annotations

import shutil

import pytest

from autograder.results import leaderboard, store
from helpers.rows import row as stored_row

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no system chromium (apt-get install -y chromium)"),
]


def row(student, accuracy, annotations, status="ok"):
    return stored_row(student, accuracy, annotations, assignment="a", status=status)


def column(page, name):
    return page.eval_on_selector_all(f"tbody td.{name}", "cells => cells.map(c => c.textContent)")


def test_headers_sort_the_table(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    for r in [row("ann", 0.95, 40), row("bob", 0.99, 9), row("cid", 0.5, 100), row("dan", None, None, "timeout"),
              row("eli", 0.92, 110)]:
        store.save(tmp_path, r)
    page_path = leaderboard.build(tmp_path, "a")["html"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--headless"])
        page = browser.new_page()
        page.goto(page_path.as_uri())
        assert column(page, "student") == ["bob", "ann", "eli", "cid", "dan"]  # the ranking
        assert "at least 90%" in page.inner_text("p.rule")
        page.click("th:has-text('annotations')")
        assert column(page, "annotations") == ["9", "40", "100", "110", ""]  # numeric, empty last
        page.click("th:has-text('annotations')")
        assert column(page, "annotations") == ["110", "100", "40", "9", ""]
        page.click("th:has-text('student')")
        assert column(page, "student") == ["ann", "bob", "cid", "dan", "eli"]
        page.click("th:has-text('accuracy')")
        assert column(page, "student") == ["cid", "eli", "ann", "bob", "dan"]
        assert page.get_attribute("th:has-text('accuracy')", "aria-sort") == "ascending"
        browser.close()
