"""A participant's uploaded notebook (for `autograder verify`): the cheap checks, then nbformat's validation;
stored without outputs."""

from __future__ import annotations

import contextlib
import json

from autograder.event.errors import Refused
from course import protocol

MAX_NOTEBOOK = 4 * 2**20  # an uploaded notebook (outputs are dropped: a notebook's code is far smaller)
MAX_CELLS = 300  # cells of an uploaded notebook (the course's have 27-36); checked before nbformat's validation,
# which costs ~0.1 s per 200 cells holding the interpreter
UPLOAD_INTERVAL_S = 2.0  # between a participant's uploads that get as far as validation (one at a time)


def warm_nbformat() -> None:
    with contextlib.suppress(Exception):
        clean_notebook(b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')


def check_structure(raw: bytes) -> dict:
    """The cheap checks before nbformat's validation: a JSON object with a list of at most MAX_CELLS cells.

    Returns the parsed notebook with every code cell's outputs already dropped: nbformat's
    validation walks every output (one cell with 60,000 outputs held the server's interpreter
    for 9-30 s), and the stored notebook keeps none anyway.
    """
    try:
        nb = json.loads(raw)
    except (ValueError, RecursionError):
        nb = None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise Refused(400, "this is not a valid Jupyter notebook (not a JSON object with a list of cells); upload "
                           "the .ipynb file itself, e.g. course.event.upload(\"03_clustering.ipynb\"). Nothing was "
                           "stored.", "NotebookError")
    if len(cells) > MAX_CELLS:
        raise Refused(400, f"this notebook has {len(cells)} cells, more than the {MAX_CELLS} an assignment's notebook "
                           "could need; upload the notebook you worked in. Nothing was stored.", "NotebookError")
    for cell in cells:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            if "outputs" in cell:
                cell["outputs"] = []
            if "execution_count" in cell:
                cell["execution_count"] = None
    return nb


def clean_notebook(raw: bytes | dict) -> bytes:
    """A participant's upload as stored: a valid nbformat-4 notebook without outputs; Refused otherwise.

    `raw` is the uploaded bytes or what `check_structure` made of them (outputs already dropped).
    """
    import nbformat

    try:
        text = json.dumps(raw) if isinstance(raw, dict) else raw.decode("utf-8")
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:
        detail = protocol.clip(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise Refused(400, f"this is not a valid Jupyter notebook ({type(exc).__name__}: {detail}); upload the "
                           ".ipynb file itself, e.g. course.event.upload(\"03_clustering.ipynb\"). Nothing was "
                           "stored.", "NotebookError") from None
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nbformat.writes(nb).encode()
