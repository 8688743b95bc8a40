"""The live board on a projector (issue 23, item 1), in the system chromium at 1024x768, 1280x800 and 1920x1080.

Fourteen participants with real-world names: no horizontal scroll at any size; at 1920x1080 the page fills
the screen without scrolling; the join address and code are the largest text, with a QR code that encodes
the address given to ``autograder serve --public-url`` (read back module by module from a screenshot and
compared with segno's own matrix); the scatter's text is at least 14 px with several y ticks. Each
size's screenshot is kept under the test's tmp folder (``board-<width>.png``).
"""

from __future__ import annotations

import shutil

import pytest

from autograder.event import cli
from tests.helpers import events as es

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system chromium (apt-get install -y chromium)")
PUBLIC = "http://10.0.0.5:8000"
SIZES = ((1024, 768), (1280, 800), (1920, 1080))
NAMES = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Edsger W. Dijkstra",
         "Margaret Hamilton", "Donald Knuth", "Barbara Liskov", "Tim Berners-Lee", "Frances Allen",
         "Claude Shannon", "Hedy Lamarr", "John von Neumann", "Radia Perlman")
WAIT_MS = 60_000

MEASURE = """() => {
  const texts = [...document.querySelectorAll('body *')].filter(e => e.offsetParent !== null || e.closest('svg'))
    .filter(e => [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()));
  const size = e => parseFloat(getComputedStyle(e).fontSize);
  const join = texts.filter(e => e.closest('#joinbox .joinlead'));
  const others = texts.filter(e => !e.closest('#joinbox .joinlead'));
  const svgText = [...document.querySelectorAll('#scatter text')];
  const main = document.querySelector('main').getBoundingClientRect();
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
          scrollHeight: document.documentElement.scrollHeight, innerHeight: window.innerHeight,
          mainBottom: main.bottom, joinMax: Math.max(...join.map(size)),
          othersMax: Math.max(...others.map(size)), othersMaxTag: others.sort((a, b) => size(b) - size(a))[0].outerHTML.slice(0, 80),
          joinText: document.querySelector('#joinbox').innerText,
          scatterMin: Math.min(...svgText.map(e => e.getBoundingClientRect().height > 0 ? size(e) : 99)),
          yTicks: document.querySelectorAll('#scatter text.ytick').length,
          points: document.querySelectorAll('#scatter circle.point').length,
          rows: document.querySelectorAll('#board tbody tr').length,
          scripts: document.querySelectorAll('#qr script, #qr [onload], #qr foreignObject').length,
          qr: document.querySelectorAll('#qr svg path').length};
}"""


@pytest.fixture(scope="module")
def event(tmp_path_factory):
    with es.own(tmp_path_factory, "board", name="projector", args=("--public-url", PUBLIC)) as started:
        truth = started["truth"]
        op = f"{started['api']}/op"
        for k, name in enumerate(NAMES):
            status, reply = es.call(f"{started['api']}/join", {"name": name})
            assert status == 200, reply
            token = reply["result"]["token"]
            n = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 120, 7, 4)[k]
            if n:
                assert es.call(op, {"op": "annotate", "indices": started["c"][:n].tolist()}, token=token)[0] == 200
            if k < 12:  # two are still working
                predictions = truth["private_digits"].copy()
                if k % 4 == 3:  # every fourth fails (89.9%)
                    predictions[: len(predictions) // 5] = truth["track"][0]
                assert es.call(op, {"op": "score", "split": "private", "predictions": predictions.tolist()},
                               token=token)[0] == 200
        yield started


def qr_modules(png: bytes, size: int) -> list[list[bool]]:
    """The dark modules of a screenshot of a QR code of `size` x `size` modules (quiet zone included)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    width, height = image.size
    return [[image.getpixel((int((col + 0.5) * width / size), int((row + 0.5) * height / size))) < 128
             for col in range(size)] for row in range(size)]


def test_the_board_fits_a_projector_at_three_sizes(event, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    segno = pytest.importorskip("segno", reason="segno is in the instructor extra")
    expected = [[bool(v) for v in row] for row in segno.make(PUBLIC, error="m", micro=False).matrix]
    border = 4
    size = len(expected) + 2 * border
    expected = [[False] * size] * border + [[False] * border + row + [False] * border for row in expected] + \
        [[False] * size] * border
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                   "--disable-background-networking"])
        try:
            for width, height in SIZES:
                page = browser.new_page(viewport={"width": width, "height": height})
                requested = []
                page.on("request", lambda r: requested.append(r.url))
                page.goto(f"{event['url']}/board/{event['code']}")
                page.wait_for_function("document.querySelectorAll('#scatter circle.point').length === 12",
                                       timeout=WAIT_MS)
                page.screenshot(path=str(tmp_path / f"board-{width}.png"), full_page=True)
                m = page.evaluate(MEASURE)
                where = f"at {width}x{height}: {m}"
                assert m["scrollWidth"] <= m["innerWidth"], where  # no horizontal scroll
                assert m["joinMax"] > m["othersMax"], where  # the join address and code are the largest text
                assert PUBLIC in m["joinText"] and event["code"] in m["joinText"], where  # not 127.0.0.1
                assert "127.0.0.1" not in m["joinText"], where
                assert m["scatterMin"] >= 14, where  # readable from the back
                assert m["yTicks"] >= 4, where
                assert m["qr"] >= 1 and m["scripts"] == 0, where
                if (width, height) == (1920, 1080):  # uses the screen: every row, no scroll, down to the bottom
                    assert m["rows"] == len(NAMES), where
                    assert m["scrollHeight"] <= m["innerHeight"], where
                    assert m["mainBottom"] >= 0.9 * m["innerHeight"], where
                seen = qr_modules(page.locator("#qr svg").screenshot(), size)
                wrong = sum(a != b for row_a, row_b in zip(seen, expected) for a, b in zip(row_a, row_b))
                assert wrong == 0, f"{wrong} of {size * size} QR modules differ from segno's matrix {where}"
                assert all(url.startswith(event["url"]) for url in requested), requested  # nothing from elsewhere
                page.close()
        finally:
            browser.close()
    assert sorted(f.name for f in tmp_path.glob("board-*.png")) == ["board-1024.png", "board-1280.png",
                                                                     "board-1920.png"]


def test_serve_prints_the_join_address_it_shows(event):
    log = event["db"].with_suffix(".log").read_text()
    assert f"the board shows the join address {PUBLIC} (--public-url)" in log


def test_the_join_address_is_the_lan_address_unless_given(monkeypatch):
    monkeypatch.setattr(cli, "lan_address", lambda: "192.168.1.20")
    assert cli.shown_url("0.0.0.0", 8000) == ("http://192.168.1.20:8000", "this machine's LAN address")
    shown, why = cli.shown_url("127.0.0.1", 8000)
    assert shown == "http://192.168.1.20:8000" and "--host 0.0.0.0" in why  # loopback only: says so
    assert cli.shown_url("10.0.0.7", 8001)[0] == "http://10.0.0.7:8001"  # the address it listens on
    assert cli.shown_url("0.0.0.0", 8000, "https://event.example.org") == ("https://event.example.org",
                                                                          "--public-url")
    monkeypatch.setattr(cli, "lan_address", lambda: None)
    shown, why = cli.shown_url("0.0.0.0", 8000)
    assert shown == "http://127.0.0.1:8000" and "--public-url" in why
    parser = __import__("argparse").ArgumentParser()
    cli.add_commands(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["serve", "--public-url", "http://10.0.0.5:8000/"]).public_url == "http://10.0.0.5:8000"
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--public-url", "10.0.0.5:8000"])  # no scheme: refused
