"""A Content-Security-Policy for the feedback pages: the second wall behind `autograder.results.inert`.

`autograder.results.inert` keeps nothing in a graded notebook that a browser would run. Should anything slip
through it (a template of a newer nbconvert that writes another notebook string into HTML), the
feedback page itself refuses to run it: ``nbgrader generate_feedback`` renders through
``templates/feedback_csp.html.j2``, nbgrader's own feedback template with a
``<meta http-equiv="Content-Security-Policy">`` put first in its ``<head>``. The policy is computed
from that ``<head>`` (`policy`), which holds only the template's own markup, never notebook content:

- scripts: only the head's own inline scripts (by SHA-256 hash) and its external scripts' library
  folder (MathJax's ``latest.js`` loads the newest 2.x beside its own version); no inline handler,
  no ``javascript:`` URL, no script the notebook's body brings;
- styles: inline (bootstrap and the notebook's CSS are inlined) and the same folders (MathJax);
  fonts the same, ``data:`` and the page's own folder (bootstrap's icons); images ``data:`` only (kept
  images are data URLs);
- nothing else: no connection, frame, object, form target or ``<base>``.

The instructor's ``nbgrader_config.py`` turns it on with ``configure_feedback(c)``; it applies to
``GenerateFeedback`` only (the formgrader's pages keep nbgrader's template: they need inline handlers
and their own API, see the docs).
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from urllib.parse import urlsplit

TEMPLATE = Path(__file__).resolve().parent / "templates" / "feedback_csp.html.j2"
FILTER = "content_security_policy"

_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
_SRC = re.compile(r"""\bsrc\s*=\s*["']?([^"'\s>]+)""", re.IGNORECASE)
_TYPE = re.compile(r"""\btype\s*=\s*["']?([^"'\s>]+)""", re.IGNORECASE)
_HEAD = re.compile(r"<head\b[^>]*>", re.IGNORECASE)
_JS_TYPES = ("", "text/javascript", "application/javascript", "module")


def _library_folder(url: str) -> str | None:
    """The folder above an external script's own (``.../mathjax/2.7.7/latest.js`` -> ``.../mathjax/``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        return None  # a relative or odd URL: not allowed (the feedback page is a file, it has no origin)
    folders = parts.path.split("/")[:-1]  # without the file name
    folder = "/".join(folders[:-1] if len(folders) > 2 else folders) + "/"
    return f"{parts.scheme}://{parts.netloc}{folder}"


def policy(head: str) -> str:
    """The policy for a page whose template-made ``<head>`` is `head`."""
    hashes, folders = [], []
    for attributes, body in _SCRIPT.findall(head):
        src = _SRC.search(attributes)
        kind = _TYPE.search(attributes)
        if src:
            folder = _library_folder(src.group(1))
            if folder and folder not in folders:
                folders.append(folder)
        elif (kind.group(1).lower() if kind else "") in _JS_TYPES:
            digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
            hashes.append(f"'sha256-{digest}'")
    sources = " ".join(folders)
    return "; ".join([
        "default-src 'none'",
        f"script-src {' '.join(hashes + folders) or chr(39) + 'none' + chr(39)}",
        f"style-src 'unsafe-inline' {sources}".rstrip(),
        f"font-src 'self' data: {sources}".rstrip(),  # 'self': bootstrap's glyphicons, beside the page if anywhere
        "img-src data:",
        "base-uri 'none'",
        "form-action 'none'",
    ])


def meta(head: str) -> str:
    """The ``<meta>`` element carrying `policy(head)` (no quote or angle bracket in a policy)."""
    return f'<meta http-equiv="Content-Security-Policy" content="{policy(head)}">'


def content_security_policy(head: str) -> str:
    """The Jinja filter: `head` (a page's ``<!DOCTYPE html><html><head>...``) with the policy first in its head."""
    found = _HEAD.search(head)
    if found is None:
        raise ValueError("the feedback template's header has no <head> element: the Content-Security-Policy "
                         "cannot be placed; check autograder/results/templates/feedback_csp.html.j2 against nbgrader's "
                         "feedback template")
    return head[:found.end()] + "\n" + meta(head) + head[found.end():]


def configure_feedback(c) -> None:
    """Make ``nbgrader generate_feedback`` write the policy into every feedback page (`c`: nbgrader's config)."""
    if not TEMPLATE.is_file():
        raise FileNotFoundError(f"{TEMPLATE} is missing: install the project from its source folder "
                                "(pip install -e .) so the feedback template is there")
    import nbgrader

    # nbgrader's own extra path (bootstrap's CSS, inlined by its feedback template), then this template's folder
    bootstrap = (Path(nbgrader.__file__).resolve().parent / "server_extensions" / "formgrader" / "static" /
                 "node_modules" / "bootstrap" / "dist" / "css")
    c.GenerateFeedback.HTMLExporter.template_file = TEMPLATE.name
    c.GenerateFeedback.HTMLExporter.extra_template_paths = [str(TEMPLATE.parent), str(bootstrap)]
    c.GenerateFeedback.HTMLExporter.filters = {FILTER: f"{__name__}.{FILTER}"}
