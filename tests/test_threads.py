"""Threads of graded kernels (`autograder.sandbox.threads`): N gradings at once on C cores give each kernel C // N.

The rule's arithmetic, the environment it builds and what a fresh Python with that
environment really starts (torch, OpenBLAS, OpenMP: one thread each for ``--jobs 2`` on 2
cores), and who decides the number: ``--threads-per-kernel``, the local pool, a Dask
cluster's machines. What real sandboxed kernels get (through the batch's spec) is checked
in the graded ``--jobs 2`` batch of ``tests/test_parallel.py``, not here: no extra grading.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from autograder import cli
from autograder.grading import parallel
from autograder.sandbox import threads

PROBE = """
import json
import torch
from threadpoolctl import threadpool_info
from course import models
models._set_threads()
print(json.dumps({"torch": torch.get_num_threads(),
                  "pools": sorted({(i["internal_api"], i["num_threads"]) for i in threadpool_info()})}))
"""


def test_share_is_the_cores_divided_by_the_gradings_at_once():
    assert [threads.share(n, cores=2) for n in (1, 2, 3)] == [2, 1, 1]
    assert [threads.share(n, cores=8) for n in (1, 2, 3, 4, 16)] == [8, 4, 2, 2, 1]
    assert threads.share(1) == threads.usable_cores() == len(os.sched_getaffinity(0))
    assert threads.kernel_env(None) == ()
    assert dict(threads.kernel_env(1)) == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                                           "OMP_WAIT_POLICY": "PASSIVE"}
    with pytest.raises(ValueError, match=r"--threads-per-kernel must be at least 1 \(got 0\)"):
        threads.kernel_env(0)


def test_jobs_2_on_2_cores_gives_each_kernel_one_thread():
    """A fresh Python with only the kernel's variables (as the sandbox starts one): torch, OpenBLAS, OpenMP at 1."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           **dict(threads.kernel_env(threads.share(2, cores=2)))}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["torch"] == 1, found
    assert found["pools"] and {n for _, n in found["pools"]} == {1}, found  # openblas/mkl and openmp


def test_who_decides_the_threads(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)  # the test processes set it (tests/conftest.py)
    pool = parallel.LocalPool(2)
    assert pool.kernel_threads() == threads.share(2)
    assert cli._kernel_threads(argparse.Namespace(threads_per_kernel=None), pool) == threads.share(2)
    assert cli._kernel_threads(argparse.Namespace(threads_per_kernel=None), None) == threads.usable_cores()
    assert cli._kernel_threads(argparse.Namespace(threads_per_kernel=3), pool) == 3
    monkeypatch.setenv(threads.ENV, "5")  # the environment's default, for either runner; the option wins
    assert cli._kernel_threads(argparse.Namespace(threads_per_kernel=None), None) == 5
    assert cli._kernel_threads(argparse.Namespace(threads_per_kernel=None), pool) == 5
    assert cli._kernel_threads(argparse.Namespace(threads_per_kernel=3), pool) == 3
    monkeypatch.setenv(threads.ENV, " ")
    assert cli._kernel_threads(argparse.Namespace(threads_per_kernel=None), None) == threads.usable_cores()


def test_a_dask_machine_shares_its_cores_among_its_workers():
    """Two one-thread workers on this machine: each kernel gets half of its cores."""
    distributed = pytest.importorskip("distributed")
    from autograder.grading import cluster

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as local:
        dask = cluster.DaskRunner(local.scheduler_address)
        try:
            assert dask.kernel_threads() == threads.share(2)
        finally:
            dask.close()


def test_bad_threads_per_kernel_say_what_to_do(tmp_path, capsys):
    (tmp_path / "course").mkdir()
    assert cli.main(["grade", "toy", "--course", str(tmp_path / "course"), "--threads-per-kernel", "0"]) == 2
    err = capsys.readouterr().err
    assert "--threads-per-kernel must be at least 1 (got 0)" in err and "e.g. 1" in err, err


@pytest.mark.parametrize("junk", ["0", "two", "-1", "1.5"])
def test_a_bad_threads_variable_says_what_to_do(tmp_path, capsys, monkeypatch, junk):
    (tmp_path / "course").mkdir()
    monkeypatch.setenv(threads.ENV, junk)
    assert cli.main(["grade", "toy", "--course", str(tmp_path / "course")]) == 2
    err = capsys.readouterr().err
    assert f"{threads.ENV}={junk!r} is not a thread count" in err and "at least 1" in err, err
