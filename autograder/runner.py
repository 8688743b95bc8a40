"""Grade the submissions of one assignment: nbgrader executes, the service measures.

For every ``<course>/submitted/<student>/<assignment>/`` the runner

1. copies only the assignment's notebook (and nbgrader's ``timestamp.txt``) into a
   clean staging tree ``<course>/.grading/submitted/`` - files shipped beside the
   notebook (labels, models) never reach the kernel;
2. prepares a private run folder: shuffled, label-free grading data, a copy of
   the baseline checkpoint, a truth file for the service;
3. starts the annotation service (a separate process, per-run token, Unix socket);
4. has nbgrader autograde it (in `autograder.worker`, a long-lived nbgrader process)
   with a sandboxed kernelspec (bubblewrap, memory cap) under a wall-clock limit,
   killing the worker's whole process group on timeout;
5. reads accuracy and annotations from the service's ledger, nbgrader's points
   from the gradebook and the first error from the executed notebook, and stores
   one row (`autograder.store`).

A bad submission never stops the batch: whatever happens becomes its row.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

import course
from course import config, data
from autograder import prepare, sandbox, store

DEFAULT_TIMEOUT_S = 900.0  # wall clock per submission (the slowest notebook takes ~2 min)
DEFAULT_MEMORY_GB = 8.0  # address-space cap of the kernel; torch alone maps ~4 GB
SERVICE_START_S = 30.0
STAGING = ".grading"  # git-ignored; nbgrader reads the clean submissions from here
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
    row: store.Row
    timings: Timings = field(default_factory=Timings)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _first_line(text: str, limit: int = 200) -> str:
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


class Grader:
    """Grades `assignment` of the course in `course_dir`, one submission at a time."""

    def __init__(self, course_dir: Path, assignment: str, track: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, memory_gb: float = DEFAULT_MEMORY_GB):
        self.course_dir = Path(course_dir).resolve()
        self.assignment = assignment
        self.track = data.parse_track(track)
        self.timeout = float(timeout)
        self.memory_gb = float(memory_gb)
        source = self.course_dir / "source" / assignment
        self.notebooks = sorted(p.name for p in source.glob("*.ipynb"))
        if not self.notebooks:
            raise GraderError(f"no notebook in {source}; is {assignment!r} an assignment of this course?")
        self._gradebook = _Gradebook(self.course_dir)
        if not self._gradebook.has_assignment(assignment):
            raise GraderError(
                f"assignment {assignment!r} is not in nbgrader's gradebook; run "
                f"`nbgrader generate_assignment {assignment}` in {self.course_dir} first.")
        if shutil.which("bwrap") is None:
            raise GraderError(sandbox.SandboxError.__doc__ + " Install it: apt-get install -y bubblewrap")
        self._worker: subprocess.Popen | None = None  # nbgrader, imported once per batch

    def students(self) -> list[str]:
        """Students with a folder for this assignment in ``submitted/``."""
        root = self.course_dir / "submitted"
        return sorted(p.parent.name for p in root.glob(f"*/{self.assignment}") if p.is_dir())

    # --- one submission -----------------------------------------------------------

    def grade(self, student: str) -> Outcome:
        """Grade one student's submission and store its row; never raises for a bad submission."""
        start = time.perf_counter()
        timings = Timings()
        try:
            row = self._grade(student, timings)
        except Exception as exc:  # the grader's own failure still becomes a row
            row = self._row(student, status="error", detail=f"grader error: {type(exc).__name__}: {exc}")
        row = store.Row(**{**row.__dict__, "runtime": round(time.perf_counter() - start, 2),
                           "graded_at": _now()})
        store.save(self.course_dir, row)
        return Outcome(row, timings)

    def _row(self, student: str, status: str, detail: str, accuracy=None, annotations=None,
             score=None, max_score=None) -> store.Row:
        passed = status == "ok" and accuracy is not None and accuracy >= config.TARGET_ACCURACY
        return store.Row(student=student, assignment=self.assignment, track=data.track_name(self.track),
                         accuracy=accuracy, annotations=annotations, passed=passed, score=score,
                         max_score=max_score, status=status, detail=_first_line(detail, 300),
                         runtime=0.0, graded_at="")

    def _grade(self, student: str, timings: Timings) -> store.Row:
        t0 = time.perf_counter()
        staged, problem = self._stage(student)
        if problem:
            return self._row(student, status="error", detail=problem)
        run_dir = Path(tempfile.mkdtemp(prefix="autograder-run-"))
        service = None
        try:
            paths = {name: run_dir / name for name in ("data", "cache", "sock", "runtime", "jupyter", "private")}
            for path in paths.values():
                path.mkdir(mode=0o700)
            prepare.prepare(self.track, paths["data"], paths["private"] / "truth.npz")
            prepare.warm_cache(self.track, paths["cache"])
            token = secrets.token_hex(32)
            socket_path = paths["sock"] / "service.sock"
            ledger_file = paths["private"] / "ledger.jsonl"
            service = _start_service(socket_path, paths["private"] / "truth.npz", ledger_file, token,
                                     paths["private"] / "service.log")
            env = self._kernel_env(paths, socket_path, token)
            workdir = self.course_dir / "autograded" / student / self.assignment
            workdir.mkdir(parents=True, exist_ok=True)  # nbgrader replaces it; the bind needs the path
            box = sandbox.Sandbox(
                hide=self._hidden(run_dir),
                read_only=[Path(sys.prefix), Path(course.__file__).parent, paths["data"]],
                writable=[paths["cache"], paths["sock"], paths["runtime"], workdir],
                env=env, memory_bytes=int(self.memory_gb * 1e9))
            box.write_kernelspec(paths["jupyter"])
            timings.prepare = time.perf_counter() - t0

            t1 = time.perf_counter()
            returncode, timed_out = self._run_nbgrader(student, paths, env)
            timings.nbgrader = time.perf_counter() - t1

            t2 = time.perf_counter()
            _stop(service)
            service = None
            ledger_text = ledger_file.read_text(encoding="utf-8") if ledger_file.is_file() else ""
            store.save_ledger(self.course_dir, self.assignment, student, ledger_text)
            log_file = paths["private"] / "nbgrader.log"
            if log_file.is_file():
                store.save_ledger(self.course_dir, self.assignment, student,
                                  log_file.read_text(errors="replace"), suffix=".nbgrader.log")
            row = self._judge(student, ledger_text, returncode, timed_out,
                              (paths["private"] / "nbgrader.log"), workdir, timings)
            timings.finish = time.perf_counter() - t2
            return row
        finally:
            if service is not None:
                _stop(service)
            shutil.rmtree(run_dir, ignore_errors=True)
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)

    def _stage(self, student: str) -> tuple[Path | None, str]:
        """Copy only the notebook into the staging tree; return (its folder, problem)."""
        submitted = self.course_dir / "submitted" / student / self.assignment
        present = sorted(p for p in submitted.glob("*.ipynb") if p.is_file())
        chosen: dict[str, Path] = {}
        for name in self.notebooks:
            if (submitted / name).is_file():
                chosen[name] = submitted / name
        if not chosen and len(self.notebooks) == 1 and len(present) == 1:
            chosen[self.notebooks[0]] = present[0]  # a renamed copy, e.g. "03_clustering (1).ipynb"
        if not chosen:
            return None, (f"no notebook in submitted/{student}/{self.assignment}/ "
                          f"(expected {', '.join(self.notebooks)})")
        for name, path in chosen.items():
            try:
                nb = nbformat.read(path, as_version=4)
                nbformat.validate(nb)
            except Exception as exc:
                return None, f"{path.name} is not a valid notebook ({type(exc).__name__}: {_first_line(exc)})"
        staged = self.course_dir / STAGING / "submitted" / student / self.assignment
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        for name, path in chosen.items():
            shutil.copyfile(path, staged / name)
        if (submitted / "timestamp.txt").is_file():
            shutil.copyfile(submitted / "timestamp.txt", staged / "timestamp.txt")
        return staged, ""

    def _hidden(self, run_dir: Path) -> list[Path]:
        """Everything the kernel must not see (the sandbox binds back what it needs)."""
        # The default cache folder too: the grader may use another one (COURSE_CACHE_DIR or
        # XDG_CACHE_HOME set) while an earlier local run left unpacked MNIST files there.
        hidden = [self.course_dir, run_dir, config.REPO_DATA_DIR, config.cache_dir(),
                  Path.home() / ".cache" / "dcai-hackathon", Path(tempfile.gettempdir())]
        for _, base in data._candidate_dirs():
            hidden.append(base)
        return hidden

    def _kernel_env(self, paths: dict[str, Path], socket_path: Path, token: str) -> dict[str, str]:
        return {
            config.ENV_DATA_DIR: str(paths["data"]),
            config.ENV_CACHE_DIR: str(paths["cache"]),
            config.ENV_SERVICE: f"unix:{socket_path}",
            config.ENV_SERVICE_TOKEN: token,
            config.ENV_TRACK: data.track_name(self.track),
            config.ENV_OFFLINE: "1",
        }

    def _run_nbgrader(self, student: str, paths: dict[str, Path], kernel_env: dict[str, str]) -> tuple[int, bool]:
        """Autograde in the long-lived nbgrader worker; (exit code, timed out)."""
        env = dict(kernel_env)
        env["JUPYTER_PATH"] = str(paths["jupyter"])
        env["JUPYTER_RUNTIME_DIR"] = str(paths["runtime"])
        env["TMPDIR"] = str(paths["runtime"])  # nbclient writes the connection file to TMPDIR
        job = {"assignment": self.assignment, "student": student, "env": env,
               "log": str(paths["private"] / "nbgrader.log"),
               "config": {"CourseDirectory.submitted_directory": f"{STAGING}/submitted",
                          "Execute.kernel_name": sandbox.KERNEL_NAME,
                          # ZMQ over Unix sockets: the sandboxed kernel has no network at all
                          "KernelManager.transport": "ipc",
                          "KernelManager.ip": str(paths["runtime"] / "kernel"),
                          "Execute.timeout": int(self.timeout) + 60}}  # the wall clock comes first
        if self._worker is None or self._worker.poll() is not None:
            self._worker = _start_worker(self.course_dir)
        worker = self._worker
        worker.stdin.write((json.dumps(job) + "\n").encode())
        worker.stdin.flush()
        ready, _, _ = select.select([worker.stdout], [], [], self.timeout)
        line = worker.stdout.readline() if ready else b""
        if ready and line:
            return (0 if json.loads(line)["ok"] else 1), False
        # timeout, or the worker died: kill its group (the sandbox dies with it), start afresh next time
        timed_out = not ready
        _kill_group(worker)
        self._worker = None
        return 1, timed_out

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        # a Grader dropped without close(): end of input lets the worker exit by itself
        worker = getattr(self, "_worker", None)
        if worker is not None and worker.stdin and not worker.stdin.closed:
            worker.stdin.close()

    def close(self) -> None:
        """Stop the nbgrader worker (also happens when this process exits)."""
        if self._worker is not None:
            self._worker.stdin.close()
            try:
                self._worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _kill_group(self._worker)
            self._worker = None

    # --- judging -------------------------------------------------------------------

    def _judge(self, student: str, ledger_text: str, returncode: int, timed_out: bool,
               log_path: Path, workdir: Path, timings: Timings) -> store.Row:
        entries = []
        for line in ledger_text.splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:  # only a service killed mid-write could leave a torn line
                continue
        submissions = [e for e in entries if e.get("op") == "score" and e.get("split") == "private" and e.get("ok")]
        last = submissions[-1] if submissions else None
        accuracy = last["accuracy"] if last else None
        annotations = last["count"] if last else None
        numbers = dict(accuracy=accuracy, annotations=annotations)

        if timed_out:
            return self._row(student, "timeout",
                             f"stopped after the wall-clock limit of {self.timeout:.0f} s"
                             + ("" if last else "; no submission had been made"), **numbers)
        error = _first_error(workdir, self.notebooks, timings)
        log = log_path.read_text(errors="replace") if log_path.is_file() else ""
        if returncode != 0:
            return self._row(student, "error", _nbgrader_problem(log, error, self.memory_gb), **numbers)
        score, max_score = self._gradebook.score(self.assignment, student)
        points = dict(score=score, max_score=max_score)
        if last is None:
            detail = "no submission reached the annotation service (grading.submit was not called or failed)"
            if error:
                detail += f"; first error: {_memory_hint(error, self.memory_gb)}"
            return self._row(student, "failed", detail, **numbers, **points)
        detail = f"{len(submissions)} submission{'s' if len(submissions) != 1 else ''}"
        if error:
            detail += f"; first error: {_memory_hint(error, self.memory_gb)}"
        return self._row(student, "ok", detail, **numbers, **points)


def _memory_hint(error: str, memory_gb: float) -> str:
    if "MemoryError" in error:
        return f"{error} (memory limit {memory_gb:g} GB)"
    return error


def _first_error(workdir: Path, notebooks: list[str], timings: Timings) -> str:
    """'<cell>: <Error>: <message>' of the first cell that raised, or ''; also sums cell times."""
    found = ""
    for name in notebooks:
        path = workdir / name
        if not path.is_file():
            continue
        nb = nbformat.read(path, as_version=4)
        for number, cell in enumerate(nb.cells, start=1):
            timing = cell.get("metadata", {}).get("execution", {})
            if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
                begin = _dt.datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
                end = _dt.datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
                timings.cells += (end - begin).total_seconds()
            if found or cell.get("cell_type") != "code":
                continue
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    where = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"cell {number}"
                    found = f"{where}: {output.get('ename')}: {_first_line(output.get('evalue', ''), 160)}"
                    break
    return found


def _nbgrader_problem(log: str, error: str, memory_gb: float) -> str:
    """One line for a failed nbgrader run (the kernel died, nbgrader refused, ...)."""
    if "DeadKernelError" in log or "Kernel died" in log or "kernel died" in log.lower():
        where = f" (last error before: {error})" if error else ""
        return ("the kernel died (crashed, was killed, or ran out of memory at the "
                f"{memory_gb:g} GB limit){where}")
    lines = [ln for ln in log.splitlines() if "[ERROR]" in ln or "Error" in ln]
    return "nbgrader failed: " + (_first_line(lines[-1]) if lines else "see its log")


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


def _start_worker(course_dir: Path) -> subprocess.Popen:
    env = tool_env({k: v for k, v in os.environ.items() if k not in ENV_DROP})
    return subprocess.Popen([sys.executable, "-m", "autograder.worker"], cwd=course_dir, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _start_service(socket_path: Path, truth: Path, ledger: Path, token: str, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ENV_DROP}
    env["AUTOGRADER_TOKEN"] = token
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "autograder.service", "--socket", str(socket_path),
             "--truth", str(truth), "--ledger", str(ledger)],
            env=env, stdout=subprocess.PIPE, stderr=log_file, start_new_session=True)
    ready, _, _ = select.select([process.stdout], [], [], SERVICE_START_S)
    line = process.stdout.readline() if ready else b""
    if line.strip() != b"ready":
        _stop(process)
        raise GraderError(f"the annotation service did not start; see {log}: {log.read_text()[-500:]}")
    return process


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout:
        process.stdout.close()


class _Gradebook:
    """nbgrader's gradebook of the course (its URL from the course's nbgrader_config.py)."""

    def __init__(self, course_dir: Path):
        from traitlets.config.loader import PyFileConfigLoader

        self.course_dir = course_dir
        self.course_id = ""
        self.url = f"sqlite:///{course_dir / 'gradebook.db'}"
        config_file = course_dir / "nbgrader_config.py"
        if config_file.is_file():
            cfg = PyFileConfigLoader("nbgrader_config.py", path=str(course_dir)).load_config()
            directory = cfg.get("CourseDirectory", {})
            url = directory.get("db_url", self.url)
            if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_absolute():
                url = f"sqlite:///{course_dir / url[len('sqlite:///'):]}"  # nbgrader runs in course_dir
            self.url = url
            self.course_id = directory.get("course_id", "")

    def _open(self):
        from nbgrader.api import Gradebook

        return Gradebook(self.url, self.course_id)

    def has_assignment(self, assignment: str) -> bool:
        from nbgrader.api import MissingEntry

        with self._open() as gb:
            try:
                gb.find_assignment(assignment)
                return True
            except MissingEntry:
                return False

    def score(self, assignment: str, student: str) -> tuple[float | None, float | None]:
        from nbgrader.api import MissingEntry

        with self._open() as gb:
            try:
                submission = gb.find_submission(assignment, student)
            except MissingEntry:
                return None, None
            return float(submission.score), float(submission.max_score)
