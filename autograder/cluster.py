"""``autograder grade --scheduler tcp://HOST:8786``: each submission one task on a Dask cluster.

The grading machines run the ordinary ``dask worker tcp://HOST:8786 --nthreads 1``
(one submission at a time per worker; start one per two cores) and need the
course's Python environment, MNIST where `course.data` finds it, and bubblewrap;
not the course folder. The batch's `autograder.tasks.GradeSpec` (nbgrader config,
source folder, a gradebook holding only the assignment, each track's shuffle seed,
never the secret) is scattered to every worker once; each task carries one
student's notebook bytes. A worker keeps its executor (grading data, baseline,
nbgrader) from one task to the next.

Results come back to the ``autograder grade`` process as they finish
(``as_completed``), which writes them into the one results store at once. A task
whose worker dies (killed, machine lost) is moved to another worker by the
scheduler (up to its ``distributed.scheduler.allowed-failures``, 3 by default);
then it gets an error row. At most 2 tasks per worker thread are queued at a time.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator

from autograder import tasks

CONNECT_TIMEOUT_S = 20


class ClusterError(RuntimeError):
    """The Dask cluster cannot be used (not installed, unreachable, no worker)."""


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError("--scheduler needs dask and distributed, which are not installed: "
                           "pip install 'dcai-hackathon[cluster]' (on this machine and on every worker)") from None
    return distributed


class DaskRunner:
    """Grades the submissions of a batch on the workers of the Dask scheduler at `address`."""

    def __init__(self, address: str, connect_timeout: float = CONNECT_TIMEOUT_S, worker_wait: float = 60.0):
        distributed = _distributed()
        self.address = address
        try:
            self.client = distributed.Client(address, timeout=f"{connect_timeout}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address} ({type(exc).__name__}: {exc}); start it with "
                "`dask scheduler` and the workers with `dask worker <address> --nthreads 1`, "
                "or check the address and port") from None
        try:
            self.client.wait_for_workers(1, timeout=worker_wait)
        except (TimeoutError, OSError):
            self.close()
            raise ClusterError(f"the Dask scheduler at {address} has no worker after {worker_wait:.0f} s; "
                               f"start some with `dask worker {address} --nthreads 1`") from None

    def threads(self) -> int:
        return max(sum(self.client.nthreads().values()), 1)

    def run(self, spec: tasks.GradeSpec, submissions: Iterable[tasks.Submission]) -> Iterator[tasks.TaskResult]:
        distributed = _distributed()
        shipped = self.client.scatter(spec, broadcast=True, hash=False)
        batch = secrets.token_hex(4)
        waiting = iter(submissions)
        running: dict = {}
        completed = distributed.as_completed()

        def submit_more() -> None:
            while len(running) < 2 * self.threads():
                submission = next(waiting, None)
                if submission is None:
                    return
                future = self.client.submit(tasks.grade_task, shipped, submission, pure=False,
                                            key=f"grade-{batch}-{len(running)}-{secrets.token_hex(4)}")
                running[future] = submission
                completed.add(future)

        submit_more()
        for future in completed:
            submission = running.pop(future)
            try:
                yield future.result()
            except Exception as exc:  # KilledWorker: its workers died too often; or the task raised
                yield tasks.failed(spec, submission, f"grader error on the cluster: {type(exc).__name__}: "
                                                     f"{str(exc)[:200]}")
            finally:
                future.release()
            submit_more()

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass
