"""Where things are in a course: nbgrader's `CourseDirectory` read from the course's config.

The course's ``nbgrader_config.py`` decides the names of ``source/``,
``submitted/``, ``autograded/`` ... and the gradebook's URL; nothing else in the
grader spells them. The grader's own files live in ``<course>/.autograder/``
(lock, per-assignment secrets; git-ignored, never visible to a kernel).
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from autograder.results import clean

PRIVATE = ".autograder"
# ids nbgrader's globbing and format strings handle: no glob characters, no blanks, no "$" or "{}"
_STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}")
ALIAS_SLUG_CHARS = 32  # the readable part of an alias: the folder name folded to ASCII
ALIAS_HASH_CHARS = 16  # then "-" and this many hex digits of the name's SHA-256 (more only if two aliases meet)
_ALIAS = re.compile(r".*-[0-9a-f]{%d,64}" % ALIAS_HASH_CHARS)  # what an alias looks like: no folder keeps such a name
ROW_ID_CHARS = 200  # the student column of a row
ESCAPED_HASH_CHARS = 16  # an escaped row id ends with " /" and this many hex digits of the name's SHA-256


def student_id_problem(student: str) -> str:
    """'' if nbgrader can grade `student`, else why not (a folder named so is graded under an alias,
    `nbgrader_ids`)."""
    if _STUDENT_ID.fullmatch(student) and not student.endswith("."):
        return ""
    return ("this student id cannot be graded by nbgrader (allowed: letters, digits and _ . @ + -, "
            "starting with a letter or digit)")


def _digest(name: str) -> str:
    return hashlib.sha256(os.fsencode(name)).hexdigest()  # fsencode: a name of undecodable bytes too


def _slug(name: str) -> str:
    """`name` folded to the characters nbgrader takes ('José Ñ' -> 'Jose-N'), starting with a letter or digit."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9_.@+-]+", "-", ascii_)
    slug = re.sub(r"^[^A-Za-z0-9]+", "", slug)[:ALIAS_SLUG_CHARS].rstrip("-")
    return slug or "student"


def nbgrader_ids(folders: Iterable[str]) -> dict[str, str]:
    """The id nbgrader grades each folder of ``submitted/`` under: its own name, or an alias.

    A name nbgrader cannot take (a blank, accents, CJK, a leading ``-``, ``$``, a newline, more than
    128 characters ...) is graded as ``<its ASCII slug>-<16 hex digits of its SHA-256>``: stable (the
    same name, the same alias, in every batch), accepted by nbgrader, and never another folder's id: a
    folder whose own name looks like an alias gets an alias too, and two aliases that meet (a 64-bit
    coincidence) get more digits. The alias names its gradebook entries and its ``autograded/`` and
    ``ledgers/`` folders; rows show the real name (`row_ids`).
    """
    names = sorted(set(folders))
    ids = {f: f for f in names if not student_id_problem(f) and not _ALIAS.fullmatch(f)}
    taken = set(ids.values())
    for name in names:
        if name in ids:
            continue
        digest = _digest(name)
        alias = next(a for n in (ALIAS_HASH_CHARS, 24, 32, 64)
                     if (a := f"{_slug(name)}-{digest[:n]}") not in taken or n == 64)
        ids[name] = alias
        taken.add(alias)
    return ids


# scripts that one person's name may mix (Japanese writes kanji with kana); any other mix is a lookalike risk
_ONE_SCRIPT = {"CJK": "CJK", "HIRAGANA": "CJK", "KATAKANA": "CJK"}


def _scripts(name: str) -> set[str]:
    """The scripts of the letters of `name`, by the first word of their Unicode names ('LATIN', 'CYRILLIC')."""
    found = set()
    for char in name:
        if char.isalpha():
            script = unicodedata.name(char, "UNKNOWN").split()[0]
            found.add(_ONE_SCRIPT.get(script, script))
    return found


def row_id(folder: str) -> str:
    """The student column of a folder's rows: its real name when that reads as exactly one name, else escaped.

    The id depends on the name alone, never on which other folders a batch sees: the store files
    attempts under it, so an id that a later folder could own would hand that student someone else's
    attempts ('carol' + a zero-width space, cleaned to 'carol' while no 'carol' was there, made the
    real carol's first counted attempt the attacker's). A name is its own id when cleaning leaves it
    as it is (accents, CJK and inner blanks included), it is in Unicode's composed form (NFC), and its
    letters are of one script (a Cyrillic 'а' in a Latin name reads as 'alice'). Any other name is
    shown escaped (Python's repr: the blank, control or lookalike character visible) and ends with
    `` /<hash>``: a folder name never holds "/", so no folder's own id can be it.
    """
    lookalike = not unicodedata.is_normalized("NFC", folder) or len(_scripts(folder)) > 1
    if clean.line(folder, ROW_ID_CHARS) == folder and not lookalike:
        return folder
    suffix = f" /{_digest(folder)[:ESCAPED_HASH_CHARS]}"
    shown = ascii(folder) if lookalike else repr(folder)  # a lookalike letter shown as its code point
    return clean.text(shown, ROW_ID_CHARS - len(suffix), keep_newlines=False) + suffix


def row_ids(folders: Iterable[str]) -> dict[str, str]:
    """`row_id` of each folder (the same for a folder in every batch)."""
    return {folder: row_id(folder) for folder in set(folders)}


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
