"""`autograder.results.inert`: the kept notebook holds no active content, and inert content is kept as it was.

Hand-made notebooks, no kernel: every kind of active output (JavaScript, HTML, SVG, markdown, LaTeX,
JSON, widget views, an unknown output type) dropped or reduced to its text form, text and PNG/JPEG
outputs kept byte for byte, markdown cells escaped unless they are the assignment's own, widget
state dropped; then the notebook rendered as nbgrader's formgrader renders it holds no element a
browser would run (the real-browser check is `test_attacks_round3`'s formgrader test).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from html.parser import HTMLParser

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from autograder.results import inert
from fixtures import hostile_notebook as hostile

PAYLOAD = "document.title = 'pwned'"
HANDLER = f'<img src="data:," onerror="{PAYLOAD}">'
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
JPEG = hostile.JPEG


def _raw(nb) -> bytes:
    return nbformat.writes(nb).encode("utf-8")


def _read(raw: bytes):
    return nbformat.reads(raw.decode("utf-8"), as_version=4)


def _active_outputs() -> list:
    return [
        new_output("display_data", data={"application/javascript": PAYLOAD,
                                         "text/plain": "<IPython.core.display.Javascript object>"}),
        new_output("display_data", data={"text/html": HANDLER}),  # no text form: a note takes its place
        new_output("execute_result", data={"image/svg+xml": f"<svg onload=\"{PAYLOAD}\"/>"}, execution_count=3),
        new_output("display_data", data={"text/markdown": HANDLER, "text/latex": r"$\href{javascript:x}{y}$"}),
        new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "m1"},
                                         "text/plain": "IntProgress(value=3)"}),
        new_output("display_data", data={"application/json": {"a": 1}}),
        new_output("display_data", data={"text/html": "<table><tr><td>1</td></tr></table>",
                                         "text/plain": "   a\n0  1"},
                   metadata={"text/html": {"isolated": True}}),  # a pandas table: its text form stays
    ]


def _inert_outputs() -> list:
    return [
        new_output("stream", name="stdout", text="accuracy 0.93 <b>\n"),
        new_output("error", ename="ValueError", evalue="<img onerror=x>", traceback=["ValueError: <b>"]),
        new_output("execute_result", data={"text/plain": "<b>42</b>"}, execution_count=1),
        new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure size 640x480 with 1 Axes>"},
                   metadata={"image/png": {"width": 10, "height": 10}, "needs_background": "light"}),
        new_output("display_data", data={"image/jpeg": JPEG}, metadata={"image/jpeg": {"width": 320}}),
    ]


def _notebook(outputs: list, markdown: str = "plain text", widgets: bool = False):
    nb = new_notebook(cells=[new_markdown_cell(markdown), new_code_cell("x = 1", outputs=outputs)])
    if widgets:
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    return nb


def test_a_notebook_without_active_content_is_kept_byte_for_byte():
    raw = _raw(_notebook(_inert_outputs()))
    assert inert.notebook(raw) is raw


def test_inert_outputs_are_kept_as_they_are_beside_dropped_ones():
    raw = _raw(_notebook(_inert_outputs() + _active_outputs()))
    kept = _read(inert.notebook(raw)).cells[1].outputs
    expected = _inert_outputs()
    assert [json.dumps(o, sort_keys=True) for o in kept[:len(expected)]] == \
        [json.dumps(o, sort_keys=True) for o in expected]


def test_every_kind_of_active_output_is_dropped_and_noted():
    raw = _raw(_notebook(_active_outputs()))
    js, html, svg, md, widget, js_on, table = _read(inert.notebook(raw)).cells[1].outputs
    for out in (js, html, svg, md, widget, js_on, table):
        assert set(out.get("data", {})) <= set(inert.KEPT_TYPES), out
    # a text form stays as it was, without a note (a pandas table, a progress bar, IPython's placeholder)
    assert js.data == {"text/plain": "<IPython.core.display.Javascript object>"}
    assert widget.data == {"text/plain": "IntProgress(value=3)"}
    assert table.data == {"text/plain": "   a\n0  1"} and table.metadata == {}
    # nothing inert left: a note that says what was removed and why, in the output's place and prompt
    assert "text/html" in html.data["text/plain"] and "formgrader" in html.data["text/plain"]
    assert svg.output_type == "execute_result" and svg.execution_count == 3 and "image/svg+xml" in svg.data["text/plain"]
    assert "text/latex, text/markdown" in md.data["text/plain"]
    assert "application/json" in js_on.data["text/plain"]
    assert PAYLOAD not in inert.notebook(raw).decode()


def test_an_unknown_output_type_becomes_a_note():
    nb = _notebook([])
    nb.cells[1].outputs = [{"output_type": "mystery", "html": HANDLER}]  # not valid nbformat: read leniently
    raw = json.dumps(nb).encode()
    (mystery,) = _read(inert.notebook(raw)).cells[1].outputs
    assert mystery.output_type == "display_data" and "mystery" in mystery.data["text/plain"]
    assert "output type str" in inert.output(HANDLER).data["text/plain"]  # not an output at all


def test_widget_state_and_extracted_file_names_are_dropped():
    out = new_output("display_data", data={"image/png": PNG}, metadata={"filenames": {"image/png": "http://x/y.png"}})
    kept = _read(inert.notebook(_raw(_notebook([out], widgets=True))))
    assert "widgets" not in kept.metadata
    assert kept.cells[1].outputs[0].data == {"image/png": PNG} and kept.cells[1].outputs[0].metadata == {}


def test_markdown_is_escaped_unless_it_is_the_assignments_own():
    own = "Join with `event.join(\"http://<address>:8000\")` &amp; <b>go</b>"
    typed = (f"see {HANDLER} &lt;b&gt; a & b, [click](javascript:alert(1)) [x](java&#115;cript&#58;y) "
             "[y](JaVa\\Script\\:z) `a < b`")
    nb = new_notebook(cells=[new_markdown_cell(own), new_markdown_cell(typed)])
    kept = _read(inert.notebook(_raw(nb), inert.markdown_sources([_raw(new_notebook(cells=[new_markdown_cell(own)]))])))
    assert kept.cells[0].source == own
    escaped = kept.cells[1].source
    assert "<" not in escaped and "&#" not in escaped.replace("&amp;#", "")
    assert escaped.startswith('see &lt;img src="data:," onerror=') and "&amp;lt;b&amp;gt; a & b" in escaped
    assert "javascript :alert(1)" in escaped and "JaVa\\Script\\ :z" in escaped and "`a &lt; b`" in escaped


class _Active(HTMLParser):
    """Elements a browser would run: <script> (other than nbconvert's own), on* handlers, javascript: URLs."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []
        self._script = False

    def handle_starttag(self, tag, attrs):
        self._script = tag == "script"
        for name, value in attrs:
            if name.startswith("on") or (value or "").replace(" ", "").lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}={value!r}>")

    def handle_data(self, data):
        if self._script and "pwned" in data:
            self.found.append(f"<script>{data[:80]}")

    def handle_endtag(self, tag):
        self._script = False


def _formgrader_page(nb) -> str:
    """The page nbgrader's formgrader serves for `nb` (its exporter and template, as it sets them)."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config

    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    resources = {"assignment_id": "a", "notebook_id": "a", "submission_id": "s1", "index": 0, "total": 1,
                 "base_url": "", "student": "s", "last_name": None, "first_name": None, "notebook_path": "n"}
    return HTMLExporter(config=config).from_notebook_node(nb, resources=resources)[0]


def _active(page: str) -> set[str]:
    parser = _Active()
    parser.feed(page)
    return set(parser.found)


@pytest.mark.filterwarnings("ignore:Your element with mimetype")  # the unsanitised page: JSON has no HTML form
def test_the_formgrader_page_of_a_kept_notebook_runs_nothing_of_the_participant():
    markdown = f"{HANDLER}\n\n<script>{PAYLOAD}</script>\n\n[link](javascript:{PAYLOAD})\n\n```mermaid\n</pre>{HANDLER}\n```"
    active = _notebook(_active_outputs() + _inert_outputs(), markdown, widgets=True)
    assert _active(_formgrader_page(active)) - _active(_formgrader_page(new_notebook())) != set()  # the check sees it
    page = _formgrader_page(_read(inert.notebook(_raw(active))))
    assert _active(page) == _active(_formgrader_page(new_notebook()))  # only the formgrader's own handlers
    assert "onerror" in page  # the participant's text is still there, as text


# --- the hostile battery (tests/fixtures/hostile_notebook.py): every place a template writes a notebook string ------
class _Live(HTMLParser):
    """The battery's payloads a browser would run: handlers and scripts naming ``pwned-<tag>``, remote images."""

    def __init__(self):
        super().__init__()
        self.tags: set[str] = set()
        self._script = False

    def _mark(self, text: str) -> None:
        self.tags.update(re.findall(r"pwned-([a-z-]+)", text or ""))

    def handle_starttag(self, tag, attrs):
        self._script = tag == "script"
        for name, value in attrs:
            if name.startswith("on") or (value or "").replace(" ", "").lower().startswith("javascript:"):
                self._mark(value)
            if tag == "img" and name == "src" and hostile.EVIL in (value or ""):
                self.tags.add("remote-image")

    def handle_data(self, data):
        if self._script:
            self._mark(data)

    def handle_endtag(self, tag):
        self._script = False


def _live(page: str) -> set[str]:
    parser = _Live()
    parser.feed(page)
    return parser.tags


def _pages(nb) -> dict[str, str]:
    """`nb` as each instructor page renders it: the formgrader, the feedback, nbconvert's lab and classic HTML."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config

    pages = {"formgrade": _formgrader_page(nb)}
    for name in ("feedback", "lab", "classic"):
        config = Config()
        config.HTMLExporter.template_name = name
        config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
        config.HTMLExporter.extra_template_paths = [str(Path(handlers.template_path).parent / "static" / "node_modules" /
                                                        "bootstrap" / "dist" / "css")]  # as nbgrader's feedback sets it
        resources = {"nbgrader": {"notebook": "a", "score": 1, "max_score": 2, "late_penalty": 0}}
        graded = copy.deepcopy(nb)
        for cell in graded.cells:  # what nbgrader's GetGrades adds before the feedback template runs
            if "nbgrader" in cell.metadata:
                cell.metadata.nbgrader.update(score=0, comment=None)
        pages[name] = HTMLExporter(config=config).from_notebook_node(graded, resources=resources)[0]
    return pages


def _battery_raw() -> bytes:
    return json.dumps(hostile.notebook()).encode()


def test_every_part_of_the_hostile_battery_is_rebuilt_from_the_allow_lists():
    kept = nbformat.reads(inert.notebook(_battery_raw()).decode(), as_version=4)
    assert set(kept["metadata"]) == {"kernelspec", "language_info"}  # no title, widget state or anything else
    assert kept["metadata"]["kernelspec"] == {"name": "python3", "language": "python", "display_name": "python3"}
    assert kept["metadata"]["language_info"] == {"name": "python", "version": "3.11"}
    code, attached, raw, odd, unknown = kept["cells"]
    assert code["execution_count"] is None and code["metadata"] == {"tags": ["ok-tag"], "collapsed": False}
    outs = code["outputs"]
    for out in outs:  # only integer image sides, only checked images, only text prompts
        for mime in ("image/png", "image/jpeg"):
            if mime in out.get("data", {}):
                assert inert.image(mime, out["data"][mime])
                assert all(type(v) is int for k, v in out["metadata"].get(mime, {}).items() if k in ("width", "height"))
        assert set(out.get("metadata", {})) <= {"image/png", "image/jpeg", "needs_background"}
    width, height, jpeg, top, alt, filenames, data, typed, count, stream, error = outs
    for note in (width, jpeg, top, data):  # a payload that is no image: a note says so
        assert "is not a PNG/JPEG image" in note["data"]["text/plain"]
    assert height["data"] == {"image/png": hostile.PNG} and height["metadata"] == {}
    assert alt["metadata"] == {} and filenames["metadata"] == {} and typed["metadata"] == {}
    assert count["execution_count"] is None and stream["name"] == "stdout"
    assert error["traceback"] == [hostile.handler("k-traceback")]  # text: rendered escaped
    assert "attachments" not in attached and attached["source"] == "!\\[logo](attachment:logo.png)"
    assert raw["metadata"] == {"raw_mimetype": "text/html"} and raw["source"].startswith("&lt;img")  # shows as text
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", odd["id"])
    assert unknown["cell_type"] == "markdown" and "mystery" in unknown["source"] and "type" not in unknown
    nbformat.validate(kept)  # and it is a valid notebook


def test_no_page_renders_a_payload_of_the_hostile_battery():
    live = set().union(*map(_live, _pages(hostile.renderable()).values()))
    # the check sees the battery: these run in some page as nbconvert and nbgrader render them as they are
    assert {"k-width", "k-height", "k-jpeg", "k-top", "f-grade-id"} <= live, live
    kept = _read(inert.notebook(_battery_raw()))
    for name, page in _pages(kept).items():
        assert _live(page) == set(), (name, _live(page))


def test_the_assignments_own_attachments_are_kept_only_when_they_are_checked_images():
    own = "![logo](attachment:logo.png)"
    trusted = frozenset({own})

    def kept(attachments: dict) -> dict:
        nb = new_notebook(cells=[new_markdown_cell(own, attachments=attachments)])
        return _read(inert.notebook(_raw(nb), trusted)).cells[0]

    good = kept({"logo.png": {"image/png": PNG}})
    assert good["source"] == own and good["attachments"] == {"logo.png": {"image/png": PNG}}
    for bad in ({"logo.png": {"image/png": "AAAA"}},  # not a PNG
                {"logo.png": {"image/svg+xml": PNG}},  # not a kept type
                {"logo.png": {"image/png": '" onerror="' + hostile.js("f-attachment")}},
                {"other.png": {"image/png": PNG}}):  # the cell shows an attachment that is not there
        cell = kept(bad)
        assert "attachments" not in cell and cell["source"] == "!\\[logo](attachment:logo.png)", bad
        assert _live(_formgrader_page(new_notebook(cells=[cell]))) == set()


def test_a_participants_markdown_shows_no_image_from_anywhere():
    nb = new_notebook(cells=[new_markdown_cell(f"![x]({hostile.EVIL}x.png) \\![y]({hostile.EVIL}y.png) [link](http://a.test)")])
    page = _formgrader_page(_read(inert.notebook(_raw(nb))))
    assert "<img" not in page.split('id="notebook"')[1] and 'href="http://a.test"' in page
