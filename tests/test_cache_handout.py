"""The model-cache hand-out (`course.cache`): ``import`` copies into the cache folder whether it exists or not
(never nested, as ``cp -r`` did), checks MNIST and the checkpoints; ``export`` writes the hand-out; the
participant side runs without the instructor extra."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from course import models

NAME = "baseline-v1-track71-seed0.pt"
BLOCK_INSTRUCTOR = ("import sys, runpy\n"
                    "for m in ('autograder', 'nbgrader', 'sqlalchemy', 'dask', 'segno'):\n"
                    "    sys.modules[m] = None  # the instructor extra is not installed\n"
                    "sys.argv = ['course.cache'] + sys.argv[1:]\n"
                    "runpy.run_module('course.cache', run_name='__main__')\n")

def _checkpoint(path: Path) -> Path:
    """A small, valid baseline checkpoint (untrained weights: loading is what is checked)."""
    model = models.CNNClassifier()
    model.classes_ = np.array([0, 2, 3, 4, 5, 6, 8, 9, 10])
    model.net_ = models.Net(len(model.classes_))
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def _handout(folder: Path, raw: Path) -> Path:
    """A hand-out folder: the MNIST files (`raw`, found as course.data finds them: conftest's `mnist_raw`), a
    checkpoint and a file that is not part of the cache."""
    shutil.copytree(raw, folder / "MNIST" / "raw")
    _checkpoint(folder / "models" / NAME)
    (folder / "notes.txt").write_text("not part of the cache\n")
    return folder


def _cli(*args, cache: Path, data: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_DATA_DIR",)}
    env["COURSE_CACHE_DIR"] = str(cache)
    env["COURSE_OFFLINE"] = "1"
    if data is not None:
        env["COURSE_DATA_DIR"] = str(data)
    return subprocess.run([sys.executable, "-c", BLOCK_INSTRUCTOR, *args], capture_output=True, text=True,
                          env=env, timeout=600)


def _assert_imported(cache: Path, done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    assert (cache / "models" / NAME).is_file()
    assert models.CNNClassifier.load(cache / "models" / NAME).classes_.tolist()[-1] == 10
    assert sorted(p.name for p in (cache / "MNIST" / "raw").iterdir() if not p.name.endswith(".gz")) == sorted(
        ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"])
    assert not (cache / "workshop-cache").exists() and not (cache / "notes.txt").exists()  # nothing nested
    assert "checksums verified" in done.stdout and f"ok    {NAME}: loads" in done.stdout


def test_import_when_the_cache_folder_is_missing(tmp_path, mnist_raw):
    handout = _handout(tmp_path / "workshop-cache", mnist_raw)
    cache = tmp_path / "home" / ".cache" / "dcai-hackathon"
    assert not cache.parent.exists()
    _assert_imported(cache, _cli("import", str(handout), cache=cache))


def test_import_when_the_cache_folder_exists(tmp_path, mnist_raw):
    handout = _handout(tmp_path / "workshop-cache", mnist_raw)
    cache = tmp_path / "cache"
    (cache / "events").mkdir(parents=True)
    (cache / "events" / "token-x.json").write_text("{}")
    (cache / "models").mkdir()
    (cache / "models" / NAME).write_bytes(b"a stale checkpoint")
    done = _cli("import", str(handout), cache=cache)
    _assert_imported(cache, done)
    assert (cache / "events" / "token-x.json").read_text() == "{}"  # the rest of the cache is kept
    # the nested copy the old instructions made is read as a hand-out too
    nested = tmp_path / "old" / "dcai-hackathon"
    shutil.copytree(handout, nested / "workshop-cache")
    again = tmp_path / "cache2"
    _assert_imported(again, _cli("import", str(nested), cache=again))


def test_a_checkpoint_that_does_not_load_is_refused_and_removed(tmp_path, mnist_raw):
    handout = _handout(tmp_path / "handout", mnist_raw)
    (handout / "models" / "baseline-v1-track49-seed0.pt").write_bytes(b"\x80\x04not a checkpoint")
    cache = tmp_path / "cache"
    done = _cli("import", str(handout), cache=cache)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL  baseline-v1-track49-seed0.pt: does not load" in done.stdout
    assert not (cache / "models" / "baseline-v1-track49-seed0.pt").exists()
    assert (cache / "models" / NAME).is_file()


def test_no_handout_in_the_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    done = _cli("import", str(tmp_path / "empty"), cache=tmp_path / "cache")
    assert done.returncode == 2 and "no hand-out" in done.stdout


def test_export_then_import(tmp_path, mnist_raw):
    source_cache = tmp_path / "instructor-cache"
    _checkpoint(source_cache / "models" / NAME)  # already trained on this machine: exported without training
    out = tmp_path / "workshop-cache"
    done = _cli("export", str(out), "--tracks", "7,1", cache=source_cache, data=mnist_raw.parent.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "models" / NAME).read_bytes() == (source_cache / "models" / NAME).read_bytes()
    assert sorted(p.name for p in (out / "models").iterdir()) == [NAME]  # no lock file in the hand-out
    assert len(list((out / "MNIST" / "raw").iterdir())) == 4
    assert "python -m course.cache import workshop-cache" in done.stdout
    cache = tmp_path / "participant-cache"
    _assert_imported(cache, _cli("import", str(out), cache=cache))
    shown = _cli("show", cache=cache)
    assert shown.returncode == 0 and f"baseline: {NAME}" in shown.stdout and "MNIST: 4 of 4" in shown.stdout
