"""One graded submission as a self-contained task: what the grading machine gets, what it sends back.

`grade_task(spec, submission) -> TaskResult` is the whole grading of one submission
(every track): it needs no course folder, only what travels with it, so the same
function runs in the ``autograder grade`` process (one at a time), in a local
process pool (``--jobs N``, `autograder.grading.parallel`) and on a Dask worker of another
machine (``--scheduler``, `autograder.grading.cluster`).

- `GradeSpec` (one per batch): the assignment's nbgrader config, its source
  folder, a gradebook holding only the assignment (`autograder.results.gradebook_merge`),
  the shuffle seed of every track (derived from the assignment's secret, never the
  secret itself), the limits;
- `Submission` (one per student): the notebook bytes the grader staged and what the
  course gradebook holds about the student (an extension of the due date), or the
  reason it cannot be graded; ``student`` is the id nbgrader grades it under (the folder's
  name, or a stable alias of a name nbgrader cannot take: `autograder.layout.nbgrader_ids`),
  ``folder`` the real name when it differs, ``row_id`` what its rows show;
- `TaskResult`: the rows, the executed notebooks of the course track (as kept for
  humans: without active content, `autograder.results.inert`), ledgers and logs, what nbgrader
  wrote in its gradebook.

An `Executor` per process (cached, one per batch spec) holds the task's course folder
(private, 0700, never visible to a kernel), each track's grading data and baseline
checkpoint (made once) and nbgrader's long-lived worker. Each run has its own run
folder (`autograder.sandbox.runfolder`): staged notebook, annotation service socket and
token, truth and ledger, and its own copy of the gradebook; runs of one process go
one after another, runs of different processes share nothing writable.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import os
import pickle
import resource
import secrets
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course import config, data
from autograder import sandbox
from autograder.grading import judge, prepare, service_process
from autograder.results import clean, gradebook_merge, inert, store
from autograder.sandbox import launch, safefs
from autograder.grading import tracks as tracks_
from autograder.sandbox.runfolder import PREFIX, RunFolder, remove_stale
from autograder.grading.worker import WorkerClient, memory_cap, running_cell

LOG_KEEP_BYTES = 256 * 1024  # of nbgrader's and the kernel's logs, kept beside the ledger
LEDGER_KEEP_BYTES = 32 * 2**20
ENV_DROP = (config.ENV_SERVICE, config.ENV_SERVICE_TOKEN, config.ENV_DATA_DIR, config.ENV_CACHE_DIR,
            "JUPYTER_PATH", "JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR")


@dataclass
class Timings:
    """Where a submission's wall-clock time went, in seconds."""

    prepare: float = 0.0
    nbgrader: float = 0.0
    finish: float = 0.0
    cells: float = 0.0  # sum of cell execution times recorded in the executed notebook

    @property
    def total(self) -> float:
        return self.prepare + self.nbgrader + self.finish


@dataclass(frozen=True)
class GradeSpec:
    """Everything a grading machine needs for a batch; the same for every submission of it."""

    assignment: str
    course_id: str
    notebooks: tuple[str, ...]  # the assignment's notebook names
    kind: str  # "competition" or "points"
    tracks: tuple[tuple[int, ...], ...]  # the course track first
    seeds: tuple[int, ...]  # the shuffle seed of each track (not the secret)
    timeout: float
    memory_gb: float
    limits: sandbox.Limits
    max_output_bytes: int
    nbgrader_config: bytes  # the course's nbgrader_config.py
    source_files: tuple[tuple[str, bytes], ...]  # source/<assignment>/ (relative path, bytes)
    gradebook: bytes  # SQLite gradebook with only this assignment (gradebook_merge.template)
    kernel_env: tuple[tuple[str, str], ...] = ()  # extra kernel variables (COURSE_SEED of the benchmarks)

    @functools.cached_property
    def key(self) -> str:
        """Names the batch: a worker keeps one executor per key."""
        fields = tuple(getattr(self, f.name) for f in dataclasses.fields(self))
        return hashlib.sha256(pickle.dumps(fields)).hexdigest()[:16]


@dataclass(frozen=True)
class Submission:
    """One student's staged submission: notebook bytes by assignment notebook name, or a problem."""

    student: str
    files: tuple[tuple[str, bytes], ...] = ()
    timestamp: str | None = None  # timestamp.txt, already checked
    problem: str = ""  # not gradable: the row's detail
    notes: tuple[str, ...] = ()
    row_id: str = ""  # the student column of its rows (default: the id cleaned to one line)
    gradebook_student: str = ""  # JSON: the course gradebook's entries for the student (gradebook_merge.students)
    folder: str = ""  # the folder's name in submitted/ when `student` is an alias of it (layout.nbgrader_ids)

    @property
    def row_student(self) -> str:
        return self.row_id or clean.line(self.folder or self.student, 200)


@dataclass
class TaskResult:
    """What a grading machine sends back for one submission."""

    student: str
    rows: dict[str, store.Row]  # by track name; runtime and graded_at set
    timings: dict[str, Timings]  # by track name
    notebooks: dict[str, bytes] = field(default_factory=dict)  # executed notebooks of the course track
    texts: dict[str, str] = field(default_factory=dict)  # ledger and logs by file suffix
    gradebook: dict | None = None  # gradebook_merge.export_submission of the course track's run
    host: str = ""
    pid: int = 0
    peak_rss_mb: float = 0.0  # of the grading process (the kernels are children)
    folder: str = ""  # the folder's name in submitted/ when `student` is an alias of it


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# a Unix socket path has at most 107 bytes: <tmp>/autograder-run-<pid>-<8>/sock/service.sock
MAX_TMPDIR_CHARS = 107 - len("/autograder-run-4194304-abcdefgh/sock/service.sock")


class _Batch:
    """Grading data of one track shared by every run of an executor (same seed, same shuffle)."""

    def __init__(self, track: tuple[int, ...], seed: int):
        self.folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-batch-"))
        os.chmod(self.folder, 0o711)
        self.data = self.folder / "data"
        self.data.mkdir(mode=0o755)
        private = self.folder / "private"
        private.mkdir(mode=0o700)
        self.truth = private / "truth.npz"
        prepare.prepare(track, self.data, self.truth, seed=seed)
        for path in self.data.iterdir():
            os.chmod(path, 0o644)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class Executor:
    """Grades submissions of one `GradeSpec` in this process, one after another."""

    def __init__(self, spec: GradeSpec, kernel_uid: int | None = None, env: dict[str, str] | None = None):
        self.spec = spec
        self.limits = dataclasses.replace(spec.limits, memory_bytes=int(spec.memory_gb * 1e9))
        if not self.limits.cgroup_parent:  # this machine's cgroups: the spec may come from another one
            self.limits.cgroup_parent = sandbox.cgroup_parent()
        self.limits.cgroup_v1 = {} if self.limits.cgroup_parent else sandbox.cgroup_v1()
        if shutil.which("bwrap") is None:
            raise sandbox.SandboxError(sandbox.SandboxError.__doc__ + " Install it: apt-get install -y bubblewrap")
        self.uid = self.gid = None
        self._uid_claim: int | None = None
        if os.geteuid() == 0:  # the kernel never runs as root
            if kernel_uid is None:
                kernel_uid, self._uid_claim = claim_kernel_uid()
            self.uid = self.gid = kernel_uid
        tmp = tempfile.gettempdir()
        if len(tmp) > MAX_TMPDIR_CHARS:
            raise sandbox.SandboxError(
                f"the temporary folder {tmp} is too long for the run folders' Unix sockets (at most "
                f"{MAX_TMPDIR_CHARS} characters); set TMPDIR to a shorter folder, e.g. /tmp")
        remove_stale()
        launch.remove_stale(sandbox.cgroup_folders(self.limits))  # kernel cgroups of a killed grader
        self.course = self._course_folder()
        self.env = {k: v for k, v in (os.environ if env is None else env).items() if k not in ENV_DROP}
        self._worker = WorkerClient(self.course, tool_env(self.env), memory_cap(spec.max_output_bytes),
                                    self.limits.cgroup_parent, self.limits.cgroup_v1,
                                    sandbox.cgroup_folders(self.limits))
        self._batches: dict[tuple[int, ...], _Batch] = {}
        self._checkpoints: dict[tuple[int, ...], Path] = {}
        self.prepare_seconds: dict[str, float] = {}

    def _course_folder(self) -> Path:
        """The task's course: nbgrader config and source folder only (0700; no kernel ever sees it)."""
        root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-course-"))
        os.chmod(root, 0o700)
        (root / "nbgrader_config.py").write_bytes(self.spec.nbgrader_config)
        source = root / "source" / self.spec.assignment
        source.mkdir(parents=True)
        for relative, content in self.spec.source_files:
            target = (source / relative).resolve()
            if not target.is_relative_to(source):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        return root

    def prepare(self) -> dict[str, float]:
        for track in self.spec.tracks:
            self._prepare_batch(track)
        return dict(self.prepare_seconds)

    def _prepare_batch(self, track: tuple[int, ...]) -> _Batch:
        if track not in self._batches:
            t0 = time.perf_counter()
            seed = self.spec.seeds[self.spec.tracks.index(track)]
            self._batches[track] = _Batch(track, seed)
            self._checkpoints[track] = prepare.checkpoint(track)
            data.forget()  # written to the batch's files: the grading process keeps no copy of MNIST
            self.prepare_seconds[data.track_name(track)] = time.perf_counter() - t0
        return self._batches[track]

    # --- one submission -----------------------------------------------------------

    def grade(self, submission: Submission) -> TaskResult:
        """Grade one submission on every track; never raises for a bad submission."""
        spec = self.spec
        result = TaskResult(submission.student, rows={}, timings={}, host=socket.gethostname(), pid=os.getpid(),
                            folder=submission.folder)
        course_track = spec.tracks[0]
        for track in spec.tracks[1:] + spec.tracks[:1]:  # the course track last, as autograded/ shows it
            name = data.track_name(track)
            start = time.perf_counter()
            timings = result.timings[name] = Timings()
            try:
                verdict = self._grade(submission, timings, track, result, track == course_track)
            except Exception as exc:  # the grader's own failure still becomes a row
                verdict = judge.Verdict("error", f"grader error: {type(exc).__name__}: {clean.first_line(exc)}")
            result.rows[name] = judge.to_row(verdict, submission.row_student, spec.assignment, name,
                                             spec.kind, runtime=round(time.perf_counter() - start, 2),
                                             graded_at=_now())
        result.peak_rss_mb = _peak_rss_mb()
        return result

    def _stage(self, submission: Submission, run: RunFolder) -> None:
        staged = run.nbgrader / "submitted" / submission.student / self.spec.assignment
        staged.mkdir(parents=True)
        for name, raw in submission.files:
            if name in self.spec.notebooks:
                (staged / name).write_bytes(raw)
        if submission.timestamp:
            (staged / "timestamp.txt").write_text(submission.timestamp + "\n")

    def _sandbox(self, run: RunFolder, token: str, track: tuple[int, ...]) -> sandbox.Sandbox:
        batch = self._prepare_batch(track)
        checkpoint = self._checkpoints.get(track)
        cache = "/tmp/cache"  # inside the kernel's RAM disk: only the checkpoint is in it
        env = {
            config.ENV_DATA_DIR: str(batch.data),
            config.ENV_CACHE_DIR: cache,
            config.ENV_SERVICE: f"unix:{run.socket}",
            config.ENV_SERVICE_TOKEN: token,
            config.ENV_TRACK: data.track_name(track),
            config.ENV_OFFLINE: "1",
            config.ENV_EXAM: "1",
            **dict(self.spec.kernel_env),
        }
        files = {run.socket: str(run.socket)}
        if checkpoint is not None and checkpoint.is_file():
            files[checkpoint] = f"{cache}/models/{checkpoint.name}"
        if self.uid is not None:
            sandbox.write_etc(run.etc, self.uid, self.gid)
        return sandbox.Sandbox(read_only=[sandbox.course_package(), batch.data], files=files,
                               writable=[run.runtime], hide=sandbox.env_datasets(), env=env,
                               etc=run.etc if self.uid is not None else None, limits=self.limits,
                               uid=self.uid, gid=self.gid, reach=[sandbox.course_package(resolve=False)])

    def _grade(self, submission: Submission, timings: Timings, track: tuple[int, ...],
               result: TaskResult, course_track: bool) -> judge.Verdict:
        """One track's run; its ledger and log go into `result`, and for the course track its notebooks
        and gradebook too (a hidden track's texts are kept as ``<student>.track<digits>.*``)."""
        if submission.problem:
            return judge.Verdict("error", submission.problem)
        t0 = time.perf_counter()
        run = RunFolder.create(self.uid, self.gid)
        service = None
        try:
            self._stage(submission, run)
            gradebook = run.private / "gradebook.db"  # this run's own copy: nothing shared, nothing concurrent
            gradebook.write_bytes(self.spec.gradebook)
            if submission.gradebook_student:  # e.g. an extension: nbgrader's late penalty counts from it
                gradebook_merge.add_student(gradebook_merge.sqlite_url(gradebook), self.spec.course_id,
                                            self.spec.assignment, submission.student,
                                            json.loads(submission.gradebook_student))
            batch = self._prepare_batch(track)
            os.link(batch.truth, run.truth)  # the service deletes its copy once read
            token = secrets.token_hex(32)
            service = service_process.start(run, token, self.env,
                                            owner=None if self.uid is None else (self.uid, self.gid))
            box = self._sandbox(run, token, track)
            box.write_kernelspec(run.jupyter, run.kernel_log)
            timings.prepare = time.perf_counter() - t0

            t1 = time.perf_counter()
            ok, timed_out, too_large = self._worker.run(self._job(submission.student, run, gradebook),
                                                        self.spec.timeout)
            timings.nbgrader = time.perf_counter() - t1

            t2 = time.perf_counter()
            service_process.stop(service)
            service = None
            tag = "" if course_track else f".track{''.join(map(str, track))}"
            evidence = self._evidence(submission, run, ok, timed_out, gradebook, result if course_track else None)
            result.texts.update(self._texts(run, tag))
            timings.cells = judge.cell_seconds(evidence.notebooks)
            verdict = judge.judge(evidence, judge.Settings(self.spec.timeout, self.spec.memory_gb, self.spec.kind))
            if too_large:  # nbgrader's worker passed its own memory cap (`autograder.grading.worker.memory_cap`)
                verdict = dataclasses.replace(verdict, status="error", passed=False, detail=too_large_detail(
                    self._worker.memory_bytes, self.spec.max_output_bytes))
            timings.finish = time.perf_counter() - t2
            return verdict
        finally:
            if service is not None:
                service_process.stop(service)
            run.remove()

    def _job(self, student: str, run: RunFolder, gradebook: Path) -> dict:
        return {"assignment": self.spec.assignment, "student": student, "log": str(run.nbgrader_log),
                "running_cell": str(_running_cell_file(run)),
                "max_output_bytes": self.spec.max_output_bytes,
                "env": {"JUPYTER_PATH": str(run.jupyter), "JUPYTER_RUNTIME_DIR": str(run.runtime),
                        "TMPDIR": str(run.runtime)},  # nbclient writes the connection file to TMPDIR
                "config": {"CourseDirectory.root": str(self.course),
                           "CourseDirectory.db_url": gradebook_merge.sqlite_url(gradebook),
                           "CourseDirectory.submitted_directory": str(run.nbgrader / "submitted"),
                           "CourseDirectory.autograded_directory": str(run.nbgrader / "autograded"),
                           "Execute.kernel_name": sandbox.KERNEL_NAME,
                           # ZMQ over Unix sockets: the sandboxed kernel has no network at all
                           "KernelManager.transport": "ipc",
                           "KernelManager.ip": str(run.runtime / "kernel"),
                           # widget comm state bypasses the output cap; a graded notebook needs none
                           "Execute.store_widget_state": False,
                           "Execute.timeout": int(self.spec.timeout) + 60}}  # the wall clock comes first

    @staticmethod
    def _texts(run: RunFolder, tag: str) -> dict[str, str]:
        """The run's ledger and logs by file suffix (kept in ``<course>/ledgers/<assignment>/``)."""
        log = safefs.read_tail(run.nbgrader_log, LOG_KEEP_BYTES)
        kernel_log = safefs.read_tail(run.kernel_log, LOG_KEEP_BYTES)
        return {tag + ".jsonl": safefs.read_tail(run.ledger, LEDGER_KEEP_BYTES),
                tag + ".nbgrader.log": clean.text(log + ("\n--- kernel ---\n" + kernel_log if kernel_log else ""))}

    def _evidence(self, submission: Submission, run: RunFolder, ok: bool, timed_out: bool, gradebook: Path,
                  result: TaskResult | None) -> judge.Evidence:
        ledger_text = safefs.read_tail(run.ledger, LEDGER_KEEP_BYTES)
        log = safefs.read_tail(run.nbgrader_log, LOG_KEEP_BYTES)
        executed, raw_notebooks = [], {}
        built = run.nbgrader / "autograded" / submission.student / self.spec.assignment
        for name in self.spec.notebooks:
            try:
                raw = safefs.read_bytes(built / name)
            except FileNotFoundError:
                continue
            executed.append(nbformat.reads(raw.decode("utf-8", errors="replace"), as_version=4))
            raw_notebooks[name] = raw
        url, spec = gradebook_merge.sqlite_url(gradebook), self.spec
        score, max_score = (gradebook_merge.score(url, spec.course_id, spec.assignment, submission.student)
                            if ok and not timed_out else (None, None))
        if result is not None:
            # judged as executed; kept (autograded/: the formgrader, feedback) without participant script or HTML
            result.notebooks = {name: inert.notebook(raw, self._assignment_markdown)
                                for name, raw in raw_notebooks.items()}
            result.gradebook = gradebook_merge.export_submission(url, spec.course_id, spec.assignment,
                                                                 submission.student)
        ended = launch.read_exit_record(str(run.kernel_log) + launch.EXIT_RECORD)  # the launcher's, as root
        return judge.Evidence(ledger_text=ledger_text, nbgrader_ok=ok, timed_out=timed_out, notebooks=executed,
                              log_tail=log, score=score, max_score=max_score, notes=list(submission.notes),
                              oom_kills=int(ended.get("oom_kills") or 0),
                              kernel_log=safefs.read_tail(run.kernel_log, LOG_KEEP_BYTES),
                              running_cell=running_cell(_running_cell_file(run)))

    @functools.cached_property
    def _assignment_markdown(self) -> frozenset[str]:
        """The assignment's own markdown cells: kept as they are in the kept notebooks (`inert.notebook`)."""
        return inert.markdown_sources([raw for relative, raw in self.spec.source_files if relative.endswith(".ipynb")])

    def close(self) -> None:
        """Stop nbgrader's worker, remove the grading data and the task's course."""
        self._worker.close()
        for batch in self._batches.values():
            batch.remove()
        self._batches.clear()
        shutil.rmtree(self.course, ignore_errors=True)
        if self._uid_claim is not None:
            os.close(self._uid_claim)
            self._uid_claim = None


def _running_cell_file(run: RunFolder) -> Path:
    """Where nbgrader's worker writes the number of the cell it runs (private to the grader)."""
    return Path(str(run.kernel_log) + ".cell")


def too_large_detail(cap_bytes: int, max_output_bytes: int) -> str:
    """The row's detail when nbgrader's worker was stopped at its memory cap by what the kernel sent."""
    return (f"the notebook's output was too large for the grader: nbgrader's worker, which receives each output "
            f"whole before keeping at most {max_output_bytes / 2**20:g} MB of them (--max-output-mb), passed its "
            f"memory cap of {cap_bytes / 2**20:.0f} MB and was stopped, so the notebook was not graded. Print or "
            "display a summary, not whole arrays or huge strings, and submit again")


UID_SLOTS = 1000
UID_FOLDER = Path("/run/autograder-kernel-uids")  # root's; one lock file per kernel user in use


def claim_kernel_uid() -> tuple[int, int]:
    """A kernel user no other live executor on this machine uses: (uid, the lock's descriptor).

    ``KERNEL_UID + slot`` for the first free slot (a flock held while the executor lives, released
    when its process dies however it dies), so the kernels of two gradings at once (``--jobs``, two
    Dask workers, two courses) share no per-user process limit and cannot signal each other.
    """
    import fcntl

    UID_FOLDER.mkdir(mode=0o700, exist_ok=True)
    for slot in range(UID_SLOTS):
        fd = os.open(UID_FOLDER / f"{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return sandbox.KERNEL_UID + slot, fd
        except BlockingIOError:
            os.close(fd)
    raise sandbox.SandboxError(f"all {UID_SLOTS} kernel users are in use on this machine")


def tool_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with this interpreter's scripts folder first on PATH.

    nbgrader runs ``alembic`` by name when it creates a gradebook; from an interpreter
    called by its full path (a venv that is not activated, cron) that name is not found.
    """
    import sys

    env = dict(os.environ if env is None else env)
    scripts = str(Path(sys.executable).parent)
    if scripts not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = os.pathsep.join(p for p in (scripts, env.get("PATH")) if p)
    return env


# --- the task function: one executor per process (per thread on a multi-threaded Dask worker) -----

_LOCAL = threading.local()


def executor(spec: GradeSpec) -> Executor:
    """This thread's executor for `spec` (made on first use; an executor of another batch is closed)."""
    current = getattr(_LOCAL, "executor", None)
    if current is not None and current.spec.key == spec.key:
        return current
    if current is not None:
        current.close()
        _LOCAL.executor = None
    _LOCAL.executor = Executor(spec)
    return _LOCAL.executor


def close_executor() -> None:
    """Close this thread's executor (its nbgrader worker, grading data and task course)."""
    current = getattr(_LOCAL, "executor", None)
    if current is not None:
        current.close()
        _LOCAL.executor = None


def grade_task(spec: GradeSpec, submission: Submission) -> TaskResult:
    """Grade one submission on this machine (picklable: for process pools and Dask)."""
    return executor(spec).grade(submission)


def prepare_task(spec: GradeSpec) -> dict[str, float]:
    """Make every track's grading data and baseline on this machine now; seconds by track."""
    return executor(spec).prepare()


def combined(result: TaskResult, tracks: tuple[tuple[int, ...], ...]) -> tuple[store.Row, list[store.Row]]:
    """(the row the leaderboard ranks, the per-track rows when graded on several tracks)."""
    if len(tracks) == 1:
        return result.rows[data.track_name(tracks[0])], []
    track_rows = [dataclasses.replace(result.rows[data.track_name(t)], level="track") for t in tracks]
    return tracks_.combine(track_rows, list(tracks)), track_rows


def failed(spec: GradeSpec, submission: Submission, detail: str) -> TaskResult:
    """The result of a submission no machine could grade (its worker died too often): error rows."""
    rows = {data.track_name(t): judge.to_row(judge.Verdict("error", detail), submission.row_student,
                                             spec.assignment, data.track_name(t), spec.kind, graded_at=_now())
            for t in spec.tracks}
    return TaskResult(submission.student, rows=rows, timings={name: Timings() for name in rows},
                      folder=submission.folder)
