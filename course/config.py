"""One place for tracks, seeds, targets, environment variables and paths.

Everything that a notebook, a test or the autograder might want to tune lives
here, so that no magic number is repeated across the package.
"""

from __future__ import annotations

import os
from pathlib import Path

# --- the task -------------------------------------------------------------
DEFAULT_TRACK = "7,1"  # the digits merged into class C
TARGET_ACCURACY = 0.90  # a submission passes at or above this accuracy
MERGED_LABEL = 10  # label of the merged class C

# --- seeds ----------------------------------------------------------------
SEED = 0  # default random_state for models and experiments
SPLIT_SEED = 20240117  # fixed public/private split of the track's test samples
PUBLIC_FRACTION = 0.5  # share of the track's test samples that is public

# --- environment variables ------------------------------------------------
ENV_TRACK = "COURSE_TRACK"  # e.g. "7,1" or "4,9"
ENV_DATA_DIR = "COURSE_DATA_DIR"  # folder holding MNIST/raw/*.gz
ENV_CACHE_DIR = "COURSE_CACHE_DIR"  # where unpacked data and checkpoints go
ENV_SERVICE = "COURSE_SERVICE"  # address of the autograder's annotation service
ENV_SERVICE_TOKEN = "COURSE_SERVICE_TOKEN"  # per-run secret for that service
ENV_OFFLINE = "COURSE_OFFLINE"  # "1" forbids the torchvision download
ENV_SEED = "COURSE_SEED"  # seed for a notebook's experiments, set from outside by benchmarks
ENV_EXAM = "COURSE_EXAM"  # "1" runs the kernel in exam mode, as under the grader (course.context)
ENV_EVENT_URL = "COURSE_EVENT_URL"  # a live event server, e.g. http://10.0.0.5:8000 (course.event)
ENV_EVENT_CODE = "COURSE_EVENT_CODE"  # the event's join code
ENV_EVENT_NAME = "COURSE_EVENT_NAME"  # your name in the event (default: your login name)

# --- paths ----------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_DATA_DIR = REPO_ROOT / "data"


def seed() -> int:
    """The experiment seed: env ``COURSE_SEED`` if set, else `SEED`."""
    value = os.environ.get(ENV_SEED, "").strip()
    if not value:
        return SEED
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{ENV_SEED}={value!r} is not an integer seed, e.g. COURSE_SEED=3.") from None


def cache_dir() -> Path:
    """Folder for unpacked MNIST files and model checkpoints (created on demand)."""
    if os.environ.get(ENV_CACHE_DIR):
        path = Path(os.environ[ENV_CACHE_DIR]).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(xdg) / "dcai-hackathon"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- the machine ----------------------------------------------------------
def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (narrowed by ``taskset``, a container or
    a batch system), not `os.cpu_count()`, which counts the whole machine."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity on this platform (macOS, Windows)
        return max(1, os.cpu_count() or 1)
