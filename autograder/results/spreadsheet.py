"""CSV cells a spreadsheet shows as text, never runs as a formula: the one rule for every CSV we write.

Participant text reaches CSV files an instructor opens in a spreadsheet (the leaderboard's student
folder names, an event's names and roster); a cell such as ``=1+HYPERLINK("evil.example","x")``
would run as a formula there. Both the leaderboard (`autograder.results.leaderboard`) and the event
server's exports (`autograder.event.store`, `autograder.event.export`) guard their cells with `safe_cell`.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads a cell starting so as a formula


def is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def safe_cell(value: str, numeric: bool = False) -> str:
    """`value` as a cell a spreadsheet shows as text (``=1+HYPERLINK(...)`` as a folder name).

    Every cell that starts like a formula is prefixed with ``'``, whatever follows; only a cell of a
    `numeric` column (one the writer formats from a number itself) that parses as a number is kept
    as it is, so ``-0.5`` stays a number there and a text column never relies on what follows.
    """
    if numeric and is_number(value):
        return value
    return "'" + value if value.startswith(FORMULA_STARTS) else value
