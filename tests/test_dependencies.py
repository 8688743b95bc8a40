"""`course` and `autograder` run without the optional `bench` extra: they never import its peers."""

from __future__ import annotations

import subprocess
import sys

BENCH_ONLY = ("modAL", "skactiveml", "skorch")

IMPORT_EVERYTHING = f"""
import importlib, pkgutil, sys
for name in {BENCH_ONLY!r}:
    sys.modules[name] = None  # any import of it now raises ImportError
import course, autograder
for package in (course, autograder):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
print("imported", sorted(m for m in sys.modules if m.split(".")[0] in ("course", "autograder")))
"""


def test_course_and_autograder_import_without_the_bench_extra():
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for module in ("course.oracle", "course.models", "autograder.runner", "autograder.cli"):
        assert f"'{module}'" in done.stdout, module
