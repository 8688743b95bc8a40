"""The installs stay apart: a participant's `pip install -e .` pulls no instructor, benchmark or test tool.

`course` imports nothing of the `instructor`, `bench` or `dev` extras, `autograder` nothing of
`bench`, and the participant dependencies in pyproject.toml do not reach playwright, modAL,
scikit-activeml, skorch or pandas, not even through another package's requirements.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest
from conftest import REPO

BENCH_ONLY = ("modAL", "skactiveml", "skorch", "pandas")
NOT_FOR_PARTICIPANTS = BENCH_ONLY + ("nbgrader", "nbformat", "nbclient", "playwright", "pytest",
                                     "fastapi", "uvicorn", "sqlalchemy", "httpx")  # instructor, event server, tests
HEAVY_EXTRAS = ("playwright", "modal-python", "scikit-activeml", "skorch", "pandas")  # distributions

IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
for name in {blocked!r}:
    sys.modules[name] = None  # any import of it now raises ImportError
import {packages}
for package in ({packages},):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
print("imported", sorted(m for m in sys.modules if m.split(".")[0] in ("course", "autograder")))
"""


def import_all(packages: str, blocked: tuple[str, ...]) -> str:
    code = IMPORT_EVERYTHING.format(blocked=blocked, packages=packages)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_course_and_autograder_import_without_the_bench_extra():
    out = import_all("course, autograder", BENCH_ONLY)
    for module in ("course.oracle", "course.models", "autograder.grading.runner", "autograder.cli"):
        assert f"'{module}'" in out, module


def test_course_imports_with_the_participant_install_only():
    out = import_all("course", NOT_FOR_PARTICIPANTS)
    for module in ("course.oracle", "course.models", "course.grading", "course.widgets", "course.plots"):
        assert f"'{module}'" in out, module


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def installed_closure(requirements: list[str]) -> set[str]:
    """Every distribution the requirements reach through the installed packages' own requirements."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    reached: set[str] = set()
    seen: set[tuple[str, frozenset]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        reached.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: its own requirements are unknown
        for text in requires:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in {""} | req.extras):
                sub.marker = None
                todo.append(sub)
    return reached


def test_the_participant_install_pulls_no_instructor_bench_or_test_tool():
    project = pyproject()["project"]
    reached = installed_closure(project["dependencies"])
    assert {"torch", "torchvision", "jupyterlab", "scikit-learn"} <= reached
    assert not reached & set(HEAVY_EXTRAS), sorted(reached & set(HEAVY_EXTRAS))
    others = reached & {"nbgrader", "fastapi", "uvicorn", "sqlalchemy", "pytest"}
    assert not others, f"the instructor's, the event server's and the tests' tools are extras: {sorted(others)}"


def test_dev_is_everything_the_tests_need():
    extras = pyproject()["project"]["optional-dependencies"]
    assert set(extras) >= {"instructor", "bench", "cluster", "dev"}
    dev = " ".join(extras["dev"])
    assert "pytest" in dev and "playwright" in dev
    assert "psycopg[binary]" in dev and "pytest-randomly" in dev  # the PostgreSQL stores, a random test order
    [own] = [r for r in extras["dev"] if r.startswith("dcai-hackathon[")]
    assert {"instructor", "bench", "cluster"} <= set(own.split("[")[1].rstrip("]").split(","))
    assert any(r.startswith("nbgrader") for r in extras["instructor"])
    assert any(r.startswith("distributed") for r in extras["cluster"])  # --scheduler is tested too
    reached = installed_closure(extras["dev"] + extras["instructor"] + extras["bench"] + extras["cluster"])
    assert set(HEAVY_EXTRAS) <= reached  # all of them are installed here, for the tests


def test_grading_processes_skip_jsonschemas_slow_optional_import():
    """`import autograder` first: nbformat (so jsonschema) then never imports rfc3987_syntax (39 grammars compiled
    at import, seconds per grading process), and notebooks still validate."""
    code = ("import sys, autograder, nbformat\n"
            "nbformat.validate(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('x = 1')]))\n"
            "print(sys.modules['rfc3987_syntax'] is None)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True", done.stdout
