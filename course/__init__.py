"""Participant-side library of the data-centric AI hackathon.

Every notebook imports from here: the merged MNIST data (`data`), the annotation
function (`oracle`), the baseline CNN (`models`), accuracy helpers (`evaluate`),
the grading hook (`grading`), pictures (`plots`) and interactive helpers (`widgets`).
"""

__version__ = "0.1.0"
