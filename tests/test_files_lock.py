"""`course.files.exclusive`: one process makes a shared file (a baseline checkpoint), the others wait.

Without it every grader, test worker and Dask worker that found no checkpoint trained the same
baseline at once: nine processes on two cores, none done after half an hour.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from course import files


def test_a_second_maker_waits_for_the_first(tmp_path):
    target = tmp_path / "models" / "baseline.pt"
    inside, release, order = threading.Event(), threading.Event(), []

    def first():
        with files.exclusive(target):
            order.append("first in")
            inside.set()
            release.wait(30)
            order.append("first out")

    def second():
        inside.wait(30)
        with files.exclusive(target):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    inside.wait(30)
    threads[1].join(0.5)  # give a broken lock the chance to let it in
    release.set()
    for thread in threads:
        thread.join(30)
    assert order == ["first in", "first out", "second in"]


def test_a_folder_that_cannot_hold_a_lock_needs_none():
    ran = []
    with files.exclusive("/proc/no-such-folder/model.pt"):  # cannot be created, even by root
        ran.append(True)
    assert ran == [True]


# --- planted in a shared cache folder (attacks on the grader's cache, round 5) -------------------

def _planted(tmp_path):
    target = tmp_path / "models" / "baseline.pt"
    target.parent.mkdir()
    return target, Path(str(target) + ".lock")


def test_a_planted_symlink_is_not_followed(tmp_path):
    """The lock path links to a file that does not exist: following it made a file wherever it pointed."""
    target, lock = _planted(tmp_path)
    lock.symlink_to(tmp_path / "victim" / "created_by_grader")
    (tmp_path / "victim").mkdir()
    with files.exclusive(target):
        pass
    assert list((tmp_path / "victim").iterdir()) == []


def test_a_planted_fifo_does_not_hang(tmp_path):
    """A FIFO with no reader blocked the open for good (and with it the grader and its course lock)."""
    target, lock = _planted(tmp_path)
    os.mkfifo(lock)
    finished = threading.Event()

    def body():
        with files.exclusive(target):
            finished.set()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(30)
    assert finished.is_set(), "exclusive() blocked on a FIFO"


def test_a_holder_that_never_lets_go_delays_only_up_to_the_wait(tmp_path):
    target, lock = _planted(tmp_path)
    holder = open(lock, "a")
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        ran = []
        with files.exclusive(target, wait_s=1.0):
            ran.append(True)
        assert ran == [True]
    finally:
        holder.close()
