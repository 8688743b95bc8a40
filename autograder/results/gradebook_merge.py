"""nbgrader's gradebook when several submissions are graded at once: private copies, one writer.

nbgrader's gradebook is one SQLite file and not safe for concurrent writers, and a
grading machine of a cluster has no course folder at all. So every graded run
writes into a gradebook of its own, and only the one ``autograder grade`` process
writes the course's gradebook:

1. `definition` reads the assignment's definition from the course gradebook
   (notebooks, grade/solution/task/source cells, due date: what
   ``nbgrader generate_assignment`` wrote) and `template` builds a fresh SQLite
   gradebook holding only it (no student, no other assignment) - its bytes travel
   with the task;
2. each run gets its own copy of the template in its private folder, with the
   student's own entries of the course gradebook when there are any (`students`:
   the student row, and the extension of the assignment's due date, which nbgrader's
   late penalty counts from; `add_student` writes them), and nbgrader autogrades
   against it;
3. `export_submission` reads what nbgrader wrote for the student (timestamp, auto
   scores, auto comments, late penalties) and `apply` replays it into the course
   gradebook through nbgrader's own API, in the grading process, one submission
   at a time, with nbgrader's own rule: a grade with a manual score keeps it and is
   marked for manual review.

The same path serves one submission at a time, ``--jobs N`` and a Dask cluster.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import sqlite3
import sys
import tempfile
import warnings
from pathlib import Path


def _gradebook(url: str, course_id: str):
    from nbgrader.api import Gradebook

    scripts = str(Path(sys.executable).parent)  # nbgrader runs `alembic` by name when it creates a gradebook
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join(p for p in (scripts, os.environ.get("PATH")) if p)
    return Gradebook(url, course_id)


@functools.lru_cache(maxsize=1)
def alembic_head() -> str:
    """The schema revision nbgrader stamps on a new gradebook, read in this process.

    nbgrader asks a subprocess (``alembic heads``) for it each time it creates a gradebook:
    3 s on an idle machine, over 10 s on a busy one, for a constant of the installed nbgrader.
    """
    import nbgrader
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    settings = Config()
    settings.set_main_option("script_location", str(Path(nbgrader.__file__).parent / "alembic"))
    return ScriptDirectory.from_config(settings).get_current_head()


def stamp(path: Path) -> None:
    """Create the SQLite file `path` stamped with nbgrader's schema revision, so that nbgrader
    finds a database and only creates its tables (without its ``alembic`` subprocess)."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        db.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (alembic_head(),))
    db.close()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def definition(db_url: str, course_id: str, assignment: str) -> dict:
    """What ``generate_assignment`` stored about `assignment` (JSON-able)."""
    with _gradebook(db_url, course_id) as gb:
        found = gb.find_assignment(assignment)
        notebooks = []
        for nb in found.notebooks:
            notebooks.append({
                "name": nb.name, "kernelspec": nb.kernelspec,
                "grade_cells": [{"name": c.name, "max_score": c.max_score, "cell_type": c.cell_type}
                                for c in nb.grade_cells],
                "solution_cells": [c.name for c in nb.solution_cells],
                "task_cells": [{"name": c.name, "max_score": c.max_score, "cell_type": c.cell_type}
                               for c in nb.task_cells],
                "source_cells": [{"name": c.name, "cell_type": c.cell_type, "locked": c.locked,
                                  "source": c.source, "checksum": c.checksum} for c in nb.source_cells],
            })
        return {"name": found.name, "duedate": found.duedate.isoformat() if found.duedate else None,
                "notebooks": notebooks}


def template(course_id: str, assignment: dict) -> bytes:
    """A fresh SQLite gradebook holding only `assignment` (a `definition`), as bytes."""
    with tempfile.TemporaryDirectory(prefix="autograder-gradebook-") as tmp:
        path = Path(tmp) / "gradebook.db"
        stamp(path)
        with _gradebook(sqlite_url(path), course_id) as gb:
            gb.update_or_create_assignment(assignment["name"], duedate=assignment["duedate"])
            for nb in assignment["notebooks"]:
                gb.update_or_create_notebook(nb["name"], assignment["name"], kernelspec=nb["kernelspec"])
                for cell in nb["grade_cells"]:
                    gb.update_or_create_grade_cell(cell["name"], nb["name"], assignment["name"],
                                                   max_score=cell["max_score"], cell_type=cell["cell_type"])
                for name in nb["solution_cells"]:
                    gb.update_or_create_solution_cell(name, nb["name"], assignment["name"])
                for cell in nb["task_cells"]:
                    gb.update_or_create_task_cell(cell["name"], nb["name"], assignment["name"],
                                                  max_score=cell["max_score"], cell_type=cell["cell_type"])
                for cell in nb["source_cells"]:
                    gb.update_or_create_source_cell(cell["name"], nb["name"], assignment["name"],
                                                    cell_type=cell["cell_type"], locked=cell["locked"],
                                                    source=cell["source"], checksum=cell["checksum"])
        return path.read_bytes()


STUDENT_FIELDS = ("first_name", "last_name", "email", "lms_user_id")


def students(db_url: str, course_id: str, assignment: str) -> dict[str, dict]:
    """What the course gradebook holds about each student beyond the id (JSON-able), for the runs'
    copies: the `STUDENT_FIELDS` set and ``extension_s``, the extension of `assignment`'s due date
    in seconds. Students with nothing but an id are left out."""
    from nbgrader.api import Student, SubmittedAssignment

    with _gradebook(db_url, course_id) as gb:
        found: dict[str, dict] = {}
        for student in gb.db.query(Student).all():
            fields = {k: getattr(student, k) for k in STUDENT_FIELDS if getattr(student, k) is not None}
            if fields:
                found[student.id] = fields
        for submission in gb.db.query(SubmittedAssignment).all():
            if submission.assignment.name == assignment and submission.extension is not None:
                found.setdefault(submission.student.id, {})["extension_s"] = submission.extension.total_seconds()
        return found


def add_student(db_url: str, course_id: str, assignment: str, student: str, record: dict) -> None:
    """Write a `students` record into a run's gradebook copy before nbgrader autogrades there."""
    with _gradebook(db_url, course_id) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gb.update_or_create_student(student, **{k: record[k] for k in STUDENT_FIELDS if k in record})
        if record.get("extension_s") is not None:
            submission = gb.update_or_create_submission(assignment, student)
            submission.extension = _dt.timedelta(seconds=float(record["extension_s"]))
            gb.db.commit()


def score(db_url: str, course_id: str, assignment: str, student: str) -> tuple[float | None, float | None]:
    """(score, max_score) of the student's submission in a gradebook, or (None, None)."""
    from nbgrader.api import MissingEntry

    with _gradebook(db_url, course_id) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return None, None
        return float(submission.score), float(submission.max_score)


def export_submission(db_url: str, course_id: str, assignment: str, student: str) -> dict | None:
    """What nbgrader wrote for `student` in a run's own gradebook (None: nothing, it stopped before)."""
    from nbgrader.api import MissingEntry

    with _gradebook(db_url, course_id) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return None
        notebooks = {}
        for nb in submission.notebooks:
            notebooks[nb.name] = {
                "late_submission_penalty": nb.late_submission_penalty,
                "grades": {g.name: g.auto_score for g in nb.grades},
                "comments": {c.name: c.auto_comment for c in nb.comments},
            }
        stamp = submission.timestamp.isoformat() if submission.timestamp else None
        return {"timestamp": stamp, "notebooks": notebooks}


def apply(db_url: str, course_id: str, assignment: str, student: str, exported: dict) -> None:
    """Replay an `export_submission` into the course gradebook (one commit)."""
    with _gradebook(db_url, course_id) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbgrader's add_submission trips SQLAlchemy's autoflush warnings
        gb.update_or_create_student(student)
        extra = {"timestamp": exported["timestamp"]} if exported.get("timestamp") else {}
        gb.update_or_create_submission(assignment, student, **extra)
        for name, nb in exported["notebooks"].items():
            notebook = gb.find_submission_notebook(name, assignment, student)
            notebook.late_submission_penalty = nb["late_submission_penalty"]
            for cell, auto_score in nb["grades"].items():
                grade = gb.find_grade(cell, name, assignment, student)
                grade.auto_score = auto_score
                # nbgrader's rule (SaveAutoGrades): a manual score stays and asks for review
                grade.needs_manual_grade = grade.manual_score is not None or auto_score is None
            for cell, auto_comment in nb["comments"].items():
                gb.find_comment(cell, name, assignment, student).auto_comment = auto_comment
        gb.db.commit()
