"""The executed notebook as kept for humans: only allow-listed, checked content, nothing that runs.

The grader keeps each participant's executed notebook in ``autograded/<student>/<assignment>/``,
where nbgrader's formgrader (the instructor's Jupyter server) renders it as HTML on the server's
own origin, and ``nbgrader generate_feedback`` turns it into the feedback pages. Both render with
nbconvert's HTML templates (``lab``/``classic`` ``base.html.j2``) under nbgrader's ``formgrade`` and
``feedback`` templates, which put many notebook strings into HTML unescaped or unquoted: image
``width=``/``height=``, the prompt number, ``unknown type {{ cell.type }}``, ``grade_id`` in ``href``
and ``id``, a mermaid block's text, raw cells. Whatever runs there runs as the instructor, whose
session can call the Jupyter API (run code as the grader: secrets, grades). The kernel decides what
the outputs, their metadata and the prompt numbers hold; the participant decides everything else in
the file. So the kept copy is rebuilt from allow-lists, not cleaned of known attacks:

- notebook: only ``cells``, ``metadata``, ``nbformat``, ``nbformat_minor``; metadata only
  ``kernelspec`` and ``language_info``, each key a plain name or short text (`_NAME`, `_TEXT`); a
  title, widget state and anything else is dropped;
- cells: only the keys of their type (code, markdown, raw; any other becomes a markdown note); an
  ``id`` that is not nbformat's ``[A-Za-z0-9_-]{1,64}`` gets a new one; a prompt number that is not
  an integer is dropped; cell metadata keeps only `CELL_METADATA` keys of the right type (tags as
  plain names, nbgrader's fields with nbgrader's own id rule, else no nbgrader metadata at all);
- outputs keep only inert MIME types (`KEPT_TYPES`: text and PNG/JPEG images, which nbconvert
  escapes); an image whose base64 payload does not decode to a PNG/JPEG (magic bytes) is dropped
  with a note; output metadata keeps only an image's integer ``width``/``height``, ``unconfined``
  and ``needs_background`` light/dark; an output left with nothing inert becomes a ``text/plain``
  note saying what was removed and why (a pandas table keeps its ``text/plain`` form, a figure its
  PNG, with no note); streams and errors keep their text only as text;
- a markdown or raw cell that is not word for word one of the assignment's own cells (given as
  `trusted_markdown`) is escaped (`markdown`): every ``<`` becomes ``&lt;``, every ``&`` that starts
  an entity ``&amp;``, ``![`` becomes ``!\\[`` (no image: nothing is fetched from another host), and a
  ``...script:`` URL scheme gets a space before its colon; its attachments are dropped (nothing
  shows them). The assignment's own cells keep their attachments only if each one is a checked
  PNG/JPEG and every ``attachment:`` the cell shows is there; else the cell is escaped too.

Only this kept copy changes: grades are computed before, from the executed notebook as it was. A
notebook that holds nothing outside the allow-lists is kept byte for byte.
"""

from __future__ import annotations

import base64
import binascii
import copy
import math
import re
from typing import Any

import nbformat
from nbformat.corpus.words import generate_corpus_id

# what nbconvert's HTML templates render escaped (text through ansi2html, images as escaped data URLs);
# text/html, text/markdown, text/latex, image/svg+xml, application/javascript, JSON and widget views are not kept
KEPT_TYPES = ("text/plain", "image/png", "image/jpeg")
IMAGE_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
KEPT_OUTPUTS = ("stream", "error")  # text rendered escaped
RICH_OUTPUTS = ("display_data", "execute_result")
STREAM_NAMES = ("stdout", "stderr")
MAX_IMAGE_SIDE = 100_000  # pixels: any figure fits; the value is an integer, never text
BACKGROUNDS = ("light", "dark")
NOTE = ("[autograder: this output ({types}) was removed from the kept copy of the notebook: only text and "
        "PNG/JPEG images are kept, because the instructor's formgrader would run a notebook's script and HTML]")
IMAGE_NOTE = ("[autograder: this output's {types} was removed from the kept copy of the notebook: its data is not "
              "a PNG/JPEG image]")
CELL_NOTE = ("[autograder: a cell of type {kind} was removed from the kept copy of the notebook: only code, "
             "markdown and raw cells are kept]")

_ENTITY_START = re.compile(r"&(?=[#A-Za-z])")
# javascript:, vbscript: and the like, with the blanks and backslashes a link, a browser or MathJax would skip
_SCRIPT_SCHEME = re.compile(r"(s[\s\\]*c[\s\\]*r[\s\\]*i[\s\\]*p[\s\\]*t[\s\\]*):", re.IGNORECASE)
_CELL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # nbformat 4.5's own rule
_GRADE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # nbgrader's own rule for grade ids (checkcellmetadata)
_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,64}")  # a tag, a kernel, lexer or MIME name
_TEXT = re.compile(r"[A-Za-z0-9_.+()/:, -]{0,128}")  # a kernel's display name or version: no <>&"'= or `
_CHECKSUM = re.compile(r"[0-9a-f]{1,128}")
_MIME = re.compile(r"[A-Za-z0-9.+-]{1,64}/[A-Za-z0-9.+-]{1,64}")
_ATTACHMENT_REF = re.compile(r"attachment:")


# --- small typed checks: each returns the value if it is allowed, else `_DROP` -----------------------------------
class _Drop:
    """Marks a value that is not allowed (None is a value nbformat allows)."""


_DROP = _Drop()


def _flag(value: Any) -> Any:
    return value if isinstance(value, bool) else _DROP


def _name(value: Any) -> Any:
    return value if isinstance(value, str) and _NAME.fullmatch(value) else _DROP


def _mime(value: Any) -> Any:
    return value if isinstance(value, str) and _MIME.fullmatch(value) else _DROP


def _text(value: Any) -> Any:
    return value if isinstance(value, str) and _TEXT.fullmatch(value) else _DROP


def _side(value: Any) -> Any:
    """An image width or height: an integer number of pixels (nbconvert writes it unquoted)."""
    return value if type(value) is int and 0 <= value <= MAX_IMAGE_SIDE else _DROP


def _number(value: Any) -> Any:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return value if ok else _DROP


def _integer(value: Any) -> Any:
    return value if type(value) is int else _DROP


def _one_of(*allowed: Any):
    return lambda value: value if isinstance(value, str) and value in allowed else _DROP


def _tags(value: Any) -> Any:
    if not isinstance(value, list):
        return _DROP
    return [tag for tag in value if _name(tag) is not _DROP]


def _grade_id(value: Any) -> Any:
    return value if isinstance(value, str) and _GRADE_ID.fullmatch(value) else _DROP


def _checksum(value: Any) -> Any:
    return value if isinstance(value, str) and _CHECKSUM.fullmatch(value) else _DROP


def _execution_count(value: Any) -> int | None:
    """A prompt number nbconvert writes unescaped: an integer, else none."""
    return value if type(value) is int else None


def _allowed(mapping: Any, schema: dict) -> dict:
    """The keys of `mapping` that `schema` names, each passed through its check (a dict schema: recursively)."""
    if not isinstance(mapping, dict):
        return {}
    kept = {}
    for key, check in schema.items():
        if key not in mapping:
            continue
        value = _allowed(mapping[key], check) if isinstance(check, dict) else check(mapping[key])
        if isinstance(check, dict) and not value and mapping[key]:
            continue  # nothing of it was allowed: no empty husk either
        if value is not _DROP:
            kept[key] = value
    return kept


NOTEBOOK_METADATA = {
    "kernelspec": {"name": _name, "display_name": _text, "language": _name},
    "language_info": {"name": _name, "version": _text, "mimetype": _mime, "file_extension": _name,
                      "pygments_lexer": _name, "nbconvert_exporter": _name,
                      "codemirror_mode": lambda v: _allowed(v, {"name": _name, "version": _integer})
                      if isinstance(v, dict) else _name(v)},
}
NBGRADER_METADATA = {"grade": _flag, "solution": _flag, "task": _flag, "locked": _flag, "grade_id": _grade_id,
                     "points": _number, "schema_version": _integer, "checksum": _checksum,
                     "cell_type": _one_of("code", "markdown")}
CELL_METADATA = {
    "tags": _tags, "editable": _flag, "deletable": _flag, "collapsed": _flag, "trusted": _flag,
    "scrolled": lambda v: v if isinstance(v, bool) or v == "auto" else _DROP,
    "jupyter": {"source_hidden": _flag, "outputs_hidden": _flag, "outputs_collapsed": _flag},
    "nbgrader": lambda v: _nbgrader(v),
}
RAW_METADATA = {**CELL_METADATA, "raw_mimetype": _one_of("text/html", "text/markdown", "text/restructuredtext",
                                                          "text/latex", "text/x-python", "application/pdf", "")}
IMAGE_METADATA = {"width": _side, "height": _side, "unconfined": _flag, "needs_background": _one_of(*BACKGROUNDS)}
OUTPUT_METADATA = {"image/png": IMAGE_METADATA, "image/jpeg": IMAGE_METADATA, "needs_background": _one_of(*BACKGROUNDS)}


def _nbgrader(value: Any) -> Any:
    """nbgrader's cell metadata, typed; none at all if its grade id breaks nbgrader's rule (it lands in HTML)."""
    if not isinstance(value, dict) or ("grade_id" in value and _grade_id(value["grade_id"]) is _DROP):
        return _DROP
    return _allowed(value, NBGRADER_METADATA)


# --- content --------------------------------------------------------------------------------------------------------
def image(mime: str, value: Any) -> bool:
    """Whether `value` is base64 text of a `mime` image (PNG/JPEG magic bytes), as nbconvert puts it in a data URL."""
    if mime not in IMAGE_MAGIC or not isinstance(value, str):
        return False
    try:
        decoded = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    return decoded.startswith(IMAGE_MAGIC[mime])


def markdown(source: str) -> str:
    """A markdown cell's source that renders to text and formatting only: no raw HTML, no image, no script URL."""
    source = _ENTITY_START.sub("&amp;", source)  # first: the escapes below add entities of their own
    source = source.replace("<", "&lt;").replace("![", "!\\[")
    return _SCRIPT_SCHEME.sub(r"\1 :", source)


def _note(types: str, template: str = NOTE, kind: str = "display_data", execution_count: Any = None) -> dict:
    note = nbformat.v4.new_output("display_data", data={"text/plain": template.format(types=types)})
    if kind == "execute_result":  # keeps its place and prompt number
        note = nbformat.v4.new_output("execute_result", data=note["data"],
                                      execution_count=_execution_count(execution_count))
    return note


def output(out: Any) -> dict:
    """`out` rebuilt from the allow-lists: its inert types and metadata, else a text/plain note in its place."""
    if not isinstance(out, dict):  # not an output at all (a hand-edited notebook): a note, never a crash
        out = {"output_type": type(out).__name__}
    kind = out.get("output_type")
    if kind == "stream" and isinstance(out.get("text"), str):
        name = out.get("name") if out.get("name") in STREAM_NAMES else "stdout"
        return nbformat.v4.new_output("stream", name=name, text=out["text"])
    if kind == "error":
        traceback = out.get("traceback")
        traceback = [line for line in traceback if isinstance(line, str)] if isinstance(traceback, list) else []
        return nbformat.v4.new_output("error", ename=str(out.get("ename", "")), evalue=str(out.get("evalue", "")),
                                      traceback=traceback)
    data = out.get("data") if kind in RICH_OUTPUTS else None
    if not isinstance(data, dict):
        return _note(f"output type {kind}")
    kept = {mime: value for mime, value in data.items() if mime in KEPT_TYPES and isinstance(value, str)}
    bad_images = sorted(mime for mime in kept if mime in IMAGE_MAGIC and not image(mime, kept[mime]))
    for mime in bad_images:
        del kept[mime]
    if bad_images:
        note = _note(", ".join(bad_images), IMAGE_NOTE, kind, out.get("execution_count"))
        if "text/plain" in kept:
            note["data"]["text/plain"] += "\n" + kept["text/plain"]
        return note
    if not kept:
        return _note(", ".join(sorted(map(str, data))) or "no data", NOTE, kind, out.get("execution_count"))
    metadata = _allowed(out.get("metadata"), {k: v for k, v in OUTPUT_METADATA.items() if k in kept or "/" not in k})
    if kind == "execute_result":
        return nbformat.v4.new_output(kind, data=kept, metadata=metadata,
                                      execution_count=_execution_count(out.get("execution_count")))
    return nbformat.v4.new_output(kind, data=kept, metadata=metadata)


def _attachments(value: Any) -> dict | None:
    """The attachments, if every one is a checked PNG/JPEG under a plain name; else None."""
    if not isinstance(value, dict):
        return None
    for name, bundle in value.items():
        if _name(name) is _DROP or not isinstance(bundle, dict) or not bundle:
            return None
        if not all(image(mime, payload) for mime, payload in bundle.items()):
            return None
    return copy.deepcopy(value)


def _renders(source: str, attachments: dict) -> bool:
    """Whether nbconvert's markdown renderer finds every attachment the cell shows (a missing one stops the page)."""
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    try:
        MarkdownWithMath(renderer=IPythonRenderer(escape=False, attachments=attachments)).render(source)
    except Exception:
        return False
    return True


def _text_cell(cell: dict, source: str, trusted: frozenset[str]) -> dict:
    kind = cell["cell_type"]
    clean: dict = {"cell_type": kind, "metadata": _allowed(cell.get("metadata"),
                                                            RAW_METADATA if kind == "raw" else CELL_METADATA),
                   "source": source}
    if source in trusted:
        attachments = _attachments(cell.get("attachments", {}))
        if attachments is not None and (not _ATTACHMENT_REF.search(source) or _renders(source, attachments)):
            if attachments:
                clean["attachments"] = attachments
            return clean
    clean["source"] = markdown(source)
    return clean


def cell(raw_cell: Any, trusted: frozenset[str] = frozenset(), needs_id: bool = False) -> dict:
    """A cell rebuilt from the allow-lists (an unknown cell type: a markdown note in its place)."""
    raw_cell = raw_cell if isinstance(raw_cell, dict) else {"cell_type": type(raw_cell).__name__}
    kind = raw_cell.get("cell_type")
    source = raw_cell.get("source") if isinstance(raw_cell.get("source"), str) else ""
    if kind == "code":
        outputs = raw_cell.get("outputs") if isinstance(raw_cell.get("outputs"), list) else []
        clean = {"cell_type": "code", "execution_count": _execution_count(raw_cell.get("execution_count")),
                 "metadata": _allowed(raw_cell.get("metadata"), CELL_METADATA),
                 "outputs": [output(out) for out in outputs], "source": source}
    elif kind in ("markdown", "raw"):
        clean = _text_cell(raw_cell, source, trusted)
    else:
        clean = {"cell_type": "markdown", "metadata": {},
                 "source": markdown(CELL_NOTE.format(kind=str(kind)[:64]))}
    if "id" in raw_cell or needs_id:
        ok = isinstance(raw_cell.get("id"), str) and _CELL_ID.fullmatch(raw_cell["id"])
        clean["id"] = raw_cell["id"] if ok else generate_corpus_id()
    return clean


def notebook(raw: bytes, trusted_markdown: frozenset[str] = frozenset()) -> bytes:
    """The notebook `raw` (JSON bytes) rebuilt from the allow-lists; `raw` itself when that changed nothing.

    `trusted_markdown`: markdown and raw cell sources kept as they are (the assignment's own cells, e.g.
    as nbgrader's autograde restores its locked cells).
    """
    nb = nbformat.reads(raw.decode("utf-8", errors="replace"), as_version=4)
    cells = nb.get("cells") if isinstance(nb.get("cells"), list) else []
    minor = nb.get("nbformat_minor") if type(nb.get("nbformat_minor")) is int else 5
    clean = {"cells": [cell(c, trusted_markdown, needs_id=minor >= 5) for c in cells],
             "metadata": _allowed(nb.get("metadata"), NOTEBOOK_METADATA), "nbformat": 4, "nbformat_minor": minor}
    kernelspec = clean["metadata"].get("kernelspec")
    if kernelspec is not None and "name" not in kernelspec:
        del clean["metadata"]["kernelspec"]  # nbformat requires both names
    elif kernelspec is not None:
        kernelspec.setdefault("display_name", kernelspec["name"])
    if clean == nb:
        return raw
    return nbformat.writes(nbformat.from_dict(clean)).encode("utf-8")


def markdown_sources(raw_notebooks: list[bytes]) -> frozenset[str]:
    """The markdown and raw cell sources of the assignment's own notebooks (`notebook`'s `trusted_markdown`)."""
    sources: set[str] = set()
    for raw in raw_notebooks:
        try:
            nb = nbformat.reads(raw.decode("utf-8", errors="replace"), as_version=4)
        except Exception:  # not a notebook: nothing of it is trusted
            continue
        sources.update(cell.source for cell in nb.cells if cell.cell_type in ("markdown", "raw"))
    return frozenset(sources)
