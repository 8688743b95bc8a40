"""``autograder verify``: re-run the winners' notebooks in the sandboxed grader on the event's data.

A live board shows what participants' kernels sent; those kernels ran on their own
machines. Verification takes the top N of the live ranking, finds each one's notebook
(collected by the instructor in ``--notebooks DIR``, else the last one the participant
uploaded with `course.event.upload`), and grades it with `autograder.runner.Grader` on a
throw-away copy of the instructor's course: the same track and the same shuffle seed as the
event's pool, so the same pool indices, the same labels and the same private test images.
An honest notebook makes the same counted submission again: the same number of annotations
and the same accuracy (up to `TOLERANCE`, when its training is not bit-for-bit reproducible).
Each result is stored in the event store (the admin page and the board show it):

- ``verified``: the same annotation count, the same pass/fail, the accuracy within the tolerance;
- ``differs``: they do not (or the re-run made no counted submission): the board shows both;
- ``missing``: no notebook was found for this participant.

Collected notebooks: ``DIR/<name>.ipynb`` with the participant's name as they joined, or
its safe form (``ada-lovelace.ipynb``), or a folder ``DIR/<name>/`` holding one notebook.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from autograder.event import store as store_module
from course import config

TOLERANCE = 0.005  # accuracy: a re-run of honest code whose training is not bit-for-bit reproducible
# (threads, a different CPU) may move a little; the annotation count and pass/fail must match exactly
COPY_SKIP = ("submitted", "autograded", "feedback", "ledgers", "grades.db", "grades.db-wal", "grades.db-shm",
             ".ipynb_checkpoints")


class VerifyError(Exception):
    """Verification cannot start (an unknown event, a course without the event's assignment)."""


@dataclass
class Check:
    """One participant's verification, as stored and printed."""

    participant: int
    name: str
    display: str
    rank: int
    status: str  # verified, differs, missing
    live_accuracy: float | None
    live_annotations: int | None
    accuracy: float | None = None
    annotations: int | None = None
    grader_status: str | None = None
    detail: str = ""
    source: str | None = None

    def line(self) -> str:
        live = f"live {_pct(self.live_accuracy)} with {self.live_annotations}"
        if self.status == "missing":
            return f"#{self.rank} {self.name} ({self.display}): MISSING - {self.detail}"
        again = ("re-run: no counted submission" if self.accuracy is None
                 else f"re-run {_pct(self.accuracy)} with {self.annotations}")
        word = "verified" if self.status == "verified" else "DIFFERS"
        return f"#{self.rank} {self.name} ({self.display}): {word} - {live}, {again} ({self.source}). {self.detail}"


def _pct(value: float | None) -> str:
    return "no submission" if value is None else f"{value:.2%}"


def safe_id(pid: int, name: str) -> str:
    """A student id nbgrader accepts, unique per participant: ``p12-ada-lovelace``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:40].strip("-")
    return f"p{pid}-{slug}" if slug else f"p{pid}"


def slug(name: str) -> str:
    return safe_id(0, name)[3:]


def collected(folder: Path, name: str) -> Path | None:
    """The notebook the instructor collected for `name` in `folder`, or None."""
    for candidate in (folder / f"{name}.ipynb", folder / f"{slug(name)}.ipynb"):
        if candidate.is_file():
            return candidate
    for sub in (folder / name, folder / slug(name)):
        if sub.is_dir():
            found = sorted(sub.glob("*.ipynb"))
            if len(found) == 1:
                return found[0]
    return None


def compare(live_accuracy: float, live_annotations: int, accuracy: float | None,
            annotations: int | None, tolerance: float = TOLERANCE) -> tuple[str, str]:
    """(status, what differs) of a re-run against the live counted submission.

    Verified: the same annotation count, the same pass/fail, and an accuracy within `tolerance`.
    """
    if accuracy is None or annotations is None:
        return "differs", "the re-run made no counted submission."
    problems = []
    if annotations != live_annotations:
        problems.append(f"annotations {live_annotations} live, {annotations} in the re-run")
    target = config.TARGET_ACCURACY
    if (accuracy >= target) != (live_accuracy >= target):
        problems.append(f"{'passed' if live_accuracy >= target else 'failed'} live, "
                        f"{'passed' if accuracy >= target else 'failed'} in the re-run")
    if abs(accuracy - live_accuracy) > tolerance:
        problems.append(f"accuracy {live_accuracy:.2%} live, {accuracy:.2%} in the re-run "
                        f"(more than the tolerance of {tolerance:.2%})")
    if problems:
        return "differs", "; ".join(problems) + "."
    if accuracy != live_accuracy:
        return "verified", (f"accuracy {live_accuracy:.2%} live, {accuracy:.2%} in the re-run: within the "
                            f"tolerance of {tolerance:.2%}.")
    return "verified", ""


def throwaway_course(course_dir: Path, into: Path) -> Path:
    """A copy of the instructor's course without its submissions and results, grading into itself."""
    from autograder import layout

    course = layout.Course.open(course_dir)
    target = into / "course"
    skip = set(COPY_SKIP) | {course.submitted, course.autograded, course.feedback}
    shutil.copytree(course.root, target, symlinks=True,
                    ignore=lambda folder, names: [n for n in names if Path(folder) == course.root and n in skip
                                                  or n == ".ipynb_checkpoints"])
    url = course.db_url
    local = target / "verify-gradebook.db"
    if url.startswith("sqlite:///") and Path(url[len("sqlite:///"):]).is_file():
        shutil.copyfile(url[len("sqlite:///"):], local)  # the gradebook may live outside the course folder
    with open(target / "nbgrader_config.py", "a") as config:  # never the instructor's gradebook
        config.write(f"\n# autograder verify: a throw-away copy\nc.CourseDirectory.db_url = 'sqlite:///{local}'\n")
    return target


def verify(db: str, code: str, course_dir: Path, top: int, notebooks: Path | None = None,
           timeout: float | None = None, tolerance: float = TOLERANCE, log=print) -> list[Check]:
    """Verify the top `top` of event `code`'s live ranking; stores and returns one `Check` each."""
    from autograder import runner

    events = store_module.Store(db)
    event = events.event(code)
    if event is None:
        raise VerifyError(f"there is no event {code} in {events.url}; pass the event store with --db.")
    course_dir = Path(course_dir).resolve()
    if not (course_dir / "nbgrader_config.py").is_file():
        raise VerifyError(f"{course_dir} is not an nbgrader course (no nbgrader_config.py); pass --course DIR.")
    if notebooks is not None and not Path(notebooks).is_dir():
        raise VerifyError(f"--notebooks {notebooks} is not a folder.")
    ranked = [r for r in store_module.rank(events.standings(code)) if r["rank"] is not None][:max(0, top)]
    if not ranked:
        log(f"event {code}: no counted submission yet, nothing to verify.")
        return []
    checks: list[Check] = []
    staged: dict[str, Check] = {}
    with tempfile.TemporaryDirectory(prefix="autograder-verify-") as tmp:
        copy = throwaway_course(course_dir, Path(tmp))
        from autograder import layout

        source = layout.Course.open(copy).source_folder(event.assignment)
        names = sorted(p.name for p in source.glob("*.ipynb")) if source.is_dir() else []
        if not names:
            raise VerifyError(f"the course in {course_dir} has no notebook for the event's assignment "
                              f"{event.assignment!r} (looked in {source}); pass the course the event was made for.")
        for r in ranked:
            check = Check(r["id"], r["name"], r["display"], r["rank"], "missing", r["accuracy"], r["annotations"])
            checks.append(check)
            path = collected(Path(notebooks), r["name"]) if notebooks is not None else None
            content = path.read_bytes() if path is not None else events.notebook(r["id"])
            if content is None:
                check.detail = ("no notebook: the participant uploaded none (course.event.upload) and "
                                + (f"{Path(notebooks) / (slug(r['name']) + '.ipynb')} does not exist."
                                   if notebooks is not None else "no --notebooks folder was given."))
                continue
            check.source = path.name if path is not None else "upload"
            student = safe_id(r["id"], r["name"])
            folder = copy / "submitted" / student / event.assignment
            folder.mkdir(parents=True)
            (folder / names[0]).write_bytes(content)
            staged[student] = check
        if staged:
            kwargs = {"track": event.track_name, "seed": int(event.seed)}
            if timeout is not None:
                kwargs["timeout"] = timeout
            if "db_url" in inspect.signature(runner.Grader).parameters:
                kwargs["db_url"] = f"sqlite:///{copy / 'grades.db'}"
            saved_env = os.environ.pop("AUTOGRADER_DB", None)  # the rows go into the copy, never a real store
            try:
                try:
                    grader = runner.Grader(copy, event.assignment, **kwargs)
                except runner.GraderError as exc:
                    raise VerifyError(f"cannot grade {event.assignment!r} in {course_dir}: {exc}") from None
                with grader:
                    for student, check in staged.items():
                        log(f"re-running #{check.rank} {check.name} ({check.source}) ...")
                        row = grader.grade(student).row
                        check.accuracy, check.annotations = row.accuracy, row.annotations
                        check.grader_status = row.status
                        check.status, check.detail = compare(check.live_accuracy, check.live_annotations,
                                                             row.accuracy, row.annotations, tolerance)
                        if check.status == "differs" and row.status != "ok":
                            check.detail += f" The grader: {row.status}, {row.detail}"
            finally:
                if saved_env is not None:
                    os.environ["AUTOGRADER_DB"] = saved_env
    for check in checks:
        events.save_verification(check.participant, check.status, accuracy=check.accuracy,
                                 annotations=check.annotations, live_accuracy=check.live_accuracy,
                                 live_annotations=check.live_annotations, grader_status=check.grader_status,
                                 detail=check.detail, source=check.source)
        log(check.line())
    events.dispose()
    return checks
