"""Shared fixtures: the MNIST folder, a clean oracle per test, a temp cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests run offline against the shared MNIST copy unless the caller chose a folder.
if not os.environ.get("COURSE_DATA_DIR") and (SHARED_DATA / "MNIST" / "raw").is_dir():
    os.environ["COURSE_DATA_DIR"] = str(SHARED_DATA)
os.environ.setdefault("COURSE_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.pop("COURSE_TRACK", None)
os.environ.pop("COURSE_SERVICE", None)


@pytest.fixture(autouse=True)
def fresh_oracle():
    """Every test starts with an empty ledger on the default track."""
    from course import data, oracle

    data._ACTIVE.clear()
    oracle._BACKENDS.clear()
    oracle._LISTENERS.clear()
    yield
    oracle._BACKENDS.clear()
    oracle._LISTENERS.clear()
    data._ACTIVE.clear()


@pytest.fixture(scope="session")
def ds():
    from course import data

    return data.load("7,1")


@pytest.fixture(scope="session")
def baseline_model():
    """The cached baseline for 7,1 (trained once per machine, ~1 minute cold)."""
    from course import models

    return models.baseline("7,1")
