"""Grade the submissions of one assignment: nbgrader executes, the service measures, the judge decides.

For every ``submitted/<student>/<assignment>/`` (folder names from the course's
nbgrader configuration, `autograder.layout`) the `Grader`

1. refuses ids nbgrader cannot handle and submissions that are or contain
   symlinks, FIFOs or devices; reads only the assignment's notebook(s) (size
   capped, never through a link) and a valid ``timestamp.txt`` into a private run
   folder (`autograder.runfolder`) - files shipped beside the notebook never
   reach the kernel;
2. starts the annotation service (a separate process, per-run token, Unix
   socket, dies with the grader) on the batch's grading data, shuffled with the
   assignment's secret (`autograder.secret`, `autograder.prepare`);
3. has nbgrader's worker (`autograder.worker`) autograde it in the run folder
   with the sandboxed kernelspec (`autograder.sandbox`, `autograder.launch`):
   the kernel runs in an empty RAM-disk folder, never in a folder the grader
   later reads or writes;
4. copies back only the executed notebook into ``autograded/`` (no link
   followed), keeps the ledger and capped logs beside the results, and stores
   the row the judge (`autograder.judge`) makes of it, inside the submission's
   own error handling.

A bad submission never stops the batch: whatever happens becomes its row.

With several tracks (``tracks=["7,1", "2,5"]``, `autograder.tracks`) steps 2-4 run
once per track, each with its own grading data, shuffle (the assignment's secret
combined with the track), service and baseline checkpoint; every track's data and
checkpoint are made before the first submission (`prepare`), never inside a time
limit. The hidden tracks run first and the course track last, so ``autograded/``
and nbgrader's gradebook show the course track's run; the hidden tracks' ledgers and
logs are kept as ``ledgers/<assignment>/<student>.track<digits>.*``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course import config, data
from autograder import clean, judge, layout, prepare, safefs, sandbox, secret, service_process, store
from autograder import tracks as tracks_
from autograder.runfolder import RunFolder, remove_stale
from autograder.worker import WorkerClient

DEFAULT_TIMEOUT_S = 900.0  # wall clock per submission (the slowest notebook takes ~2 min)
DEFAULT_MEMORY_GB = 8.0  # address-space cap of the kernel; torch alone maps ~4 GB
DEFAULT_OUTPUT_MB = 8.0  # outputs kept in an executed notebook
LOG_KEEP_BYTES = 256 * 1024  # of nbgrader's and the kernel's logs, kept beside the ledger
LEDGER_KEEP_BYTES = 32 * 2**20
ENV_DROP = (config.ENV_SERVICE, config.ENV_SERVICE_TOKEN, config.ENV_DATA_DIR, config.ENV_CACHE_DIR,
            "JUPYTER_PATH", "JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR")


class GraderError(RuntimeError):
    """The grading run cannot start (not a problem of one submission)."""


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


@dataclass
class Outcome:
    row: store.Row  # the combined row (the only row when graded on one track)
    timings: Timings = field(default_factory=Timings)  # summed over the tracks
    saved: bool = True  # False: the database was unavailable, the row is pending
    track_rows: list[store.Row] = field(default_factory=list)  # one per track when graded on several
    track_timings: dict[str, Timings] = field(default_factory=dict)  # by track name


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def tool_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with this interpreter's scripts folder first on PATH.

    nbgrader runs ``alembic`` by name when it creates a gradebook; from an interpreter
    called by its full path (a venv that is not activated, cron) that name is not found.
    """
    env = dict(os.environ if env is None else env)
    scripts = str(Path(sys.executable).parent)
    if scripts not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = os.pathsep.join(p for p in (scripts, env.get("PATH")) if p)
    return env


def has_submit_cell(notebooks: list[Path]) -> bool:
    """Whether the assignment asks for a submission (a code cell calls ``submit(``)."""
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        if any(c.cell_type == "code" and "submit(" in c.source for c in nb.cells):
            return True
    return False


class _Batch:
    """Grading data shared by every submission of a batch (same secret, same shuffle)."""

    def __init__(self, track: tuple[int, ...], seed: int):
        self.folder = Path(tempfile.mkdtemp(prefix=f"autograder-run-{os.getpid()}-batch-"))
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


class Grader:
    """Grades `assignment` of the course in `course_dir`, one submission at a time."""

    def __init__(self, course_dir: Path, assignment: str, track: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, memory_gb: float = DEFAULT_MEMORY_GB,
                 limits: sandbox.Limits | None = None, max_output_mb: float = DEFAULT_OUTPUT_MB,
                 tracks: list[str] | None = None, seed: int | None = None):
        self.course = layout.Course.open(course_dir)
        self.seed = seed  # the shuffle seed of every track; default: from the assignment's secret (live events pass theirs)
        self.course_dir = self.course.root
        self.assignment = assignment
        self.tracks = tracks_.parse(tracks, track)  # the course track first, then the hidden ones
        self.track = self.tracks[0]
        self.timeout = float(timeout)
        self.memory_gb = float(memory_gb)
        self.limits = limits or sandbox.Limits()
        self.limits.memory_bytes = int(self.memory_gb * 1e9)
        if not self.limits.cgroup_parent:
            self.limits.cgroup_parent = sandbox.cgroup_parent()
        self.max_output_bytes = int(max_output_mb * 2**20)
        source = self.course.source_folder(assignment)
        self.notebooks = sorted(p.name for p in source.glob("*.ipynb")) if source.is_dir() else []
        if not self.notebooks:
            raise GraderError(f"no notebook in {source}; is {assignment!r} an assignment of this course?")
        self.kind = "competition" if has_submit_cell([source / n for n in self.notebooks]) else "points"
        self._gradebook = layout.Gradebook(self.course)
        if not self._gradebook.has_assignment(assignment):
            raise GraderError(
                f"assignment {assignment!r} is not in nbgrader's gradebook; run "
                f"`nbgrader generate_assignment {assignment}` in {self.course_dir} first.")
        if shutil.which("bwrap") is None:
            raise GraderError(sandbox.SandboxError.__doc__ + " Install it: apt-get install -y bubblewrap")
        self.uid = self.gid = None
        if os.geteuid() == 0:  # the kernel never runs as root
            self.uid = self.gid = sandbox.KERNEL_UID
        remove_stale()
        self._worker = WorkerClient(self.course_dir, tool_env({k: v for k, v in os.environ.items()
                                                               if k not in ENV_DROP}))
        self._batches: dict[tuple[int, ...], _Batch] = {}
        self._checkpoints: dict[tuple[int, ...], Path] = {}
        self.prepare_seconds: dict[str, float] = {}  # by track: grading data + baseline checkpoint

    def students(self) -> list[str]:
        """Folders in ``submitted/`` that hold this assignment (odd ids included: they get a row)."""
        return self.course.students(self.assignment)

    # --- one submission -----------------------------------------------------------

    def grade(self, student: str) -> Outcome:
        """Grade one student's submission (on every track) and store its rows; never raises for a bad submission."""
        several = len(self.tracks) > 1
        rows, timings = {}, {}
        for track in self.tracks[1:] + self.tracks[:1]:  # the course track last: autograded/ shows its run
            start = time.perf_counter()
            timings[track] = Timings()
            try:
                verdict = self._grade(student, timings[track], track)
            except Exception as exc:  # the grader's own failure still becomes a row
                verdict = judge.Verdict("error", f"grader error: {type(exc).__name__}: {clean.first_line(exc)}")
            rows[track] = judge.to_row(verdict, clean.line(student, 200), self.assignment, data.track_name(track),
                                       self.kind, runtime=round(time.perf_counter() - start, 2), graded_at=_now())
        total = Timings(*(sum(getattr(t, f.name) for t in timings.values()) for f in dataclasses.fields(Timings)))
        by_name = {data.track_name(t): timings[t] for t in self.tracks}
        if several:
            track_rows = [dataclasses.replace(rows[t], level="track") for t in self.tracks]
            row, saved = tracks_.combine(track_rows, self.tracks), track_rows
        else:
            row, track_rows = rows[self.track], []
            saved = []
        try:
            store.save(self.course_dir, saved + [row])
            return Outcome(row, total, track_rows=track_rows, track_timings=by_name)
        except Exception:  # locked for too long: kept as pending, written by a later save
            return Outcome(row, total, saved=False, track_rows=track_rows, track_timings=by_name)

    def prepare(self) -> dict[str, float]:
        """Make every track's grading data and baseline checkpoint now (before any time limit); seconds by track."""
        for track in self.tracks:
            self._prepare_batch(track)
        return dict(self.prepare_seconds)

    def _stage(self, student: str, run: RunFolder) -> tuple[str, list[str]]:
        """Copy the notebook(s) into the run folder; return (problem, notes)."""
        problem = layout.student_id_problem(student)
        if problem:
            return problem, []
        submitted_root = self.course.root / self.course.submitted
        folder = self.course.submitted_folder(student, self.assignment)
        problem = safefs.problem_in_tree(folder, submitted_root)
        if problem:
            return f"refused: in submitted/{student}/{self.assignment}/, {problem} (links and special files are not graded)", []
        present = sorted(p.name for p in folder.glob("*.ipynb"))
        chosen = {name: name for name in self.notebooks if name in present}
        if not chosen and len(self.notebooks) == 1 and len(present) == 1:
            chosen[self.notebooks[0]] = present[0]  # a renamed copy, e.g. "03_clustering (1).ipynb"
        if not chosen:
            return (f"no notebook in submitted/{student}/{self.assignment}/ "
                    f"(expected {', '.join(self.notebooks)})"), []
        staged = run.nbgrader / "submitted" / student / self.assignment
        staged.mkdir(parents=True)
        for name, found in chosen.items():
            try:
                raw = safefs.read_bytes(folder / found)
                nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
                nbformat.validate(nb)
            except Exception as exc:
                return f"{found} is not a valid notebook ({type(exc).__name__}: {clean.first_line(exc, 120)})", []
            (staged / name).write_bytes(raw)
        notes = []
        stamp = folder / "timestamp.txt"
        if os.path.lexists(stamp):
            from nbgrader.utils import parse_utc

            try:
                text = safefs.read_bytes(stamp, limit=200).decode("ascii").strip()
                parse_utc(text)
                (staged / "timestamp.txt").write_text(text + "\n")
            except Exception:
                notes.append("timestamp.txt ignored (not a date nbgrader reads)")
        return "", notes

    def _prepare_batch(self, track: tuple[int, ...]) -> _Batch:
        if track not in self._batches:
            t0 = time.perf_counter()
            seed = (self.seed if self.seed is not None
                    else secret.seed(self.course.private(), self.assignment, data.track_name(track)))
            self._batches[track] = _Batch(track, seed)
            self._checkpoints[track] = prepare.checkpoint(track)
            self.prepare_seconds[data.track_name(track)] = time.perf_counter() - t0
        return self._batches[track]

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
        }
        if os.environ.get(config.ENV_SEED, "").strip():  # benchmarks run the notebooks with other seeds
            env[config.ENV_SEED] = str(config.seed())  # an int (config.seed() refuses anything else)
        files = {run.socket: str(run.socket)}
        if checkpoint is not None and checkpoint.is_file():
            files[checkpoint] = f"{cache}/models/{checkpoint.name}"
        if self.uid is not None:
            sandbox.write_etc(run.etc, self.uid, self.gid)
        return sandbox.Sandbox(read_only=[sandbox.course_package(), batch.data], files=files,
                               writable=[run.runtime], hide=sandbox.env_datasets(), env=env,
                               etc=run.etc if self.uid is not None else None, limits=self.limits,
                               uid=self.uid, gid=self.gid)

    def _grade(self, student: str, timings: Timings, track: tuple[int, ...]) -> judge.Verdict:
        t0 = time.perf_counter()
        run = RunFolder.create(self.uid, self.gid)
        service = None
        try:
            problem, notes = self._stage(student, run)
            if problem:
                return judge.Verdict("error", problem)
            batch = self._prepare_batch(track)
            os.link(batch.truth, run.truth)  # the service deletes its copy once read
            token = secrets.token_hex(32)
            service = service_process.start(run, token, {k: v for k, v in os.environ.items() if k not in ENV_DROP},
                                            owner=None if self.uid is None else (self.uid, self.gid))
            box = self._sandbox(run, token, track)
            box.write_kernelspec(run.jupyter, run.kernel_log)
            timings.prepare = time.perf_counter() - t0

            t1 = time.perf_counter()
            ok, timed_out = self._worker.run(self._job(student, run), self.timeout)
            timings.nbgrader = time.perf_counter() - t1

            t2 = time.perf_counter()
            service_process.stop(service)
            service = None
            evidence = self._evidence(student, run, ok, timed_out, notes, track)
            timings.cells = judge.cell_seconds(evidence.notebooks)
            verdict = judge.judge(evidence, judge.Settings(self.timeout, self.memory_gb, self.kind))
            timings.finish = time.perf_counter() - t2
            return verdict
        finally:
            if service is not None:
                service_process.stop(service)
            run.remove()

    def _job(self, student: str, run: RunFolder) -> dict:
        return {"assignment": self.assignment, "student": student, "log": str(run.nbgrader_log),
                "max_output_bytes": self.max_output_bytes,
                "env": {"JUPYTER_PATH": str(run.jupyter), "JUPYTER_RUNTIME_DIR": str(run.runtime),
                        "TMPDIR": str(run.runtime)},  # nbclient writes the connection file to TMPDIR
                "config": {"CourseDirectory.root": str(self.course_dir),
                           "CourseDirectory.submitted_directory": str(run.nbgrader / "submitted"),
                           "CourseDirectory.autograded_directory": str(run.nbgrader / "autograded"),
                           "Execute.kernel_name": sandbox.KERNEL_NAME,
                           # ZMQ over Unix sockets: the sandboxed kernel has no network at all
                           "KernelManager.transport": "ipc",
                           "KernelManager.ip": str(run.runtime / "kernel"),
                           # widget comm state bypasses the output cap; a graded notebook needs none
                           "Execute.store_widget_state": False,
                           "Execute.timeout": int(self.timeout) + 60}}  # the wall clock comes first

    def _evidence(self, student: str, run: RunFolder, ok: bool, timed_out: bool,
                  notes: list[str], track: tuple[int, ...]) -> judge.Evidence:
        course_track = track == self.track
        tag = "" if course_track else f".track{''.join(map(str, track))}"  # a hidden track's ledger and log
        ledger_text = safefs.read_tail(run.ledger, LEDGER_KEEP_BYTES)
        store.save_ledger(self.course_dir, self.assignment, student, ledger_text, suffix=tag + ".jsonl")
        log = safefs.read_tail(run.nbgrader_log, LOG_KEEP_BYTES)
        kernel_log = safefs.read_tail(run.kernel_log, LOG_KEEP_BYTES)
        store.save_ledger(self.course_dir, self.assignment, student,
                          clean.text(log + ("\n--- kernel ---\n" + kernel_log if kernel_log else "")),
                          suffix=tag + ".nbgrader.log")
        executed, first = [], True
        built = run.nbgrader / "autograded" / student / self.assignment
        for name in self.notebooks:
            try:
                raw = safefs.read_bytes(built / name)
            except FileNotFoundError:
                continue
            executed.append(nbformat.reads(raw.decode("utf-8", errors="replace"), as_version=4))
            if not course_track:
                continue  # autograded/ keeps the course track's run (graded last)
            relative = Path(self.course.autograded) / student / self.assignment / name
            safefs.write_bytes(self.course_dir, relative, raw, replace_folder=first)
            first = False
        score, max_score = (self._gradebook.score(self.assignment, student) if ok and not timed_out
                            else (None, None))
        return judge.Evidence(ledger_text=ledger_text, nbgrader_ok=ok, timed_out=timed_out, notebooks=executed,
                              log_tail=log, score=score, max_score=max_score, notes=notes)

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the nbgrader worker and remove the batches' data."""
        self._worker.close()
        for batch in self._batches.values():
            batch.remove()
        self._batches.clear()
