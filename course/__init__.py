"""Participant-side library of the data-centric AI hackathon.

Every notebook imports from here: the merged MNIST data (`data`), the annotation
function (`oracle`), the baseline CNN (`models`), accuracy helpers (`evaluate`),
the grading hook and exam mode (`grading`), pictures (`plots`) and interactive
helpers (`widgets`). Every error the course raises on purpose is in `exceptions`
(all are a `CourseError`); `protocol` is the annotation protocol shared by the
local ledger and the autograder's annotation service. Which mode (practice or
exam), which ledger (local, the grader's service, a live event) and which track
this kernel is in is decided once, in `context`; every other module asks it.
"""

__version__ = "0.1.0"
