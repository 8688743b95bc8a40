"""`autograder grade` end to end on a tiny assignment: good, bad and cheating submissions.

The toy assignment (tests/fixtures/autograder_course) does what a real one does in
seconds: load the grading data, annotate, fit, `grading.submit(predict)`, a graded
test cell. Every submission below is executed for real by nbgrader in the
sandboxed kernel against a live annotation service; the batch is graded once
(module fixture) and each test checks the row, the ledger or the files left.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from autograder.results import leaderboard, store
from course import config, data
from helpers.courses import HONEST, add_submission, make_course, run_cli, solution
from helpers import probes
from helpers.probes import kernel_user_pids, mentioning

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")]

ASSIGNMENT = "toy"
MEMORY_GB = 3  # the toy kernel needs ~1.5 GB of address space; the memory hog hits this cap
ENDLESS_TIMEOUT_S = 20



def local_secrets():
    """What a participant can dig out of a local run: indices, their digits, perfect private predictions."""
    split = data.split((7, 1))
    idx = split.public.c_indices[:20]
    return idx.tolist(), split.pool_digits[idx].tolist(), split.private_test_digits.tolist()


def snoop_code(course_dir: Path) -> str:
    """Look for every label source the grader knows of, record what is visible, then work honestly."""
    probes = {
        "shared MNIST": str(data._verified_raw_dir()),  # where course.data finds MNIST for the grader
        "grader cache MNIST": str(config.cache_dir() / "MNIST" / "raw"),
        "grader cache": str(config.cache_dir()),
        "home cache MNIST": str(Path.home() / ".cache" / "dcai-hackathon" / "MNIST" / "raw"),
        "repo data": str(config.REPO_DATA_DIR),
        "results db": str(course_dir / store.DB_NAME),
        "ledgers": str(course_dir / store.LEDGER_DIR),
        "submissions": str(course_dir / "submitted"),
        "instructor source": str(course_dir / "source"),
        "shipped labels": "labels.npy",
        "shipped model": "model.pt",
    }
    return (
        "import json, os\nfrom pathlib import Path\n"
        f"probes = {probes!r}\n"
        "found = {name: os.path.exists(path) and (sorted(os.listdir(path)) if os.path.isdir(path) else 'file')\n"
        "         for name, path in probes.items()}\n"
        "run = Path(os.environ['COURSE_DATA_DIR']).parent\n"
        "found['run folder'] = sorted(os.listdir(run))\n"
        "found['processes'] = sorted(open(f'/proc/{p}/cmdline').read().replace(chr(0), ' ')[:80]\n"
        "                            for p in os.listdir('/proc') if p.isdigit())\n"
        "found['data dir'] = os.environ['COURSE_DATA_DIR']\n"
        "found['capabilities'] = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]\n"
        "import subprocess\n"
        f"found['umount'] = subprocess.run(['umount', '/usr'],\n"
        "                                 capture_output=True).returncode\n"
        "found['remount'] = subprocess.run(['mount', '-o', 'remount,rw', '/'], capture_output=True).returncode\n"
        f"found['shared MNIST after umount'] = os.path.exists({probes['shared MNIST']!r})\n"
        "import socket\n"
        "found['interfaces'] = [name for _, name in socket.if_nameindex()]\n"
        "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=3)\n    found['internet'] = True\n"
        "except OSError as exc:\n    found['internet'] = str(exc)\n"
        "print('FOUND=' + json.dumps(found))\n\n" + HONEST)


def tamper_code(course_dir: Path) -> str:
    """Honest work, then every way to fake the count: reset, monkeypatch, local ledger, forged files."""
    targets = ["ledger.jsonl", "grades.db", str(course_dir / store.DB_NAME),
               str(store.ledger_path(course_dir, ASSIGNMENT, "tamper"))]
    return HONEST + (
        "\nimport json\nfrom pathlib import Path\n"
        "oracle._BACKENDS.clear()\n"
        "oracle.count = lambda: 0\n"
        "try:\n    oracle.use_backend(oracle.LocalBackend(ds.track))\n"
        "except oracle.OracleError as exc:\n    print('LocalBackend refused:', exc)\n"
        "fake = json.dumps({'op': 'score', 'split': 'private', 'ok': True, 'accuracy': 1.0, 'count': 0})\n"
        f"for target in {targets!r}:\n"
        "    try:\n        Path(target).parent.mkdir(parents=True, exist_ok=True)\n"
        "        Path(target).write_text(fake + '\\n')\n"
        "    except OSError as exc:\n        print('write refused:', exc)\n"
        "for op in ('reset', 'set_count'):\n"
        "    try:\n        oracle.backend()._request(op)\n"
        "    except Exception as exc:\n        print('refused:', exc)\n")


FAKE_BACKEND = (
    "class Fake:\n    submit_split = 'private'\n"
    "    def score(self, predictions, split):\n        return 1.0, 0\n"
    "    def count(self):\n        return 0\n"
    "oracle.use_backend(Fake())\n\n"
    "def predict(images):\n    return np.full(len(images), 7)\n")


def submissions(course_dir: Path) -> dict[str, object]:
    """student -> an edit of the source notebook, or a callable that fills the folder itself."""
    idx, digits, private = local_secrets()
    return {
        "reference": None,
        "frugal": solution(
            "chosen, digits = [], []\nfor i in ds.c_indices:\n    chosen.append(int(i))\n"
            "    digits.append(int(oracle.annotate(i)))\n"
            "    if min(digits.count(7), digits.count(1)) >= 15:\n        break\n"
            "model = LogisticRegression(max_iter=1000).fit(ds.images[chosen].reshape(len(chosen), -1) / 255.0, digits)\n\n"
            "def predict(images):\n    return model.predict(images.reshape(len(images), -1) / 255.0).astype(int)\n"),
        "blank": "release",
        "raises": solution("raise ValueError('boom in the solution')"),
        "endless": solution("while True:\n    pass"),
        "memory_hog": solution("blocks = []\nwhile True:\n    blocks.append(np.ones(25_000_000))"),
        "dies": solution("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
        "invalid_json": "{ this is not a notebook",
        "no_predict": solution("model = None"),
        "wrong_shape": solution("def predict(images):\n    return np.zeros((len(images), 2), dtype=int)"),
        "wrong_labels": solution(f"def predict(images):\n    return np.full(len(images), {data.C})"),
        "no_notebook": "no notebook",
        "tamper": solution(tamper_code(course_dir)),
        "fake_backend": solution(FAKE_BACKEND),
        "snoop": solution(snoop_code(course_dir)),
        "hardcoded_indices": solution(
            f"indices = np.array({idx})\ndigits = np.array({digits})  # from a local run\n"
            "model = LogisticRegression(max_iter=1000).fit(ds.images[indices].reshape(len(indices), -1) / 255.0, digits)\n\n"
            "def predict(images):\n    return model.predict(images.reshape(len(images), -1) / 255.0).astype(int)\n"),
        "hardcoded_predictions": solution(
            f"PERFECT_LOCALLY = np.array({private})  # read from the local ledger's private truth\n\n"
            "def predict(images):\n    return PERFECT_LOCALLY.copy()\n"),
    }


def build_course(root: Path) -> Path:
    course_dir = make_course(root, {})  # a fixed assignment secret: frugal's accuracy is the same every run
    for student, edit in submissions(course_dir).items():
        add_submission(course_dir, student, edit, ASSIGNMENT)
    # files shipped beside a notebook: the real labels and a "model" (ignored by the grader)
    split = data.split((7, 1))
    np.save(course_dir / "submitted" / "snoop" / ASSIGNMENT / "labels.npy", split.pool_digits)
    (course_dir / "submitted" / "snoop" / ASSIGNMENT / "model.pt").write_bytes(b"weights")
    return course_dir


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course_dir = build_course(tmp_path_factory.mktemp("toy"))
    everyone = [s for s in submissions(course_dir) if s != "endless"]
    first = run_cli("grade", ASSIGNMENT, "--course", str(course_dir), "--memory", str(MEMORY_GB),
                    "--timeout", "300", *[arg for s in everyone for arg in ("--student", s)])
    assert first.returncode == 0, first.stderr[-3000:]
    # its own temp folder: the run folder (and so the kernel's environment) names it, which tells
    # this grader's kernels from those of another grader on the same machine
    endless_tmp = tmp_path_factory.mktemp("endless-tmp")
    second = run_cli("grade", ASSIGNMENT, "--course", str(course_dir), "--student", "endless",
                     "--timeout", str(ENDLESS_TIMEOUT_S), "--memory", str(MEMORY_GB),
                     env={**os.environ, "TMPDIR": str(endless_tmp)})
    assert second.returncode == 0, second.stderr[-3000:]
    second.tmpdir = endless_tmp
    rows = {r.student: r for r in store.load(course_dir, ASSIGNMENT)}
    return course_dir, rows, first, second


def ledger(course_dir: Path, student: str) -> list[dict]:
    path = store.ledger_path(course_dir, ASSIGNMENT, student)
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- honest submissions ---------------------------------------------------------------


def test_every_submission_has_a_row(graded):
    course_dir, rows, first, second = graded
    assert set(rows) == set(submissions(course_dir))
    for row in rows.values():
        assert row.detail and "\n" not in row.detail and row.runtime >= 0 and row.graded_at


def test_reference_passes_with_its_annotations(graded):
    course_dir, rows, *_ = graded
    row = rows["reference"]
    assert (row.status, row.passed, row.annotations) == ("ok", True, 60), row
    assert row.accuracy >= 0.9 and (row.score, row.max_score) == (2.0, 2.0)
    charged = [e for e in ledger(course_dir, "reference") if e["op"] == "annotate"]
    assert len(charged) == 1 and charged[0]["count"] == 60


def test_blank_release_notebook_fails(graded):
    row = graded[1]["blank"]
    assert (row.status, row.passed, row.accuracy, row.score) == ("failed", False, None, 0.0), row
    assert "NotImplementedError" in row.detail and "no submission" in row.detail


def test_leaderboard_ranks_passing_by_annotations(graded):
    course_dir, rows, first, _ = graded
    with open(course_dir / "leaderboard" / f"{ASSIGNMENT}.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == leaderboard.CSV_COLUMNS
    passing = [r["student"] for r in table if r["passed"] == "yes"]
    # frugal first (fewest annotations); the three honest 60-annotation runs next, by accuracy
    assert passing[0] == "frugal" and 30 <= rows["frugal"].annotations < 60
    assert set(passing[1:]) == {"reference", "tamper", "snoop"}
    accuracies = [float(r["accuracy"]) for r in table[1:len(passing)]]
    assert accuracies == sorted(accuracies, reverse=True)
    assert all(r["passed"] == "no" for r in table[len(passing):])
    assert (course_dir / "leaderboard" / f"{ASSIGNMENT}.html").is_file()
    assert (course_dir / "leaderboard" / f"{ASSIGNMENT}.png").stat().st_size > 10_000
    # the terminal table and the progress bar
    lines = first.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    first_batch = [r["student"] for r in table if r["student"] != "endless"]  # endless came later
    assert [line.split()[1] for line in lines[header + 2:header + 2 + len(first_batch)]] == first_batch
    assert any(line.startswith("blank: failed") for line in lines[:header])  # one line per submission
    assert "grading toy: 100%" in first.stderr  # the progress bar


# --- bad submissions: each gets a row and a clear detail --------------------------------


@pytest.mark.parametrize("student, status, words", [
    ("raises", "failed", ["ValueError: boom in the solution", "no submission"]),
    ("endless", "timeout", [f"wall-clock limit of {ENDLESS_TIMEOUT_S} s", "no submission"]),
    ("memory_hog", "failed", [f"used more than the {MEMORY_GB} GB memory limit in cell"]),  # tests/test_memory_limit.py
    ("dies", "error", ["kernel died"]),
    ("invalid_json", "error", ["toy.ipynb is not a valid notebook"]),
    ("no_predict", "failed", ["NameError", "predict"]),
    ("wrong_shape", "failed", ["PredictionError", "shape"]),
    ("wrong_labels", "failed", ["PredictionError", "Map the merged class C"]),
    ("no_notebook", "error", ["no notebook in submitted/no_notebook/toy/"]),
])
def test_bad_submission(graded, student, status, words):
    row = graded[1][student]
    assert row.status == status and not row.passed and row.accuracy is None, row
    for word in words:
        assert word in row.detail, row.detail


def test_timeout_left_no_process_behind(graded):
    """The endless kernel (run as a kernel user: 64100 + the slot its grader claimed) was killed with nbgrader."""
    alive = kernel_user_pids(mentioning(str(graded[3].tmpdir)))
    assert not alive, f"kernel processes left: {alive}"


# --- cheats: none of them improves the recorded numbers -----------------------------------


def test_tampering_keeps_the_service_count(graded):
    course_dir, rows, *_ = graded
    row = rows["tamper"]
    assert (row.status, row.annotations) == ("ok", 60), row
    entries = ledger(course_dir, "tamper")
    assert max(e.get("count", 0) for e in entries) == 60
    assert {e["op"] for e in entries if not e["ok"]} <= {"reset", "set_count"}
    # the forged files vanished with the sandbox's RAM disk; only the executed notebook is kept
    assert sorted(os.listdir(course_dir / "autograded" / "tamper" / ASSIGNMENT)) == [f"{ASSIGNMENT}.ipynb"]
    assert not store.ledger_path(course_dir, ASSIGNMENT, "tamper").read_text().count('"accuracy": 1.0')
    assert "LocalBackend refused" in (course_dir / "autograded" / "tamper" / ASSIGNMENT / "toy.ipynb").read_text()


def test_fake_backend_reaches_nothing(graded):
    row = graded[1]["fake_backend"]
    # nbgrader's in-kernel test was fooled (points are nbgrader's), the grader's numbers were not
    assert (row.status, row.accuracy, row.passed) == ("failed", None, False), row
    assert "no submission reached the annotation service" in row.detail


def test_kernel_sees_no_labels_and_no_grader_files(graded):
    course_dir, rows, *_ = graded
    found = probes.found(course_dir, "snoop")
    for name in ("shared MNIST", "grader cache MNIST", "home cache MNIST", "repo data", "results db",
                 "ledgers", "shipped labels", "shipped model"):
        assert found[name] is False, (name, found[name])
    for name in ("submissions", "instructor source", "grader cache"):
        assert found[name] in (False, []), (name, found[name])
    assert "private" not in found["run folder"], found["run folder"]  # truth and ledger of the service
    assert not any("autograder.grading.service" in p or "nbgrader" in p for p in found["processes"]), found["processes"]
    assert found["data dir"] != os.environ.get(config.ENV_DATA_DIR)
    # no capabilities: the tmpfs over the labels cannot be unmounted, / cannot be remounted
    assert int(found["capabilities"], 16) == 0
    assert found["umount"] != 0 and found["remount"] != 0 and found["shared MNIST after umount"] is False
    # no network: nothing to download the MNIST labels from
    assert found["interfaces"] == ["lo"] and "unreachable" in found["internet"], found["interfaces"]
    assert rows["snoop"].annotations == 60 and rows["snoop"].status == "ok"


def test_hard_coded_indices_and_predictions_are_worthless(graded):
    course_dir, rows, *_ = graded
    indices, predictions = rows["hardcoded_indices"], rows["hardcoded_predictions"]
    # indices from a local run point at random images of the shuffled pool; no annotation was bought
    assert indices.annotations == 0 and not indices.passed and indices.accuracy < 0.8, indices
    # predictions perfect on the local private split are a coin toss on the shuffled one
    assert predictions.annotations == 0 and not predictions.passed and predictions.accuracy < 0.7, predictions


def test_regrading_replaces_the_row(graded):
    course_dir, rows, *_ = graded
    stale = dataclasses.replace(rows["no_notebook"], status="ok", detail="a stale row", graded_at="2000-01-01T00:00:00Z")
    store.save(course_dir, stale)  # what the regrade must replace
    again = run_cli("grade", ASSIGNMENT, "--course", str(course_dir), "--student", "no_notebook")
    assert again.returncode == 0, again.stderr
    now = {r.student: r for r in store.load(course_dir, ASSIGNMENT)}
    assert len(now) == len(rows) and now["no_notebook"].graded_at >= rows["no_notebook"].graded_at > stale.graded_at
    assert now["no_notebook"].detail == rows["no_notebook"].detail != stale.detail
    assert now["no_notebook"].status == rows["no_notebook"].status != "ok"
    assert {s: now[s] for s in now if s != "no_notebook"} == {s: rows[s] for s in rows if s != "no_notebook"}


def test_cli_errors_are_clear(graded, tmp_path):
    course_dir = graded[0]
    missing = run_cli("grade", ASSIGNMENT, "--course", str(course_dir), "--student", "nobody")
    assert missing.returncode == 2 and "no submission of toy for nobody" in missing.stderr
    unknown = run_cli("grade", "05_nothing", "--course", str(course_dir))
    assert unknown.returncode == 2 and "no notebook in" in unknown.stderr
    empty = run_cli("leaderboard", ASSIGNMENT, "--course", str(tmp_path))
    assert empty.returncode == 2 and "no graded submissions" in empty.stderr
    rebuilt = run_cli("leaderboard", ASSIGNMENT, "--course", str(course_dir))
    assert rebuilt.returncode == 0 and "frugal" in rebuilt.stdout
