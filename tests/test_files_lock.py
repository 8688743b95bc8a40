"""`course.files.exclusive`: one process makes a shared file (a baseline checkpoint), the others wait.

Without it every grader, test worker and Dask worker that found no checkpoint trained the same
baseline at once: nine processes on two cores, none done after half an hour.
"""

from __future__ import annotations

import threading

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
