"""How much a notebook carries: the compressed size of its code, flagged when well above a method's.

A method of this course is a few screens of code; a table of image hashes with their digits, or
the weights of a model trained at home, is kilobytes of literals that compress poorly. No rule
tells knowledge from code (a small table fits under any threshold), so this only *flags* a
notebook for a human (`review_note`), it never fails one: the rank rests on the hidden tracks
(`autograder.grading.tracks`).

The measure: the code and raw cells' sources of the notebook as graded, joined, compressed with
zlib at level 9 (`code_bytes`). Markdown cells are not counted (prose is the assignment's own or
harmless). `REFERENCE_BYTES` is the largest of the instructor's reference notebooks in
``source/`` (``tests/test_knowledge.py`` measures them and fails when a notebook outgrows it, so
the constant follows the notebooks); a notebook is flagged above `REVIEW_RATIO` times that.
"""

from __future__ import annotations

import zlib

REFERENCE_BYTES = 6772  # source/03_clustering/03_clustering.ipynb, the largest reference (01: 2592, 02: 4517,
# 04: 4777, 05: 5280; the toy of the tests: 307), measured with `code_bytes` on 2026-12-07 at 21:40 UTC
REVIEW_RATIO = 1.5  # a participant's notebook adds experiments to a reference's code: well above, not just above
REVIEW_BYTES = int(REVIEW_RATIO * REFERENCE_BYTES)  # 10158: about 1,700 entries of an 8-hex-digit hash table
COUNTED_CELLS = ("code", "raw")


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def code_bytes(notebook) -> int:
    """zlib-compressed size (level 9) of the code and raw cells' sources of `notebook` (an nbformat node or a dict)."""
    text = "\n".join(_source(c) for c in notebook.get("cells", []) if c.get("cell_type") in COUNTED_CELLS)
    return len(zlib.compress(text.encode("utf-8", "replace"), 9))


def review_note(notebooks: list) -> str:
    """A review note when the largest of `notebooks` carries more than `REVIEW_BYTES`, else ''."""
    size = max((code_bytes(nb) for nb in notebooks), default=0)
    if size <= REVIEW_BYTES:
        return ""
    return (f"the notebook's code holds {size / 1000:.1f} kB compressed, more than {REVIEW_BYTES / 1000:.1f} kB "
            f"({REVIEW_RATIO:g}x the largest reference notebook): it may carry a table or a model typed in; "
            "read the notebook")
