"""autograder.results.gradebook_merge: the grading runs' private gradebooks (the rest is tested through
`autograder grade` in test_parallel, test_cluster and test_kernel_limits)."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from autograder.results import gradebook_merge


def test_the_stamp_is_the_revision_alembic_gives_nbgrader(tmp_path):
    """nbgrader stamps a new gradebook with ``alembic heads`` run in a subprocess; the stamp read
    in-process must be the same revision, or nbgrader would try to migrate our gradebooks."""
    import nbgrader

    ini = tmp_path / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = {Path(nbgrader.__file__).parent / 'alembic'}\n"
                   f"sqlalchemy.url = sqlite:///{tmp_path / 'x.db'}\n")
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    heads = subprocess.run(["alembic", "-c", str(ini), "heads"], capture_output=True, text=True, check=True,
                           env={**os.environ, "PATH": path}).stdout.split()[0]
    assert gradebook_merge.alembic_head() == heads


def test_a_template_holds_the_assignment_and_nbgrader_opens_it_as_is(tmp_path):
    from nbgrader.api import Gradebook

    definition = {"name": "toy", "duedate": None, "notebooks": [
        {"name": "toy", "kernelspec": "{}", "grade_cells": [{"name": "t", "max_score": 2.0, "cell_type": "code"}],
         "solution_cells": ["s"], "task_cells": [], "source_cells": []}]}
    path = tmp_path / "gradebook.db"
    path.write_bytes(gradebook_merge.template("course", definition))
    with Gradebook(gradebook_merge.sqlite_url(path), "course") as gb:
        assert [c.name for c in gb.find_notebook("toy", "toy").grade_cells] == ["t"]
    (version,), = sqlite3.connect(path).execute("SELECT version_num FROM alembic_version").fetchall()
    assert version == gradebook_merge.alembic_head()
