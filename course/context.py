"""Where this kernel is: practice or exam mode, which ledger, which track. Decided here, only here.

Every module of `course` that needs to know asks `CONTEXT` (the one `Context` of the
process) and no other module. It decides from two things:

- the environment: ``COURSE_SERVICE`` (+ ``COURSE_SERVICE_TOKEN``) means the kernel runs
  under the autograder; ``COURSE_EVENT_URL``, ``COURSE_EVENT_CODE``, ``COURSE_EVENT_NAME``
  name a live event to join on first use; ``COURSE_EXAM`` asks for exam mode;
  ``COURSE_TRACK`` names the track; ``COURSE_DATA_DIR`` the data folder;
- the participant's calls, which only tell it what they said: `course.grading.exam_mode()`
  (`set_exam`), `course.data.load(track)` (`set_track`), `course.event.join()` and
  `leave()` (`set_event`).

The rules, in order of precedence:

- **ledger**: under the autograder the grader's annotation service; else, in a live event
  (joined, or named by the environment), the event server; else the local ledger.
- **mode**: under the autograder or in a live event always exam mode; else what
  `exam_mode()` said; else ``COURSE_EXAM``; else practice mode.
- **track**: the one of the last `data.load()`; else the event's; else ``COURSE_TRACK``;
  else `config.DEFAULT_TRACK`.
- **data folder**: in a live event the folder of its pool file (downloaded once); else
  ``COURSE_DATA_DIR`` (where the autograder puts its grading file).

The environment is read at every question, not copied at import, so a value set later
(by a test, or before the first call in a notebook) counts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from enum import Enum

from course import config, event_client
from course.event_client import Joined
from course.exceptions import ServiceError, TrackError

Track = tuple[int, ...]


class Ledger(str, Enum):
    """Where the annotation count is kept."""

    LOCAL = "local"  # in this process (`course.oracle.LocalBackend`)
    SERVICE = "service"  # the autograder's annotation service (`course.service_client`)
    EVENT = "event"  # a live event's server (`course.event_client`)


class Context:
    """The answer to "where am I" for this process; see the module docstring for the rules."""

    def __init__(self) -> None:
        self._exam: bool | None = None  # what exam_mode() said; None: nothing
        self._track: Track | None = None  # the track of the last data.load(); None: none yet
        self._event: Joined | None = None  # the event joined in this kernel
        self.epoch = 0  # changes whenever the ledger moves (an event joined or left): older ledgers are stale

    # --- what the participant said -----------------------------------------------------------

    def set_exam(self, on: bool | None) -> None:
        """`course.grading.exam_mode(on)`; None forgets it (the environment decides again)."""
        self._exam = None if on is None else bool(on)

    def set_track(self, track: Track | None) -> None:
        """`course.data.load(track)` made `track` the active one; None forgets it."""
        self._track = None if track is None else tuple(track)

    def set_event(self, joined: Joined | None) -> None:
        """`course.event.join` joined `joined`; None: `course.event.leave`. Either way the ledger moves."""
        self._event = joined
        self.epoch += 1

    # --- what it decides ---------------------------------------------------------------------

    def service(self) -> tuple[str, str]:
        """The grader's annotation service, (address, token); ("", "") outside the autograder."""
        return os.environ.get(config.ENV_SERVICE, ""), os.environ.get(config.ENV_SERVICE_TOKEN, "")

    def graded(self) -> bool:
        """True under the autograder: its annotation service holds the labels."""
        return bool(self.service()[0])

    def in_event(self) -> bool:
        """True in a live event: one joined, or one named by ``COURSE_EVENT_URL`` (never under the grader)."""
        if self.graded():
            return False
        return self._event is not None or bool(os.environ.get(config.ENV_EVENT_URL, "").strip())

    def event(self) -> Joined | None:
        """The live event of this kernel, joined from the environment on first use; None outside one."""
        if not self.in_event():
            return None
        if self._event is None:
            url = os.environ.get(config.ENV_EVENT_URL, "").strip()
            code = os.environ.get(config.ENV_EVENT_CODE, "").strip()
            if not code:
                raise ServiceError(f"${config.ENV_EVENT_URL} is set but ${config.ENV_EVENT_CODE} is not; set it to "
                                   "the join code on the board.")
            self.set_event(event_client.join(url, code, os.environ.get(config.ENV_EVENT_NAME) or None))
        return self._event

    def ledger(self) -> Ledger:
        """Which ledger the oracle uses."""
        if self.graded():
            return Ledger.SERVICE
        if self.in_event():
            return Ledger.EVENT
        return Ledger.LOCAL

    def exam(self) -> bool:
        """True in exam mode (the rule of `course.grading`)."""
        if self.ledger() is not Ledger.LOCAL:  # the grader, or a live event
            return True
        if self._exam is not None:
            return self._exam
        return _exam_env()

    def default_track(self) -> Track:
        """The track `data.load()` loads when given none: the event's, else ``COURSE_TRACK``, else the default."""
        joined = self.event()
        if joined is not None:
            return joined.track
        return parse_track(os.environ.get(config.ENV_TRACK) or config.DEFAULT_TRACK)

    def track(self, track: str | Iterable[int] | None = None) -> Track:
        """`track` parsed if given, else the active track (the last `data.load()`'s, else the default)."""
        if track is not None:
            return parse_track(track)
        return self._track if self._track is not None else self.default_track()

    def data_dir(self) -> str:
        """The folder that may hold a prepared grading file: a live event's pool, else ``COURSE_DATA_DIR``."""
        joined = self.event()
        if joined is not None:
            return str(event_client.pool_dir(joined))
        return os.environ.get(config.ENV_DATA_DIR, "")


CONTEXT = Context()  # the one of this process


def _exam_env() -> bool:
    """True when env ``COURSE_EXAM`` asks for exam mode ("1", "true", "yes", "on")."""
    value = os.environ.get(config.ENV_EXAM, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{config.ENV_EXAM}={value!r} is neither on nor off; use COURSE_EXAM=1 (exam mode) or 0.")


# --- writing tracks ------------------------------------------------------------------------


def parse_track(track: str | Iterable[int] | None = None) -> Track:
    """Turn ``"7,1"`` (or ``(7, 1)``, or None for the default track) into ``(7, 1)``."""
    if track is None:
        return CONTEXT.default_track()
    if isinstance(track, str):
        parts = [p.strip() for p in track.replace(" ", ",").split(",") if p.strip()]
        try:
            digits = tuple(int(p) for p in parts)
        except ValueError:
            raise TrackError(
                f"track {track!r} is not a comma-separated list of digits; "
                'expected something like "7,1" or "4,9".'
            ) from None
    else:
        digits = tuple(int(d) for d in track)
    if len(digits) < 2 or len(set(digits)) != len(digits):
        raise TrackError(f"track {track!r} must name at least two distinct digits, e.g. \"7,1\".")
    if any(not 0 <= d <= 9 for d in digits):
        raise TrackError(f"track {track!r} has a digit outside 0-9.")
    return digits


def track_name(track: Track) -> str:
    """``(7, 1)`` -> ``"7,1"`` (the form used in env vars, file names and messages)."""
    return ",".join(str(d) for d in track)
