"""Grade the submissions of one assignment: nbgrader executes, the service measures, the judge decides.

For every ``submitted/<student>/<assignment>/`` (folder names from the course's
nbgrader configuration, `autograder.layout`) the `Grader`

1. grades a folder whose name nbgrader cannot take under a stable alias (its rows show
   the real name: `layout.nbgrader_ids`, `layout.row_ids`); refuses submissions that are
   or contain symlinks, FIFOs or devices; reads only the assignment's notebook(s) (size
   capped, never through a link) and a valid ``timestamp.txt`` into a private run
   folder (`autograder.sandbox.runfolder`) - files shipped beside the notebook never
   reach the kernel;
2. starts the annotation service (a separate process, per-run token, Unix
   socket, dies with the grader) on the batch's grading data, shuffled with the
   assignment's secret (`autograder.grading.secret`, `autograder.grading.prepare`);
3. has nbgrader's worker (`autograder.grading.worker`) autograde it in the run folder
   with the sandboxed kernelspec (`autograder.sandbox`, `autograder.sandbox.launch`):
   the kernel runs in an empty RAM-disk folder, never in a folder the grader
   later reads or writes;
4. copies back only the executed notebook into ``autograded/`` (no link
   followed), keeps the ledger and capped logs beside the results, and stores
   the row the judge (`autograder.grading.judge`) makes of it, inside the submission's
   own error handling.

A bad submission never stops the batch: whatever happens becomes its row.

Steps 2-3 and the judge run in `autograder.grading.tasks` from what the grader staged (a
self-contained task: notebook bytes, the assignment's source and nbgrader config,
a gradebook holding only the assignment, each track's shuffle seed), so they can run
here one at a time, in a local process pool (``--jobs N``, `autograder.grading.parallel`) or
on the workers of a Dask cluster (``--scheduler``, `autograder.grading.cluster`). Only this
process writes the course: it applies each result as it arrives (ledgers,
``autograded/``, nbgrader's gradebook through `autograder.results.gradebook_merge`, then
the rows in one transaction). The kernels' torch, OpenMP and BLAS threads travel in the
task too (`kernel_threads`, `autograder.sandbox.threads`: ``autograder grade`` gives each kernel its
machine's cores divided by the gradings at once there).

With several tracks (``tracks=["7,1", "2,5"]``, `autograder.grading.tracks`) steps 2-4 run
once per track, each with its own grading data, shuffle (the assignment's secret
combined with the track), service and baseline checkpoint; every track's data and
checkpoint are made before the first submission (`prepare`), never inside a time
limit. The hidden tracks run first and the course track last, so ``autograded/``
and nbgrader's gradebook show the course track's run; the hidden tracks' ledgers and
logs are kept as ``ledgers/<assignment>/latest/<student>/track<digits>.*``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course import config, data
from autograder import layout, sandbox
from autograder.grading import attempts, secret, tasks
from autograder.results import clean, gradebook_merge, store
from autograder.sandbox import safefs, threads
from autograder.grading import tracks as tracks_
from autograder.grading.tasks import ENV_DROP, LEDGER_KEEP_BYTES, LOG_KEEP_BYTES, Timings, tool_env  # noqa: F401 (public names)

DEFAULT_TIMEOUT_S = 900.0  # wall clock per submission (the slowest notebook takes ~2 min)
DEFAULT_MEMORY_GB = 8.0  # the kernel's memory limit (`autograder.sandbox.memlimit`); without cgroups its address space: torch alone maps ~4 GB
DEFAULT_OUTPUT_MB = 8.0  # outputs kept in an executed notebook


class GraderError(RuntimeError):
    """The grading run cannot start (not a problem of one submission)."""


@dataclass
class Outcome:
    student: str  # the submission's folder name (the row's student column may be cleaned)
    row: store.Row  # the combined row (the only row when graded on one track)
    timings: Timings = field(default_factory=Timings)  # summed over the tracks
    saved: bool = True  # False: the database was unavailable, the row is pending
    track_rows: list[store.Row] = field(default_factory=list)  # one per track when graded on several
    track_timings: dict[str, Timings] = field(default_factory=dict)  # by track name
    host: str = ""  # the machine and process that graded it
    pid: int = 0
    peak_rss_mb: float = 0.0


def has_submit_cell(notebooks: list[Path]) -> bool:
    """Whether the assignment asks for a submission (a code cell calls ``submit(``)."""
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        if any(c.cell_type == "code" and "submit(" in c.source for c in nb.cells):
            return True
    return False


def _store_url(function, url: str | None) -> dict:
    """``{"url": url}`` when given and the results store takes it (the SQLAlchemy store), else {}."""
    if url is None:
        return {}
    if "url" not in inspect.signature(function).parameters:
        raise GraderError("--db needs the SQLAlchemy results store (autograder.results.store with url=); "
                          "this version stores results in <course>/grades.db only")
    return {"url": url}


class Grader:
    """Grades `assignment` of the course in `course_dir`: stages submissions, has them graded, keeps the results.

    `grade(student)` grades one submission in this process; `grade_all(students, runner)`
    hands the submissions to a runner (`autograder.grading.parallel`, `autograder.grading.cluster`) and
    applies each result as it arrives. Either way only this object writes the course:
    the results store, ``autograded/``, the ledgers and nbgrader's gradebook
    (`autograder.results.gradebook_merge`).
    """

    def __init__(self, course_dir: Path, assignment: str, track: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, memory_gb: float = DEFAULT_MEMORY_GB,
                 limits: sandbox.Limits | None = None, max_output_mb: float = DEFAULT_OUTPUT_MB,
                 tracks: list[str] | None = None, seed: int | None = None, db_url: str | None = None,
                 kernel_threads: int | None = None):
        self.course = layout.Course.open(course_dir)
        # each kernel's torch/OpenMP/BLAS threads (`autograder.sandbox.threads`; None: the kernel's cores); read when
        # the batch's spec is made, so a runner that knows how many kernels share a machine sets it before
        self.kernel_threads = threads.check(kernel_threads)
        self.seed = seed  # the shuffle seed of every track; default: from the assignment's secret (live events pass theirs)
        self.db_url = db_url  # the results store (default: $AUTOGRADER_DB, else <course>/grades.db)
        self._store_kwargs = _store_url(store.save, db_url)
        self.course_dir = self.course.root
        self.assignment = assignment
        self.tracks = tracks_.parse(tracks, track)  # the course track first, then the hidden ones
        self.track = self.tracks[0]
        self.timeout = float(timeout)
        self.memory_gb = float(memory_gb)
        self.limits = limits or sandbox.Limits()
        self.limits.memory_bytes = int(self.memory_gb * 1e9)
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
        self._spec: tasks.GradeSpec | None = None
        self._cleaned_ids: tuple[dict[str, str], dict[str, str]] | None = None  # (row ids, nbgrader ids) by folder
        self._gradebook_students: dict[str, dict] | None = None  # gradebook_merge.students
        self._executor: tasks.Executor | None = None
        self._attempts: dict[str, str] = {}  # student -> the key of the notebook staged for grading (attempts.key)
        self.prepare_seconds: dict[str, float] = {}  # by track: grading data + baseline checkpoint

    def students(self) -> list[str]:
        """Folders in ``submitted/`` that hold this assignment (odd ids included: they get a row)."""
        return self.course.students(self.assignment)

    # --- what travels with every task ---------------------------------------------

    @property
    def spec(self) -> tasks.GradeSpec:
        """The batch's `tasks.GradeSpec` (made once: it reads the secret and builds the gradebook template)."""
        if self._spec is None:
            source = self.course.source_folder(self.assignment)
            files = tuple((str(p.relative_to(source)), safefs.read_bytes(p)) for p in sorted(source.rglob("*"))
                          if p.is_file() and not p.is_symlink() and ".ipynb_checkpoints" not in p.parts)
            seeds = tuple(self.seed if self.seed is not None
                          else secret.seed(self.course.private(), self.assignment, data.track_name(t),
                                           secret.round_key(self.course_dir, self.db_url))  # --db: a round's own
                          for t in self.tracks)
            config_file = self.course_dir / "nbgrader_config.py"
            definition = gradebook_merge.definition(self.course.db_url, self.course.course_id, self.assignment)
            kernel_env = ()
            if os.environ.get(config.ENV_SEED, "").strip():  # benchmarks run the notebooks with other seeds
                kernel_env = ((config.ENV_SEED, str(config.seed())),)  # an int (config.seed() refuses anything else)
            kernel_env += threads.kernel_env(self.kernel_threads)
            self._spec = tasks.GradeSpec(
                assignment=self.assignment, course_id=self.course.course_id, notebooks=tuple(self.notebooks),
                kind=self.kind, tracks=tuple(self.tracks), seeds=seeds, timeout=self.timeout,
                memory_gb=self.memory_gb, limits=self.limits, max_output_bytes=self.max_output_bytes,
                nbgrader_config=config_file.read_bytes() if config_file.is_file() else b"",
                source_files=files, gradebook=gradebook_merge.template(self.course.course_id, definition),
                kernel_env=kernel_env)
        return self._spec

    def row_id(self, student: str) -> str:
        """The student column of `student`'s rows: the real name, never another folder's (`layout.row_ids`)."""
        return self._names(student)[0][student]

    def nbgrader_id(self, student: str) -> str:
        """The id nbgrader grades `student`'s folder under: its name or a stable alias (`layout.nbgrader_ids`)."""
        return self._names(student)[1][student]

    def _names(self, student: str) -> tuple[dict[str, str], dict[str, str]]:
        if self._cleaned_ids is None or student not in self._cleaned_ids[0]:
            folders = set(self.students()) | {student}
            self._cleaned_ids = (layout.row_ids(folders), layout.nbgrader_ids(folders))
        return self._cleaned_ids

    def stage(self, student: str) -> tasks.Submission:
        """Read the student's notebook(s) and timestamp from ``submitted/`` (never through a link)."""
        submission = self._stage(student)
        self._attempts[student] = attempts.key(submission.files)  # the bytes graded: a changed notebook is a new attempt
        if self._gradebook_students is None:  # read once per batch
            self._gradebook_students = gradebook_merge.students(self.course.db_url, self.course.course_id,
                                                                self.assignment)
        record = self._gradebook_students.get(submission.student)
        return dataclasses.replace(submission, row_id=self.row_id(student),
                                   gradebook_student=json.dumps(record, sort_keys=True) if record else "")

    def _stage(self, student: str) -> tasks.Submission:
        graded_as = self.nbgrader_id(student)
        alias = {"student": graded_as, "folder": student} if graded_as != student else {}
        submission = self._read(student)
        if alias:
            notes = (f"graded as {graded_as} (nbgrader cannot take the folder's name)",) + submission.notes
            submission = dataclasses.replace(submission, notes=notes, **alias)
        return submission

    def _read(self, student: str) -> tasks.Submission:
        submitted_root = self.course.root / self.course.submitted
        folder = self.course.submitted_folder(student, self.assignment)
        problem = safefs.problem_in_tree(folder, submitted_root)
        if problem:
            return tasks.Submission(student, problem=(
                f"refused: in submitted/{student}/{self.assignment}/, {problem} "
                "(links and special files are not graded)"))
        present = sorted(p.name for p in folder.glob("*.ipynb"))
        chosen = {name: name for name in self.notebooks if name in present}
        if not chosen and len(self.notebooks) == 1 and len(present) == 1:
            chosen[self.notebooks[0]] = present[0]  # a renamed copy, e.g. "03_clustering (1).ipynb"
        if not chosen:
            return tasks.Submission(student, problem=(f"no notebook in submitted/{student}/{self.assignment}/ "
                                                      f"(expected {', '.join(self.notebooks)})"))
        files = []
        for name, found in chosen.items():
            try:
                raw = safefs.read_bytes(folder / found)
                nbformat.validate(nbformat.reads(raw.decode("utf-8"), as_version=4))
            except Exception as exc:
                return tasks.Submission(student, problem=(
                    f"{found} is not a valid notebook ({type(exc).__name__}: {clean.first_line(exc, 120)})"))
            files.append((name, raw))
        notes, timestamp = [], None
        stamp = folder / "timestamp.txt"
        if os.path.lexists(stamp):
            from nbgrader.utils import parse_utc

            try:
                text = safefs.read_bytes(stamp, limit=200).decode("ascii").strip()
                parse_utc(text)
                timestamp = text
            except Exception:
                notes.append("timestamp.txt ignored (not a date nbgrader reads)")
        return tasks.Submission(student, files=tuple(files), timestamp=timestamp, notes=tuple(notes))

    # --- grading ---------------------------------------------------------------------

    def prepare(self) -> dict[str, float]:
        """Make every track's grading data and baseline checkpoint here now (before any time limit); seconds by track."""
        self.prepare_seconds = self._local().prepare()
        return dict(self.prepare_seconds)

    def _local(self) -> tasks.Executor:
        if self._executor is None:
            self._executor = tasks.Executor(self.spec)
        return self._executor

    def grade(self, student: str) -> Outcome:
        """Grade one student's submission (on every track) in this process and store its rows."""
        return self.apply(self._local().grade(self.stage(student)))

    def grade_all(self, students: Iterable[str], runner=None) -> Iterator[Outcome]:
        """Grade `students` with `runner` (default: here, one after another); yield each outcome once stored."""
        if runner is None:
            for student in students:
                yield self.grade(student)
            return
        for result in runner.run(self.spec, (self.stage(s) for s in students)):
            yield self.apply(result)

    def apply(self, result: tasks.TaskResult) -> Outcome:
        """Keep a graded submission: ledgers, ``autograded/``, nbgrader's gradebook, then its rows (one transaction)."""
        student = result.student  # the nbgrader id: names the folders and gradebook entries (an alias or the name)
        attempt = self._attempts.pop(result.folder or student, None)
        for suffix, text in result.texts.items():
            store.save_ledger(self.course_dir, self.assignment, student, text, suffix=suffix, attempt=attempt)
        first = True
        for name, raw in result.notebooks.items():
            relative = Path(self.course.autograded) / student / self.assignment / name
            safefs.write_bytes(self.course_dir, relative, raw, replace_folder=first)
            first = False
        row, track_rows = tasks.combined(result, self.spec.tracks)
        if result.gradebook is not None:
            try:
                gradebook_merge.apply(self.course.db_url, self.course.course_id, self.assignment, student,
                                      result.gradebook)
            except Exception as exc:  # the row still counts; the points can be regraded
                row = _with_note(row, f"nbgrader's gradebook not updated ({type(exc).__name__}: "
                                      f"{clean.first_line(exc, 120)})")
        timings = result.timings.values()
        total = Timings(*(sum(getattr(t, name) for t in timings) for name in ("prepare", "nbgrader", "finish", "cells")))
        outcome = Outcome(result.folder or student, row, total, track_rows=track_rows, track_timings=dict(result.timings),
                          host=result.host, pid=result.pid, peak_rss_mb=result.peak_rss_mb)
        try:
            store.save(self.course_dir, track_rows + [row], attempt=attempt, **self._store_kwargs)
        except Exception:  # locked for too long: kept as pending, written by a later save
            outcome.saved = False
        return outcome

    def flush_pending(self) -> int:
        return store.flush_pending(self.course_dir, **self._store_kwargs)

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop this process's nbgrader worker and remove its grading data."""
        if self._executor is not None:
            self._executor.close()
            self._executor = None


def _with_note(row: store.Row, note: str) -> store.Row:
    return dataclasses.replace(row, detail=clean.line(f"{row.detail}; {note}", 500))
