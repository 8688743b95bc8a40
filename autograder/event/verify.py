"""``autograder verify``: re-run the winners' notebooks in the sandboxed grader on the event's data.

A live board shows what participants' kernels sent; those kernels ran on their own
machines. Verification takes the top N of the live ranking, finds each one's notebook
(collected by the instructor in ``--notebooks DIR``, else the last one the participant
uploaded with `course.event.upload`), and grades it with `autograder.grading.runner.Grader` on a
throw-away copy of the instructor's course: the same track and the same shuffle seed as the
event's pool, so the same pool indices, the same labels and the same private test images.
An honest notebook makes the same counted submission again: the same number of annotations
and the same accuracy (up to `TOLERANCE`, when its training is not bit-for-bit reproducible).

That alone would certify a memorised notebook: a table of the event track's MNIST test images
(image hash -> digit, made at home from public MNIST) reproduces its live 100% with 1 annotation
on the event's own data. So a notebook that verifies there is graded once more on a **hidden
track** (``hidden_track``, by default `default_hidden_track` of the event's track, never a pair
sharing a digit with it): the notebooks name no digits, so an honest method passes a similar pair
with about as many annotations, and a memorised one does not (`hidden_compare`). Each result is
stored in the event store (the admin page and the board show it):

- ``verified``: the same annotation count, the same pass/fail, the accuracy within the tolerance,
  and a pass on the hidden track with nothing to review under the rule of ``autograder grade
  --tracks`` (`decide`, `autograder.grading.tracks.reviews`): no pass with 0 annotations, no counts far
  apart, no track's own review (e.g. a notebook carrying far more than a method needs). What ranks
  a verified entry is its hidden track's count (`standings`, printed at the end): the event's track
  is known in advance, so what a table of its images saves there buys no rank;
- ``differs``: the re-run on the event's data does not match the live submission (or made no
  counted submission): the board shows both;
- ``review``: it matches, but the notebook fails on the hidden track, or `decide` finds something to
  review (a pass with 0 annotations is never verified): read the notebook. The board says why without naming the
  hidden track; the admin page gives its numbers;
- ``missing``: no notebook was found for this participant.

Collected notebooks (`collected`): ``DIR/p<id>-<slug>.ipynb`` (`safe_id`, unique per participant),
else ``DIR/<name>.ipynb`` with the name they joined with, or its safe form (``ada-lovelace.ipynb``),
or a folder of one of these names holding one notebook. A join name is free text, so a name is
only ever a file name strictly inside DIR (one with a separator, ``..`` or a control character
is never looked up), and a name or safe form that two participants share (``Ada Lovelace`` and
``ADA LOVELACE``; or another participant's ``p<id>-...``) verifies neither of them: that file is
reported as ambiguous, to be renamed to its owner's ``p<id>-<slug>.ipynb``.
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
from autograder.grading import tracks
from autograder.grading.tracks import REVIEW_RATIO, far_apart  # one rule for hidden tracks (`decide`)
from course import config

TOLERANCE = 0.005  # accuracy: a re-run of honest code whose training is not bit-for-bit reproducible
# (threads, a different CPU) may move a little; the annotation count and pass/fail must match exactly
HIDDEN_TRACKS = {"7,1": "2,5", "2,5": "7,1", "3,8": "2,5", "6,0": "2,5", "4,9": "3,5", "3,5": "4,9",
                 "2,7": "6,0", "5,8": "4,9"}  # a pair rated about as hard (README, "How to choose hidden tracks")
FALLBACK_HIDDEN = ("2,5", "6,0", "7,1", "3,8")  # else the first of these sharing no digit with the event's track
NO_HIDDEN = "none"  # --hidden-track none: the event's track only (a memorised notebook then verifies)
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
    status: str  # verified, differs, review, missing
    live_accuracy: float | None
    live_annotations: int | None
    accuracy: float | None = None
    annotations: int | None = None
    grader_status: str | None = None
    detail: str = ""
    source: str | None = None
    hidden_track: str | None = None  # set when the notebook was re-run on a hidden track too
    hidden_accuracy: float | None = None
    hidden_annotations: int | None = None

    def line(self) -> str:
        live = f"live {_pct(self.live_accuracy)} with {self.live_annotations}"
        if self.status == "missing":
            return f"#{self.rank} {self.name} ({self.display}): MISSING - {self.detail}"
        again = ("re-run: no counted submission" if self.accuracy is None
                 else f"re-run {_pct(self.accuracy)} with {self.annotations}")
        if self.hidden_track is not None:
            again += (f"; hidden track {self.hidden_track}: "
                      + ("no counted submission" if self.hidden_accuracy is None
                         else f"{_pct(self.hidden_accuracy)} with {self.hidden_annotations}"))
        word = {"verified": "verified", "review": "REVIEW"}.get(self.status, "DIFFERS")
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


MAX_FILE_NAME = 200  # bytes of a name used as a file name (the file system's limit is 255 with ".ipynb")


def plain_name(name: str) -> bool:
    """Whether `name` can only name a file strictly inside the folder: no separator, not '.' or '..', no
    control character, not hidden; a join name is free text (``../collected/ada-lovelace`` is a valid one)."""
    seps = {"/", "\\", os.sep, *((os.altsep,) if os.altsep else ())}
    return (bool(name) and name == name.strip() and not name.startswith(".") and name.isprintable()
            and not any(sep in name for sep in seps) and len(name.encode("utf-8", "replace")) <= MAX_FILE_NAME)


def _keys(name: str) -> list[str]:
    """The file names (without .ipynb) a participant's join name may be collected under: the name, its safe form."""
    keys = [name] if plain_name(name) else []
    safe = slug(name)
    return keys + [safe] if safe and safe not in keys else keys


def collected(folder: Path, pid: int, name: str, everyone: dict[int, str] | None = None) -> tuple[Path | None, str]:
    """(the notebook the instructor collected in `folder` for participant `pid` joined as `name`, or None; a note
    on a candidate that was refused as ambiguous, else "").

    The unique ``p<id>-<slug>`` form (`safe_id`) comes first; then the join name and its safe form, each only
    when no other participant of `everyone` ({id: join name}, the whole event) maps to it too (compared
    case-insensitively, as some file systems do), and never a name that is another participant's `safe_id`.
    """
    folder = Path(folder)
    everyone = dict(everyone or {})
    everyone[pid] = name
    claims: dict[str, set[int]] = {}
    for other, other_name in everyone.items():
        claims.setdefault(safe_id(other, other_name).casefold(), set()).add(other)
        for key in _keys(other_name):
            claims.setdefault(key.casefold(), set()).add(other)
    own = safe_id(pid, name)
    usable, shared = [own], []
    for key in _keys(name):
        (usable if claims[key.casefold()] == {pid} else shared).append(key)

    def found(key: str) -> Path | None:
        file, sub = folder / f"{key}.ipynb", folder / key
        if file.is_file():
            return file
        if sub.is_dir():
            inside = sorted(sub.glob("*.ipynb"))
            return inside[0] if len(inside) == 1 else None
        return None

    for key in usable:
        path = found(key)
        if path is not None:
            return path, ""
    notes = []
    for key in shared:
        path = found(key)
        if path is not None:
            owners = sorted(claims[key.casefold()])
            forms = " or ".join(f"{safe_id(o, everyone[o])}.ipynb" for o in owners)
            notes.append(f"ambiguous: {path} could be the notebook of {len(owners)} participants "
                         f"({', '.join(repr(everyone[o]) for o in owners)}), so it verifies none of them: rename "
                         f"it to {forms}, whichever it is, and verify again.")
    return None, " ".join(notes)


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


def default_hidden_track(track: tuple[int, ...] | str) -> str:
    """The hidden track for an event on `track`: a pair about as hard, sharing no digit with it."""
    from course import data

    digits = data.parse_track(track)
    name = data.track_name(digits)
    if name in HIDDEN_TRACKS:
        return HIDDEN_TRACKS[name]
    return next(t for t in FALLBACK_HIDDEN if not set(data.parse_track(t)) & set(digits))


def hidden_track_for(event_track: tuple[int, ...], hidden: str | None) -> str | None:
    """The hidden track to re-run on (`hidden`, else the default), or None for ``none``; VerifyError if it
    shares a digit with the event's track (a memorised table would still label half of it)."""
    from course import data

    if hidden is not None and hidden.strip().lower() == NO_HIDDEN:
        return None
    if hidden is None:
        return default_hidden_track(event_track)
    try:
        digits = data.parse_track(hidden)
    except Exception as exc:
        raise VerifyError(f"--hidden-track {hidden!r}: {exc}") from None
    shared = sorted(set(digits) & set(event_track))
    if shared:
        raise VerifyError(f"--hidden-track {data.track_name(digits)} shares digit {shared[0]} with the event's track "
                          f"{data.track_name(event_track)}; take a pair of other digits, e.g. "
                          f"{default_hidden_track(event_track)} (or `none` to skip the hidden track).")
    return data.track_name(digits)


def _row(track: str, accuracy: float | None, annotations: int | None, review: str = "") -> "store.Row":
    """One track's numbers as the grader's row (what `tracks.reviews` reads)."""
    from autograder.results import store

    passed = accuracy is not None and accuracy >= config.TARGET_ACCURACY
    return store.Row("", "", track, accuracy, annotations, passed, None, None, "ok", "", 0.0, "", review=review,
                     level="track")


def decide(event_row: "store.Row", hidden_row: "store.Row", hidden_status: str | None = None) -> tuple[str, str]:
    """(status, why) of a notebook whose re-run on the event's track matched the live submission (`event_row`),
    graded once more on a hidden track (`hidden_row`): the rule of ``autograder grade --tracks``.

    Review when it makes no counted submission there or fails there (a method of this course works on any pair),
    or when `tracks.reviews` finds anything on the two tracks: a pass with 0 annotations, counts far apart
    (`REVIEW_RATIO`, `REVIEW_SLACK`), a track's own review (e.g. a notebook carrying far more than a method needs).
    Else verified, and what ranks it is the hidden track's count: the event's track is known in advance, so a
    count paid there buys no rank (`standings`).
    """
    target = config.TARGET_ACCURACY
    hidden_track = hidden_row.track
    if hidden_row.accuracy is None or hidden_row.annotations is None:
        return "review", (f"the notebook made no counted submission on a hidden track ({hidden_track})"
                          + (f" (the grader: {hidden_status})" if hidden_status else "")
                          + ": a method of this course works on any pair of digits; read the notebook.")
    if hidden_row.accuracy < target:
        return "review", (f"it fails on a hidden track ({hidden_track}: {hidden_row.accuracy:.2%} with "
                          f"{hidden_row.annotations} annotations, under {target:.0%}): an honest method passes a "
                          "similar pair, one that knows the event's digits (e.g. a table of memorised labels) does "
                          "not; read the notebook.")
    notes = tracks.reviews([event_row, hidden_row])
    if tracks.far_apart(min(event_row.annotations or 0, hidden_row.annotations),
                        max(event_row.annotations or 0, hidden_row.annotations)):
        notes.insert(0, f"{event_row.annotations} annotations on the event's track but {hidden_row.annotations} on "
                        f"a hidden track ({hidden_track}), more than {REVIEW_RATIO}x: the notebook may know the "
                        "event's digits (e.g. a table of memorised labels, an honest method for the rest)")
        notes = [n for n in notes if not n.startswith("annotations per track far apart")]
    if notes:
        text = "; ".join(notes)
        return "review", text + ("." if text.endswith("read the notebook") else "; read the notebook.")
    return "verified", (f"hidden track {hidden_track}: passed, {hidden_row.accuracy:.2%} with "
                        f"{hidden_row.annotations} annotations (what ranks it: the event's track is known in "
                        "advance, its count buys no rank).")


def hidden_compare(annotations: int, hidden_track: str, hidden_accuracy: float | None,
                   hidden_annotations: int | None, hidden_status: str | None = None) -> tuple[str, str]:
    """`decide` on bare numbers: a matched passing re-run with `annotations` on the event's track."""
    return decide(_row("event", 1.0, annotations), _row(hidden_track, hidden_accuracy, hidden_annotations),
                  hidden_status)


def standings(checks: list[Check]) -> list[Check]:
    """The verified entries in the order that counts: the fewest annotations on the hidden track, then its
    higher accuracy (`tracks.ranked_parts`: the event's track buys no rank), then the live rank."""
    done = [c for c in checks if c.status == "verified" and c.hidden_annotations is not None]
    return sorted(done, key=lambda c: (c.hidden_annotations, -(c.hidden_accuracy or 0.0), c.rank))


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


def _grade(copy: Path, assignment: str, track: str, seed: int, students: list[str], timeout: float | None,
           course_dir: Path, log, names: dict[str, str]) -> dict:
    """Grade `students` of the throw-away course on `track` with shuffle `seed`: {student: the grader's row}."""
    from autograder.grading import runner

    kwargs: dict = {"track": track, "seed": seed}
    if timeout is not None:
        kwargs["timeout"] = timeout
    if "db_url" in inspect.signature(runner.Grader).parameters:
        kwargs["db_url"] = f"sqlite:///{copy / 'grades.db'}"
    saved_env = os.environ.pop("AUTOGRADER_DB", None)  # the rows go into the copy, never a real store
    rows = {}
    try:
        try:
            grader = runner.Grader(copy, assignment, **kwargs)
        except runner.GraderError as exc:
            raise VerifyError(f"cannot grade {assignment!r} in {course_dir}: {exc}") from None
        with grader:
            for student in students:
                log(f"re-running {names[student]} on track {track} ...")
                rows[student] = grader.grade(student).row
    finally:
        if saved_env is not None:
            os.environ["AUTOGRADER_DB"] = saved_env
    return rows


def verify(db: str, code: str, course_dir: Path, top: int, notebooks: Path | None = None,
           timeout: float | None = None, tolerance: float = TOLERANCE, log=print,
           hidden_track: str | None = None) -> list[Check]:
    """Verify the top `top` of event `code`'s live ranking; stores and returns one `Check` each.

    `hidden_track`: the pair a notebook that matches on the event's data is graded on too
    (default `default_hidden_track`; ``"none"``: the event's track only).
    """
    events = store_module.Store(db)
    event = events.event(code)
    if event is None:
        raise VerifyError(f"there is no event {code} in {events.url}; pass the event store with --db.")
    course_dir = Path(course_dir).resolve()
    if not (course_dir / "nbgrader_config.py").is_file():
        raise VerifyError(f"{course_dir} is not an nbgrader course (no nbgrader_config.py); pass --course DIR.")
    if notebooks is not None and not Path(notebooks).is_dir():
        raise VerifyError(f"--notebooks {notebooks} is not a folder.")
    hidden = hidden_track_for(tuple(event.track), hidden_track)
    live = events.standings(code)  # not `standings`: that name is this module's ranking of the checks
    everyone = {r["id"]: r["name"] for r in live}  # a collected file two of them map to verifies neither
    ranked = [r for r in store_module.rank(live) if r["rank"] is not None][:max(0, top)]
    if not ranked:
        log(f"event {code}: no counted submission yet, nothing to verify.")
        return []
    checks: list[Check] = []
    staged: dict[str, Check] = {}
    event_rows: dict = {}  # student -> the grader's row on the event's track
    notes: dict[int, str] = {}
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
            path, note = (collected(Path(notebooks), r["id"], r["name"], everyone) if notebooks is not None
                          else (None, ""))
            content = path.read_bytes() if path is not None else events.notebook(r["id"])
            if content is None:
                folder = Path(notebooks) if notebooks is not None else None
                check.detail = ("no notebook: the participant uploaded none (course.event.upload) and "
                                + (note if note else
                                   f"there is no {folder / (safe_id(r['id'], r['name']) + '.ipynb')} or "
                                   f"{folder / ((slug(r['name']) or safe_id(r['id'], r['name'])) + '.ipynb')}."
                                   if folder is not None else "no --notebooks folder was given."))
                continue
            check.source = path.name if path is not None else "upload"
            notes[r["id"]] = note  # an ambiguous collected file, the upload taken instead
            student = safe_id(r["id"], r["name"])
            folder = copy / "submitted" / student / event.assignment
            folder.mkdir(parents=True)
            (folder / names[0]).write_bytes(content)
            staged[student] = check
        labels = {s: f"#{c.rank} {c.name} ({c.source})" for s, c in staged.items()}
        if staged:
            rows = _grade(copy, event.assignment, event.track_name, int(event.seed), list(staged), timeout,
                          course_dir, log, labels)
            event_rows = rows
            for student, check in staged.items():
                row = rows[student]
                check.accuracy, check.annotations = row.accuracy, row.annotations
                check.grader_status = row.status
                check.status, check.detail = compare(check.live_accuracy, check.live_annotations,
                                                     row.accuracy, row.annotations, tolerance)
                if check.status == "differs" and row.status != "ok":
                    check.detail += f" The grader: {row.status}, {row.detail}"
                if notes.get(check.participant):
                    check.detail = f"{notes[check.participant]} The upload was re-run instead. {check.detail}".strip()
        matched = [s for s, c in staged.items() if c.status == "verified"]  # only these need the hidden track
        if matched and hidden is not None:
            log(f"{len(matched)} matched on the event's data; once more on the hidden track {hidden} (its baseline is "
                "trained once per machine: minutes the first time, then cached) ...")
            rows = _grade(copy, event.assignment, hidden, int(event.seed), matched, timeout, course_dir, log, labels)
            for student in matched:
                check, row = staged[student], rows[student]
                check.hidden_track, check.hidden_accuracy, check.hidden_annotations = (
                    hidden, row.accuracy, row.annotations)
                status, why = decide(event_rows[student], row,
                                     None if row.status == "ok" else f"{row.status}, {row.detail}")
                check.status = status
                check.detail = " ".join(part for part in (check.detail, why) if part)
    for check in checks:
        events.save_verification(check.participant, check.status, accuracy=check.accuracy,
                                 annotations=check.annotations, live_accuracy=check.live_accuracy,
                                 live_annotations=check.live_annotations, grader_status=check.grader_status,
                                 detail=check.detail, source=check.source, hidden_track=check.hidden_track,
                                 hidden_accuracy=check.hidden_accuracy, hidden_annotations=check.hidden_annotations)
        log(check.line())
    ranked_checks = standings(checks)
    if ranked_checks and hidden is not None:
        log("verified, in the order that counts (the fewest annotations on the hidden track; the event's track is "
            "known in advance, so its count buys no rank): "
            + ", ".join(f"{n}. {c.name} ({c.hidden_annotations})" for n, c in enumerate(ranked_checks, start=1)))
    events.dispose()
    return checks
