"""``autograder grade --scheduler tcp://HOST:8786``: each submission one task on a Dask cluster.

The grading machines run the ordinary ``dask worker tcp://HOST:8786 --nthreads 1``
(one submission at a time per worker; start one per two cores) and need the
course's Python environment, MNIST where `course.data` finds it, and bubblewrap;
not the course folder. The batch's `autograder.grading.tasks.GradeSpec` (nbgrader config,
source folder, a gradebook holding only the assignment, each track's shuffle seed,
never the secret) is scattered to every worker once; each task carries one
student's notebook bytes. A worker keeps its executor (grading data, baseline,
nbgrader) from one task to the next.

Results come back to the ``autograder grade`` process as they finish
(``as_completed``), which writes them into the one results store at once. A task
whose worker dies (killed, machine lost) is moved to another worker by the
scheduler (up to its ``distributed.scheduler.allowed-failures``, 3 by default);
then it gets an error row. A task the scheduler cancels instead (its copy of the
batch's spec was lost with a worker, e.g. one killed before another had fetched it)
is submitted again with the spec shipped anew, up to `RESUBMITS` times, then it gets
an error row: a lost worker never stops the batch. As many tasks as worker threads
are on the cluster at a time (a worker that joins gets work within seconds), so no
task waits behind another on a busy worker while a worker is idle.

Threads: the workers of one machine grade that many submissions at once, so each
kernel gets the machine's cores divided by its worker threads (`kernel_threads`,
`autograder.sandbox.threads`), the smallest share of any machine, as found when the batch
starts (one setting per batch; ``autograder grade --threads-per-kernel K`` chooses
instead).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from concurrent.futures import CancelledError

from autograder.grading import tasks
from autograder.sandbox import threads

CHECK_S = 5.0  # how often new workers are looked for while every task is running
RESUBMITS = 3  # a cancelled task is submitted again this many times (as a dead worker's task is retried)
CONNECT_TIMEOUT_S = float(os.environ.get("AUTOGRADER_DASK_CONNECT_S", "20"))  # to reach the scheduler


class ClusterError(RuntimeError):
    """The Dask cluster cannot be used (not installed, unreachable, no worker)."""


def require() -> None:
    """Raise ClusterError unless dask's distributed scheduler can be used here."""
    _distributed()


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError("--scheduler needs dask and distributed, which are not installed: "
                           "pip install 'dcai-hackathon[cluster]' (on this machine and on every worker)") from None
    return distributed


class DaskRunner:
    """Grades the submissions of a batch on the workers of the Dask scheduler at `address`."""

    def __init__(self, address: str, connect_timeout: float | None = None, worker_wait: float = 60.0):
        distributed = _distributed()
        self.address, self.worker_wait = address, worker_wait
        connect_timeout = CONNECT_TIMEOUT_S if connect_timeout is None else connect_timeout
        try:
            self.client = distributed.Client(address, timeout=f"{connect_timeout}s")  # the default: wait() uses it
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

    def kernel_threads(self) -> int | None:
        """Threads per kernel: on each machine its cores divided by the worker threads there (the gradings
        at once on it), the smallest over the machines; None (each kernel its machine's cores) when no
        worker answers."""
        try:
            cores = self.client.run(threads.usable_cores, on_error="ignore")  # worker address -> its cores
            workers = self.client.scheduler_info()["workers"]
        except (OSError, TimeoutError):  # the cluster went away: the batch itself will say so
            return None
        machines: dict[str, list[int]] = {}  # host -> [its cores, its worker threads]
        for address, info in workers.items():
            if address in cores:
                machine = machines.setdefault(info.get("host", address), [0, 0])
                machine[0] = max(machine[0], cores[address])
                machine[1] += info.get("nthreads", 1)
        shares = [threads.share(at_once, cores=n) for n, at_once in machines.values()]
        return min(shares) if shares else None

    def run(self, spec: tasks.GradeSpec, submissions: Iterable[tasks.Submission]) -> Iterator[tasks.TaskResult]:
        distributed = _distributed()
        shipped = self._ship(spec)
        batch = secrets.token_hex(4)
        waiting = iter(submissions)
        running: dict = {}  # future -> (submission, times it was cancelled)
        again: list = []  # cancelled (submission, times) to submit before new ones
        exhausted = False
        while True:
            # as many tasks as worker threads (workers that join later get work at the next check):
            # the scheduler may queue a second task on a busy worker while another one is idle
            while (again or not exhausted) and len(running) < self.threads():
                submission, cancelled = again.pop(0) if again else (next(waiting, None), 0)
                if submission is None:
                    exhausted = True
                    break
                future = self.client.submit(tasks.grade_task, shipped, submission, pure=False,
                                            key=f"grade-{batch}-{secrets.token_hex(6)}")
                running[future] = (submission, cancelled)
            if not running:
                return
            try:
                distributed.wait(list(running), timeout=CHECK_S, return_when="FIRST_COMPLETED")
            except TimeoutError:  # every task still running: look for new workers
                continue
            except CancelledError:  # some task was cancelled: handled below, with the others that are done
                pass
            done = [future for future in running if future.status != "pending"]
            if any(future.cancelled() for future in done):
                shipped = self._ship(spec)  # the spec may be what was lost: every worker gets it anew
            for future in done:
                submission, cancelled = running.pop(future)
                try:
                    if future.cancelled() and cancelled < RESUBMITS:
                        again.append((submission, cancelled + 1))
                        continue
                    yield future.result()
                except Exception as exc:  # KilledWorker: its workers died too often; or the task raised
                    yield tasks.failed(spec, submission, f"grader error on the cluster: {type(exc).__name__}: "
                                                         f"{' '.join(str(exc).split())[:300]}")
                finally:
                    future.release()

    def _ship(self, spec: tasks.GradeSpec):
        """`spec` on every worker now (later ones fetch it from them): the future the tasks take."""
        try:
            self.client.wait_for_workers(1, timeout=self.worker_wait)
        except (TimeoutError, OSError):
            raise ClusterError(f"the Dask scheduler at {self.address} has had no worker for {self.worker_wait:.0f} s; "
                               f"start some with `dask worker {self.address} --nthreads 1`") from None
        return self.client.scatter(spec, broadcast=True, hash=False)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass
