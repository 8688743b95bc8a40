"""The kernel's sandbox: an allow-list of what a participant's code may see, and its hard limits.

Participant code runs in the kernel and can do anything there. The kernel is
started by `autograder.sandbox.launch` (as root, inside nbgrader's worker), which applies
the limits and runs bubblewrap; inside, ``setpriv`` drops to an unprivileged
user before Python starts. The kernel sees (`Sandbox.argv`):

- read-only: the system's ``/usr`` (and ``/bin``, ``/sbin``, ``/lib*`` or their
  merged-usr links), a few files of ``/etc`` (`ETC`), the CPU topology (`SYS`), the Python environment
  (``sys.prefix`` and ``sys.base_prefix``, resolved: a venv reached through a link runs from
  its real folder, `interpreter`, and the links on the way are made inside, `link_chain`)
  without the labelled data sets some packages ship (`ENV_DATASETS`), the installed ``course`` package folder only,
  this run's grading data, the baseline checkpoint file, the service's socket;
- writable, every one a RAM disk capped in size: its runtime folder (connection file,
  ZMQ sockets; a RAM disk of its own, `autograder.sandbox.runfolder.RUNTIME_BYTES`), ``/dev/shm``
  and ``/tmp``, holding its home ``/tmp/home`` and its working folder ``/tmp/work``
  (empty at start; the grader never reads it);
- nothing else: no ``/home``, ``/root``, ``/opt``, ``/var``, ``/srv``, ``/mnt``,
  ``/run``, no other ``/sys``, no course folder, no other submission, no raw MNIST, no
  host socket; an own PID, IPC, UTS, cgroup and network namespace (loopback
  only; the kernel speaks ZMQ over Unix sockets), no capabilities, no new
  privileges, and an environment built from scratch (`--clearenv`);
- no kernel keyring: a seccomp filter (`seccomp_filter`) refuses ``add_key``,
  ``request_key`` and ``keyctl`` with EPERM. The user keyring belongs to the uid and
  outlives every sandbox, so without this a kernel could leave bought labels there for
  the next kernel of the same user (a sock puppet buys, a friend submits with none).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

KERNEL_NAME = "autograder-sandbox"
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYS = ("/sys/devices/system/cpu",)  # CPU topology: joblib/loky, OpenBLAS and torch size their thread pools
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "fonts")
ENV_DATASETS = ("sklearn/datasets/data", "sklearn/datasets/images")  # labelled data inside packages
TMP, HOME, WORKDIR = "/tmp", "/tmp/home", "/tmp/work"
SHM_BYTES = 64 * 2**20  # /dev/shm (joblib, torch DataLoader workers)
ENV_CGROUP = "AUTOGRADER_CGROUP"  # a delegated cgroup v2 folder, or empty for no cgroup at all
V1_CONTROLLERS = ("memory", "pids", "cpu")  # used when no v2 parent is delegated
KERNEL_UID = 64100  # the kernel's user when the grader runs as root (no passwd entry on the host)
LAUNCHER = Path(__file__).with_name("launch.py")
# system calls refused inside the sandbox, by audit architecture: add_key, request_key, keyctl
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
REFUSED_SYSCALLS = {"x86_64": (248, 249, 250), "aarch64": (217, 218, 219)}
X32_SYSCALL_BIT = 0x40000000  # x86_64's x32 ABI: the same calls with this bit set, refused wholesale


class SandboxError(RuntimeError):
    """The sandbox cannot be built on this machine (e.g. bubblewrap is missing)."""


@dataclass
class Limits:
    """Hard limits of one kernel (see `autograder.sandbox.launch`)."""

    memory_bytes: int = 8 * 10**9  # RLIMIT_AS; and of all the kernel's processes with a memory cgroup
    max_processes: int = 512  # RLIMIT_NPROC of the kernel's user (threads count); pids.max with a cgroup
    max_file_bytes: int = 1 * 2**30  # RLIMIT_FSIZE: no single file larger
    tmp_bytes: int = 2 * 2**30  # size of the kernel's RAM disk /tmp
    log_bytes: int = 256 * 1024  # the kernel's own stdout/stderr kept (the rest is dropped)
    cgroup_parent: str = ""  # a delegated cgroup v2 folder; "" = none
    cgroup_v1: dict[str, str] = field(default_factory=dict)  # else: v1 parent folder by controller (`cgroup_v1`)


def seccomp_filter() -> bytes:
    """A classic BPF program for bubblewrap's ``--seccomp``: EPERM for `REFUSED_SYSCALLS`, allow the rest."""
    ld_abs, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    program: list[tuple[int, int, int, int]] = []
    for arch, numbers in REFUSED_SYSCALLS.items():
        checks = [(jge, X32_SYSCALL_BIT)] if arch == "x86_64" else []
        checks += [(jeq, n) for n in numbers]
        block = [(ld_abs, 0, 0, 4), None, (ld_abs, 0, 0, 0)]  # arch; is it this arch?; the call's number
        block += [("check", op, k) for op, k in checks] + [(ret, 0, 0, allow)]
        block[1] = (jeq, 0, len(block) - 2, AUDIT_ARCH[arch])  # another arch: on to the next block
        program.append(block)
    flat: list = [insn for block in program for insn in block] + [(ret, 0, 0, allow), (ret, 0, 0, deny)]
    deny_at = len(flat) - 1
    out = b""
    for at, insn in enumerate(flat):
        if insn[0] == "check":
            _, op, k = insn
            insn = (op, deny_at - at - 1, 0, k)
        code, jt, jf, k = insn
        out += struct.pack("<HBBI", code, jt, jf, k)
    return out


def _system_args() -> list[str]:
    args = []
    for path in SYSTEM:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name in ETC:
        path = f"/etc/{name}"
        if os.path.lexists(path):
            args += ["--ro-bind", path, path] if not os.path.islink(path) else ["--symlink", os.readlink(path), path]
    return args


def python_roots() -> list[Path]:
    """The Python environment: the venv and the interpreter it was made from."""
    roots = []
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        path = Path(prefix).resolve()
        if path not in roots and not any(path.is_relative_to(r) for r in roots):
            roots.append(path)
    return roots


def env_datasets() -> list[Path]:
    """Folders hidden inside the bound Python environment: labelled data shipped in packages,
    and the base interpreter's own site-packages when the venv does not use it."""
    import site

    on_path = {str(Path(p).resolve()) for p in sys.path if p}
    found = [Path(p).resolve() for p in site.getsitepackages([sys.base_prefix])
             if Path(p).is_dir() and str(Path(p).resolve()) not in on_path and sys.base_prefix != sys.prefix]
    for folder in {p for p in sys.path if p}:
        for relative in ENV_DATASETS:
            path = Path(folder) / relative
            if path.is_dir():
                found.append(path.resolve())
    return sorted(set(found))


def interpreter() -> Path:
    """The interpreter the kernel runs: this one, in its venv's real folder.

    A venv reached through a symlink (``~/project/.venv -> /data/venvs/x``) gives ``sys.executable``
    and ``sys.prefix`` through that link, which the sandbox does not show (it binds resolved folders):
    the kernel's ``setpriv`` could not execute it. The folder is resolved, the file name kept, so
    Python still finds the venv's ``pyvenv.cfg`` beside it (a fully resolved path would be the base
    interpreter, without the venv's packages).
    """
    executable = Path(sys.executable)
    return executable.parent.resolve() / executable.name


def link_chain(path: Path) -> list[tuple[Path, str]]:
    """Every symbolic link met while resolving `path`, in order: (where the link is, what it holds).

    Each link's location has resolved parents, so it can be made inside the sandbox as it is on the
    host (`Sandbox.bwrap_argv`: ``--symlink``) when no bound folder already shows it.
    """
    links: list[tuple[Path, str]] = []
    todo = list(Path(path).parts[1:]) if Path(path).is_absolute() else list(Path(path).absolute().parts[1:])
    current, hops = Path("/"), 0
    while todo:
        part = todo.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            current = current.parent
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise SandboxError(f"too many symbolic links resolving {path}")
            target = os.readlink(candidate)
            links.append((candidate, target))
            todo = list(Path(target).parts[1:] if os.path.isabs(target) else Path(target).parts) + todo
            if os.path.isabs(target):
                current = Path("/")
        else:
            current = candidate
    return links


def course_package(resolve: bool = True) -> Path:
    """The installed `course` package folder (for an editable install, course/ only); with `resolve` False,
    as the environment names it (an editable install through a linked folder: the kernel imports it so)."""
    spec = importlib.util.find_spec("course")
    if spec is None or not spec.submodule_search_locations:
        raise SandboxError("the `course` package is not installed in this environment")
    named = Path(list(spec.submodule_search_locations)[0])
    return named.resolve() if resolve else named.absolute()


@dataclass
class Sandbox:
    """What the kernel sees. Host paths are absolute; `files` maps host file -> path inside."""

    read_only: list[Path] = field(default_factory=list)
    files: dict[Path, str] = field(default_factory=dict)
    writable: list[Path] = field(default_factory=list)
    hide: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    etc: Path | None = None  # a folder with the kernel's passwd and group
    limits: Limits = field(default_factory=Limits)
    uid: int | None = None  # drop to this user inside (None: keep the grader's, when not root)
    gid: int | None = None
    reach: list[Path] = field(default_factory=list)  # paths the kernel uses by a name with links in it (besides
    # the interpreter, always): their links are made inside as they are on the host (`link_chain`)

    def environment(self) -> dict[str, str]:
        """The kernel's whole environment (nothing is inherited from the grader)."""
        base = {
            "PATH": os.pathsep.join([str(interpreter().parent), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": HOME, "USER": "participant", "LOGNAME": "participant",
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TMPDIR": TMP, "SHELL": "/bin/sh",
            "MPLCONFIGDIR": f"{HOME}/.matplotlib", "PYTHONDONTWRITEBYTECODE": "1",
        }
        return {**base, **self.env}

    def bwrap_argv(self) -> list[str]:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxError(
                "bubblewrap (bwrap) is not installed; the grader needs it to isolate participant "
                "code. Install it with: apt-get install -y bubblewrap")
        args = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--unshare-net", "--unshare-cgroup-try", "--hostname", "sandbox", "--clearenv"]
        # first the RAM disks, so that binds below /tmp (this run's folders) land on top of them
        args += ["--dev", "/dev", "--proc", "/proc",
                 "--perms", "1777", "--size", str(int(self.limits.tmp_bytes)), "--tmpfs", TMP,
                 "--perms", "1777", "--dir", HOME, "--perms", "1777", "--dir", WORKDIR,
                 "--perms", "1777", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm"]
        read_only = _existing(python_roots() + [Path(p) for p in SYS] + list(self.read_only))
        writable = _existing(self.writable)
        links, extra = self._links(read_only + writable)
        read_only += extra
        # folders bwrap creates on the way to a bind are 0700 (root's) unless made first
        targets = ([Path("/etc/x")] + read_only + writable + [Path(p) for p in self.files.values()]
                   + [where for where, _ in links])
        parents = sorted({str(a) for t in targets for a in Path(t).parents if str(a) not in ("/", TMP)},
                         key=lambda p: p.count("/"))
        for parent in parents:
            args += ["--perms", "0755", "--dir", parent]
        args += _system_args()
        for where, target in links:
            args += ["--symlink", target, str(where)]
        if self.etc is not None:
            for name in ("passwd", "group"):
                args += ["--ro-bind", str(self.etc / name), f"/etc/{name}"]
        for path in read_only:
            args += ["--ro-bind", str(path), str(path)]
        for path in _existing(self.hide):
            args += ["--tmpfs", str(path)]  # hidden behind an empty folder
        for host, inside in self.files.items():
            args += ["--ro-bind", str(host), inside]
        for path in writable:
            args += ["--bind", str(path), str(path)]
        for key, value in self.environment().items():
            args += ["--setenv", key, value]
        args += ["--chdir", WORKDIR, "--"]
        return args

    def _links(self, shown: list[Path]) -> tuple[list[tuple[Path, str]], list[Path]]:
        """(links to make inside, files to bind besides `shown`) so that the interpreter and `reach` resolve
        inside as on the host: a link no bound folder shows is made, and a file the chain ends at outside
        every bound folder is bound (the sandbox runs the interpreter it binds)."""
        system = [Path(p) for p in SYSTEM if os.path.isdir(p) and not os.path.islink(p)]
        roots = shown + system
        links: list[tuple[Path, str]] = []
        extra: list[Path] = []
        for path in [interpreter()] + [Path(p) for p in self.reach]:
            for where, target in link_chain(path):
                if str(where) in SYSTEM or any(where.is_relative_to(r) for r in roots) or (where, target) in links:
                    continue
                links.append((where, target))
            final = Path(os.path.realpath(path))
            if final.exists() and not any(final.is_relative_to(r) for r in roots + extra):
                extra.append(final)
        return links, extra

    def inside_argv(self) -> list[str]:
        """Run inside the sandbox: drop to the kernel's user, then start the kernel."""
        # fd 1 and 2 stay the launcher's pipe (not ipykernel's forwarder): what a C library says as it dies (libzmq's
        # "OUT OF MEMORY" before its abort at the address-space limit) reaches the kernel log, not a thread that dies too
        command = [str(interpreter()), "-m", "ipykernel_launcher", "--IPKernelApp.capture_fd_output=False", "-f"]
        if self.uid is None:
            return command
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise SandboxError("setpriv (util-linux) is missing; it drops the kernel's privileges.")
        return [setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"] + command

    def write_kernelspec(self, jupyter_dir: Path, log: Path, name: str = KERNEL_NAME) -> Path:
        """Write ``<jupyter_dir>/kernels/<name>/`` (put jupyter_dir on nbgrader's JUPYTER_PATH)."""
        spec_dir = jupyter_dir / "kernels" / name
        spec_dir.mkdir(parents=True, exist_ok=True)
        launch = {"bwrap": self.bwrap_argv(), "inside": self.inside_argv(), "uid": self.uid, "gid": self.gid,
                  "memory_bytes": self.limits.memory_bytes, "max_processes": self.limits.max_processes,
                  "max_file_bytes": self.limits.max_file_bytes, "log": str(log),
                  "log_bytes": self.limits.log_bytes, "cgroup_parent": self.limits.cgroup_parent,
                  "cgroup_v1": {} if self.limits.cgroup_parent else dict(self.limits.cgroup_v1),
                  "seccomp": seccomp_filter().hex()}
        (spec_dir / "launch.json").write_text(json.dumps(launch, indent=1))
        spec = {
            "argv": [sys.executable, "-I", "-S", str(LAUNCHER), str(spec_dir / "launch.json"), "{connection_file}"],
            "display_name": "Python 3 (autograder sandbox)",
            "language": "python",
            "interrupt_mode": "signal",
            "metadata": {"debugger": False},
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
        return spec_dir


def write_etc(folder: Path, uid: int, gid: int) -> None:
    """A passwd and group naming only root and the kernel's user."""
    (folder / "passwd").write_text(f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                                   f"participant:x:{uid}:{gid}:participant:{HOME}:/bin/sh\n")
    (folder / "group").write_text(f"root:x:0:\nparticipant:x:{gid}:\n")
    for name in ("passwd", "group"):
        os.chmod(folder / name, 0o644)


def cgroup_parent() -> str:
    """A cgroup v2 folder under which this process may create one cgroup per kernel, or ''.

    ``AUTOGRADER_CGROUP`` overrides the detection: a delegated v2 folder, or empty for no cgroup
    at all (neither v2 nor v1: rlimits only)."""
    override = os.environ.get(ENV_CGROUP)
    if override is not None:
        return override
    root = Path("/sys/fs/cgroup")
    if not (root / "cgroup.controllers").is_file():
        return ""  # cgroup v1 or hybrid: see cgroup_v1
    try:
        own = next(line.split("::", 1)[1].strip() for line in Path("/proc/self/cgroup").read_text().splitlines()
                   if line.startswith("0::"))
        candidate = root / own.lstrip("/")
        enabled = set((candidate / "cgroup.subtree_control").read_text().split())
    except (OSError, StopIteration):
        return ""
    if {"memory", "pids"} <= enabled and os.access(candidate, os.W_OK):
        return str(candidate)
    return ""


def cgroup_v1(mountinfo: str = "/proc/self/mountinfo", own: str = "/proc/self/cgroup") -> dict[str, str]:
    """This process's own cgroup v1 folder of each of `V1_CONTROLLERS` it may write, by controller.

    A kernel's cgroups are made inside (`autograder.sandbox.launch`), so they nest under whatever
    limits this grader already has. Empty when ``AUTOGRADER_CGROUP`` is set, when v1 is not
    mounted, read-only, or not writable by this user (a grader that is not root).
    """
    if os.environ.get(ENV_CGROUP) is not None:
        return {}
    try:
        mounts = Path(mountinfo).read_text().splitlines()
        memberships = Path(own).read_text().splitlines()
    except OSError:
        return {}
    where: dict[str, tuple[str, str]] = {}  # controller -> (mount point, root of the mount in the hierarchy)
    for line in mounts:
        fields, _, after = line.partition(" - ")
        parts, tail = fields.split(), after.split()
        if len(parts) < 5 or len(tail) < 3 or tail[0] != "cgroup":
            continue
        for controller in set(tail[2].split(",")) & set(V1_CONTROLLERS):
            where.setdefault(controller, (parts[4], parts[3]))
    found = {}
    for line in memberships:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        for controller in set(controllers.split(",")) & set(where):
            mount, root = where[controller]
            relative = os.path.relpath(path, root) if path.startswith(root) else None
            if relative is None:
                continue  # our cgroup is outside what is mounted here
            folder = os.path.normpath(os.path.join(mount, relative))
            if os.path.isdir(folder) and os.access(folder, os.W_OK):
                found[controller] = folder
    return found


def cgroups_available() -> bool:
    """True when kernels get cgroups on this machine (v2 delegated, or the v1 memory controller)."""
    return bool(cgroup_parent()) or "memory" in cgroup_v1()


def cgroup_folders(limits: Limits) -> list[str]:
    """The folders holding this machine's kernel cgroups (for `autograder.sandbox.launch.remove_stale`)."""
    return [limits.cgroup_parent] if limits.cgroup_parent else list(limits.cgroup_v1.values())


NO_CGROUP_WARNING = (
    "autograder: warning: no cgroup for the kernels on this machine (no delegated cgroup v2, no writable "
    "cgroup v1 memory controller; the grader is not root, or they are not mounted): --memory caps each "
    "process of a kernel, not the kernel, and nothing shares the CPU between kernels graded at once, so "
    "one submission can take the memory or CPU another one needs. Run the grader as root on a machine with "
    "cgroups, or grade one submission at a time.")


def _existing(paths: list[Path]) -> list[Path]:
    """Absolute, resolved, existing paths in order, without duplicates."""
    seen: dict[str, Path] = {}
    for path in paths:
        path = Path(path).expanduser()
        if path.exists():
            seen.setdefault(str(path.resolve()), path.resolve())
    return list(seen.values())
