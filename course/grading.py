"""`submit(predict)`: the grading hook at the end of notebooks 02-05, and exam mode.

Two modes, one rule: held-out labels are labels, so no score computed from them
may reach a graded kernel before its one counted submission.

- **Practice mode** (locally, the default): `submit` and `course.evaluate.accuracy`
  score the *public* held-out split as often as you like; it is your machine.
- **Exam mode** (always under the autograder; locally with env ``COURSE_EXAM=1`` or
  `exam_mode()`): `course.evaluate.accuracy` returns ``nan``; the first `submit`
  scores the *private* split and is the one that counts; every later `submit`
  raises `course.exceptions.SubmissionRefusedError`, charges nothing and says why,
  and the oracle sells no new label after it (`course.oracle.OracleError`; labels
  you paid for before stay free to ask again).
  Locally the private split is scored against your own MNIST copy, exactly as
  the grader scores it, so a local exam run gives the grader's numbers for the
  same predictions (restart the kernel for another try; the grader gives one).

Under the autograder (env ``COURSE_SERVICE`` set) the annotation service, not this
kernel, enforces the rule and keeps the count: it never scores the public split
and refuses a second private scoring, so a kernel that talks to its socket
directly gains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from course import config, evaluate, oracle, protocol
from course.context import CONTEXT
from course.exceptions import SubmissionRefusedError  # noqa: F401  (documented here: submit raises it)


def exam_mode(on: bool = True) -> None:
    """Switch exam mode on (or off) in this process, overriding env ``COURSE_EXAM``.

    Under the autograder exam mode is always on: switching it off changes nothing
    there (the annotation service enforces the rule).
    """
    CONTEXT.set_exam(on)


def is_exam() -> bool:
    """True under the autograder or in a live event, else as `exam_mode()` set it, else env ``COURSE_EXAM=1``.

    `course.context` decides; this is its answer under the name notebooks use.
    """
    return CONTEXT.exam()


@dataclass(frozen=True)
class Result:
    """What a submission achieved. `passed` means accuracy >= the 90% target."""

    accuracy: float
    annotations: int
    passed: bool
    n_images: int = 0
    split: str = protocol.PUBLIC

    def __str__(self) -> str:
        mark = "PASSED" if self.passed else "NOT YET"
        return (
            f"{mark}: accuracy {self.accuracy:.1%} on {self.n_images} {self.split} held-out images "
            f"with {self.annotations} annotation{'s' if self.annotations != 1 else ''} "
            f"(target {config.TARGET_ACCURACY:.0%})"
        )


def submit(predict: evaluate.Predict) -> Result:
    """Score `predict` on held-out images of the track, print one line, return a `Result`.

    `predict(images)`: uint8 array (N, 28, 28) -> int array (N,) of original digits.
    Practice mode scores the public split; exam mode the private split, once (see
    the module docstring). Raises `course.exceptions.PredictionError` if `predict`
    breaks that contract (nothing is scored then, and in exam mode the submission
    is still to come), and `SubmissionRefusedError` for a submission after the
    counted one.
    """
    track = CONTEXT.track()
    split = protocol.PRIVATE if CONTEXT.exam() else protocol.PUBLIC
    session = oracle.backend(track)
    images = evaluate.track_test_images(split, track)
    predictions = evaluate.check_predictions(predict(images), len(images), track)
    accuracy, annotations = session.score(predictions, split)
    result = Result(accuracy=accuracy, annotations=annotations,
                    passed=accuracy >= config.TARGET_ACCURACY,
                    n_images=len(images), split=split)
    print(result)
    return result
