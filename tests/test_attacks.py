"""A hostile participant against the real `autograder grade`: every attack is graded, none gains anything.

One batch (module fixture) grades a toy course whose submissions attack the grader:
symlinks for root to follow (grades.db, chmod/overwrite victims, feedback leaks),
symlinked and special-file submissions, a hunt for labels and secrets on the host
(a planted MNIST copy in /opt and under /home, /var/tmp, /root, a host Unix
socket, the grader's environment), floods (RAM disk, processes, big files,
notebook output, stderr), odd student ids and a malformed timestamp. Every other
row stays intact and the results database passes ``PRAGMA integrity_check``.
Faults (kill -9, two runs at once, a locked database) run on their own small courses.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from autograder import layout, sandbox
from autograder.grading import judge, tasks
from autograder.results import database, leaderboard, store
from course import data
from helpers.courses import HONEST, add_submission, fills_folder, make_course, points_only, run_cli, solution
from helpers.probes import descendants, found, kernel_user_pids, probe

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")]

A = "toy"
CANARY = "canary-7f3a9c-do-not-leak"
LIMITS = ["--memory", "3", "--tmp-mb", "64", "--max-processes", "96", "--max-file-mb", "32",
          "--max-output-mb", "1", "--timeout", "300"]
ODD_IDS = ["br[ab]", "trail ", "do$llar", "esc\x1b[31mred"]


_probe = probe  # helpers.probes: prints FOUND=<json>, read back by `found`


def linker_code(course_dir: Path, victim: Path) -> str:
    """Symlinks for root to follow, in the working folder and in the runtime folder."""
    targets = {"toy.ipynb": str(course_dir / store.DB_NAME), "timestamp.txt": str(victim),
               "feedback.html": str(course_dir / "source" / A / f"{A}.ipynb"),
               "other.ipynb": str(course_dir / "submitted" / "reference" / A / f"{A}.ipynb"),
               "gradebook.db": str(course_dir / "gradebook.db"), "up.ipynb": "../../../grades.db"}
    return (
        "import os, ipykernel\n"
        f"targets = {targets!r}\n"
        "planted = []\n"
        "for folder in ('.', os.path.dirname(ipykernel.get_connection_file())):\n"
        "    for name, target in targets.items():\n"
        "        try:\n            os.symlink(target, os.path.join(folder, name + ('' if folder == '.' else '.x')))\n"
        "            planted.append(name)\n"
        "        except OSError as exc:\n            print('refused', exc)\n"
        + _probe("{'planted': len(planted), 'cwd': os.getcwd()}") + "\n" + HONEST)


def hunter_code(host_socket: str) -> str:
    """Look everywhere for labels, secrets and host services; then work honestly."""
    return (
        "import os, socket, time\n"
        "hits, start = [], time.time()\n"
        "for folder, dirs, files in os.walk('/'):\n"
        "    if folder in ('/proc', '/sys', '/dev'):\n        dirs[:] = []\n        continue\n"
        "    for name in files:\n"
        "        low = name.lower()\n"
        "        if 'ubyte' in low or 'idx1' in low or 'idx3' in low or low.startswith(('ag-canary', 'digits.csv')):\n"
        "            hits.append(os.path.join(folder, name))\n"
        "    if time.time() - start > 60:\n        hits.append('walk stopped at 60 s')\n        break\n"
        "reads = {}\n"
        "for path in ('/var/tmp/ag-canary.txt', '/root/ag-canary.txt', '/opt/elsewhere/MNIST/raw',\n"
        "             '/home/ag-someone/mnist', '/etc/hostname', '/etc/shadow', '/srv', '/mnt', "
        f"{str(data._verified_raw_dir())!r}):\n"
        "    try:\n        reads[path] = open(path).read(50) if os.path.isfile(path) else os.listdir(path)\n"
        "    except OSError as exc:\n        reads[path] = type(exc).__name__\n"
        "try:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        f"    s.connect({host_socket!r})\n    sock = 'connected'\n"
        "except OSError as exc:\n    sock = type(exc).__name__\n"
        "env = dict(os.environ)\n"
        + _probe("{'hits': hits, 'reads': reads, 'socket': sock, 'env': env, 'uid': os.getuid(),"
                 " 'root': sorted(os.listdir('/'))}") + "\n" + HONEST)


FLOODS = {
    # the RAM disk is capped (--tmp-mb 64); one file is capped (--max-file-mb 32) on host folders too
    "tmp_flood": ("import os, ipykernel\nsizes = {}\n"
                  "for path in ('/tmp/fill', os.path.join(os.path.dirname(ipykernel.get_connection_file()), 'fill')):\n"
                  "    written = 0\n    try:\n        with open(path, 'wb') as f:\n"
                  "            while written < 300 * 2**20:\n                f.write(b'x' * 2**20)\n                written += 2**20\n"
                  "    except OSError as exc:\n        pass\n    sizes[path] = written\n    os.remove(path)\n"
                  + _probe("sizes")),
    # bounded fork bomb: children sleep, the parent counts, then kills them
    "fork_flood": ("import os, signal, time\nchildren = []\n"
                   "for _ in range(300):\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
                   "    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n    children.append(pid)\n"
                   "for pid in children:\n    os.kill(pid, signal.SIGKILL)\n    os.waitpid(pid, 0)\n"
                   + _probe("{'forked': len(children)}")),
    "output_flood": "for _ in range(40):\n    print('y' * 2**20)\n",
    "stderr_flood": "import os\nfor _ in range(100):\n    os.write(2, b'z' * 2**20)\n",
}


def _plant(root_tmp: Path) -> dict:
    """Host files and services a kernel must not reach; removed after the module."""
    raw = data._verified_raw_dir()
    planted = []
    for folder in (Path("/opt/elsewhere/MNIST/raw"), Path("/home/ag-someone/mnist")):
        folder.mkdir(parents=True, exist_ok=True)
        for name in os.listdir(raw):
            if "labels" in name:
                shutil.copyfile(raw / name, folder / name)
        planted.append(folder)
    for path in (Path("/var/tmp/ag-canary.txt"), Path("/root/ag-canary.txt")):
        path.write_text(CANARY)
        planted.append(path)
    victim = root_tmp / "victim.txt"
    victim.write_text("victim\n")
    os.chmod(victim, 0o640)
    sock_dir = Path(tempfile.mkdtemp(prefix="ag-test-", dir="/run"))  # this run's own: tests may run side by side
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_dir / "host.sock"))
    os.chmod(sock_dir / "host.sock", 0o777)
    server.listen(5)
    server.settimeout(0.5)
    accepted = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(1)
                conn.close()
            except OSError:
                continue

    threading.Thread(target=serve, daemon=True).start()
    return {"victim": victim, "socket": str(sock_dir / "host.sock"), "accepted": accepted,
            "cleanup": lambda: (stop.set(), server.close(), shutil.rmtree(sock_dir, ignore_errors=True),
                                shutil.rmtree("/opt/elsewhere", ignore_errors=True),
                                shutil.rmtree("/home/ag-someone", ignore_errors=True),
                                [Path(p).unlink(missing_ok=True) for p in ("/var/tmp/ag-canary.txt",
                                                                           "/root/ag-canary.txt")])}


@fills_folder
def _link_nb(folder, course_dir):
    os.symlink(course_dir / "submitted" / "reference" / A / f"{A}.ipynb", folder / f"{A}.ipynb")


@fills_folder
def _link_host(folder, course_dir):
    os.symlink("/etc/passwd", folder / f"{A}.ipynb")


@fills_folder
def _link_beside(folder, course_dir):
    shutil.copyfile(course_dir / "source" / A / f"{A}.ipynb", folder / f"{A}.ipynb")
    os.symlink(course_dir / "source" / A / f"{A}.ipynb", folder / "notes.ipynb")


@fills_folder
def _fifo(folder, course_dir):
    os.mkfifo(folder / f"{A}.ipynb")


# what the kernel must reach (the allow-list's other half): its data, the course package, the service socket,
# its working folder, the baseline checkpoint; each read or written for real, each failure reported by name
REACH = ("import os, socket, inspect\nfrom pathlib import Path\nreach = {}\n"
         "def _try(name, f):\n    try:\n        reach[name] = f()\n"
         "    except Exception as exc:\n        reach[name] = 'failed: ' + repr(exc)\n"
         "_data = Path(os.environ['COURSE_DATA_DIR'])\n"
         "_try('data', lambda: sorted((p.name, len(p.read_bytes()) > 0) for p in _data.rglob('*') if p.is_file()))\n"
         "import course, course.data\n"
         "_try('course', lambda: Path(course.__file__).is_file() and len(inspect.getsource(course.data)) > 1000)\n"
         "def _socket():\n    with socket.socket(socket.AF_UNIX) as s:\n"
         "        s.connect(os.environ['COURSE_SERVICE'].split(':', 1)[1])\n    return True\n"
         "_try('socket', _socket)\n"
         "from course import oracle\n_try('count', lambda: int(oracle.count()))\n"
         "def _work():\n    Path('reach.txt').write_text('written here')\n    return Path('reach.txt').read_text()\n"
         "_try('workdir', _work)\n"
         "_models = Path(os.environ['COURSE_CACHE_DIR']) / 'models'\n"
         "_try('checkpoint', lambda: sorted((p.name, len(p.read_bytes()) > 0) for p in _models.iterdir()))\n"
         + probe("reach"))


@fills_folder
def _bad_stamp(folder, course_dir):
    shutil.copyfile(course_dir / "source" / A / f"{A}.ipynb", folder / f"{A}.ipynb")
    (folder / "timestamp.txt").write_text("yesterday, honest \x1b[2J\n")


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    root = tmp_path_factory.mktemp("attacks")
    host = _plant(root)
    try:
        course_dir = make_course(root, {"reference": None})
        subs = {
            "linker": solution(linker_code(course_dir, host["victim"])),
            "hunter": solution(hunter_code(host["socket"])),
            "reacher": solution(REACH + "\n" + HONEST),
            **{name: solution(code + "\n" + HONEST) for name, code in FLOODS.items()},
            "link_nb": _link_nb, "link_host": _link_host, "link_beside": _link_beside, "fifo": _fifo,
            "bad_stamp": _bad_stamp,
            **{odd: None for odd in ODD_IDS},
        }
        for student, spec in subs.items():
            add_submission(course_dir, student, spec, A)
        os.symlink(course_dir / "submitted" / "reference", course_dir / "submitted" / "link_dir")
        before = (host["victim"].read_text(), os.stat(host["victim"]).st_mode)
        env = {**os.environ, "AUTOGRADER_TEST_CANARY": CANARY, "OPENAI_API_KEY": CANARY,
               "AWS_SECRET_ACCESS_KEY": CANARY}  # secrets an instructor may have set
        run = run_cli("grade", A, "--course", str(course_dir), *LIMITS, env=env)
        rows = {r.student: r for r in store.load(course_dir, A)}
        yield {"course": course_dir, "run": run, "rows": rows, "host": host, "victim_before": before}
    finally:
        host["cleanup"]()


# --- the batch finished, every row is there, the database is intact ----------------------


def test_batch_finishes_with_every_row_and_an_intact_database(attacked):
    run, rows, course_dir = attacked["run"], attacked["rows"], attacked["course"]
    assert run.returncode == 0, run.stderr[-3000:]
    expected = {"reference", "linker", "hunter", "reacher", *FLOODS, "link_nb", "link_host", "link_beside", "fifo",
                "bad_stamp", "link_dir", *(layout.row_id(o) for o in ODD_IDS)}
    assert set(rows) == expected
    connection = sqlite3.connect(course_dir / store.DB_NAME)
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    connection.close()
    assert rows["reference"].status == "ok" and rows["reference"].passed
    # the attackers' honest part still counts: nothing they did broke their own grading
    for student in ("linker", "hunter", "reacher", *FLOODS):
        assert rows[student].status == "ok" and rows[student].annotations == 60, rows[student]


# --- nothing privileged follows a link the kernel planted -----------------------------------


def test_planted_links_are_never_followed(attacked):
    course_dir, host = attacked["course"], attacked["host"]
    assert found(course_dir, "linker")["planted"] >= 6  # the links were made, in the kernel's own RAM disk
    assert found(course_dir, "linker")["cwd"] == sandbox.WORKDIR
    victim = host["victim"]
    assert (victim.read_text(), os.stat(victim).st_mode) == attacked["victim_before"]
    kept = course_dir / "autograded" / "linker" / A
    assert sorted(os.listdir(kept)) == [f"{A}.ipynb"] and not (kept / f"{A}.ipynb").is_symlink()
    # feedback built by nbgrader from autograded/ leaks neither the solution nor another submission
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback", A, "--student", "linker", "--force"],
                   cwd=course_dir, check=True, capture_output=True)
    feedback = course_dir / "feedback" / "linker" / A
    assert sorted(p.name for p in feedback.iterdir()) == [f"{A}.html"]
    assert "BEGIN SOLUTION" not in (feedback / f"{A}.html").read_text()


@pytest.mark.parametrize("student, words", [
    ("link_nb", ["refused", "toy.ipynb is a symlink"]),
    ("link_host", ["refused", "toy.ipynb is a symlink"]),
    ("link_beside", ["refused", "notes.ipynb is a symlink"]),
    ("fifo", ["refused", "toy.ipynb is a FIFO"]),
    ("link_dir", ["refused", "link_dir is a symlink"]),
])
def test_linked_or_special_submissions_get_a_clear_row(attacked, student, words):
    row = attacked["rows"][student]
    assert row.status == "error" and not row.passed and row.accuracy is None, row
    for word in words:
        assert word in row.detail, row.detail
    assert "root:" not in row.detail


# --- the kernel sees only its allow-list ------------------------------------------------------


def test_kernel_finds_no_labels_secrets_or_host_services(attacked):
    course_dir, host = attacked["course"], attacked["host"]
    seen = found(course_dir, "hunter")
    assert seen["hits"] == [], seen["hits"]  # no MNIST copy, no canary, no bundled digits
    for path, result in seen["reads"].items():
        assert result in ("FileNotFoundError", "PermissionError"), (path, result)
    assert seen["socket"] in ("FileNotFoundError", "ConnectionRefusedError") and not host["accepted"]
    assert CANARY not in json.dumps(seen["env"]) and "AUTOGRADER_TEST_CANARY" not in seen["env"]
    # nothing of the grader's environment: only what the sandbox is meant to set (written here, not read from the
    # sandbox under test), the run's own settings, and what libraries set themselves
    allowed = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TMPDIR", "SHELL", "MPLCONFIGDIR",
               "PYTHONDONTWRITEBYTECODE",
               "COURSE_DATA_DIR", "COURSE_CACHE_DIR", "COURSE_SERVICE", "COURSE_SERVICE_TOKEN", "COURSE_TRACK",
               "COURSE_OFFLINE", "COURSE_EXAM", "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK",  # the run's, or sklearn's own
               # the grader's thread settings (autograder.sandbox.threads), equal to this test process's own when
               # conftest gives it the same share of the cores
               "OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"}
    assert seen["env"]["HOME"] != os.environ.get("HOME") and seen["env"]["USER"] == "participant"
    assert not {"AUTOGRADER_TEST_CANARY", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY"} & set(seen["env"])
    leaked = {k for k, v in seen["env"].items() if os.environ.get(k) == v} - allowed
    assert not leaked, sorted(leaked)
    # an unprivileged kernel user: 64100 + the slot its grading process claimed (another batch may hold 64100)
    assert sandbox.KERNEL_UID <= seen["uid"] < sandbox.KERNEL_UID + tasks.UID_SLOTS
    assert "home" not in seen["root"] and "var" not in seen["root"]
    assert CANARY not in (course_dir / "autograded" / "hunter" / A / f"{A}.ipynb").read_text()


def test_kernel_reaches_what_it_needs(attacked):
    """The allow-list lets through what a notebook needs: the run's data (each file read), the course package,
    the service (a real count), a writable working folder and the baseline checkpoint."""
    reach = found(attacked["course"], "reacher")
    assert reach["data"] and all(readable for _, readable in reach["data"]), reach["data"]
    assert reach["course"] is True and reach["socket"] is True, reach
    assert reach["count"] == 0, reach  # the service answered, nothing charged yet
    assert reach["workdir"] == "written here", reach
    assert reach["checkpoint"] and all(readable for _, readable in reach["checkpoint"]), reach
    row = attacked["rows"]["reacher"]
    assert row.status == "ok" and row.passed and row.annotations == 60, row


# --- floods are capped ------------------------------------------------------------------------


def test_ram_disk_and_file_floods_stop_at_their_caps(attacked):
    sizes = found(attacked["course"], "tmp_flood")
    assert all(size <= 64 * 2**20 for size in sizes.values()), sizes
    assert min(sizes.values()) > 0


def test_process_flood_stops_at_the_cap(attacked):
    assert 0 < found(attacked["course"], "fork_flood")["forked"] < 96


def test_output_flood_is_cut_in_the_kept_notebook(attacked):
    kept = attacked["course"] / "autograded" / "output_flood" / A / f"{A}.ipynb"
    assert kept.stat().st_size < 2 * 2**20
    assert "output beyond" in kept.read_text()


def test_stderr_flood_is_cut_in_the_kept_log(attacked):
    log = store.ledger_path(attacked["course"], A, "stderr_flood").with_suffix(".nbgrader.log")
    assert log.stat().st_size < 600 * 1024
    assert "more bytes of kernel output dropped" in log.read_text()


# --- clean inputs ---------------------------------------------------------------------------


def test_odd_ids_get_a_clear_row_and_nothing_breaks(attacked):
    rows, run, course_dir = attacked["rows"], attacked["run"], attacked["course"]
    for odd in ODD_IDS:  # graded under an alias nbgrader takes; the row shows the name (issue 21)
        row = rows[layout.row_id(odd)]
        assert row.status == "ok" and row.passed and "graded as" in row.detail, row
    assert "\x1b" not in run.stdout and "\x1b" not in run.stderr.replace("\x1b[A", "").replace("\x1b[K", "")
    assert (course_dir / "leaderboard" / f"{A}.png").stat().st_size > 10_000
    rebuilt = run_cli("leaderboard", A, "--course", str(course_dir))
    assert rebuilt.returncode == 0 and "do$llar" in rebuilt.stdout and "\x1b" not in rebuilt.stdout


def test_malformed_timestamp_is_ignored(attacked):
    row = attacked["rows"]["bad_stamp"]
    assert row.status == "ok" and row.passed and "timestamp.txt ignored" in row.detail, row
    assert "\x1b" not in row.detail


# --- reproducible grading -------------------------------------------------------------------


def test_regrade_gives_the_same_row_and_the_secret_rotates(attacked):
    course_dir, rows = attacked["course"], attacked["rows"]
    again = run_cli("grade", A, "--course", str(course_dir), "--student", "reference", *LIMITS)
    assert again.returncode == 0, again.stderr[-2000:]
    now = {r.student: r for r in store.load(course_dir, A)}["reference"]
    before = rows["reference"]
    assert (now.accuracy, now.annotations, now.evaluations, now.submissions, now.status) == \
           (before.accuracy, before.annotations, before.evaluations, before.submissions, before.status)
    secret_file = course_dir / ".autograder" / "secrets" / A
    old = secret_file.read_text()
    rotated = run_cli("secret", "rotate", A, "--course", str(course_dir))
    assert rotated.returncode == 0 and secret_file.read_text() != old
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"


# --- faults -------------------------------------------------------------------------------------


def _alive(pids) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def test_kill_9_leaves_nothing_and_a_second_run_is_told_then_works(tmp_path):
    course_dir = make_course(tmp_path, {"endless": solution("while True:\n    pass"), "reference": None})
    grader = subprocess.Popen([sys.executable, "-m", "autograder.cli", "grade", A, "--course", str(course_dir),
                               "--student", "endless", "--timeout", "200", "--memory", "3"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    tree = []
    while time.time() < deadline:
        tree = descendants(grader.pid)
        if kernel_user_pids(tree):  # its kernel runs (as 64100 + the slot this grader claimed)
            break
        time.sleep(1)
    else:
        grader.kill()
        pytest.fail("the kernel never started")
    busy = run_cli("grade", A, "--course", str(course_dir), "--student", "reference")
    assert busy.returncode == 3 and "another `autograder grade` is running" in busy.stderr, busy.stderr
    os.kill(grader.pid, signal.SIGKILL)
    grader.wait()
    deadline = time.time() + 20
    while _alive(tree) and time.time() < deadline:
        time.sleep(0.5)
    assert not _alive(tree), [Path(f"/proc/{p}/cmdline").read_bytes()[:100] for p in _alive(tree)]
    stale = list(Path("/tmp").glob(f"autograder-run-{grader.pid}-*"))
    assert stale  # left by the killed grader ...
    rerun = run_cli("grade", A, "--course", str(course_dir), "--student", "reference", "--memory", "3")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert not any(p.exists() for p in stale)  # ... and removed by the next one
    assert {r.student: r for r in store.load(course_dir, A)}["reference"].passed


def test_locked_database_never_stops_the_batch(tmp_path):
    course_dir = make_course(tmp_path, {"nothing": "no notebook", "br[ab]": None})
    store.save(course_dir, store.Row("old", A, "7,1", None, None, False, None, None, "error", "x", 0.0, ""))
    holder = sqlite3.connect(course_dir / store.DB_NAME, timeout=0, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    env = {**os.environ, "AUTOGRADER_DB_WAIT_S": "2"}
    locked = run_cli("grade", A, "--course", str(course_dir), env=env)
    assert locked.returncode == 1 and "kept in" in locked.stderr, locked.stderr[-2000:]
    assert "nothing: error" in locked.stdout and "br[ab]: ok" in locked.stdout  # the batch went on (br[ab]: graded
    # under an alias, issue 21)
    # the lock goes away while the next run waits for it: everything is written
    threading.Timer(3.0, holder.rollback).start()
    env["AUTOGRADER_DB_WAIT_S"] = "60"
    later = run_cli("grade", A, "--course", str(course_dir), "--student", "nothing", env=env)
    holder.close()
    assert later.returncode == 0, later.stderr[-2000:]
    assert {r.student for r in store.load(course_dir, A)} == {"old", "nothing", "br[ab]"}
    assert not (course_dir / store.PENDING).exists()


def test_assignment_without_submit_cell_is_graded_for_points(tmp_path):
    course_dir = make_course(tmp_path, {"reference": None, "blank": "release"},
                             assignments={"points": points_only()})
    run = run_cli("grade", "points", "--course", str(course_dir), "--memory", "3")
    assert run.returncode == 0, run.stderr[-2000:]
    rows = {r.student: r for r in store.load(course_dir, "points")}
    assert rows["reference"].status == "ok" and rows["reference"].passed and rows["reference"].kind == "points"
    assert rows["reference"].accuracy is None and "points only" in rows["reference"].detail
    assert rows["blank"].status == "ok" and not rows["blank"].passed
    with open(course_dir / "leaderboard" / "points.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == leaderboard.POINTS_COLUMNS and table[0]["student"] == "reference"


# --- the judge and the store, without a kernel --------------------------------------------------


def _ledger(*entries) -> str:
    return "\n".join(json.dumps({"seq": i, "time": 0, **e}) for i, e in enumerate(entries))


def test_judge_counts_the_first_submission_and_flags_a_free_pass():
    settings = judge.Settings(timeout=10, memory_gb=1)
    first = judge.judge(judge.Evidence(_ledger(
        {"op": "score", "split": "public", "ok": True, "accuracy": .5, "count": 3, "n": 10},
        {"op": "score", "split": "private", "ok": True, "accuracy": .95, "count": 3, "n": 10},
        {"op": "score", "split": "private", "ok": False, "error": "SubmissionRefusedError"}),
        nbgrader_ok=True, score=2, max_score=2), settings)
    assert (first.accuracy, first.annotations, first.evaluations, first.submissions) == (.95, 3, 1, 2)
    assert first.passed and not first.review and "first of 2 submissions" in first.detail
    free = judge.judge(judge.Evidence(_ledger(
        {"op": "score", "split": "private", "ok": True, "accuracy": .93, "count": 0, "n": 10}),
        nbgrader_ok=True), settings)
    assert free.passed and "0 annotations" in free.review


def test_store_migrates_an_old_database(tmp_path):
    connection = sqlite3.connect(tmp_path / store.DB_NAME)
    connection.execute(database._SCHEMA)
    connection.execute("INSERT INTO results VALUES ('a', 'toy', '7,1', .9, 5, 1, 2, 2, 'ok', 'd', 1.0, 't')")
    connection.commit()
    connection.close()
    row = store.load(tmp_path, "toy")[0]
    assert (row.evaluations, row.submissions, row.review, row.kind) == (None, None, "", "competition")
    store.save(tmp_path, store.Row("b\x1b[31m", "toy", "7,1", .95, 0, True, 2, 2, "ok", "x\x07y", 1, "t",
                                   evaluations=2, submissions=1, review="passed with 0 annotations"))
    rows = {r.student: r for r in store.load(tmp_path, "toy")}
    assert rows["b"].evaluations == 2 and rows["b"].detail == "xy"


def test_leaderboard_png_escapes_math_text(tmp_path):
    rows = [store.Row("a$b$_c", "toy", "7,1", .95, 3, True, 2, 2, "ok", "d", 1, "t", review="r"),
            store.Row("x^{2}$", "toy", "7,1", .5, 3, False, 2, 2, "ok", "d", 1, "t")]
    leaderboard.to_png("toy$", leaderboard.rank(rows), tmp_path / "board.png")
    assert (tmp_path / "board.png").stat().st_size > 10_000
    assert "'=" not in leaderboard.to_csv(leaderboard.rank(rows))
