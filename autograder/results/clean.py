"""Participant text made safe to store and print: no control characters, no ANSI escapes.

Everything a submission controls (its student folder name, its notebook's error
messages, its printed output, its ``timestamp.txt``) passes through `line` or
`text` before it reaches the results store, the leaderboard or the terminal.
"""

from __future__ import annotations

import re
import unicodedata

# CSI / OSC / other ESC sequences first, so their parameters go with them
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])|\x9b[0-?]*[ -/]*[@-~]")


def _printable(ch: str, keep_newlines: bool) -> str:
    if keep_newlines and ch in "\n\t":
        return ch
    if ch in "\t\r\n\v\f\u2028\u2029\x85":
        return " "
    if unicodedata.category(ch)[0] == "C":  # control, format (bidi overrides), surrogate, private, unassigned
        return ""
    return ch


def text(value: object, limit: int | None = None, keep_newlines: bool = True) -> str:
    """`value` as text without escape sequences or control/format characters, at most `limit` chars."""
    raw = str(value)
    if limit is not None:
        raw = raw[: 4 * limit + 64]  # never clean megabytes to keep a line
    out = "".join(_printable(ch, keep_newlines) for ch in _ANSI.sub("", raw))
    if limit is not None and len(out) > limit:
        out = out[: max(limit - 3, 0)] + "..."
    return out


def line(value: object, limit: int = 300) -> str:
    """One line: escapes and control characters removed, runs of blanks collapsed."""
    return text(" ".join(text(value, keep_newlines=False).split()), limit, keep_newlines=False)


def first_line(value: object, limit: int = 200) -> str:
    """The first non-blank line of `value`, cleaned."""
    cleaned = text(value)
    first = next((ln for ln in cleaned.splitlines() if ln.strip()), "")
    return line(first, limit)


def mathtext(value: str) -> str:
    """A label for matplotlib that is never read as math text (``$`` escaped)."""
    return line(value, 80).replace("\\", "\\\\").replace("$", r"\$")
