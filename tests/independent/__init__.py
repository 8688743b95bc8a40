"""Independent answers to the release notebooks, one module per assignment.

Written from the release notebooks' exercise text alone, as a participant would, without
reading the reference solutions in `source/`: `tests/test_notebooks.py` pastes them into
the release notebook's answer cells and runs it in a fresh kernel, so a given cell that
needs a name no exercise asks for, or a check that rejects a correct answer, shows up.
Each module has `ANSWERS = {grade_id: code}`.
"""
