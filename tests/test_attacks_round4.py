"""Attacks, round 4 (issue 21, holes 5-8): each runs under the real `autograder grade` or `autograder serve`.

- The kernel's runtime folder (connection file, ZMQ sockets) was a folder of the host's /tmp, outside
  the RAM disk and --tmp-mb: a kernel wrote 192 MB there with --tmp-mb 64 (with --jobs or Dask, under
  other gradings). It is now a RAM disk of its own (`autograder.sandbox.runfolder.RUNTIME_BYTES`), and every
  folder the kernel may write is a capped RAM disk (checked from inside the kernel).
- A folder nbgrader cannot take as a student id (a trailing blank, accents, CJK, a leading ``-``, a
  newline, HTML, 250 characters) got an error row, or none; each is now graded under a stable alias
  nbgrader takes, and its rows show the real name (escaped where it would be ambiguous).
- A venv reached through a symbolic link made every kernel die (``setpriv: failed to execute``): the
  sandbox bound the resolved venv and executed the linked path. It now runs the interpreter it binds.
- (the event server's forged addresses: `test_event_forwarded.py`.)

Cost (2 cores shared with other test runs): one toy batch of eight students (~2-4 min) and one batch of
one student through a linked venv (~1 min).
"""

from __future__ import annotations

import html
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import layout
from autograder.results import store
from helpers.courses import HONEST, make_course, solution, tool_env
from helpers.probes import probe, rows_of

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")]

A = "toy"
TMP_MB = 64
FILL_MB = 192  # what the filler tries to write into its runtime folder, 3 x --tmp-mb
LIMITS = ["--memory", "3", "--timeout", "300", "--tmp-mb", str(TMP_MB)]

# writes FILL_MB into the folder of its connection file, then lists every mount it may write and its size
FILLER = (
    "import os, stat\n"
    "from ipykernel.connect import get_connection_file\n"
    "runtime = os.path.dirname(get_connection_file())\n"
    "chunk, error = b'\\0' * (8 * 2**20), ''\n"
    f"for k in range({FILL_MB} // 8):\n"
    "    try:\n"
    "        with open(os.path.join(runtime, f'fill{k}'), 'wb') as handle:\n"
    "            handle.write(chunk)\n"
    "    except OSError as exc:\n"
    "        error = str(exc)\n        break\n"
    "written = sum(os.path.getsize(os.path.join(runtime, n)) for n in os.listdir(runtime) if n.startswith('fill'))\n"
    "for n in os.listdir(runtime):\n"
    "    if n.startswith('fill'):\n        os.unlink(os.path.join(runtime, n))\n"
    "writable = {}\n"
    "for line in open('/proc/self/mountinfo'):\n"
    "    point = line.split()[4].encode().decode('unicode_escape')\n"
    "    try:\n"
    "        mode = os.stat(point).st_mode\n"
    "    except OSError:\n        continue\n"
    "    if (stat.S_ISDIR(mode) or stat.S_ISREG(mode)) and os.access(point, os.W_OK):\n"
    "        fs = os.statvfs(point)\n"
    "        writable[point] = fs.f_blocks * fs.f_frsize\n"
    + HONEST + probe("{'written': written, 'error': error, 'writable': writable, 'runtime': runtime}"))

ODD_NAMES = [
    "alice ",  # a trailing blank, beside the real alice
    "José Ñúñez",  # accents and a blank
    "张伟",  # CJK
    "-rf",  # a leading dash
    "line\nbreak",  # a newline
    "<img src=x onerror=alert(1)>",  # HTML (a folder name cannot hold "/")
    "L" * 250,  # longer than nbgrader's ids and the rows' student column
]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One batch: the real alice, the runtime filler and every odd name, all with the toy's honest answer."""
    course_dir = make_course(tmp_path_factory.mktemp("round4"),
                             {"alice": None, "filler": solution(FILLER), **{name: None for name in ODD_NAMES}})
    run = subprocess.run([sys.executable, "-m", "autograder.cli", "grade", A, "--course", str(course_dir), *LIMITS],
                         capture_output=True, text=True, timeout=1800, env=tool_env())
    return {"course": course_dir, "run": run, "rows": rows_of(course_dir)}


def _found(course_dir: Path, nbgrader_id: str):
    from helpers.probes import found

    return found(course_dir, nbgrader_id)


# --- hole 6: the runtime folder filled the grading machine's disk ----------------------------------------------------

def test_the_kernel_cannot_fill_the_disk_through_its_runtime_folder(graded):
    seen = _found(graded["course"], "filler")
    assert graded["rows"]["filler"].passed, graded["rows"]["filler"]
    assert seen["written"] <= TMP_MB * 2**20, (
        f"the kernel wrote {seen['written'] / 2**20:.0f} MB into its runtime folder {seen['runtime']} with "
        f"--tmp-mb {TMP_MB} ({seen['error'] or 'no error'})")


def test_every_folder_the_kernel_may_write_is_a_capped_ram_disk(graded):
    writable = _found(graded["course"], "filler")["writable"]
    assert "/tmp" in writable and seen_runtime(graded) in writable, writable
    too_big = {point: size for point, size in writable.items() if size > TMP_MB * 2**20}
    assert not too_big, f"writable mounts larger than --tmp-mb {TMP_MB} (host disks): {too_big}"


def seen_runtime(graded) -> str:
    return _found(graded["course"], "filler")["runtime"]


def test_no_runtime_ram_disk_is_left_mounted(graded):
    assert seen_runtime(graded) not in Path("/proc/self/mountinfo").read_text(), seen_runtime(graded)


# --- hole 7: names nbgrader cannot take ------------------------------------------------------------------------------

def test_every_folder_gets_a_row_graded_under_its_real_name(graded):
    rows, folders = graded["rows"], ["alice", "filler", *ODD_NAMES]
    graded_ok = [r.student for r in rows.values() if r.status == "ok" and r.passed and r.annotations == 60]
    assert len(rows) == len(graded_ok) == len(folders), (
        f"{len(folders)} folders, {len(rows)} rows, {len(graded_ok)} graded: "
        + "; ".join(f"{r.student[:40]!r}: {r.status} {r.detail[:80]}" for r in rows.values()))
    row_ids = layout.row_ids(folders)
    assert sorted(rows) == sorted(row_ids.values()), (sorted(rows), graded["run"].stderr[-3000:])
    for name in ["alice", *ODD_NAMES]:
        row = rows[row_ids[name]]
        assert row.status == "ok" and row.passed and row.annotations == 60, (name, row)
    assert rows["alice"].detail == "" or "graded as" not in rows["alice"].detail, rows["alice"]
    assert row_ids["José Ñúñez"] == "José Ñúñez" and row_ids["张伟"] == "张伟", row_ids  # the name as it is
    assert row_ids["alice "].startswith("'alice '"), row_ids  # the blank shown: never alice's own row


def test_an_alias_is_stable_and_names_the_gradebook_and_autograded_entries(graded):
    course_dir = graded["course"]
    ids = layout.nbgrader_ids(os.listdir(course_dir / "submitted"))
    assert len(set(ids.values())) == len(ids), ids
    assert layout.nbgrader_ids(reversed(list(ids))) == ids  # the same names, the same aliases
    with sqlite3.connect(course_dir / "gradebook.db") as db:
        in_gradebook = {r[0] for r in db.execute("select id from student")}
    for name in ODD_NAMES:
        alias = ids[name]
        assert alias != name and not layout.student_id_problem(alias), alias
        assert (course_dir / "autograded" / alias / A / f"{A}.ipynb").is_file(), alias
        assert alias in in_gradebook, (alias, in_gradebook)
        assert f"graded as {alias}" in graded["rows"][layout.row_ids(ids)[name]].detail


def test_odd_names_are_inert_text_on_the_leaderboard(graded):
    page = (graded["course"] / "leaderboard" / f"{A}.html").read_text()
    assert "<img src=x" not in page and html.escape("<img src=x onerror=alert(1)>") in page
    assert "\x1b" not in graded["run"].stdout


# --- hole 8: a venv reached through a symbolic link ------------------------------------------------------------------

def test_a_venv_reached_through_a_link_grades(tmp_path):
    linked = tmp_path / "venvs" / "current"
    linked.parent.mkdir()
    os.symlink(Path(sys.prefix).resolve(), linked)  # e.g. ~/course/.venv -> /data/venvs/course-2026
    python = linked / "bin" / Path(sys.executable).name
    course_dir = make_course(tmp_path, {"honest": None})
    run = subprocess.run([str(python), "-m", "autograder.cli", "grade", A, "--course", str(course_dir), *LIMITS],
                         capture_output=True, text=True, timeout=900, env=tool_env())
    row = rows_of(course_dir).get("honest")
    assert row is not None, run.stderr[-3000:]
    assert row.status == "ok" and row.passed and row.annotations == 60, (row, run.stderr[-2000:])
    assert store.ledger_path(course_dir, A, "honest").is_file()


# --- the naming rules themselves (no grading) ------------------------------------------------------------------------

def test_no_folder_can_take_another_folders_alias():
    """A folder named exactly like José's alias is aliased itself: José keeps his, nobody gets another's entries."""
    alias = layout.nbgrader_ids(["José"])["José"]
    ids = layout.nbgrader_ids(["José", alias, "jose"])
    assert ids["José"] == alias and ids[alias] not in (alias, ids["José"]) and ids["jose"] == "jose", ids
    assert not any(layout.student_id_problem(i) for i in ids.values()), ids


def test_row_ids_are_one_line_and_never_another_folders():
    long = "L" * 199
    names = ["alice", "alice ", "alice\u200b", "'alice '", " alice", "   ", "\t", "a\nb", "a b", long + "1", long + "2",
             "esc\x1b[31mred", "escred"]
    ids = layout.row_ids(names)
    assert len(set(ids.values())) == len(names), ids
    assert all(i and i == i.strip() and "\n" not in i and "\x1b" not in i for i in ids.values()), ids
    assert ids["alice"] == "alice" and ids["a b"] == "a b" and ids["escred"] == "escred", ids
