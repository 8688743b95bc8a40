"""Shared fixtures: the MNIST files, a clean oracle per test, the cached baseline.

The tests find MNIST exactly where `course.data` looks for it (README, "Where the MNIST
files come from"): the folder named by ``COURSE_DATA_DIR``, the repository's ``data/``
folder, then the cache folder. Nothing here points anywhere else. A test that needs the
files and cannot find them fails with a message that says where to put them.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest

import autograder  # noqa: F401  first: spares every test process jsonschema's slow optional import
from autograder.sandbox import threads

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("COURSE_OFFLINE", "1")  # tests never download
os.environ.setdefault("MPLBACKEND", "Agg")
# Two test processes share the cores with their kernels and graders: idle OpenMP threads must sleep, not spin
# (autograder.sandbox.threads.WAIT_POLICY: spinning tripled the CPU of a baseline training beside other jobs).
# Inherited by every kernel the tests start and by each `autograder grade` (its baseline training).
os.environ.setdefault(*threads.WAIT_POLICY)
# One share of the cores per test process. pytest-xdist runs N processes (-n 2 in CI); each starts graders, kernels
# and torch/OpenMP/BLAS thread pools, all sized to the machine's cores. Two processes of two-thread pools competed
# for two cores: two runs of notebook 04 side by side took 95 s each with 2 threads, 28 s with 1 (OpenBLAS's
# threads spin while they wait). So each test process gives everything it starts its share, cores // N threads:
# its own pools and unsandboxed kernels through the variables those libraries read, the graders' kernels through
# `autograder grade`'s default (AUTOGRADER_THREADS_PER_KERNEL). Processes are not pinned to cores: a grading's
# grader, worker, service and kernel still run side by side. A module that needs the whole machine's share (the
# --jobs tests) asks for the `machine_threads` fixture.
THREAD_SHARE_NAMES = threads.VARIABLES + (threads.ENV,)


def _thread_share() -> int | None:
    """Threads per pool in this xdist worker (the machine's cores // N workers), or None: not a worker of 2 or more."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.startswith("gw") and count.isdigit() and int(count) >= 2):
        return None
    return threads.share(int(count))


THREAD_SHARE = _thread_share()
if THREAD_SHARE:
    for _name in THREAD_SHARE_NAMES:
        os.environ[_name] = str(THREAD_SHARE)
    from threadpoolctl import threadpool_limits

    threadpool_limits(THREAD_SHARE)  # the pools already loaded here (pytest-randomly imports numpy first)

os.environ.pop("COURSE_TRACK", None)
os.environ.pop("COURSE_SERVICE", None)
os.environ.pop("COURSE_EXAM", None)  # practice mode unless a test switches exam mode on


def find_mnist() -> tuple[str, Path] | None:
    """(where, folder) of the four MNIST files, searched in `course.data`'s own order, or None."""
    from course import data

    for where, base in data._candidate_dirs():
        raw = base / "MNIST" / "raw"
        if data._has_all(raw):
            return where, raw
    return None


def mnist_missing_message() -> str:
    from course import data

    return (
        f"MNIST not found: put the four MNIST files in {data.config.REPO_DATA_DIR / 'MNIST' / 'raw'} "
        f"(the repository's data/ folder), or set {data.config.ENV_DATA_DIR} to a folder that holds "
        "MNIST/raw/. The files: train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz.\ncourse.data says: " + data._not_found_message()
    )


# The slowest modules (real notebooks and `autograder grade` batches), slowest first: the module wall
# times of a full serial run on 2 cores, 2026-11-27. Under pytest-xdist (``-n 2 --dist loadfile``) each module is one unit of work,
# handed out in collection order: starting the longest first keeps one worker from ending the run alone.
SLOWEST_FIRST = ("test_notebooks.py", "test_notebooks_independent.py", "test_attacks_scale.py", "test_attacks.py",
                 "test_hidden_tracks.py",
                 "test_kernel_limits.py", "test_attacks_round2.py", "test_attacks_round3.py",
                 "test_autograder_toy.py", "test_benchmarks.py", "test_attacks_exam.py", "test_parallel.py",
                 "test_event_verify.py", "test_resume.py", "test_cluster.py")


def pytest_collection_modifyitems(session, config, items):
    """Under pytest-xdist, run the slowest modules first (a stable sort: after pytest-randomly's shuffle, which
    runs before this hook, the tests inside a module and the other modules keep their random order)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # one process: the usual alphabetical order
    rank = {name: k for k, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # sort is stable


TIMELINE_ENV = "COURSE_TEST_TIMELINE"  # a file: each test's times and worker, to see how CI's two processes spend it
_timeline_start: dict[str, tuple[float, float]] = {}


def _cpu_seconds() -> float:
    """CPU time of this process and its waited-for children (a grading's CLI, its kernels), user + system."""
    import resource

    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def pytest_runtest_logstart(nodeid, location):
    if os.environ.get(TIMELINE_ENV):
        import time

        _timeline_start[nodeid] = (time.time(), _cpu_seconds())


def pytest_runtest_logfinish(nodeid, location):
    """With ``COURSE_TEST_TIMELINE=FILE``, append one JSON line per test: worker, test id, start and end
    (wall clock) and the CPU seconds spent (setup, call and teardown; a module's fixtures count in its first test)."""
    path = os.environ.get(TIMELINE_ENV)
    if path and nodeid in _timeline_start:
        import json
        import time

        start, cpu = _timeline_start.pop(nodeid)
        line = {"worker": os.environ.get("PYTEST_XDIST_WORKER", "main"), "test": nodeid, "start": start,
                "end": time.time(), "cpu": round(_cpu_seconds() - cpu, 2)}
        with open(path, "a", encoding="utf-8") as f:  # one short line per write: the workers' lines don't mix
            f.write(json.dumps(line) + "\n")


def pytest_report_header(config):
    found = find_mnist()
    if found is None:
        return "MNIST: not found; the tests that need it will fail (put the files in data/MNIST/raw/)"
    return f"MNIST: {found[1]} ({found[0]})"


@pytest.fixture(scope="session")
def mnist_raw() -> Path:
    """The folder holding the four MNIST files (packed or unpacked), where course.data finds it."""
    found = find_mnist()
    if found is None:
        pytest.fail(mnist_missing_message(), pytrace=False)
    return found[1]


def copy_mnist_gz(raw: Path, target: Path) -> Path:
    """Write the four MNIST ``.gz`` files from `raw` into `target` (writable copies; packs unpacked ones)."""
    from course import data

    target.mkdir(parents=True, exist_ok=True)
    for name in data.RAW_FILES:
        if (raw / f"{name}.gz").is_file():
            shutil.copyfile(raw / f"{name}.gz", target / f"{name}.gz")  # copyfile: no read-only mode bits
        else:
            with open(raw / name, "rb") as src, gzip.open(target / f"{name}.gz", "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst)
    return target


@pytest.fixture(scope="module")
def machine_threads():
    """The module's gradings share the whole machine's cores among themselves (no test-process share)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in THREAD_SHARE_NAMES:
            patch.delenv(name, raising=False)
        yield


def pytest_configure(config):
    """Before pytest-xdist's processes start: the course track's baseline, trained once with every core.

    Nearly every test process needs it first thing; trained inside one of them with its share of the cores, the
    others would wait for it with their cores idle. Only in the controlling process of a run with 2 or more
    test processes, and only when MNIST is found and the baseline is not cached yet (a warm cache: nothing)."""
    workers = getattr(config.option, "numprocesses", None)
    if hasattr(config, "workerinput") or not isinstance(workers, int) or workers < 2 or config.option.collectonly:
        return
    if find_mnist() is None:
        return  # the tests that need MNIST say where to put it
    from course import config as course_config, models

    models.baseline(course_config.DEFAULT_TRACK)


@pytest.fixture(autouse=True)
def fresh_oracle():
    """Every test starts with an empty ledger on the default track, in practice mode."""
    from course import oracle
    from course.context import CONTEXT

    CONTEXT.set_track(None)
    oracle._BACKENDS.clear()
    oracle._LISTENERS.clear()
    CONTEXT.set_exam(None)
    yield
    oracle._BACKENDS.clear()
    oracle._LISTENERS.clear()
    CONTEXT.set_exam(None)
    CONTEXT.set_track(None)


@pytest.fixture(scope="session")
def ds(mnist_raw):
    from course import data

    return data.load("7,1")


@pytest.fixture(scope="session")
def baseline_model(mnist_raw):
    """The cached baseline for 7,1 (trained once per machine, ~1 minute cold)."""
    from course import models

    return models.baseline("7,1")


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of a throw-away PostgreSQL cluster for this test process (tests/helpers/postgres.py).

    Skipped without the server binaries or psycopg, unless COURSE_REQUIRE_POSTGRES=1 (CI): then it fails.
    """
    from tests.helpers import postgres

    why = postgres.missing()
    if why is not None:
        if postgres.required():
            pytest.fail(f"{postgres.REQUIRE_ENV}=1 but {why}", pytrace=False)
        pytest.skip(why)
    with postgres.cluster() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server):
    """A new, empty database on the session's PostgreSQL cluster: its SQLAlchemy URL."""
    from autograder.results import database
    from tests.helpers import postgres

    url = postgres.new_database(postgres_server)
    yield url
    for engine in list(database._ENGINES.values()):  # close this test's connections (the cluster keeps running)
        engine.dispose()
    database._forget_engines()


@pytest.fixture
def own_event(tmp_path_factory):
    """Start live-event servers of the test's own: ``own_event(slot, name, **limits)`` gives the event's dict
    (tests/helpers/events.py: url, api, code, admin, truth, server, db, c); each is stopped after the test."""
    from contextlib import ExitStack

    from tests.helpers import events

    with ExitStack() as stack:
        yield lambda slot="api", name="event", **kw: stack.enter_context(events.own(tmp_path_factory, slot, name, **kw))


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, mnist_raw):
    """(root, info, truth): grading data and truth for track 7,1 with a fixed seed (tests/helpers/service.py)."""
    from tests.helpers import service

    return service.prepare_run(tmp_path_factory.mktemp("run"))


@pytest.fixture()
def running(prepared, tmp_path, monkeypatch):
    """(socket, ledger, truth) of a live annotation service for this test; the kernel-side environment points at
    it (tests/helpers/service.py)."""
    from tests.helpers import service

    process, sock, ledger, truth = service.start(prepared, tmp_path, monkeypatch=monkeypatch)
    yield sock, ledger, truth
    service.stop(process)
