"""The judge: a run's evidence (service ledger, executed notebooks, nbgrader's outcome) -> one row.

The numbers come only from the service's ledger (`course.protocol.summarize`): the
accuracy and annotations of the FIRST successful private score (the counted
submission), how many held-out evaluations and submissions the run attempted.
nbgrader's points come from the gradebook; the first error from the executed
notebook. Nothing the notebook printed is believed. A pass with 0 annotations is
possible only by guessing, by a hole in the rules or by knowledge typed in, so it is marked
for review (`autograder.grading.tracks.ZERO_NOTE`, the rule verify applies too), and so is a notebook
whose code carries far more than a method needs (`autograder.grading.knowledge`).

nbgrader gives a test cell its points when its output holds no error, and the kernel
decides what its outputs hold (it can hide tracebacks, drop asserts, dress up its
`Result`), so participant code can forge points. For the points that say "the
submission reached 90%" the ledger knows better: the test cells that check the
submission (`submission_points`: graded cells whose source, which nbgrader restores
from the instructor's version, calls ``submit(`` or reads the submission's
``result``) earn their points only if the counted submission passed. The rule only
takes points away, so no cell a participant adds or moves can earn any. Every other
test cell's points stay nbgrader's (README: "What the grader defends").
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field

from course import config, protocol
from autograder.grading import knowledge, tracks
from autograder.results import clean, store
from autograder.sandbox import memlimit


# the detail of a run that bought labels and made no counted submission (README: resubmissions)
BOUGHT_NOTE = "%d label(s) bought without a counted submission: this attempt counts as the student's graded one"


@dataclass
class Evidence:
    """Everything the judge looks at for one submission."""

    ledger_text: str = ""
    nbgrader_ok: bool = False
    timed_out: bool = False
    notebooks: list = field(default_factory=list)  # executed notebooks (nbformat nodes) that exist
    log_tail: str = ""
    score: float | None = None
    max_score: float | None = None
    notes: list[str] = field(default_factory=list)  # e.g. "timestamp.txt ignored"
    oom_kills: int = 0  # processes the kernel's memory cgroup killed (the launcher's exit record)
    kernel_log: str = ""  # the tail of the kernel's own stdout/stderr
    running_cell: int | None = None  # the cell the kernel was running when the job ended (1-based)


@dataclass
class Verdict:
    status: str
    detail: str
    accuracy: float | None = None
    annotations: int | None = None
    evaluations: int | None = None
    submissions: int | None = None
    score: float | None = None
    max_score: float | None = None
    passed: bool = False
    review: str = ""


@dataclass
class Settings:
    timeout: float
    memory_gb: float
    kind: str = "competition"  # or "points": no submit cell, graded for nbgrader's points only


def first_error(notebooks: list) -> str:
    """'<cell>: <Error>: <message>' of the first cell that raised, or ''."""
    for nb in notebooks:
        for number, cell in enumerate(nb.cells, start=1):
            if cell.get("cell_type") != "code":
                continue
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    where = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"cell {number}"
                    return clean.line(f"{where}: {output.get('ename')}: "
                                      f"{clean.first_line(output.get('evalue', ''), 160)}", 240)
    return ""


def cell_seconds(notebooks: list) -> float:
    """Sum of the cells' execution times recorded in the executed notebooks."""
    total = 0.0
    for nb in notebooks:
        for cell in nb.cells:
            timing = cell.get("metadata", {}).get("execution", {})
            try:
                begin = _dt.datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
                end = _dt.datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
            except (KeyError, ValueError, AttributeError):
                continue
            total += (end - begin).total_seconds()
    return total


# the source of a test cell that checks the submission: it calls submit( or reads its result
_CHECKS_SUBMISSION = re.compile(r"\bsubmit\s*\(|\bresult\s*\.\s*(?:passed|accuracy|annotations)\b")


def submission_points(notebooks: list) -> float:
    """Points of the graded cells that check the submission (their source calls ``submit(`` or
    reads ``result.passed``/``.accuracy``/``.annotations``).

    nbgrader restores a locked cell's source and points from its gradebook before it runs the
    notebook, so what is read here is the instructor's, whatever the participant edited.
    """
    total = 0.0
    for nb in notebooks:
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            checks = _CHECKS_SUBMISSION.search(cell.get("source", ""))
            if cell.get("cell_type") == "code" and meta.get("grade") and checks:
                try:
                    total += float(meta.get("points") or 0)
                except (TypeError, ValueError):
                    continue
    return total


def _withhold(score: float | None, max_score: float | None, notebooks: list) -> tuple[float | None, str]:
    """The score without the submission's points when the counted submission did not pass; a note if cut."""
    if score is None or not max_score:
        return score, ""
    cap = max(0.0, max_score - submission_points(notebooks))
    if score <= cap:
        return score, ""
    return cap, (f"{score - cap:g} point(s) of the submission's test cells withheld: nbgrader saw them pass, "
                 "the service's ledger says the counted submission did not")


def _kernel_died(log: str) -> bool:
    return "DeadKernelError" in log or "kernel died" in log.lower()


def _nbgrader_problem(log: str, error: str, running_cell: int | None) -> str:
    if _kernel_died(log):
        where = f" in cell {running_cell}" if running_cell else ""
        before = f" (last error before: {error})" if error else ""
        return f"the kernel died{where} (it crashed, or was killed){before}"
    lines = [ln for ln in log.splitlines() if "[ERROR]" in ln or "Error" in ln]
    return "nbgrader failed: " + (clean.first_line(lines[-1]) if lines else "see its log")


def judge(evidence: Evidence, settings: Settings) -> Verdict:
    summary = protocol.summarize(protocol.read_ledger(evidence.ledger_text))
    # without a counted submission the row shows the labels the run bought: they reached the kernel,
    # so the attempt counts (`autograder.grading.attempts.counted`) and a later attempt cannot reuse them for free
    bought = summary.annotations if summary.accuracy is not None else (summary.bought or None)
    numbers = dict(accuracy=summary.accuracy, annotations=bought,
                   evaluations=summary.evaluations, submissions=summary.submissions)
    points = settings.kind == "points"
    if points:
        numbers = {}
    error = first_error(evidence.notebooks)
    notes = "".join(f"; {n}" for n in evidence.notes)
    if summary.accuracy is None and summary.bought and not points:
        notes = f"; {BOUGHT_NOTE % summary.bought}{notes}"
    if evidence.timed_out:
        counted = "" if points or summary.accuracy is not None else "; no submission had been made"
        return Verdict("timeout", f"stopped after the wall-clock limit of {settings.timeout:.0f} s{counted}{notes}",
                       **numbers)
    died = not evidence.nbgrader_ok and _kernel_died(evidence.log_tail)
    at_limit, cell = memlimit.hit(oom_kills=evidence.oom_kills, kernel_died=died, kernel_log=evidence.kernel_log,
                                  notebooks=evidence.notebooks, running_cell=evidence.running_cell)
    if at_limit:  # one row whichever way the limit was met (`autograder.sandbox.memlimit`)
        return Verdict("failed", memlimit.detail(settings.memory_gb, cell) + notes, **numbers)
    if not evidence.nbgrader_ok:
        return Verdict("error", _nbgrader_problem(evidence.log_tail, error, evidence.running_cell) + notes,
                       **numbers)
    pts = dict(score=evidence.score, max_score=evidence.max_score)
    tail = (f"; first error: {error}" if error else "") + notes
    if points:
        full = bool(evidence.max_score) and evidence.score is not None and evidence.score >= evidence.max_score
        return Verdict("ok", "graded for points only (no submit cell)" + tail, passed=full, **pts)
    passed = summary.accuracy is not None and summary.accuracy >= config.TARGET_ACCURACY
    withheld = ""
    if not passed:  # the submission's points are the ledger's, not the kernel's outputs'
        pts["score"], withheld = _withhold(evidence.score, evidence.max_score, evidence.notebooks)
        tail += f"; {withheld}" if withheld else ""
    review = ("the submission's test cells passed in the kernel, not in the service's ledger: "
              "check the notebook" if withheld else "")
    if summary.accuracy is None:
        detail = "no submission reached the annotation service (grading.submit was not called or failed)"
        if summary.submissions:
            detail = f"{summary.submissions} submission(s) refused by the service; none counted"
        return Verdict("failed", detail + tail, review=review, **numbers, **pts)
    detail = (f"counted the first of {summary.submissions} submission{'s' if summary.submissions != 1 else ''}; "
              f"{summary.evaluations} held-out evaluation{'s' if summary.evaluations != 1 else ''}")
    if tracks.zero_pass(passed, summary.annotations):
        review = tracks.ZERO_NOTE
    if passed and (heavy := knowledge.review_note(evidence.notebooks)):  # only a ranked row needs reading
        review = f"{review}; {heavy}" if review else heavy
    return Verdict("ok", detail + tail, passed=passed, review=review, **numbers, **pts)


def to_row(verdict: Verdict, student: str, assignment: str, track: str, kind: str,
           runtime: float = 0.0, graded_at: str = "") -> store.Row:
    return store.Row(student=student, assignment=assignment, track=track, accuracy=verdict.accuracy,
                     annotations=verdict.annotations, passed=verdict.passed, score=verdict.score,
                     max_score=verdict.max_score, status=verdict.status, detail=clean.line(verdict.detail, 500),
                     runtime=runtime, graded_at=graded_at, evaluations=verdict.evaluations,
                     submissions=verdict.submissions, review=verdict.review, kind=kind)
