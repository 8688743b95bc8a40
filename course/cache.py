"""Hand out the model cache: one folder made once, copied into every machine's cache folder.

    python -m course.cache export DIR [--tracks 7,1 4,9]   # on one machine: MNIST and the tracks' baselines into DIR
    python -m course.cache import DIR                      # on every machine: DIR's files into the cache folder
    python -m course.cache show                            # what the cache folder holds

The cache folder is ``$COURSE_CACHE_DIR``, else ``~/.cache/dcai-hackathon`` (`course.config.cache_dir`).
``import`` copies file by file into ``<cache>/MNIST/raw/`` and ``<cache>/models/``, whether the cache
folder exists or not, so it never nests the hand-out inside it (``cp -r workshop-cache
~/.cache/dcai-hackathon`` does when that folder exists, and then no baseline is found). It takes
only the hand-out's own files (the four MNIST files, ``.gz`` or unpacked, and baseline checkpoints
by their `course.models.checkpoint_path` names), finds them also one folder down (``DIR/workshop-cache/``),
replaces each file atomically under the lock `course.models.baseline` holds while it trains, and then
checks them: the MNIST checksums, and each checkpoint loads (as weights only). A checkpoint that does
not load is removed again, so the baseline is trained instead. Exit code 0: all there and checked;
1: something failed (each line says what and what to do); 2: DIR holds no hand-out.

This is the participant side: it needs only the course's own install (no instructor extra).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
from pathlib import Path

from course import config, data, files, models

CHECKPOINT = re.compile(r"baseline-v[0-9]+-track[0-9]+-seed[0-9]+\.pt")  # `course.models.checkpoint_path`'s names
DEFAULT_TRACKS = ("7,1", "4,9")  # the course track and the hard track of the code breakfast


def _raw_names() -> list[str]:
    return list(data.RAW_FILES)


def _is_handout(folder: Path) -> bool:
    return (folder / "models").is_dir() or (folder / "MNIST" / "raw").is_dir()


def handout_root(folder: Path) -> Path | None:
    """The folder holding ``models/`` and ``MNIST/raw/``: `folder` itself, or its one subfolder that does
    (a hand-out copied as a folder into another one). None when there is no hand-out."""
    folder = Path(folder).expanduser()
    if _is_handout(folder):
        return folder
    inside = [sub for sub in sorted(folder.iterdir()) if sub.is_dir() and _is_handout(sub)] if folder.is_dir() else []
    return inside[0] if len(inside) == 1 else None


def handout_files(root: Path) -> list[Path]:
    """The hand-out's own files under `root`, relative: MNIST raw files and baseline checkpoints."""
    found = []
    raw = root / "MNIST" / "raw"
    for name in _raw_names():
        for candidate in (name, f"{name}.gz"):
            if (raw / candidate).is_file():
                found.append(Path("MNIST", "raw", candidate))
    models = root / "models"
    if models.is_dir():
        found += [Path("models", p.name) for p in sorted(models.iterdir()) if CHECKPOINT.fullmatch(p.name)
                  and p.is_file()]
    return found


def _copy(source: Path, target: Path, lock: bool = True) -> None:
    """`source` over `target`, atomically; a checkpoint under the lock a training `course.models.baseline`
    holds (it then loads the copied file instead of writing its own over it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with files.exclusive(target) if lock and CHECKPOINT.fullmatch(target.name) else contextlib.nullcontext():
        tmp = files.temp_beside(target)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


def check_checkpoint(path: Path) -> str | None:
    """None when the checkpoint at `path` loads as `course.models` reads it, else why not."""
    try:
        models.CNNClassifier.load(path)
    except Exception as exc:  # not a checkpoint, another version, a planted pickle
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def check_mnist(raw: Path) -> str | None:
    """None when `raw` holds the four MNIST files with their known checksums (``.gz`` ones are unpacked
    there), else why not."""
    names = _raw_names()
    missing = [n for n in names if not (raw / n).is_file() and not (raw / f"{n}.gz").is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        data._materialise(raw, raw)
    except Exception as exc:  # data.DataError (a wrong checksum), OSError
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    return None


def import_handout(folder: Path, out=print) -> int:
    """Copy the hand-out in `folder` into the cache folder and check it; the exit code (see the module)."""
    root = handout_root(folder)
    if root is None:
        out(f"no hand-out in {folder}: expected models/ and MNIST/raw/ there (made by "
            "`python -m course.cache export DIR` on the instructor's machine)")
        return 2
    cache = config.cache_dir()  # made if missing
    wanted = handout_files(root)
    if not wanted:
        out(f"{root} has models/ or MNIST/raw/ but none of their files (baseline-*.pt, the four MNIST files)")
        return 2
    if root.resolve() != cache.resolve():
        for relative in wanted:
            _copy(root / relative, cache / relative)
    out(f"copied {len(wanted)} files from {root} into the cache folder {cache}")
    failed = 0
    if any(r.parts[0] == "MNIST" for r in wanted):
        problem = check_mnist(cache / "MNIST" / "raw")
        if problem:
            failed += 1
            out(f"FAIL  MNIST in {cache / 'MNIST' / 'raw'}: {problem}; copy the four MNIST files again "
                "(the instructor's export has them)")
        else:
            out(f"ok    MNIST in {cache / 'MNIST' / 'raw'}: the four files, checksums verified")
    for relative in wanted:
        if relative.parts[0] != "models":
            continue
        target = cache / relative
        problem = check_checkpoint(target)
        if problem:
            failed += 1
            with files.exclusive(target):
                target.unlink(missing_ok=True)
            out(f"FAIL  {relative.name}: does not load ({problem}); removed, so the baseline is trained on first "
                "use: ask for a fresh export")
        else:
            out(f"ok    {relative.name}: loads")
    return 1 if failed else 0


def export_handout(folder: Path, tracks: list[str], out=print) -> int:
    """Write a hand-out to `folder`: the four unpacked MNIST files and the baseline of each track (taken from
    this machine's cache, trained there first when missing). `folder` may exist; its other files are kept."""
    folder = Path(folder).expanduser().resolve()
    if folder == config.cache_dir().resolve():
        out(f"{folder} is this machine's cache folder: export to another folder")
        return 2
    raw = data._verified_raw_dir()
    for name in _raw_names():
        _copy(raw / name, folder / "MNIST" / "raw" / name, lock=False)
    out(f"MNIST: the four files from {raw}")
    for track in tracks:
        parsed = tuple(int(d) for d in track.split(","))
        path = models.checkpoint_path(parsed)
        trained = not path.is_file()
        if trained:
            out(f"track {track}: training the baseline (a few minutes) ...")
        models.baseline(parsed)
        _copy(path, folder / "models" / path.name, lock=False)
        out(f"track {track}: {path.name}" + (" (trained now)" if trained else " (from the cache)"))
    out(f"hand-out ready in {folder}; on every machine (participants, grader, Dask workers) run:\n"
        f"    python -m course.cache import {folder.name}   # with the folder copied there")
    return 0


def show(out=print) -> int:
    cache = config.cache_dir()
    have = handout_files(cache)
    out(f"cache folder: {cache}")
    raw = [r for r in have if r.parts[0] == "MNIST"]
    out(f"MNIST: {len(raw)} of {len(_raw_names())} files" + ("" if len(raw) >= 4 else " (the course looks elsewhere "
                                                                                     "or downloads them)"))
    for r in have:
        if r.parts[0] == "models":
            out(f"baseline: {r.name}")
    nested = [sub for sub in sorted(cache.iterdir()) if sub.is_dir() and _is_handout(sub)]
    for sub in nested:
        out(f"a hand-out nested in the cache at {sub} (not read there): python -m course.cache import {sub}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m course.cache", description=__doc__.split("\n\n")[0])
    commands = p.add_subparsers(dest="command", required=True)
    imp = commands.add_parser("import", help="copy a hand-out folder into this machine's cache folder and check it")
    imp.add_argument("folder", type=Path)
    exp = commands.add_parser("export", help="write a hand-out folder: MNIST and the tracks' baselines")
    exp.add_argument("folder", type=Path)
    exp.add_argument("--tracks", nargs="+", default=list(DEFAULT_TRACKS), metavar="TRACK",
                     help=f"tracks whose baselines to include (default: {' '.join(DEFAULT_TRACKS)})")
    commands.add_parser("show", help="what this machine's cache folder holds")
    args = p.parse_args(argv)
    out = lambda line: print(line, flush=True)  # noqa: E731
    if args.command == "import":
        return import_handout(args.folder, out)
    if args.command == "export":
        return export_handout(args.folder, args.tracks, out)
    return show(out)


if __name__ == "__main__":
    sys.exit(main())
