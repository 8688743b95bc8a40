"""A hostile participant against grading at scale: submissions graded side by side or one after
another on one machine, under the real `autograder grade`.

Every kernel runs as the same unprivileged user (uid 64100) in its own bubblewrap sandbox. What one
kernel leaves behind or holds must not reach the next kernel (a covert channel lets a sock puppet
buy the labels and a friend submit with none), and what one kernel does must not make another
honest submission fail (a fairness attack on the leaderboard). Results must never land on another
student's row.

Attacks that work today are kept as ``xfail(strict=True)`` with the owner of the fix in the reason;
attacks that fail are plain tests (they prove the defence).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder import sandbox
from helpers.courses import HONEST, add_submission, make_course, run_cli, solution
from helpers.probes import descendants, found, kernel_user_pids, probe, rows_of

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"),
              pytest.mark.skipif(os.geteuid() != 0, reason="the kernels run as uid 64100 only when the grader is root")]

A = "toy"
LIMITS = ["--memory", "3", "--tmp-mb", "64", "--max-processes", "96", "--max-file-mb", "32",
          "--max-output-mb", "1", "--timeout", "300"]
SYS_ADD_KEY, SYS_KEYCTL = 248, 250  # x86_64
KEYCTL_UNLINK, KEYCTL_SEARCH, KEYCTL_READ, KEYCTL_SET_TIMEOUT = 9, 10, 11, 15
KEY_SPEC_USER_KEYRING = -4


# --- the notebooks -------------------------------------------------------------------------------

KEYRING = (
    "import ctypes as _ct\n"
    "_libc = _ct.CDLL(None, use_errno=True)\n"
    "_L = _ct.c_long\n"
    f"def _add_key(name, payload):\n"
    f"    return _libc.syscall(_L({SYS_ADD_KEY}), b'user', name.encode(), payload, _L(len(payload)), "
    f"_L({KEY_SPEC_USER_KEYRING}))\n"
    f"def _read_key(name):\n"
    f"    kid = _libc.syscall(_L({SYS_KEYCTL}), _L({KEYCTL_SEARCH}), _L({KEY_SPEC_USER_KEYRING}), b'user', "
    f"name.encode(), _L(0))\n"
    "    if kid <= 0:\n        return None\n"
    "    buf = _ct.create_string_buffer(65536)\n"
    f"    n = _libc.syscall(_L({SYS_KEYCTL}), _L({KEYCTL_READ}), _L(kid), buf, _L(65536))\n"
    "    return buf.raw[:n] if n > 0 else None\n")


def puppet_code(key: str, mark: str) -> str:
    """A sock puppet: pays for 60 labels honestly, then leaves them where the next kernel of the same
    user may look (the user keyring), and tries to leave a process behind."""
    return (HONEST + "\n" + KEYRING +
            "import json, os\n"
            "payload = json.dumps({'i': [int(i) for i in indices], 'd': [int(d) for d in digits]}).encode()\n"
            f"kid = _add_key({key!r}, payload)\n"
            f"_libc.syscall(_L({SYS_KEYCTL}), _L({KEYCTL_SET_TIMEOUT}), _L(kid), _L(900))  # test hygiene only\n"
            "shm = _libc.shmget(_ct.c_int(0xA6A6), _L(4096), _ct.c_int(0o1666))  # System V shared memory\n"
            "open('/dev/shm/ag-stash', 'wb').write(payload)\n"
            "open('/tmp/ag-stash', 'wb').write(payload)\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            f"        os.execv('/bin/sleep', ['sleep', {mark!r}])\n"
            "    os._exit(0)\n"
            + probe("{'key': kid, 'shm': shm, 'uid': os.getuid()}"))


def cheat_code(key: str) -> str:
    """The friend: takes the puppet's labels from the keyring, pays for one label only."""
    return (KEYRING +
            "import json\n"
            f"raw = _read_key({key!r})\n"
            "stolen = json.loads(raw) if raw else None\n"
            "if stolen:\n"
            "    indices, digits = np.array(stolen['i']), np.array(stolen['d'])\n"
            "    oracle.annotate(indices[:1])  # one paid label: not a 0-annotation pass to review\n"
            "else:\n"
            "    indices = ds.c_indices[:60]\n    digits = oracle.annotate(indices)\n"
            "x = ds.images[indices].reshape(len(indices), -1) / 255.0\n"
            "model = LogisticRegression(max_iter=1000).fit(x, digits)\n"
            "def predict(images):\n    return model.predict(images.reshape(len(images), -1) / 255.0).astype(int)\n"
            "import os\n"
            "left = {'sysv_shm': _libc.shmget(_ct.c_int(0xA6A6), _L(0), _ct.c_int(0)) >= 0,\n"
            "        'dev_shm': os.path.exists('/dev/shm/ag-stash'), 'tmp': os.path.exists('/tmp/ag-stash')}\n"
            + probe("{'stolen': stolen is not None, 'left': left}"))


# --- one batch: what one kernel leaves behind, what reaches the next one ---------------------------


def _unlink_key(key: str, uid: int) -> None:
    """Remove the puppet's key from its user's keyring (as that user), so runs stay independent."""
    code = (KEYRING + f"kid = _libc.syscall(_L({SYS_KEYCTL}), _L({KEYCTL_SEARCH}), _L({KEY_SPEC_USER_KEYRING}), "
            f"b'user', {key!r}.encode(), _L(0))\n"
            f"if kid > 0:\n"
            f"    _libc.syscall(_L({SYS_KEYCTL}), _L({KEYCTL_UNLINK}), _L(kid), _L({KEY_SPEC_USER_KEYRING}))\n")
    subprocess.run([shutil.which("setpriv"), f"--reuid={uid}", f"--regid={uid}",
                    "--clear-groups", sys.executable, "-I", "-c", code], capture_output=True, timeout=30)


def _marked(mark: str) -> list[int]:
    out = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if mark.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                out.append(int(entry))
        except OSError:
            continue
    return out


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    key = f"ag-stash-{root.name}-{os.getpid()}"
    mark = f"{os.getpid()}.{int(time.time()) % 100000}"  # sleep's argument: seconds, and a mark to find it by
    try:
        course_dir = make_course(root, {"alice": None})
        subs = {
            "a_puppet": solution(puppet_code(key, mark)),
            "b_cheat": solution(cheat_code(key)),
            "alice ": "no notebook",  # sorts after alice; its cleaned id is "alice"
            "alice\u200b": "no notebook",  # a zero-width space: cleaned away too
        }
        for student, spec in subs.items():
            add_submission(course_dir, student, spec, A)
        run = run_cli("grade", A, "--course", str(course_dir), *LIMITS)
        survivors = _marked(mark)
        yield {"course": course_dir, "run": run, "rows": rows_of(course_dir), "survivors": survivors}
    finally:
        try:
            uid = found(root / "course", "a_puppet")["uid"]
        except (OSError, IndexError, KeyError, ValueError):
            uid = sandbox.KERNEL_UID
        _unlink_key(key, uid)
        for pid in _marked(mark):
            os.kill(pid, signal.SIGKILL)


def test_batch_finishes(sequential):
    run, rows = sequential["run"], sequential["rows"]
    assert run.returncode in (0, 1), run.stderr[-3000:]
    assert {"a_puppet", "b_cheat"} <= set(rows), sorted(rows)
    assert rows["a_puppet"].passed and rows["a_puppet"].annotations == 60, rows["a_puppet"]


def test_no_process_outlives_its_kernel(sequential):
    """A double-forked, setsid daemon of the puppet dies with its sandbox (own PID namespace)."""
    assert found(sequential["course"], "a_puppet")["key"] != 0
    assert sequential["survivors"] == []


def test_no_shared_memory_or_ram_disk_carries_over_to_the_next_kernel(sequential):
    """System V shared memory, /dev/shm and /tmp die with the puppet's sandbox (own IPC namespace, RAM disks)."""
    assert found(sequential["course"], "a_puppet")["shm"] >= 0  # it was made
    assert found(sequential["course"], "b_cheat")["left"] == {"sysv_shm": False, "dev_shm": False, "tmp": False}


def test_labels_left_in_the_user_keyring_do_not_reach_the_next_kernel(sequential):
    """The kernels of a batch share a user, and the kernel keyring is per user and outlives the sandbox: the
    puppet's add_key and the friend's keyctl are refused by the sandbox's seccomp filter (EPERM)."""
    rows = sequential["rows"]
    assert found(sequential["course"], "b_cheat")["stolen"] is False
    cheat = rows["b_cheat"]
    assert not (cheat.passed and cheat.annotations < 60), cheat


def test_an_id_that_cleans_to_another_students_id_does_not_replace_their_row(sequential):
    """'alice ' and 'alice' + a zero-width space are refused and get rows of their own (escaped ids),
    never the real alice's row."""
    alice = sequential["rows"]["alice"]
    assert alice.status == "ok" and alice.passed and alice.annotations == 60, alice


# --- two gradings at once: one kernel must not make another honest submission fail ----------------

NPROC_HOG = (
    "import os, time\nkids = []\n"
    "for _ in range(400):\n"
    "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
    "    if pid == 0:\n        time.sleep(240)\n        os._exit(0)\n"
    "    kids.append(pid)\n"
    "time.sleep(180)\n")

def _hog_then_victim(tmp_path: Path, hog_code: str, hog_processes: int, victim_args: list[str],
                     hog_args: list[str]):
    """Grade a hog on one course; once it holds `hog_processes` processes, grade an honest submission of
    another course (its own `autograder grade`, as two instructors or two batches on one machine)."""
    hog_course = make_course(tmp_path / "hog", {"hog": solution(hog_code)})
    victim_course = make_course(tmp_path / "victim", {"honest": None})
    with open(tmp_path / "hog.log", "wb") as log:
        hog = subprocess.Popen([sys.executable, "-m", "autograder.cli", "grade", A, "--course", str(hog_course),
                                *hog_args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, held = time.time() + 240, []
        while time.time() < deadline and hog.poll() is None:
            held = kernel_user_pids(descendants(hog.pid))
            if len(held) >= hog_processes:
                break
            time.sleep(1)
        assert len(held) >= hog_processes, (len(held), (tmp_path / "hog.log").read_text()[-2000:])
        start = time.time()
        victim = run_cli("grade", A, "--course", str(victim_course), *victim_args)
        return victim, rows_of(victim_course).get("honest"), time.time() - start, len(held)
    finally:
        os.kill(hog.pid, signal.SIGKILL)  # the worker, the service and the kernel die with it
        hog.wait()


def test_a_process_hog_does_not_make_another_grading_fail(tmp_path):
    """Two `autograder grade` at once: each claims its own kernel user, so RLIMIT_NPROC (per user) is not
    shared (before, both ran as 64100 and the victim's setpriv failed with EAGAIN: an error row)."""
    args = ["--memory", "3", "--max-processes", "64", "--tmp-mb", "64"]
    victim, row, seconds, held = _hog_then_victim(tmp_path, NPROC_HOG, 30, args + ["--timeout", "300"],
                                                  args + ["--timeout", "400"])
    assert row is not None, victim.stderr[-2000:]
    assert row.status == "ok" and row.passed and row.annotations == 60, (row, held, seconds)


# --- resume: a killed batch must not keep another student's row -----------------------------------


def test_resume_never_skips_a_student_an_impostor_id_recorded(tmp_path):
    """' alice' (refused, sorted first) is saved and journaled; kill -9 before the real alice is saved; the
    resumed batch must still grade alice (the journal once recorded the cleaned id 'alice' and skipped her)."""
    course_dir = make_course(tmp_path, {" alice": "no notebook", "alice": None})
    journal_file = course_dir / ".autograder" / "batch.json"
    command = [sys.executable, "-m", "autograder.cli", "grade", A, "--course", str(course_dir), "--memory", "3",
               "--timeout", "300"]
    grader = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, recorded = time.time() + 240, {}
    try:
        while time.time() < deadline and grader.poll() is None:
            try:
                recorded = json.loads(journal_file.read_text()).get("done", {})
            except (OSError, ValueError):
                recorded = {}
            if recorded:
                break
            time.sleep(0.2)
    finally:
        grader.kill()
        grader.wait()
    assert recorded and "alice" not in recorded, recorded  # only the impostor is done
    rerun = run_cli("grade", A, "--course", str(course_dir), "--memory", "3", "--timeout", "300")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    alice = rows_of(course_dir)["alice"]
    assert alice.status == "ok" and alice.passed and alice.annotations == 60, (alice, rerun.stderr[-1500:])


# --- --jobs 2: two submissions of one batch at once -----------------------------------------------

HOLD_PROCESSES = (  # also holds an exclusive flock on every file it can read of the grading data and baseline
    "import fcntl, os, time\nlocked = []\n"
    "for top in (os.environ['COURSE_DATA_DIR'], os.environ['COURSE_CACHE_DIR']):\n"
    "    for folder, _, files in os.walk(top):\n"
    "        for name in files:\n"
    "            try:\n"
    "                fd = os.open(os.path.join(folder, name), os.O_RDONLY)\n"
    "                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
    "                locked.append(name)\n"
    "            except OSError:\n                pass\n"
    "kids = []\n"
    "for _ in range(400):\n"
    "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
    "    if pid == 0:\n        time.sleep(240)\n        os._exit(0)\n"
    "    kids.append(pid)\n"
    "time.sleep(45)\n"
    "for pid in kids:\n    os.kill(pid, 9)\n    os.waitpid(pid, 0)\n"
    + probe("{'held': len(kids), 'locked': locked}"))

THREADED_VICTIM = (  # an honest notebook that starts a few threads and processes after a while
    "import os, threading, time\n"
    "time.sleep(15)\n"
    "workers = [threading.Thread(target=time.sleep, args=(0.2,)) for _ in range(8)]\n"
    "for t in workers:\n    t.start()\n"
    "for t in workers:\n    t.join()\n"
    "pid = os.fork()\n"
    "if pid == 0:\n    os._exit(0)\n"
    "os.waitpid(pid, 0)\n" + HONEST)


def hunter_code(ports: list[int]) -> str:
    """Looks for the task's course, its gradebook and source (hidden tests), other run folders, and tries
    the Dask scheduler's and workers' ports on loopback. What the kernel is given (its grading data, its
    service socket, its runtime folder, the Python environment) is left out."""
    return (
        "import os, socket, sys, time, ipykernel, course\n"
        "given = [os.environ['COURSE_DATA_DIR'], os.environ['COURSE_SERVICE'].split(':', 1)[1],\n"
        "         os.path.dirname(ipykernel.get_connection_file()), '/tmp/cache']\n"
        "skip = ('/usr', '/lib', sys.prefix, sys.base_prefix, os.path.dirname(course.__file__))\n"
        "hits, start = [], time.time()\n"
        "for folder, dirs, files in os.walk('/'):\n"
        "    if folder in ('/proc', '/sys', '/dev') or folder.startswith(skip):\n"
        "        dirs[:] = []\n        continue\n"
        "    for name in files + dirs:\n"
        "        if name.endswith(('.ipynb', '.db', '.npz', 'nbgrader_config.py', '.sock', '.jsonl')) "
        "or name.startswith(('autograder-run', 'gradebook', 'truth', 'dask-')):\n"
        "            hits.append(os.path.join(folder, name))\n"
        "    if time.time() - start > 60:\n        hits.append('walk stopped at 60 s')\n        break\n"
        "hits = [h for h in hits if not any(g == h or g.startswith(h + '/') or h.startswith(g + '/') for g in given)]\n"
        "reached = {}\n"
        f"for port in {ports!r}:\n"
        "    s = socket.socket()\n    s.settimeout(2)\n"
        "    try:\n        s.connect(('127.0.0.1', port))\n        reached[port] = 'connected'\n"
        "    except OSError as exc:\n        reached[port] = type(exc).__name__\n"
        "    s.close()\n"
        + probe("{'hits': hits, 'reached': reached, 'given': given}") + "\n" + HONEST)


@pytest.fixture(scope="module")
def jobs_batch(tmp_path_factory):
    """One --jobs 2 batch: a process hog beside an honest notebook that starts threads, then a hunter."""
    root = tmp_path_factory.mktemp("jobs")
    course_dir = make_course(root, {"a_hog": solution(HOLD_PROCESSES), "b_victim": solution(THREADED_VICTIM),
                                    "c_hunter": solution(hunter_code([8786, 8787]))})
    run = run_cli("grade", A, "--course", str(course_dir), "--jobs", "2", "--memory", "3", "--max-processes", "64",
                  "--tmp-mb", "64", "--timeout", "150")
    return {"course": course_dir, "run": run, "rows": rows_of(course_dir)}


def test_jobs_2_a_process_and_flock_hog_does_not_starve_the_other_slot(jobs_batch):
    """Each slot has its own kernel uid (its own process limit); flocks on the shared grading data and
    baseline checkpoint stop nobody (no one locks them)."""
    rows, run = jobs_batch["rows"], jobs_batch["run"]
    assert run.returncode == 0, run.stderr[-3000:]
    hog = found(jobs_batch["course"], "a_hog")
    assert hog["held"] >= 30 and len(hog["locked"]) >= 2, hog  # it filled its own limit, locked data and baseline
    victim = rows["b_victim"]
    assert victim.status == "ok" and victim.passed and victim.annotations == 60, victim


def test_jobs_2_kernel_sees_no_task_course_gradebook_or_scheduler(jobs_batch):
    seen = found(jobs_batch["course"], "c_hunter")
    assert seen["hits"] == [], seen["hits"]
    assert all(v != "connected" for v in seen["reached"].values()), seen["reached"]
    assert jobs_batch["rows"]["c_hunter"].passed


# --- --scheduler: a Dask worker grades with the same executor as a --jobs slot (autograder.grading.tasks), so the
# --jobs batch above proves its isolation; tests/test_cluster.py grades on a real two-worker cluster.



# --- the live event server: uploads for `autograder verify`, invite-only joins ----------------------


def _timed_call(url, body=None, token=None, raw=None):
    from tests.helpers import events as es

    start = time.perf_counter()
    try:
        status = es.call(url, body, token=token, raw=raw)[0]
    except OSError:  # the client's 30 s timeout
        status = None
    return status, time.perf_counter() - start


def test_an_upload_flood_does_not_stall_other_participants(own_event):
    """Two participants upload a notebook of one cell with 60,000 empty outputs (3.3 MB, under every upload
    check; nbformat needs tens of seconds of CPU to validate it) while a third annotates: the third is still
    answered within a second (validation runs in a worker thread, the answer needs the interpreter briefly)."""
    import threading

    from tests.helpers import events as es

    event = own_event("close", "upload-flood")
    server, api = event["server"], event["api"]
    try:
        flooders = [es.call(f"{api}/join", {"name": f"flooder {k}"})[1]["result"]["token"] for k in range(2)]
        patient = es.call(f"{api}/join", {"name": "patient"})[1]["result"]["token"]
        nb = json.loads(nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])))
        nb["cells"][0]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ""}] * 60_000
        raw = json.dumps(nb).encode()
        assert len(raw) < 4 * 2**20
        quiet = [_timed_call(f"{api}/op", {"op": "count"}, token=patient)[1] for _ in range(5)]
        uploads: list = []
        senders = [threading.Thread(target=lambda t=token: uploads.append(_timed_call(f"{api}/notebook", token=t,
                                                                                      raw=raw)))
                   for token in flooders]
        for sender in senders:
            sender.start()
        time.sleep(0.5)
        busy = [_timed_call(f"{api}/op", {"op": "count"}, token=patient)]  # one at least: the uploads may end fast
        while any(s.is_alive() for s in senders) and len(busy) < 40:
            busy.append(_timed_call(f"{api}/op", {"op": "count"}, token=patient))
            time.sleep(0.2)
        for sender in senders:
            sender.join()
    finally:
        server.stop()
    evidence = {"quiet_s": [round(q, 3) for q in quiet], "busy_s": [round(b[1], 2) for b in busy],
                "uploads": [(s, round(t, 1)) for s, t in uploads]}
    assert all(s == 200 for s, _ in busy), evidence
    # a stall held the server for the whole validation, 9 to 30 s; a loaded machine slows the quiet calls too
    assert max(t for _, t in busy) < max(5.0, 20 * max(quiet)), evidence


@pytest.fixture(scope="module")
def roster_event(tmp_path_factory):
    """Wrong personal codes from one address (a whole room behind one NAT), then the real Ada joins."""
    from tests.helpers import events as es

    with es.own(tmp_path_factory, "close", "roster", invites=["Ada Lovelace", "Grace Hopper"]) as event:
        server, code, codes = event["server"], event["code"], event["invites"]
        api = f"{server.url}/api/events/{code}"
        guesses = [es.call(f"{api}/join", {"invite": f"{code}-{i:08d}".replace("0", "A").replace("1", "B")})[0]
                   for i in range(70)]
        ada = es.call(f"{api}/join", {"invite": codes["Ada Lovelace"]})
    return {"guesses": guesses, "ada": ada}


def test_personal_codes_cannot_be_brute_forced_from_one_address(roster_event):
    guesses = roster_event["guesses"]
    assert set(guesses) <= {403, 429} and guesses.count(403) <= 65 and guesses[-1] == 429, guesses


def test_wrong_codes_from_the_room_do_not_lock_out_a_valid_personal_code(roster_event):
    """A room behind one NAT shares the per-address join bucket; wrong codes used to empty it and lock the class
    out (429 for a valid code). A valid personal code is never rate-limited."""
    status, reply = roster_event["ada"]
    assert status == 200 and reply["result"]["name"] == "Ada Lovelace", (status, reply)
