"""One batch of `autograder grade`: grade the submissions, one row saved as each ends, resumable.

The command line (`autograder.cli`) checks its arguments, takes the course lock and builds the
`runner.Grader`; this module runs the batch: it resumes an interrupted one (`journal`: the rows
a killed batch saved are kept), prepares every hidden track's data before the first time limit
starts, shows one progress bar and one line per submission, and keeps rows the results store
could not take as pending (written by the next batch).
"""

from __future__ import annotations

import hashlib
import sys

from tqdm.auto import tqdm

from autograder.grading import journal, runner
from autograder.results import clean, store

OK, STOPPED, CANNOT_PREPARE = 0, 1, 2  # what `run` returns: the command's exit status


def settings(assignment: str, grader: runner.Grader, students: list[str], db: str | None) -> dict:
    """What makes two `grade` commands the same batch (a batch journal's key)."""
    return {"assignment": assignment, "students": students, "tracks": [list(t) for t in grader.tracks],
            "timeout": grader.timeout, "memory_gb": grader.memory_gb, "limits": vars(grader.limits),
            "max_output_bytes": grader.max_output_bytes, "db": db,
            "seeds": hashlib.sha256(repr(grader.spec.seeds).encode()).hexdigest()[:16]}


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def run(grader: runner.Grader, assignment: str, students: list[str], backend, db: str | None = None) -> int:
    """Grade `students` on `backend` (None: here, one at a time); `OK` when every row is saved."""
    pending = 0
    try:
        batch = journal.Journal(grader.course.private(journal.NAME), settings(assignment, grader, students, db))
        stored = {r.student: r.graded_at for r in store.load(grader.course_dir, assignment, **({"url": db} if db else {}))}
        kept = [s for s in students if stored.get(grader.row_id(s)) == batch.done.get(s, "-")]
        todo = [s for s in students if s not in kept]
        if kept:
            _say(f"resuming the interrupted batch started {batch.started}: {len(kept)} of {len(students)} "
                 f"submissions already graded (kept), grading the other {len(todo)}")
        if len(grader.tracks) > 1 and backend is None and todo:
            try:  # every track's data and baseline before the first time limit starts
                ready = grader.prepare()
            except Exception as exc:
                _say(f"autograder: cannot prepare the tracks' grading data: {type(exc).__name__}: "
                     f"{clean.first_line(exc)}")
                return CANNOT_PREPARE
            for name, seconds in ready.items():
                _say(f"track {name}: grading data and baseline ready in {seconds:.0f} s")
        bar = tqdm(total=len(students), initial=len(kept), desc=f"grading {assignment}", unit="submission")
        try:
            outcomes = list(_graded(grader, todo, backend, bar, batch))
        except Exception as exc:  # the pool or the cluster broke down: what is saved stays saved
            bar.close()
            _say(f"autograder: grading stopped: {type(exc).__name__}: {clean.first_line(exc)}; "
                 f"{len(batch.done)} of {len(students)} submissions are saved. Run the same command again "
                 "to grade the others.")
            return STOPPED
        pending = sum(not o.saved for o in outcomes)
        bar.close()
        if not pending:
            batch.finish()
    finally:
        grader.close()
        if backend is not None and hasattr(backend, "close"):
            backend.close()
    if pending:
        try:
            grader.flush_pending()
        except store.StoreUnavailable:
            _say(f"autograder: {pending} row(s) could not be written to the results store "
                 f"(locked); they are kept in {grader.course_dir / store.PENDING} and written by the next "
                 "`autograder grade`.")
            return STOPPED
    return OK


def _graded(grader: runner.Grader, todo: list[str], backend, bar, batch: journal.Journal):
    """Grade `todo`, one progress bar and one line per submission; record each saved one in the journal."""
    for outcome in grader.grade_all(todo, backend):
        row = outcome.row
        bar.update(1)
        bar.set_postfix_str(clean.line(row.student, 40))
        if outcome.saved:
            batch.record(outcome.student, row.graded_at)  # the folder's own name: cleaned ids may collide
        bar.write(f"{clean.line(row.student, 60)}: {row.status} ({row.runtime:.0f} s) {clean.line(row.detail)}"
                  + ("" if outcome.saved else " [results database locked: row kept as pending]"))
        for part in outcome.track_rows:
            bar.write(f"    track {part.track}: {'passed' if part.passed else part.status} "
                      f"({part.runtime:.0f} s) {clean.line(part.detail, 120)}")
        yield outcome
