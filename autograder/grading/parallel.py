"""``autograder grade --jobs N``: N submissions graded at once on this machine.

A process pool of N workers (spawned, so none inherits the course lock or any open
file of the grader; each dies with the grader) runs `autograder.grading.tasks.grade_task`.
Each worker keeps its own executor for the batch: its own task course folder,
grading data, baseline checkpoint and nbgrader worker, a run folder, annotation
service, socket and gradebook copy per submission, and its own kernel user
(`autograder.grading.tasks.claim_kernel_uid`: the kernels of two slots share no process
limit and cannot signal each other). At most 2 N submissions are staged at a time. Results
come back in the order they finish; the grader applies each one as it arrives.

Each kernel's torch, OpenMP and BLAS get ``max(1, cores // N)`` threads (`kernel_threads`,
`autograder.sandbox.threads`; the grader puts them in the kernels' environment), and so does each
worker's own work (a baseline trained there): N gradings each using every core only compete.

Without cgroups on this machine (`autograder.sandbox.cgroups_available`) the pool still
runs but says once that the memory cap is then per process and the CPU is not shared out.

A worker that dies (killed, out of memory) breaks the pool: the pool is started
again and the submissions it was grading are graded again, once; a second death
gives them an error row.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from autograder import sandbox
from autograder.grading import tasks
from autograder.sandbox import threads
from autograder.grading.worker import die_with_parent

ATTEMPTS = 2  # a submission whose worker died this often gets an error row

_SPEC: tasks.GradeSpec | None = None
_WARNED = False


def _start_worker(spec: tasks.GradeSpec) -> None:
    """Pool initializer: die with the grader, keep the spec, keep to the kernels' threads."""
    global _SPEC
    die_with_parent()
    _SPEC = spec
    os.environ.update((k, v) for k, v in spec.kernel_env if k in threads.NAMES)  # course.models training here
    multiprocessing.util.Finalize(None, tasks.close_executor, exitpriority=10)  # when the pool shuts down


def _grade(submission: tasks.Submission) -> tasks.TaskResult:
    return tasks.grade_task(_SPEC, submission)


class LocalPool:
    """Grades the submissions of a batch in `jobs` local worker processes."""

    def __init__(self, jobs: int):
        if jobs < 1:
            raise ValueError(f"--jobs must be at least 1 (got {jobs}): the number of submissions graded at once "
                             "on this machine, e.g. --jobs 2; each needs a core and a few GB of memory")
        self.jobs = jobs

    def kernel_threads(self) -> int:
        """Threads per kernel: this machine's cores shared by the `jobs` gradings at once."""
        return threads.share(self.jobs)

    def _pool(self, spec: tasks.GradeSpec) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(self.jobs, mp_context=context, initializer=_start_worker, initargs=(spec,))

    def run(self, spec: tasks.GradeSpec, submissions: Iterable[tasks.Submission]) -> Iterator[tasks.TaskResult]:
        global _WARNED
        if self.jobs > 1 and not _WARNED and not sandbox.cgroups_available():
            print(sandbox.NO_CGROUP_WARNING, file=sys.stderr)
            _WARNED = True
        waiting = iter(submissions)
        retry: list[tasks.Submission] = []
        attempts: dict[str, int] = {}
        pool = self._pool(spec)
        running: dict = {}
        try:
            while True:
                while len(running) < 2 * self.jobs:
                    submission = retry.pop() if retry else next(waiting, None)
                    if submission is None:
                        break
                    attempts[submission.student] = attempts.get(submission.student, 0) + 1
                    running[pool.submit(_grade, submission)] = submission
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                broken = False
                for future in done:
                    submission = running.pop(future)
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        broken = True
                        if attempts[submission.student] < ATTEMPTS:
                            retry.append(submission)
                        else:
                            yield tasks.failed(spec, submission, "grader error: its grading process died "
                                                                 f"{ATTEMPTS} times (killed, or out of memory)")
                    except Exception as exc:
                        yield tasks.failed(spec, submission, f"grader error: {type(exc).__name__}: {exc}")
                if broken:
                    for future, submission in running.items():  # the whole pool is gone: grade them again
                        retry.append(submission)
                    running.clear()
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = self._pool(spec)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
