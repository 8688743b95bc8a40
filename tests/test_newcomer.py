"""A newcomer's first run: the MNIST files in the clone's ``data/``, no environment variable set.

The README tells a newcomer to put the four MNIST files in ``data/MNIST/raw/`` and run
``pytest``. These tests build a repository-like folder (the ``course`` package, the tests'
``conftest.py``, ``pyproject.toml`` and ``tests/test_data.py``), so that the package's
``data/`` folder is the temporary one, and run pytest in a subprocess with
``COURSE_DATA_DIR`` removed and an empty cache folder: the only place the files can come
from is ``data/``. Without the files, the tests must fail and say where to put them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, copy_mnist_gz

from course import config

# what nothing in the project may mention: the grading machine's folder next to the clone
FORBIDDEN = ("../" + "shared", "shared" + "/data", "/" + "work" + "/" + "shared")
ALLOWED = {".ci/run"}  # CI points COURSE_DATA_DIR at the machine's copy, and only there

PROBE = '''
from pathlib import Path

import course
from course import config


def test_data_comes_from_the_repository_data_folder(mnist_raw, ds):
    root = Path(__file__).resolve().parent.parent
    assert Path(course.__file__).resolve().parent == root / "course"  # the copy, not the checkout
    assert mnist_raw == config.REPO_DATA_DIR / "MNIST" / "raw" == root / "data" / "MNIST" / "raw"
    assert len(ds.c_indices) == 6265 + 6742
'''


def newcomer_repo(root: Path) -> Path:
    """A repository-like folder: course/, pyproject.toml, tests/conftest.py, tests/test_data.py, a probe."""
    shutil.copytree(REPO / "course", root / "course", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(REPO / "pyproject.toml", root / "pyproject.toml")
    (root / "tests").mkdir()
    for name in ("conftest.py", "test_data.py"):
        shutil.copyfile(REPO / "tests" / name, root / "tests" / name)
    (root / "tests" / "test_probe.py").write_text(PROBE)
    return root


def run_pytest(root: Path, cache: Path, *tests: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURSE_") and k != "PYTHONPATH"}
    env.update({config.ENV_CACHE_DIR: str(cache), config.ENV_OFFLINE: "1", "MPLBACKEND": "Agg"})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_tests_find_mnist_in_the_repository_data_folder(tmp_path, mnist_raw):
    root = newcomer_repo(tmp_path / "clone")
    copy_mnist_gz(mnist_raw, root / "data" / "MNIST" / "raw")
    done = run_pytest(root, tmp_path / "empty-cache", "tests/test_probe.py", "tests/test_data.py")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " failed" not in done.stdout and " error" not in done.stdout and " skipped" not in done.stdout


def test_tests_without_mnist_fail_and_say_where_to_put_it(tmp_path):
    root = newcomer_repo(tmp_path / "clone")
    done = run_pytest(root, tmp_path / "empty-cache", "tests/test_probe.py")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-4000:]  # failed, not skipped and not passed
    assert "MNIST" in out and str(root / "data" / "MNIST" / "raw") in out and config.ENV_DATA_DIR in out
    assert "KeyError" not in out and "skipped" not in out


def test_nothing_but_ci_mentions_the_machines_shared_folder():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    offenders = []
    for name in filter(None, files.decode().split("\0")):
        path = REPO / name
        if name in ALLOWED or not path.is_file():
            continue
        text = path.read_bytes()
        offenders += [f"{name}: {word}" for word in FORBIDDEN if word.encode() in text]
    assert not offenders, "only .ci/run may point at the machine's shared MNIST folder: " + ", ".join(offenders)


def test_documents_link_only_to_files_in_the_repository():
    """README and docs/ link to files that exist; no file points at a design document that is not here."""
    import re

    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    assert REPO / "docs" / "explanation" / "architecture.md" in pages and REPO / "docs" / "cheatsheet.md" in pages
    missing = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                missing.append(f"{page.relative_to(REPO)} -> {target}")
    assert not missing, missing
    readme = (REPO / "README.md").read_text()
    assert "docs/explanation/architecture.md" in readme and "docs/cheatsheet.md" in readme
    for name in ("autograder/__init__.py", ".gitignore"):
        assert "DESIGN.md" not in (REPO / name).read_text(), name


def test_no_test_requires_the_data_dir_variable():
    """`os.environ[...DATA_DIR]` in a test is a KeyError for a newcomer with the files in data/."""
    import ast

    offenders = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)):
                continue
            target, key = ast.unparse(node.value), ast.unparse(node.slice)
            if target == "os.environ" and ("DATA_DIR" in key):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, ("use the mnist_raw fixture (tests/conftest.py) or os.environ.get: "
                           + ", ".join(offenders))
