"""The grader in rooms by job: a newcomer finds a module from the folder list.

`autograder/` keeps a few modules at its top level (the CLI, the course layout) and the rest in
subpackages named for their job (`sandbox`, `grading`, `results`, `event`); no module grows past
what one reading holds; and the event server's routes are written in one router per audience
(`autograder.event.routes`), which `autograder.event.app` only assembles.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_TOP_LEVEL = 10
MAX_LINES = 550
ROOMS = ("sandbox", "grading", "results", "event")


def test_autograder_has_few_top_level_modules_and_its_rooms():
    top = sorted(p.name for p in (REPO / "autograder").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, top
    for room in ROOMS:
        assert (REPO / "autograder" / room / "__init__.py").is_file(), room


def test_no_module_is_too_long():
    long = {str(p.relative_to(REPO)): n for folder in ("autograder", "course") for p in (REPO / folder).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines (split them by job): {long}"


def _routes(routes):
    for route in routes:
        inner = getattr(route, "original_router", None)  # an included router (newer FastAPI keeps it whole)
        if inner is not None:
            yield from _routes(inner.routes)
        else:
            yield route


def test_each_event_route_is_defined_in_one_router_module(tmp_path):
    from autograder.event import app, store

    application = app.create_app(store.Store(tmp_path / "events.db"))
    modules: dict[str, set[str]] = {}
    for route in _routes(application.routes):
        if hasattr(route, "endpoint"):
            modules.setdefault(route.path, set()).add(route.endpoint.__module__)
    assert modules, "no routes found"
    assert all(len(found) == 1 for found in modules.values()), modules  # one path, one router module
    where = {path: found.pop() for path, found in modules.items()}
    audiences = {"autograder.event.routes.participant", "autograder.event.routes.board",
                 "autograder.event.routes.admin"}
    assert set(where.values()) == audiences, where
    assert where["/api/events/{code}/op"].endswith(".participant")
    assert where["/board/{code}"].endswith(".board")
    assert all(m.endswith(".admin") for p, m in where.items() if p.startswith(("/admin", "/api/admin")))
