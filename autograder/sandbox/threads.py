"""How many threads each graded kernel's torch, OpenMP and BLAS may start.

A kernel left alone starts one thread per core it may run on (`course.models.thread_count`,
numpy's OpenBLAS, scikit-learn's OpenMP). Right when it is graded alone; wrong when N
gradings run at once on one machine (``--jobs N``, or several Dask workers): N kernels of
C threads each on C cores only compete (on 2 cores ``--jobs 2`` ran at 0.86x the serial
speed). So every kernel gets its share, ``max(1, cores // N)``, through the variables those
libraries read when they start. The kernel's environment is built from scratch
(`autograder.sandbox`), so the grader's own ``OMP_NUM_THREADS`` never reaches it: the share,
or ``autograder grade --threads-per-kernel K`` (default ``$AUTOGRADER_THREADS_PER_KERNEL``), is the one
setting: set the variable where the grader shares its machine with other work (another batch, a test process).
"""

from __future__ import annotations

import os

from course.config import usable_cores  # the one rule, shared with course.models

ENV = "AUTOGRADER_THREADS_PER_KERNEL"  # the default of `autograder grade --threads-per-kernel` (the option wins)

VARIABLES = ("OMP_NUM_THREADS",  # torch's intra-op threads, scikit-learn's OpenMP, OpenBLAS's fallback
             "MKL_NUM_THREADS",  # torch's MKL
             "OPENBLAS_NUM_THREADS")  # numpy's and scipy's OpenBLAS
# OpenMP threads that wait for work sleep instead of spinning. A grading machine is shared (other kernels,
# the grader, other batches), and there a spinning thread burns the core another process needs: one epoch of
# the baseline's training on 2 threads beside other jobs took 25.8 s of CPU spinning and 11.3 s sleeping
# (1 thread: 9.8 s), with the wall time down in step. Alone on the machine the two policies train alike.
WAIT_POLICY = ("OMP_WAIT_POLICY", "PASSIVE")
NAMES = VARIABLES + (WAIT_POLICY[0],)  # every variable `kernel_env` sets


def share(at_once: int, cores: int | None = None) -> int:
    """Threads per kernel when `at_once` kernels are graded together on `cores` cores (default: this machine's)."""
    cores = usable_cores() if cores is None else cores
    return max(1, cores // max(1, at_once))


def check(threads: int | None) -> int | None:
    """`threads` unchanged, or ValueError saying what to give instead."""
    if threads is not None and threads < 1:
        raise ValueError(f"--threads-per-kernel must be at least 1 (got {threads}): the threads of each graded "
                         "kernel, e.g. 1; leave it out for the machine's cores divided by the gradings at once")
    return threads


def from_env() -> int | None:
    """`ENV` as threads per kernel (None when unset or empty); ValueError saying what to give otherwise."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{ENV}={value!r} is not a thread count: give the threads of each graded kernel as a "
                         "whole number of at least 1 (e.g. 1), or unset it for the machine's cores divided by the "
                         "gradings at once")
    return int(value)


def kernel_env(threads: int | None) -> tuple[tuple[str, str], ...]:
    """The kernel variables that hold its torch, OpenMP and BLAS to `threads` (None: none, the kernel's own cores),
    and let idle OpenMP threads sleep (`WAIT_POLICY`)."""
    if threads is None:
        return ()
    return tuple((name, str(check(threads))) for name in VARIABLES) + (WAIT_POLICY,)
