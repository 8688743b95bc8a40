"""`kill -9` of `autograder grade` in the middle of a batch, then the same command again.

The rows saved before the kill are kept (same ``graded_at``: not regraded), the
others are graded, no service, nbgrader worker, sandbox or kernel of the killed
grader is left, and both SQLite files (results, nbgrader's gradebook) pass
``PRAGMA integrity_check``. The batch journal is keyed by the command's settings.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autograder.grading import journal
from autograder.results import store
from helpers.courses import HONEST, make_course, run_cli, solution
from helpers.probes import kernels_below, mentioning, wait_until

ASSIGNMENT = "toy"
SLOW = HONEST + "\nimport time\ntime.sleep(20)\n"  # still running when the grader is killed (its kernel is up)
STUDENTS = {"a_first": None, "b_slow": solution(SLOW), "c_after": solution("raise ValueError('late')")}


def rows_in(course_dir: Path) -> dict[str, str]:
    db = store.db_path(course_dir)
    if not db.is_file():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as connection:
            return dict(connection.execute("SELECT student, graded_at FROM results WHERE level = 'combined'"))
    except sqlite3.OperationalError:
        return {}


def processes_mentioning(text: str) -> list[str]:
    """Command lines of processes whose environment or command line names `text` (our TMPDIR)."""
    return list(mentioning(text).values())


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
def test_killed_batch_resumes_where_it_stopped(tmp_path):
    # names this grader's processes (the kernels' data folder is in it); short: Unix socket paths are in it
    own_tmp = Path(tempfile.mkdtemp(prefix="ag-resume-", dir="/tmp"))
    try:
        _kill_and_resume(tmp_path, own_tmp)
    finally:
        shutil.rmtree(own_tmp, ignore_errors=True)


def _kill_and_resume(tmp_path: Path, own_tmp: Path) -> None:
    course = make_course(tmp_path, STUDENTS)
    env = {**os.environ, "TMPDIR": str(own_tmp)}
    command = [sys.executable, "-m", "autograder.cli", "grade", ASSIGNMENT, "--course", str(course),
               "--memory", "3", "--timeout", "300"]
    grader = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: rows_in(course) or grader.poll() is not None, 600, "a_first's row")
        # b_slow's kernel is up (and sleeping): the kill lands in the middle of a submission
        wait_until(lambda: kernels_below(grader.pid) or grader.poll() is not None, 600, "b_slow's kernel")
        assert grader.poll() is None, "the batch ended before it could be killed"
    finally:
        grader.send_signal(signal.SIGKILL)
        grader.wait()
    before = rows_in(course)
    assert "a_first" in before and len(before) < len(STUDENTS), before  # killed in the middle
    try:  # parent-death signals are delivered: every process of the killed grader goes
        wait_until(lambda: not processes_mentioning(str(own_tmp)), 60, "the killed grader's processes to end")
    except AssertionError:
        raise AssertionError(processes_mentioning(str(own_tmp))) from None

    again = run_cli(*command[3:], env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming the interrupted batch" in again.stderr, again.stderr[-2000:]
    assert f"{len(before)} of 3 submissions already graded" in again.stderr, again.stderr[-2000:]
    after = rows_in(course)
    assert set(after) == set(STUDENTS), after
    assert all(after[s] == graded_at for s, graded_at in before.items()), (before, after)  # kept, not regraded
    rows = {r.student: r for r in store.load(course, ASSIGNMENT)}
    assert rows["a_first"].passed and rows["b_slow"].passed and rows["c_after"].status == "failed", rows
    assert not (course / ".autograder" / journal.NAME).exists()  # the batch is complete
    assert integrity(store.db_path(course)) == "ok" and integrity(course / "gradebook.db") == "ok"
    assert not processes_mentioning(str(own_tmp))
    assert not [p for p in own_tmp.iterdir() if p.name.startswith("autograder-run-")], list(own_tmp.iterdir())


def test_journal_is_keyed_by_the_command(tmp_path):
    settings = {"assignment": "toy", "students": ["a", "b"], "timeout": 300}
    first = journal.Journal(tmp_path / journal.NAME, settings)
    first.record("a", "2026-01-01T00:00:00+00:00")
    same = journal.Journal(tmp_path / journal.NAME, dict(settings))
    assert same.resumed and same.done == {"a": "2026-01-01T00:00:00+00:00"}
    other = journal.Journal(tmp_path / journal.NAME, {**settings, "timeout": 60})  # another command: a new batch
    assert not other.resumed and other.done == {}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]  # written atomically
    other.finish()
    assert not (tmp_path / journal.NAME).exists()
