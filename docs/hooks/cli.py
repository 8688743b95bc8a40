"""MkDocs hook: facts of the code rendered at build time, never retyped.

- ``{{ cli.reference }}``: every ``autograder`` command with its options, generated from the
  argparse parsers (``autograder.cli._parser()``); ``{{ cli.usage grade }}``: one command's usage;
  ``{{ cli.default grade --memory }}``: one option's default;
- ``{{ code.autograder.event.limits.JOIN_BURST }}``: a constant of the code, optionally with a
  unit filter: ``| mib`` (bytes to MiB), ``| kib``, ``| gib``, ``| thousands`` (``20,000``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"\{\{\s*cli\.(reference|usage|default)((?:\s+[a-z-]+)*)\s*\}\}")
CODE = re.compile(r"\{\{\s*code\.([A-Za-z0-9_.]+)\s*(?:\|\s*(mib|kib|gib|thousands)\s*)?\}\}")


def parser() -> argparse.ArgumentParser:
    sys.path.insert(0, str(REPO))
    from autograder import cli

    return cli._parser()


def commands(p: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str, argparse.ArgumentParser]]:
    """(words, help, parser) of every leaf command, depth first, in the order they were added."""
    out = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                words = path + (name,)
                children = commands(sub, words)
                out += children or [(words, helps.get(name) or "", sub)]
    return out


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _default(action: argparse.Action) -> str:
    d = action.default
    if d is None or d is False or d == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
        return ""
    if isinstance(d, Path):
        return f"`{d}`"
    if isinstance(d, float) and d.is_integer():
        d = int(d)
    return f"`{d}`"


def usage(p: argparse.ArgumentParser) -> str:
    """The usage text, wrapped at 100 columns whatever the terminal."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        text = p.format_usage().strip()
    finally:
        if saved is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = saved
    return re.sub(r"^usage:\s*", "", text).replace("\n       ", "\n")


def command_section(words: tuple[str, ...], help_text: str, p: argparse.ArgumentParser) -> str:
    lines = [f"## `autograder {' '.join(words)}`", "", help_text[:1].upper() + help_text[1:] + ".", "",
             "```text", usage(p), "```", ""]
    positionals = [a for a in p._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
    options = [a for a in p._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    if positionals:
        lines += ["| argument | meaning |", "|---|---|"]
        for a in positionals:
            meaning = a.help or ""
            if a.choices:
                meaning = (meaning + "; " if meaning else "") + "one of " + ", ".join(f"`{c}`" for c in a.choices)
            lines.append(f"| `{a.metavar or a.dest}` | {_escape(meaning)} |")
        lines.append("")
    if options:
        lines += ["| option | meaning | default |", "|---|---|---|"]
        for a in options:
            flags = ", ".join(a.option_strings)
            if a.nargs == 0:
                shown = flags
            else:
                metavar = a.metavar or a.dest.upper()
                shown = f"{flags} {metavar}" + (" ..." if a.nargs in ("+", "*") else "")
            meaning = (a.help or "") % {"default": a.default} if a.help and "%(" in a.help else (a.help or "")
            if a.choices:
                meaning += ("; " if meaning else "") + "one of " + ", ".join(f"`{c}`" for c in a.choices)
            lines.append(f"| `{shown}` | {_escape(meaning)} | {_default(a)} |")
        lines.append("")
    return "\n".join(lines)


def reference() -> str:
    p = parser()
    parts = [f"```text\n{usage(p)}\n```\n"]
    parts += [command_section(words, help_text, sub) for words, help_text, sub in commands(p)]
    return "\n".join(parts)


def _lookup(words: list[str]) -> argparse.ArgumentParser:
    for found, _, sub in commands(parser()):
        if list(found) == words:
            return sub
    raise KeyError(f"no autograder command {' '.join(words)!r}")


def default(words: list[str]) -> str:
    """The default of an option: ``default(["grade", "--memory"])`` -> ``"8"``."""
    *command, option = words
    for action in _lookup(command)._actions:
        if option in action.option_strings:
            d = action.default
            return str(int(d)) if isinstance(d, float) and d.is_integer() else str(d)
    raise KeyError(f"autograder {' '.join(command)} has no option {option}")


def constant(dotted: str, unit: str | None = None) -> str:
    """The value of a constant of the code, e.g. ``autograder.event.limits.JOIN_BURST``."""
    import importlib

    sys.path.insert(0, str(REPO))
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            value = getattr(value, name)
        break
    else:
        raise KeyError(f"no module in {dotted!r}")
    if unit in ("kib", "mib", "gib"):
        value = value / 2 ** {"kib": 10, "mib": 20, "gib": 30}[unit]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if unit == "thousands" else str(value)


def render(markdown: str) -> str:
    def one(match: re.Match) -> str:
        kind, words = match.group(1), match.group(2).split()
        if kind == "reference":
            return reference()
        if kind == "default":
            return default(words)
        return usage(_lookup(words))

    markdown = CODE.sub(lambda m: constant(m.group(1), m.group(2)), markdown)
    return PLACEHOLDER.sub(one, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:  # mkdocs hook
    return render(markdown)


if __name__ == "__main__":
    print(reference())
