"""Start one sandboxed kernel with its hard limits (run by nbgrader's kernel manager, as root).

    python -I -S launch.py <launch.json> <connection file>

Standard library only (it starts in milliseconds). It

1. dies with its parent (parent-death signal), so a killed grader leaves no kernel;
2. hands the connection file to the kernel's user;
3. puts the kernel in cgroups of its own, so its limits hold for all its processes together:
   cgroup v2 when a delegated parent is configured (``memory.max``, ``memory.swap.max`` = 0,
   ``memory.oom.group``, ``pids.max``), else the cgroup v1 controllers the grader may write (``memory``:
   ``memory.limit_in_bytes`` and ``memory.memsw.limit_in_bytes``; ``pids``: ``pids.max``;
   ``cpu``: the same ``cpu.shares`` for every kernel, so a kernel of many busy processes,
   each in its own session, gets one kernel's share of the CPU, not one per session).
   When the memory cap makes the system kill a process of the kernel, the whole kernel is
   killed; the exit record (`EXIT_RECORD`) says so (`autograder.sandbox.memlimit` turns it into the row).
   The launcher does the same when a kernel process comes within `AS_RESERVE` of its address-space limit (its
   peak, from /proc): the only cap without a memory cgroup, and reachable with one by untouched mappings.
   With a memory cgroup the address-space limit is `AS_FACTOR` times the cap, so real memory
   decides, the same way every run (equal limits raced: MemoryError one run, a kill the next). Every cgroup
   is emptied and removed at the end; those of a killed grader by `remove_stale` (which also
   removes the memory cgroups of nbgrader's workers, `memory_cgroup`, made by the grader);
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
import threading
import time

PR_SET_PDEATHSIG = 1
CGROUP_PREFIX = "autograder-kernel-"  # + the pid of the worker that started the launcher, "-", the launcher's pid
WORKER_PREFIX = "autograder-worker-"  # + the pid of nbgrader's worker (`memory_cgroup`, made by the grader)
CPU_SHARES = 1024  # every kernel the same (the v1 default; written so that it holds whatever the parent says)
OOM_POLL_S = 0.2  # how often the launcher looks at the kernel's memory cgroup's OOM kill counter
EXIT_RECORD = ".exit"  # appended to the kernel log's path: JSON {"oom_kills", "code"}, written by the launcher
AS_FACTOR = 2  # with a memory cgroup, RLIMIT_AS = this x the cap: the cgroup's cap is reached first
KILL_ROUNDS = 50  # emptying a cgroup: rounds of SIGKILL to every process in it, 0.1 s apart
# without a memory cgroup, a kernel process whose peak address space came this close to RLIMIT_AS is ended as at
# the cap: so little is left that its own threads (libzmq, ipykernel's) fail to allocate, and it aborts or hangs
AS_RESERVE_MB = 64
AS_RESERVE = AS_RESERVE_MB * 2**20


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def _write(path: str, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _cgroups(spec: dict) -> list[str]:
    """The kernel's cgroup folders, made and limited (none: rlimits only)."""
    name = f"{CGROUP_PREFIX}{os.getppid()}-{os.getpid()}"  # nbgrader's worker started this launcher
    memory, nproc = str(int(spec["memory_bytes"])), str(int(spec["max_processes"]))
    settings = {"memory": [("memory.limit_in_bytes", memory), ("memory.memsw.limit_in_bytes", memory)],
                "pids": [("pids.max", nproc)], "cpu": [("cpu.shares", str(CPU_SHARES))]}
    if spec.get("cgroup_parent"):  # v2: one folder, every controller
        wanted = {spec["cgroup_parent"]: [("memory.max", memory), ("memory.swap.max", "0"), ("pids.max", nproc),
                                          ("memory.oom.group", "1")]}
    else:
        wanted = {parent: settings[controller] for controller, parent in (spec.get("cgroup_v1") or {}).items()
                  if controller in settings}
    return _make(name, wanted)


def memory_cgroup(name: str, memory_bytes: int, cgroup_parent: str = "", cgroup_v1: dict | None = None) -> str:
    """One cgroup `name` whose processes together may use `memory_bytes` (no swap), or "" (no cgroup here).

    v2 under `cgroup_parent` (``memory.oom.group``: at the cap every process of it is killed), else v1 under
    the ``memory`` folder of `cgroup_v1`. For nbgrader's worker (`autograder.grading.worker.WorkerClient`)."""
    memory = str(int(memory_bytes))
    if cgroup_parent:
        wanted = {cgroup_parent: [("memory.max", memory), ("memory.swap.max", "0"), ("memory.oom.group", "1")]}
    elif (cgroup_v1 or {}).get("memory"):
        wanted = {cgroup_v1["memory"]: [("memory.limit_in_bytes", memory), ("memory.memsw.limit_in_bytes", memory)]}
    else:
        return ""
    made = _make(name, wanted)
    return made[0] if made else ""


def _make(name: str, wanted: dict[str, list[tuple[str, str]]]) -> list[str]:
    """Make cgroup `name` under each parent of `wanted` and write its settings; the folders made."""
    made = []
    for parent, values in wanted.items():
        path = os.path.join(parent, name)
        try:
            os.mkdir(path, 0o755)
        except OSError as exc:
            sys.stderr.write(f"autograder.sandbox.launch: no cgroup under {parent} ({exc}); rlimits only there\n")
            continue
        made.append(path)
        for file, value in values:
            target = os.path.join(path, file)
            if file in ("memory.swap.max", "memory.memsw.limit_in_bytes") and not os.path.exists(target):
                continue  # no swap accounting on this machine
            try:
                _write(target, value)
            except OSError as exc:
                sys.stderr.write(f"autograder.sandbox.launch: {target} not set ({exc})\n")
    return made


def _procs(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as handle:
            return [int(line) for line in handle if line.strip()]
    except (OSError, ValueError):
        return []


def kill_cgroup(path: str) -> None:
    """Kill every process in a kernel's cgroup, then remove it (v2 or v1)."""
    try:
        _write(os.path.join(path, "cgroup.kill"), "1")  # v2: atomic
    except OSError:
        pass
    for _ in range(KILL_ROUNDS):
        _kill(_procs(path))  # v1: no cgroup.kill; pids.max bounds the forks of a race
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)


def remove_stale(parents: list[str]) -> list[str]:
    """Kernel and worker cgroups under `parents` whose launcher or worker is dead (a grader killed with -9):
    emptied and removed."""
    removed = []
    for parent in parents:
        try:
            names = [n for n in os.listdir(parent) if n.startswith((CGROUP_PREFIX, WORKER_PREFIX))]
        except OSError:
            continue
        for name in names:
            try:
                os.kill(int(name.rpartition("-")[2]), 0)
                continue  # its launcher is alive
            except ValueError:
                continue
            except PermissionError:
                continue
            except ProcessLookupError:
                pass
            kill_cgroup(os.path.join(parent, name))
            removed.append(os.path.join(parent, name))
    return removed


def remove_worker_kernels(parent: str, worker_pid: int) -> list[str]:
    """The kernel cgroups under `parent` whose launcher nbgrader's worker `worker_pid` started (it is dead:
    a launcher killed with it could not remove them): emptied and removed."""
    try:
        names = [n for n in os.listdir(parent) if n.startswith(f"{CGROUP_PREFIX}{worker_pid}-")]
    except OSError:
        return []
    for name in names:
        kill_cgroup(os.path.join(parent, name))
    return [os.path.join(parent, n) for n in names]


OOM_FILES = ("memory.oom_control", "memory.events")  # v1, v2: each has a line "oom_kill N"


def _oom_file(cgroups: list[str]) -> str:
    return next((os.path.join(p, f) for p in cgroups for f in OOM_FILES if os.path.exists(os.path.join(p, f))), "")


def _oom_count(oom_file: str) -> int:
    try:
        with open(oom_file) as handle:
            for line in handle:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def oom_kills(path: str) -> int:
    """How many processes the memory cap of cgroup `path` has killed so far (0: none, or no such cgroup)."""
    memory = _oom_file([path])
    return _oom_count(memory) if memory else 0


def write_exit_record(path: str, oom_kills: int, code: int | None = None) -> None:
    """Say how the kernel ended (`EXIT_RECORD`): written at once after an OOM kill, and again at the end."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"oom_kills": int(oom_kills), "code": code}, handle)


def read_exit_record(path: str) -> dict:
    """The exit record at `path`, or {} (no kernel ended there, or a launcher killed before writing it)."""
    try:
        with open(path) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _watch_oom(cgroups: list[str], record: str, done: threading.Event) -> None:
    """At the memory cap the system kills one process (v1) and the kernel may go on without it: kill it all."""
    memory = _oom_file(cgroups)
    if not memory:
        return
    while not done.wait(OOM_POLL_S):
        kills = _oom_count(memory)
        if kills > 0:
            write_exit_record(record, kills)  # before the kill: nbgrader may stop this launcher any moment now
            _kill([pid for path in cgroups for pid in _procs(path)])
            return


def _kill(pids: list[int]) -> None:
    """SIGKILL to each of `pids` (one already gone is no error)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _descendants(root: int) -> list[int]:
    """`root` and every process below it (read from /proc: without cgroups nothing else lists a kernel's processes)."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                ppid = int(handle.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def _peak_address_space(pid: int) -> int:
    """The largest address space process `pid` has had, in bytes (VmPeak; 0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _address_space_limit(pid: int) -> int | None:
    """The soft RLIMIT_AS of process `pid` in bytes (None: unlimited, or it is gone)."""
    try:
        with open(f"/proc/{pid}/limits") as handle:
            for line in handle:
                if line.startswith("Max address space"):
                    soft = line.split()[3]
                    return None if soft == "unlimited" else int(soft)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _near_limit(pids: list[int]) -> bool:
    """Whether one of `pids` has come within `AS_RESERVE` of its own address-space limit (its peak, its RLIMIT_AS)."""
    for pid in pids:
        limit = _address_space_limit(pid)
        if limit is not None and _peak_address_space(pid) >= limit - AS_RESERVE:
            return True
    return False


def near_address_space_limit(root: int) -> bool:
    """Whether a process below `root` (a launcher) has come within `AS_RESERVE` of its own address-space limit:
    for nbgrader's worker, which checks it as each cell starts (`autograder.grading.worker`)."""
    return _near_limit(_descendants(root)[1:])


def _watch_address_space(root: int, record: str, kills: list, done: threading.Event) -> None:
    """A process of the kernel that came within `AS_RESERVE` of its address-space limit ends the kernel, the way the
    cgroup's cap does (`_watch_oom`): one outcome, whichever thread of it met the limit first."""
    while not done.wait(OOM_POLL_S):
        tree = _descendants(root)
        if _near_limit(tree[1:]):
            kills.append(1)
            write_exit_record(record, len(kills))  # before the kill, as `_watch_oom`
            _kill(tree[::-1])
            return


def main(argv: list) -> int:
    _die_with_parent()
    with open(argv[1]) as handle:
        spec = json.load(handle)
    connection_file = argv[2]
    if spec.get("uid") is not None:
        os.chown(connection_file, spec["uid"], spec["gid"])
    cgroups = _cgroups(spec)
    memory = int(spec["memory_bytes"])
    # with a memory cgroup the cap is on real memory of all processes together; the address space is only a
    # backstop (untouched mappings: torch maps GBs it never uses), so it must not bite first
    address_space = memory * AS_FACTOR if _oom_file(cgroups) else memory

    def limit() -> None:  # in the child, before bwrap starts
        for path in cgroups:
            _write(os.path.join(path, "cgroup.procs"), str(os.getpid()))
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
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
    done = threading.Event()
    record = spec["log"] + EXIT_RECORD
    address_space_kills: list = []
    if _oom_file(cgroups):
        threading.Thread(target=_watch_oom, args=(cgroups, record, done), daemon=True).start()
    # with a cgroup too: a notebook can use up its address space (2x the cap) without touching the memory
    threading.Thread(target=_watch_address_space, args=(child.pid, record, address_space_kills, done),
                     daemon=True).start()
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
    done.set()
    oom_file = _oom_file(cgroups)
    write_exit_record(record, (_oom_count(oom_file) if oom_file else 0) + len(address_space_kills), code)
    if dropped:
        os.write(log, f"\n[autograder: {dropped} more bytes of kernel output dropped]\n".encode())
    os.close(log)
    for path in cgroups:
        kill_cgroup(path)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
