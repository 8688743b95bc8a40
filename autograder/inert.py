"""The executed notebook as kept for humans: no participant script, no participant HTML.

The grader keeps each participant's executed notebook in ``autograded/<student>/<assignment>/``,
where nbgrader's formgrader (the instructor's Jupyter server) renders it as HTML on the server's
own origin, and ``nbgrader generate_feedback`` turns it into the feedback pages. A kernel's
``display(Javascript(...))``, an HTML output with ``<img onerror=...>``, a widget view and raw
HTML in a markdown cell would all run there as the instructor, whose session can call the Jupyter
API (run code as the grader: secrets, grades). So before the notebook is kept:

- outputs keep only inert MIME types (`KEPT_TYPES`: text and PNG/JPEG images, which nbconvert
  escapes); an output left with none of them becomes a ``text/plain`` note saying what was removed
  and why (a pandas table keeps its ``text/plain`` form, a figure its PNG, with no note);
- the notebook's widget state (``metadata.widgets``) is dropped;
- a markdown cell that is not word for word one of the assignment's own markdown cells (given as
  `trusted_markdown`) is escaped: every ``<`` becomes ``&lt;`` and every ``&`` that starts an entity
  becomes ``&amp;`` (so no HTML tag, autolink or encoded URL survives), and a ``...script:`` URL
  scheme gets a space before its colon (a link to it no longer runs, a sentence reads the same).
  Rendered, the text reads as the participant typed it; inside code spans the escapes show.

Only this kept copy changes: grades are computed before, from the executed notebook as it was.
"""

from __future__ import annotations

import copy
import re

import nbformat

# what nbconvert's HTML templates render escaped (text through ansi2html, images as escaped data URLs);
# text/html, text/markdown, text/latex, image/svg+xml, application/javascript, JSON and widget views are not kept
KEPT_TYPES = ("text/plain", "image/png", "image/jpeg")
KEPT_OUTPUTS = ("stream", "error")  # inert as they are: text rendered escaped
RICH_OUTPUTS = ("display_data", "execute_result")
DROPPED_OUTPUT_METADATA = ("filenames",)  # nbconvert's extracted-file names: an <img src> pointing anywhere
NOTE = ("[autograder: this output ({types}) was removed from the kept copy of the notebook: only text and "
        "PNG/JPEG images are kept, because the instructor's formgrader would run a notebook's script and HTML]")

_ENTITY_START = re.compile(r"&(?=[#A-Za-z])")
# javascript:, vbscript: and the like, with the blanks and backslashes a link, a browser or MathJax would skip
_SCRIPT_SCHEME = re.compile(r"(s[\s\\]*c[\s\\]*r[\s\\]*i[\s\\]*p[\s\\]*t[\s\\]*):", re.IGNORECASE)


def markdown(source: str) -> str:
    """A markdown cell's source that renders to text and formatting only: no raw HTML, no script URL."""
    source = _ENTITY_START.sub("&amp;", source)  # first: the escapes below add entities of their own
    source = source.replace("<", "&lt;")
    return _SCRIPT_SCHEME.sub(r"\1 :", source)


def output(out: dict) -> dict:
    """`out` itself if inert, else a copy with only its inert types, else a text/plain note in its place."""
    if not isinstance(out, dict):  # not an output at all (a hand-edited notebook): a note, never a crash
        out = {"output_type": type(out).__name__}
    kind = out.get("output_type")
    if kind in KEPT_OUTPUTS:
        return out
    data = out.get("data") if kind in RICH_OUTPUTS else None
    if isinstance(data, dict):
        kept = {mime: value for mime, value in data.items() if mime in KEPT_TYPES and isinstance(value, str)}
        metadata = out.get("metadata") if isinstance(out.get("metadata"), dict) else {}
        if len(kept) == len(data) and not any(key in metadata for key in DROPPED_OUTPUT_METADATA):
            return out
        if kept:
            clean = copy.deepcopy(out)
            clean["data"] = kept
            clean["metadata"] = {k: v for k, v in metadata.items()
                                 if k not in DROPPED_OUTPUT_METADATA and (k not in data or k in kept)}
            return clean
        types = ", ".join(sorted(map(str, data))) or "no data"
    else:
        types = f"output type {kind}"
    note = nbformat.v4.new_output("display_data", data={"text/plain": NOTE.format(types=types)})
    if kind == "execute_result":  # keeps its place and prompt number
        note = nbformat.v4.new_output("execute_result", data=note["data"], execution_count=out.get("execution_count"))
    return note


def notebook(raw: bytes, trusted_markdown: frozenset[str] = frozenset()) -> bytes:
    """The notebook `raw` (JSON bytes) with no active content; `raw` itself when it had none.

    `trusted_markdown`: markdown cell sources kept as they are (the assignment's own cells, e.g. as
    nbgrader's autograde restores its locked cells).
    """
    nb = nbformat.reads(raw.decode("utf-8", errors="replace"), as_version=4)
    changed = False
    if "widgets" in nb.metadata:
        del nb.metadata["widgets"]
        changed = True
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source not in trusted_markdown:
            escaped = markdown(cell.source)
            changed |= escaped != cell.source
            cell.source = escaped
        elif cell.cell_type == "code":
            kept = [output(out) for out in cell.get("outputs", [])]
            if any(new is not old for new, old in zip(kept, cell.outputs)):
                cell.outputs = [nbformat.from_dict(out) for out in kept]
                changed = True
    return nbformat.writes(nb).encode("utf-8") if changed else raw


def markdown_sources(raw_notebooks: list[bytes]) -> frozenset[str]:
    """The markdown cell sources of the assignment's own notebooks (`notebook`'s `trusted_markdown`)."""
    sources: set[str] = set()
    for raw in raw_notebooks:
        try:
            nb = nbformat.reads(raw.decode("utf-8", errors="replace"), as_version=4)
        except Exception:  # not a notebook: nothing of it is trusted
            continue
        sources.update(cell.source for cell in nb.cells if cell.cell_type == "markdown")
    return frozenset(sources)
