"""Start one sandboxed kernel with its hard limits (run by nbgrader's kernel manager, as root).

    python -I -S launch.py <launch.json> <connection file>

Standard library only (it starts in milliseconds). It

1. dies with its parent (parent-death signal), so a killed grader leaves no kernel;
2. hands the connection file to the kernel's user;
3. creates a cgroup v2 for the kernel when a delegated parent is configured
   (``memory.max``, ``memory.swap.max`` = 0, ``pids.max``; killed and removed at the end);
4. hands bubblewrap the seccomp filter of `autograder.sandbox.seccomp_filter` on a pipe
   (``--seccomp FD``: no kernel keyring inside);
5. starts bubblewrap with RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE, RLIMIT_CORE = 0, and
   the kernel's stdout and stderr on a pipe: the first ``log_bytes`` are kept in the
   run's private kernel log, the rest is dropped (the kernel never holds a
   descriptor of a grader file).
"""

import ctypes
import json
import os
import resource
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def _write(path: str, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _cgroup(spec: dict) -> str:
    parent = spec.get("cgroup_parent") or ""
    if not parent:
        return ""
    path = os.path.join(parent, f"autograder-kernel-{os.getpid()}")
    try:
        os.mkdir(path)
        _write(os.path.join(path, "memory.max"), str(int(spec["memory_bytes"])))
        if os.path.exists(os.path.join(path, "memory.swap.max")):
            _write(os.path.join(path, "memory.swap.max"), "0")
        _write(os.path.join(path, "pids.max"), str(int(spec["max_processes"])))
        return path
    except OSError as exc:
        sys.stderr.write(f"autograder.launch: no cgroup ({exc}); rlimits only\n")
        return ""


def _remove_cgroup(path: str) -> None:
    if not path:
        return
    try:
        _write(os.path.join(path, "cgroup.kill"), "1")
    except OSError:
        pass
    for _ in range(50):
        try:
            os.rmdir(path)
            return
        except OSError:
            import time
            time.sleep(0.1)


def main(argv: list) -> int:
    _die_with_parent()
    with open(argv[1]) as handle:
        spec = json.load(handle)
    connection_file = argv[2]
    if spec.get("uid") is not None:
        os.chown(connection_file, spec["uid"], spec["gid"])
    cgroup = _cgroup(spec)

    def limit() -> None:  # in the child, before bwrap starts
        if cgroup:
            _write(os.path.join(cgroup, "cgroup.procs"), str(os.getpid()))
        memory = int(spec["memory_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        nproc = int(spec["max_processes"])
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        fsize = int(spec["max_file_bytes"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        _die_with_parent()

    log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    bwrap, passed = list(spec["bwrap"]), ()
    if spec.get("seccomp"):
        program = bytes.fromhex(spec["seccomp"])
        read_end, write_end = os.pipe()  # a few hundred bytes: fits in the pipe, read by bwrap at start
        os.write(write_end, program)
        os.close(write_end)
        bwrap[1:1] = ["--seccomp", str(read_end)]
        passed = (read_end,)
    child = subprocess.Popen(bwrap + spec["inside"] + [connection_file], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=limit, close_fds=True,
                             pass_fds=passed)
    for fd in passed:
        os.close(fd)
    # an interrupt reaches the kernel through the process group; the launcher stays
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda signum, frame: child.send_signal(signum))
    left = int(spec["log_bytes"])
    dropped = 0
    while True:
        try:
            chunk = os.read(child.stdout.fileno(), 65536)
        except InterruptedError:
            continue
        if not chunk:
            break
        if left > 0:
            os.write(log, chunk[:left])
        dropped += max(len(chunk) - left, 0)
        left = max(left - len(chunk), 0)
    code = child.wait()
    if dropped:
        os.write(log, f"\n[autograder: {dropped} more bytes of kernel output dropped]\n".encode())
    os.close(log)
    _remove_cgroup(cgroup)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
