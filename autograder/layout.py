"""Where things are in a course: nbgrader's `CourseDirectory` read from the course's config.

The course's ``nbgrader_config.py`` decides the names of ``source/``,
``submitted/``, ``autograded/`` ... and the gradebook's URL; nothing else in the
grader spells them. The grader's own files live in ``<course>/.autograder/``
(lock, per-assignment secrets; git-ignored, never visible to a kernel).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PRIVATE = ".autograder"
# ids nbgrader's globbing and format strings handle: no glob characters, no blanks, no "$" or "{}"
_STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}")


def student_id_problem(student: str) -> str:
    """'' if nbgrader can grade `student`, else why not (shown in the row)."""
    if _STUDENT_ID.fullmatch(student) and not student.endswith("."):
        return ""
    return ("this student id cannot be graded by nbgrader (allowed: letters, digits and _ . @ + -, "
            "starting with a letter or digit); rename the folder in submitted/")


def _load_config(course_dir: Path):
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = Config()
    if (course_dir / "nbgrader_config.py").is_file():
        config.merge(PyFileConfigLoader("nbgrader_config.py", path=str(course_dir)).load_config())
    return config


@dataclass(frozen=True)
class Course:
    """The folders of one course, as nbgrader would compute them."""

    root: Path
    source: str  # folder names relative to root, from CourseDirectory
    release: str
    submitted: str
    autograded: str
    feedback: str
    db_url: str
    course_id: str

    @classmethod
    def open(cls, course_dir: Path) -> "Course":
        from nbgrader.coursedir import CourseDirectory

        root = Path(course_dir).resolve()
        config = _load_config(root)
        config.CourseDirectory.root = str(root)
        coursedir = CourseDirectory(config=config)
        url = coursedir.db_url
        if url.startswith("sqlite:///") and not os.path.isabs(url[len("sqlite:///"):]):
            url = f"sqlite:///{root / url[len('sqlite:///'):]}"  # relative to the course root
        return cls(root, coursedir.source_directory, coursedir.release_directory,
                   coursedir.submitted_directory, coursedir.autograded_directory,
                   coursedir.feedback_directory, url, coursedir.course_id)

    def folder(self, step: str, student: str, assignment: str) -> Path:
        return self.root / step / student / assignment

    def source_folder(self, assignment: str) -> Path:
        return self.root / self.source / assignment

    def submitted_folder(self, student: str, assignment: str) -> Path:
        return self.folder(self.submitted, student, assignment)

    def private(self, *parts: str) -> Path:
        """``<course>/.autograder/...`` (created 0700)."""
        base = self.root / PRIVATE
        base.mkdir(mode=0o700, exist_ok=True)
        return base.joinpath(*parts)

    def students(self, assignment: str) -> list[str]:
        """Names of the folders that have a ``<assignment>`` folder in ``submitted/`` (links included)."""
        root = self.root / self.submitted
        if not root.is_dir():
            return []
        return sorted(entry.name for entry in os.scandir(root)
                      if os.path.lexists(os.path.join(entry.path, assignment)))


class Gradebook:
    """nbgrader's gradebook of the course."""

    def __init__(self, course: Course):
        self.url, self.course_id = course.db_url, course.course_id

    def _open(self):
        from nbgrader.api import Gradebook as _Gradebook

        return _Gradebook(self.url, self.course_id)

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
