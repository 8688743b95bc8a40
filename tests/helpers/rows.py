"""The one builder of results rows (`autograder.results.store.Row`) for tests that store or rank rows without grading.

    row("ana")                               # passed: 95% with 3 annotations, on 7,1, of the toy assignment
    row("bo", 0.5, 9, track="2,5", level="track")
    row("cy", None, None, status="error", detail="no notebook")

`passed` follows the rule (status ok and accuracy at or above the target) unless given; points are
2 of 2 when passed, else 0; every other field can be given by name.
"""

from __future__ import annotations

from autograder.results import store
from course import config

GRADED_AT = "2026-11-27T08:00:00Z"


def row(student: str, accuracy: float | None = 0.95, annotations: int | None = 3, **fields) -> store.Row:
    status = fields.pop("status", "ok")
    passed = fields.pop("passed", status == "ok" and accuracy is not None and accuracy >= config.TARGET_ACCURACY)
    values = {"assignment": "toy", "track": "7,1", "score": 2.0 if passed else 0.0, "max_score": 2.0,
              "detail": "d", "runtime": 1.0, "graded_at": GRADED_AT, **fields}
    return store.Row(student=student, accuracy=accuracy, annotations=annotations, passed=passed, status=status,
                     **values)
