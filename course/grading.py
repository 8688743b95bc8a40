"""`submit(predict)`: the grading hook at the end of notebooks 02-05.

Locally it scores the public held-out split and reads the annotation count from
the in-process ledger. Under the autograder (env ``COURSE_SERVICE`` set) the same
call sends predictions for the *private* split to the annotation service, which
scores them and answers with its own count: the numbers that reach the
leaderboard never come from the participant's kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from course import config, data, evaluate, oracle


@dataclass(frozen=True)
class Result:
    """What a submission achieved. `passed` means accuracy >= the 90% target."""

    accuracy: float
    annotations: int
    passed: bool
    n_images: int = 0
    split: str = "public"

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
    Raises `course.evaluate.PredictionError` if `predict` breaks that contract.
    """
    track = data.active_track()
    session = oracle.backend(track)
    images = evaluate.track_test_images(session.submit_split, track)
    predictions = evaluate.check_predictions(predict(images), len(images), track)
    accuracy, annotations = session.score(predictions, session.submit_split)
    result = Result(accuracy=accuracy, annotations=annotations,
                    passed=accuracy >= config.TARGET_ACCURACY,
                    n_images=len(images), split=session.submit_split)
    print(result)
    return result
