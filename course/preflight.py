"""Pre-flight: is this machine ready for the workshop? One command, one line per check.

    python -m course.preflight                                   # a workshop with the MNIST files
    python -m course.preflight --event http://10.0.0.5:8000 [--code K7QX2P]   # a live event
    python -m course.preflight --train                           # and train the baseline now if missing

Checks, each answered ``ok``, ``note`` or ``FAIL`` with what is wrong and what to do:

- **install**: ``course`` is installed (``pip install -e .``) and it and its libraries import;
- **cache**: the cache folder (``$COURSE_CACHE_DIR``, else ``~/.cache/dcai-hackathon``) is writable;
- **data**: the MNIST files are there, or (``--event``) the event server answers (and, with
  ``--code``, knows the event);
- **baseline**: the track's baseline CNN is trained and loads; an event's pool brings it, so with
  ``--event`` a missing one is only a note.

Exit status 0 when nothing failed, 1 otherwise. Nothing is joined and nothing is charged. The
modules are imported by name (`importlib`): a broken install is reported, not raised.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from course import config

OK, NOTE, FAIL = "ok", "note", "FAIL"
LIBRARIES = ("numpy", "torch", "torchvision", "sklearn", "matplotlib", "tqdm", "ipywidgets", "ipykernel",
             "jupyterlab")
COURSE_MODULES = ("course.data", "course.oracle", "course.models", "course.grading", "course.event")
INSTALL_HINT = "in the course folder run: pip install -e .   (a CPU-only torch: docs/how-to/cpu-only-install.md)"
FREE_MB = 300  # the MNIST files unpacked, an event's pool and the checkpoints, with room to spare
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, NOTE or FAIL
    message: str  # what was found
    fix: str = ""  # what to do (FAIL, NOTE)

    def __str__(self) -> str:
        line = f"{self.status:<5} {self.name:<9} {self.message}"
        return line + (f"\n{'':16}-> {self.fix}" if self.fix else "")


def check_install(libraries: tuple[str, ...] = LIBRARIES, modules: tuple[str, ...] = COURSE_MODULES) -> Check:
    try:
        version = importlib.metadata.version("dcai-hackathon")
    except importlib.metadata.PackageNotFoundError:
        return Check("install", FAIL, "the course package (dcai-hackathon) is not installed in this Python "
                                      f"({sys.executable}), so a Jupyter kernel started elsewhere will not find it",
                     INSTALL_HINT)
    for name in (*libraries, *modules):
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or a library that breaks while importing (a wrong torch build)
            return Check("install", FAIL, f"cannot import {name} ({type(exc).__name__}: {str(exc)[:200]})",
                         INSTALL_HINT)
    torch = sys.modules.get("torch")
    extra = f", torch {torch.__version__}" if torch is not None else ""
    return Check("install", OK, f"dcai-hackathon {version} and its libraries import (Python "
                                f"{sys.version.split()[0]}{extra})")


def check_cache() -> Check:
    fix = ("set COURSE_CACHE_DIR to a folder you can write before starting Jupyter, e.g. "
           "export COURSE_CACHE_DIR=$HOME/dcai-cache")
    folder = None
    try:
        folder = config.cache_dir()  # made if missing
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".preflight-") as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as exc:
        folder = folder or exc.filename
        return Check("cache", FAIL, f"cannot write the cache folder {folder} ({type(exc).__name__}: "
                                    f"{exc.strerror or exc})", fix)
    free_mb = shutil.disk_usage(folder).free // 2**20
    if free_mb < FREE_MB:
        return Check("cache", FAIL, f"the cache folder {folder} has only {free_mb} MB free; the course needs about "
                                    f"{FREE_MB} MB", "free some space there, or " + fix)
    return Check("cache", OK, f"{folder} is writable ({free_mb} MB free)")


def check_data() -> Check:
    data = importlib.import_module("course.data")
    for where, base in data._candidate_dirs():
        raw = base / "MNIST" / "raw"
        if data._has_all(raw):
            return Check("data", OK, f"the MNIST files are in {where} ({raw})")
    places = ", ".join(f"{where} ({base / 'MNIST' / 'raw'})" for where, base in data._candidate_dirs())
    return Check("data", FAIL, f"the MNIST files are not here; looked in {places}",
                 "import the instructor's hand-out (python -m course.cache import DIR), or copy the four MNIST .gz "
                 "files into the repository's data/MNIST/raw/, "
                 "or go online once and run: python -c \"from course import data; data.load()\" (downloads them); "
                 "at a live event run this with --event <address on the board> instead")


def _get(url: str) -> dict:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return json.loads(response.read())


def check_event(url: str, code: str | None = None) -> tuple[Check, tuple[int, ...] | None]:
    """(the check, the event's track if `code` was found)."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        return Check("event", FAIL, f"{url!r} is not an event server address",
                     "give the address on the board, e.g. --event http://10.0.0.5:8000"), None
    fix = ("check the address on the board (not 127.0.0.1 or localhost unless the server runs on this machine), "
           "that you are on the room's network (same Wi-Fi, no VPN), and ask the instructor whether the server runs")
    try:
        health = _get(f"{url}/api/health")
    except urllib.error.HTTPError as exc:
        return Check("event", FAIL, f"{url} answered {exc.code} {exc.reason}: not an event server", fix), None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Check("event", FAIL, f"cannot reach the event server at {url} "
                                    f"({getattr(exc, 'reason', exc)})", fix), None
    if not (isinstance(health, dict) and health.get("ok") is True):
        return Check("event", FAIL, f"{url} answers, but not as an event server", fix), None
    if not code:
        return Check("event", OK, f"the event server at {url} answers"), None
    code = code.strip().upper().split("-", 1)[0]  # a personal code starts with the event's
    try:
        board = _get(f"{url}/api/events/{code}/board")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return Check("event", FAIL, f"the server at {url} answers but has no event {code}",
                         "check the code on the board (letters and digits, no 0/O or 1/I)"), None
        return Check("event", NOTE, f"the event server at {url} answers; the event could not be looked up now "
                                    f"({exc.code})"), None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Check("event", FAIL, f"cannot reach the event server at {url} ({getattr(exc, 'reason', exc)})",
                     fix), None
    track = tuple(int(d) for d in str(board.get("track", "")).split(",") if d.strip().isdigit())
    closed = " (closed: no one can join it any more)" if board.get("closed") else ""
    status = FAIL if closed else OK
    return Check("event", status, f"event {code} at {url}: {board.get('assignment')} on track "
                                  f"{board.get('track')}{closed}",
                 "ask the instructor for the current event's code" if closed else ""), (track or None)


def check_baseline(track: tuple[int, ...], event: bool = False, train: bool = False) -> Check:
    models = importlib.import_module("course.models")
    name = ",".join(map(str, track))
    path = models.checkpoint_path(track)
    if train and not path.is_file():
        print(f"training the baseline for track {name} (a few minutes; once per machine)...", flush=True)
        models.baseline(track)
    if path.is_file():
        problem = importlib.import_module("course.cache").check_checkpoint(path)  # the hand-out's own check
        if problem:
            return Check("baseline", FAIL, f"the baseline checkpoint {path} does not load ({problem})",
                         f"delete it and run: python -m course.preflight --train{_track_arg(track)}")
        return Check("baseline", OK, f"the baseline for track {name} is ready ({path})")
    if event:
        return Check("baseline", NOTE, f"the baseline for track {name} is not in the cache yet",
                     "nothing to do: the event's pool brings it when you join and call data.load() "
                     "(no training); python -m course.preflight --train trains it now instead")
    return Check("baseline", FAIL, f"the baseline for track {name} is not trained on this machine "
                                   "(the notebooks would train it on the spot: minutes)",
                 f"import the instructor's hand-out (python -m course.cache import DIR), or train it now, once: "
                 f"python -m course.preflight --train{_track_arg(track)}")


def _track_arg(track: tuple[int, ...]) -> str:
    name = ",".join(map(str, track))
    return "" if name == config.DEFAULT_TRACK else f" --track {name}"


def run(event: str | None = None, code: str | None = None, track: str | None = None,
        train: bool = False) -> list[Check]:
    """Every check, in order; a check that cannot run after an earlier failure says so."""
    checks = [check_install(), check_cache()]
    event_track = None
    if event:
        found, event_track = check_event(event, code)
        checks.append(found)
    if checks[0].status == FAIL or checks[1].status == FAIL:
        broken = "the install is broken" if checks[0].status == FAIL else "the cache folder cannot be written"
        checks.append(Check("baseline", FAIL, f"not checked: {broken}", "fix the lines above first"))
        return checks
    if not event:
        checks.append(check_data())
    context = importlib.import_module("course.context")
    chosen = context.parse_track(track) if track else (event_track or context.parse_track(config.DEFAULT_TRACK))
    checks.append(check_baseline(chosen, event=bool(event), train=train))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.preflight",
                                     description="Is this machine ready for the workshop? Nothing is joined or "
                                                 "charged.")
    parser.add_argument("--event", metavar="URL", help="a live event's address (on the board), e.g. "
                                                       "http://10.0.0.5:8000: checks it answers instead of MNIST")
    parser.add_argument("--code", help="the event's join code (or your personal code): checks the event exists")
    parser.add_argument("--track", help=f"the track whose baseline to check (default: the event's, else "
                                        f"{config.DEFAULT_TRACK})")
    parser.add_argument("--train", action="store_true", help="train the baseline now if it is missing")
    args = parser.parse_args(argv)
    checks = run(args.event, args.code, args.track, args.train)
    for check in checks:
        print(check)
    failed = [c for c in checks if c.status == FAIL]
    print("ready." if not failed else f"{len(failed)} problem{'s' if len(failed) > 1 else ''}: see the -> lines.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
