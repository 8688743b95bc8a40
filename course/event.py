"""Live event mode: take part in the instructor's event from your notebook.

    from course import event, data, oracle, grading
    event.join("http://10.0.0.5:8000", "K7QX2P", "Ada")   # once, at the top of the notebook
    ds = data.load()          # the event's pool, downloaded once (no MNIST files needed), with the
                              # baseline checkpoint (models.baseline() loads it: nothing to train)
    oracle.annotate([12, 40]) # charged on the event server, in your ledger there
    grading.submit(predict)   # your counted submission: it appears on the board at once
    event.upload("03_clustering.ipynb")  # the saved notebook, for the instructor's `autograder verify`

An invite-only event (the instructor made it with a roster) takes your personal code
instead of the event code and a name: ``event.join(url, "K7QX2P-AB3CD4EF")``.

Or without a code change: set env ``COURSE_EVENT_URL``, ``COURSE_EVENT_CODE`` and
``COURSE_EVENT_NAME`` (default: your login name) before starting Jupyter; the
first call that needs the event joins it.

In event mode the event server holds the labels. `course.data.load()` returns the
event's pool: the same images and merged labels, shuffled with the event's secret
seed, the public test split with merged labels, and the private test images without
labels (no original label of C is on your machine). `course.oracle` is charged on the
server with the same rules and messages as locally (`course.protocol`). The kernel
is in exam mode: `course.evaluate.accuracy` returns nan, and the first successful
`course.grading.submit` is your one counted submission for the event; a later one is
refused (`SubmissionRefusedError`) and charges nothing. Your count belongs to you,
not to the kernel: after a kernel restart, joining under the same name from the same
machine rejoins (the token is kept in the cache folder) and keeps your count.

An `oracle.annotate` call of more indices than one request carries
(`protocol.MAX_ANNOTATE_INDICES`) is sent in parts and answered as one call: the same
labels and charge as one request, or one refusal that charges nothing.

A request refused for its rate (429: more requests per second than the event allows;
the server charged nothing) is sent again after the server's Retry-After, a bounded
number of times. Under the autograder (``autograder verify`` re-runs a notebook on the
event's data) `join` and `upload` do nothing and the grader's service holds the labels.

Which event this kernel is in is kept by `course.context` (that is how the oracle, the data
and exam mode know); the HTTP is `course.event_client`. Needs nothing beyond numpy.
"""

from __future__ import annotations

import os

from course import event_client
from course.context import CONTEXT
from course.event_client import Joined
from course.exceptions import ServiceError


def join(url: str, code: str, name: str | None = None) -> Joined | None:
    """Join event `code` on the server at `url` as `name` (default: your login name).

    In an invite-only event `code` is your personal code (``"K7QX2P-AB3CD4EF"``, from the
    instructor) and the name comes with it. Refused with a `ServiceError` that says why:
    an unknown code, a name taken by someone else, a closed event. Joining again under
    your own name from the same machine rejoins (e.g. after a kernel restart) and keeps
    your annotations; a personal code rejoins from any machine.

    Under the autograder (``autograder verify`` re-runs your notebook on the event's data)
    this does nothing: the grader holds the labels there.
    """
    if CONTEXT.graded():
        print("running under the autograder: the grader holds the labels, so the event is not joined.")
        return None
    joined = event_client.join(url, code, name)
    CONTEXT.set_event(joined)
    return joined


def upload(path: str | os.PathLike) -> dict | None:
    """Send your notebook file to the event server, for the instructor's `autograder verify`.

    Save the notebook first (the file on disk is what is sent); outputs are left out. The
    last upload counts. The winners' notebooks are re-run on the event's data, so upload
    the notebook that made your counted submission. Does nothing under the autograder.
    """
    if CONTEXT.graded():
        return None
    joined = current()
    if joined is None:
        raise ServiceError("no event joined; call course.event.join(url, code, name) first.")
    return event_client.upload(joined, path)


def leave() -> None:
    """Stop taking part in the event in this kernel (back to the local course)."""
    CONTEXT.set_event(None)


def current() -> Joined | None:
    """The joined event; joins from the env variables on first use; None outside event mode."""
    return CONTEXT.event()
