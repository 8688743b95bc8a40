"""Attacks, round 5: what a hostile participant found against the fixes of issue 21.

- **A folder name that takes a classmate's row.** A folder ``carol`` + a zero-width space was
  graded as the row ``carol`` while no ``carol`` folder existed (the cleaned form was free), so
  its cheap failing attempt was filed under carol; when the real carol handed in a passing
  notebook, the "first counted attempt" rule ranked the attacker's attempt as hers. A row id now
  depends on the name alone (`autograder.layout.row_id`): a name that cleaning changes, that is
  not in composed form, or that mixes scripts (a Cyrillic ``а`` in ``alice``) is always shown
  escaped with a hash, which no folder's own name can equal.
- (A lock file planted in a shared cache: `tests/test_files_lock.py`.)

Cost: two toy gradings of one batch, then one more (~2-4 min on 2 cores).
"""

from __future__ import annotations

import shutil

import pytest

from autograder import layout
from helpers.courses import add_submission, make_course, run_cli, solution
from helpers.probes import rows_of

A = "toy"
ATTACKER = "carol\u200b"  # renders as "carol"
CHEAP = ("_ = oracle.annotate(ds.c_indices[:1])\n\n"
         "def predict(images):\n    return np.full(len(images), ds.track[0], dtype=int)\n")


@pytest.mark.parametrize("others", [[], ["carol"], ["carol", "carol\u2060", "bob"]])
def test_a_row_id_depends_on_the_name_alone(others):
    assert layout.row_ids([ATTACKER, *others])[ATTACKER] == layout.row_id(ATTACKER)
    assert layout.row_id(ATTACKER) not in ("carol", *others)


@pytest.mark.parametrize("name", ["carol\u200b", "\u0430lice", "alice\u2060", "a\u00adlice", "\u202ealice",
                                  "Jose\u0301", "alice "])
def test_a_lookalike_name_is_shown_escaped(name):
    shown = layout.row_id(name)
    assert " /" in shown and shown.isascii(), shown  # the odd character visible, the hash at the end


@pytest.mark.parametrize("name", ["carol", "José Ñúñez", "张伟", "田中たろう", "Ana María", "O'Brien"])
def test_a_real_name_is_its_own_row(name):
    assert layout.row_id(name) == name


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
def test_a_lookalike_folder_graded_first_does_not_take_the_real_students_row(tmp_path):
    course = make_course(tmp_path, {ATTACKER: solution(CHEAP)})
    limits = ["--memory", "3", "--timeout", "300"]
    first = run_cli("grade", A, "--course", str(course), *limits)
    assert first.returncode in (0, 1), first.stderr[-3000:]
    assert "carol" not in rows_of(course, A)  # before the fix: a failed row named exactly "carol"
    add_submission(course, "carol", None, A)  # the real carol hands in the reference solution
    second = run_cli("grade", A, "--course", str(course), "--student", "carol", *limits)
    assert second.returncode in (0, 1), second.stderr[-3000:]
    rows = rows_of(course, A)
    carol, attacker = rows["carol"], rows[layout.row_id(ATTACKER)]
    assert carol.passed and carol.attempts == 1 and carol.annotations == 60, carol  # her own attempt, ranked
    assert not attacker.passed and attacker.annotations == 1, attacker
