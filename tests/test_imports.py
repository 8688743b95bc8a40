"""`course/` imports in one direction: no import circle, and no import of a course module inside a function.

An import inside a function is how a circle hides (module A imports B at the top, B imports A
when called), so both are checked on the source with `ast`, not by importing: every
`import course.x`, `from course import x`, `from course.x import y` and relative import of
`course/*.py` is an edge of the graph, wherever it stands in the file. And the environment
that says which mode, ledger and track the kernel is in is read by `course.context` only.
"""

from __future__ import annotations

import ast

from conftest import REPO

COURSE = REPO / "course"


def _imported_modules(node: ast.AST, modules: set[str]) -> list[str]:
    """The course modules (by file stem) one import statement brings in."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        return [n.split(".")[1] for n in names if n.startswith("course.") and n.split(".")[1] in modules]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level == 0 and base != "course" and not base.startswith("course."):
            return []
        if base.startswith("course."):
            base = base.removeprefix("course.")
        elif base == "course":
            base = ""
        if base:
            return [base.split(".")[0]] if base.split(".")[0] in modules else []
        return [alias.name for alias in node.names if alias.name in modules]
    return []


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """(module -> the course modules it imports, the imports that stand inside a function)."""
    modules = {path.stem for path in COURSE.glob("*.py") if path.stem != "__init__"}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    nested: list[str] = []
    for module in sorted(modules):
        path = COURSE / f"{module}.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                for node in ast.walk(function):
                    for target in _imported_modules(node, modules):
                        nested.append(f"course/{module}.py:{node.lineno} imports course.{target} "
                                      f"inside {getattr(function, 'name', 'a lambda')}()")
        for node in ast.walk(tree):
            graph[module].update(t for t in _imported_modules(node, modules) if t != module)
    return graph, sorted(set(nested))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each once, as the path around it (first module repeated at the end)."""
    found: dict[frozenset[str], list[str]] = {}

    def walk(path: list[str]) -> None:
        for nxt in sorted(graph[path[-1]]):
            if nxt == path[0]:
                found.setdefault(frozenset(path), path + [nxt])
            elif nxt not in path and nxt > path[0]:  # each circle is found from its smallest module
                walk(path + [nxt])

    for start in sorted(graph):
        walk([start])
    return list(found.values())


def test_the_graph_is_read():
    graph, _ = import_graph()
    assert "oracle" in graph and "protocol" in graph["oracle"]  # the scan does see real imports


def test_course_has_no_import_circle():
    graph, _ = import_graph()
    circles = cycles(graph)
    assert not circles, "import circles in course/: " + "; ".join(" -> ".join(c) for c in circles)


def test_course_modules_are_imported_at_the_top():
    _, nested = import_graph()
    assert not nested, "imports of course modules inside functions:\n" + "\n".join(nested)


def test_the_checks_catch_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


WHERE_AM_I = ("ENV_SERVICE", "ENV_SERVICE_TOKEN", "ENV_EXAM", "ENV_TRACK", "ENV_EVENT_URL", "ENV_EVENT_CODE",
              "ENV_EVENT_NAME")  # the environment that says which mode, ledger and track


def test_only_the_context_reads_where_the_kernel_is():
    """Mode, ledger and track come from one place: no other course module reads their variables."""
    readers = []
    for path in sorted(COURSE.glob("*.py")):
        if path.stem == "context":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv"):
                key = node.args[0] if node.args else None
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                key = node.slice
            else:
                continue
            if key is not None and ast.unparse(key).split(".")[-1] in WHERE_AM_I:
                readers.append(f"course/{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert not readers, "read the environment of course.context elsewhere:\n" + "\n".join(readers)
