"""The leaderboard of an assignment: ``<course>/leaderboard/<assignment>.{csv,html,png}``.

Rows come from the results store (`store.resolve_url`: the course's ``grades.db``, or the
database of ``url=`` / ``$AUTOGRADER_DB``). Ranking: passing submissions first, then the
fewest annotations, then the higher accuracy; equal keys share a rank. A participant graded
with several notebooks is ranked by the attempt `autograder.grading.attempts.RULE` picks (the first with a
counted submission, `store.load`), and the ``attempts`` column says how many were graded, so the
board is no scoring oracle across resubmissions. The HTML
page is self-contained (inline CSS and JS, columns sortable by a click on their
header) so an instructor can project it or mail it; the PNG shows the ranked rows,
one named row each (names never overlap), with their annotations and their accuracy beside the 90% line.

Graded on several tracks (hidden tracks, `autograder.grading.tracks`), a row is the
submission's combined row: passed means passed on every track, annotations is the
total and accuracy the mean over the *hidden* tracks (the course track is known in
advance: its count is shown but buys no rank), so the same ranking reads "passed on
all, then the hidden tracks' annotations, then their mean accuracy"; columns
``accuracy <track>`` and ``annotations <track>`` show each track's numbers. A row graded
on fewer tracks than the others (mid-batch) comes after them (`rank`).

What participants see never echoes what a notebook chose to print: the ``detail`` of the
shared files is an allow-list of the grader's own phrases (`visible_detail`; the stored
detail quotes the kernel's error messages, which once carried 60 bought labels into the
CSV), and the ``review`` is in words and percentages (`visible_review`).

The files `build` writes are projected and shared with the participants, so they never name a
hidden track's digits (a later round's notebook would memorise them): the course track keeps
its name, the hidden ones are "hidden 1", "hidden 2", ... in the order they were named
(`public_labels`), and a hidden track's own error message (the notebook's words, which can print
its digits) is withheld there. The instructor's terminal table (`table`, printed by ``autograder
grade`` and ``autograder leaderboard``) and the results store keep the digits.
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import io
import math
import re
from pathlib import Path

from course import config
from course.files import write_atomic
from autograder.results import clean, spreadsheet, store

FOLDER = "leaderboard"
CSV_COLUMNS = ["rank", "student", "accuracy", "annotations", "passed", "score", "max_score", "status",
               "evaluations", "submissions", "attempts", "review", "detail"]
POINTS_COLUMNS = ["rank", "student", "passed", "score", "max_score", "status", "attempts", "detail"]  # no submit cell
TEXT_COLUMNS = frozenset({"student", "passed", "status", "review", "detail"})  # always guarded (`spreadsheet.safe_cell`)
HIDDEN_LABEL = "hidden {}"  # a hidden track on the projected board: its digits stay the instructor's
WITHHELD = "message withheld on the board (the instructor has it)"  # a hidden track's own error text
_ATTEMPTS_NOTE = re.compile(r"; ranked: attempt \d+ of \d+ \([a-z ,:;]+\)"  # autograder.grading.attempts.note, at the end
                            r"(; the latest, attempt \d+, (passed|did not pass) and is not ranked)?$")


def rank(rows: list[store.Row]) -> list[tuple[int, store.Row]]:
    """Rows in leaderboard order with their rank (1-based; ties share a rank).

    A row graded on fewer tracks than the board's fullest (a submission graded on the course track
    alone while the others have hidden tracks too, e.g. in the middle of a batch) comes after every
    row graded on them all: its count is not the hidden tracks' (`autograder.grading.tracks.ranked_parts`).
    """
    full = max((len(r.track.split()) for r in rows if r.kind != "points"), default=1)

    def key(row: store.Row):
        if row.kind == "points":
            return (not row.passed, -(row.score or 0.0))
        annotations = row.annotations if row.annotations is not None else math.inf
        accuracy = row.accuracy if row.accuracy is not None else -1.0
        # not passed: a counted submission before a row that only bought labels (accuracy None)
        return (not row.passed, len(row.track.split()) < full, row.accuracy is None, annotations, -accuracy)

    ordered = sorted(rows, key=lambda r: (key(r), r.student))
    ranked, previous, current = [], None, 0
    for position, row in enumerate(ordered, start=1):
        if key(row) != previous:
            current, previous = position, key(row)
        ranked.append((current, row))
    return ranked


PerTrack = dict  # student -> {track name: that track's row}; empty when graded on one track
Labels = dict  # track name -> what the board calls it ('7,1' -> '7,1', '2,5' -> 'hidden 1'); None: the names


def _num(value, digits=4):
    return "" if value is None else (f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else str(value))


def track_names(ranked: list[tuple[int, store.Row]], per_track: PerTrack | None) -> list[str]:
    """The tracks with their own columns, in the order they were named (course track first)."""
    if not per_track:
        return []
    names: dict[str, None] = {}
    for _, row in ranked:
        for name in row.track.split():
            if name in per_track.get(row.student, {}):
                names[name] = None
    return list(names)


def public_labels(ranked: list[tuple[int, store.Row]], per_track: PerTrack | None) -> Labels:
    """The board's names of the tracks: each row's course track (named first) as it is, every other
    track "hidden 1", "hidden 2", ... in the order `track_names` gives."""
    course = {row.track.split()[0] for _, row in ranked if row.track}
    labels: Labels = {}
    for name in track_names(ranked, per_track):
        labels[name] = name if name in course else HIDDEN_LABEL.format(sum(n not in course for n in labels) + 1)
    for _, row in ranked:  # a combined row without per-track rows still names its tracks in its text
        for name in row.track.split():
            labels.setdefault(name, name if name in course else HIDDEN_LABEL.format(
                sum(n not in course for n in labels) + 1))
    return labels


def _public(text: str, row: store.Row, labels: Labels | None) -> str:
    """`text` (a combined row's detail or review) with each hidden track's name replaced by its label and a
    hidden track's own error message withheld."""
    if not labels:
        return text
    hidden = {name: label for name, label in labels.items() if name != label and name in row.track.split()}
    if not hidden:
        return text
    head, sep, problem = text.partition(" | ")  # tracks.combine: summaries | the first failed track's detail
    name = problem.split(": ", 1)[0]
    if name in hidden:
        kept = _ATTEMPTS_NOTE.search(problem) if row.attempts > 1 else None  # store.load's note, grader's words
        problem = f"{name}: {WITHHELD}" + (kept.group(0) if kept else "")
    pattern = re.compile(r"(?<![\d,])(" + "|".join(re.escape(n) for n in hidden) + r")(?![\d,])")
    return pattern.sub(lambda m: hidden[m.group(1)], head + sep + problem)


# What a participant-visible ``detail`` may say (`visible_detail`): the grader's own phrases, never the stored
# text itself, which quotes the kernel (an exception's message, a file name) and so can carry what a notebook
# chose to print, labels it bought included. (pattern at the start of a judge's detail, phrase shown)
_KINDS = (
    (r"stopped after the wall-clock limit of (\d+) s", "stopped after the wall-clock limit of {0} s"),
    (r"the kernel died( in cell \d+)?", "the kernel died{0} (it crashed, or was killed)"),
    (r"nbgrader failed", "nbgrader failed (the instructor has its log)"),
    (r"graded for points only \(no submit cell\)", "graded for points only (no submit cell)"),
    (r"no submission reached the annotation service", "no submission reached the annotation service"),
    (r"\d+ submission\(s\) refused by the service; none counted", "submissions refused by the service; none counted"),
    (r"counted the first of \d+ submissions?; \d+ held-out evaluations?", "counted the first submission"),
    (r"the notebook used more than the ([\d.]+) GB memory limit( in cell \d+)?",
     "the notebook used more than the {0} GB memory limit{1}"),  # `autograder.sandbox.memlimit.detail`
    (r"the notebook's output was too large for the grader", "the notebook's output was too large for the grader: "
                                                            "not graded"),
    (r"grader error", "grader error (the instructor has its message)"),
    (r"no notebook in submitted/", "no notebook in the submission"),
    (r"refused: ", "the submission was refused (the instructor has the reason)"),
)
# notes the grader adds after the start (presence only: their numbers and quotes are not shown)
_NOTES = (
    ("label(s) bought without a counted submission", "labels bought without a counted submission: this attempt "
                                                     "counts as the student's graded one"),
    ("point(s) of the submission's test cells withheld", "the submission's test-cell points withheld (the "
                                                         "service's ledger says the counted submission did not pass)"),
    ("first error: ", "the notebook raised an error (its feedback shows where)"),
    ("ignored (not a date nbgrader reads)", "a timestamp file was ignored"),
)
DETAIL_WITHHELD = "details withheld on the board (the instructor has them)"  # a detail in no known form


def _worded(detail: str) -> str:
    """One judge detail in the grader's own fixed words (`_KINDS`, `_NOTES`), no text of the kernel's."""
    parts = []
    for pattern, shown in _KINDS:
        found = re.match(pattern, detail)
        if found:
            parts.append(shown.format(*(group or "" for group in found.groups())))  # an optional part: ''
            break
    else:
        return DETAIL_WITHHELD
    parts += [shown for marker, shown in _NOTES if marker in detail]
    return "; ".join(parts)


def visible_detail(row: store.Row) -> str:
    """The ``detail`` a participant may see: an allow-list (`_KINDS`, `_NOTES`), never the stored text.

    The stored detail quotes the kernel: the first error's message and exception name, which a notebook
    chooses (one that bought 60 labels and raised ``RuntimeError('0110...')`` put them on a shared CSV).
    A combined row keeps its per-track summaries (the grader's numbers) and says what went wrong on the
    first failed track in fixed words; the attempts note (`autograder.grading.attempts.note`) is the grader's.
    """
    text = row.detail
    kept = _ATTEMPTS_NOTE.search(text) if row.attempts > 1 else None
    body = text[:kept.start()] if kept else text
    if len(row.track.split()) > 1:  # tracks.combine: grader-made summaries | '<track>: <that track's detail>'
        head, sep, problem = body.partition(" | ")
        if sep:
            name, _, inner = problem.partition(": ")
            head += f" | {name}: {_worded(inner)}"
        shown = head
    else:
        shown = _worded(body)
    return shown + (kept.group(0) if kept else "")


_REGRADE_CHANGED = re.compile(re.escape(store.REGRADE_CHANGED) + r" from (\S+) \([^)]*\) to (\S+) \([^)]*\)")
_REGRADE_UNCOUNTED = re.compile(re.escape(store.REGRADE_UNCOUNTED) + r" at \S+ \(status (\w+)\), so the counted "
                                r"grading of \S+ is kept")


def _percent(value: str) -> str:
    try:
        return f"{float(value):.2%}"
    except ValueError:
        return "no submission"


def visible_review(review: str) -> str:
    """`review` in words and percentages: the store's regrade notes without raw floats or timestamps."""
    review = _REGRADE_CHANGED.sub(lambda m: f"{store.REGRADE_CHANGED} from {_percent(m.group(1))} to "
                                            f"{_percent(m.group(2))}", review)
    return _REGRADE_UNCOUNTED.sub(lambda m: f"{store.REGRADE_UNCOUNTED} (status {m.group(1)}), so the first "
                                            "counted grading is kept", review)


def _track_cells(row: store.Row, per_track: PerTrack | None, names: list[str],
                 labels: Labels | None = None) -> dict[str, str]:
    cells = {}
    mine = (per_track or {}).get(row.student, {})
    for name in names:
        part = mine.get(name)
        shown = (labels or {}).get(name, name)
        cells[f"accuracy {shown}"] = "" if part is None else _num(part.accuracy)
        cells[f"annotations {shown}"] = "" if part is None or part.annotations is None else str(part.annotations)
    return cells


def _cells(rank_: int, row: store.Row, labels: Labels | None = None) -> dict[str, str]:
    num = _num
    return {"rank": str(rank_), "student": clean.line(row.student, 200), "accuracy": num(row.accuracy),
            "annotations": "" if row.annotations is None else str(row.annotations),
            "passed": "yes" if row.passed else "no", "score": num(row.score, 2),
            "max_score": num(row.max_score, 2), "status": row.status,
            "evaluations": "" if row.evaluations is None else str(row.evaluations),
            "submissions": "" if row.submissions is None else str(row.submissions),
            "attempts": str(row.attempts),
            "review": clean.line(_public(visible_review(row.review), row, labels)),
            "detail": clean.line(_public(visible_detail(row), row, labels), 500)}


def columns(ranked: list[tuple[int, store.Row]], per_track: PerTrack | None = None,
            labels: Labels | None = None) -> list[str]:
    """The leaderboard's columns: no accuracy or annotations for a points-only assignment;
    per-track accuracy and annotations after ``passed`` when graded on several tracks (named by `labels`)."""
    if ranked and all(row.kind == "points" for _, row in ranked):
        return POINTS_COLUMNS
    names = [(labels or {}).get(n, n) for n in track_names(ranked, per_track)]
    if not names:
        return CSV_COLUMNS
    at = CSV_COLUMNS.index("passed") + 1
    extra = [f"{what} {name}" for name in names for what in ("accuracy", "annotations")]
    return CSV_COLUMNS[:at] + extra + CSV_COLUMNS[at:]




def to_csv(ranked: list[tuple[int, store.Row]], per_track: PerTrack | None = None,
           labels: Labels | None = None) -> str:
    buffer = io.StringIO()
    names = columns(ranked, per_track, labels)
    tracks = track_names(ranked, per_track)
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for rank_, row in ranked:
        cells = _cells(rank_, row, labels) | _track_cells(row, per_track, tracks, labels)
        writer.writerow({k: spreadsheet.safe_cell(v, numeric=k not in TEXT_COLUMNS) for k, v in cells.items()})
    return buffer.getvalue()


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1b1b1b; }
h1 { margin-bottom: .2rem; } p.rule { font-size: 1.15rem; } p.meta { color: #666; }
table { border-collapse: collapse; font-size: 1.05rem; }
th, td { padding: .35rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }
th { cursor: pointer; user-select: none; background: #f3f3f3; position: sticky; top: 0; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.passed td { background: #eaf7ea; } tr.passed td.passed { color: #1a7f37; font-weight: bold; }
td.detail { color: #555; font-size: .9rem; max-width: 40rem; }
tr.review td.review { color: #9a6700; font-weight: bold; }
tr.resubmitted td.attempts { color: #9a6700; font-weight: bold; }
"""

_SCRIPT = """
document.querySelectorAll('th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var ascending = th.getAttribute('aria-sort') !== 'ascending';
    document.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
      var nx = parseFloat(x), ny = parseFloat(y);
      var cmp = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
      if (x === '' && y !== '') cmp = 1;  // empty cells last either way
      else if (y === '' && x !== '') cmp = -1;
      else if (!ascending) cmp = -cmp;
      return cmp;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

_NUMERIC = {"rank", "accuracy", "annotations", "score", "max_score", "evaluations", "submissions", "attempts"}
_ATTEMPTS_RULE = ("Only a participant's <strong>first graded notebook with a counted submission</strong> is ranked: "
                  "a changed notebook graded again is a new attempt, counted in <em>attempts</em>, and cannot "
                  "improve the row.")


def _rule(ranked, tracks: list[str] | None = None, labels: Labels | None = None) -> str:
    if columns(ranked) == POINTS_COLUMNS:
        return "This assignment has no submit cell: it is graded for nbgrader's points only."
    if tracks:
        shown = [(labels or {}).get(t, t) for t in tracks]
        secret = any(name != t for name, t in zip(shown, tracks))
        listed = "; ".join(shown) if secret else ", ".join(shown)  # '7,1; hidden 1' reads as two tracks
        return (f"Every submission was graded on {len(tracks)} tracks ({html.escape(listed)})"
                + (": the hidden tracks' digits stay secret. " if secret else ". ") +
                f"A submission <strong>passes</strong> with at least <strong>{config.TARGET_ACCURACY:.0%}</strong> "
                "accuracy on held-out images it never saw <strong>on every track</strong>; on each track its first "
                "submission counts. Passing submissions are ranked by the <strong>fewest annotations on the hidden "
                "tracks</strong>, then by their mean accuracy: the course track is known in advance, so its count "
                "is shown but buys no rank. Rows marked <em>review</em> passed a track with 0 annotations, needed "
                "far more annotations on one track than on another, or carry far more code than a method needs. "
                f"{_ATTEMPTS_RULE}")
    return (f"A submission <strong>passes</strong> with at least <strong>{config.TARGET_ACCURACY:.0%}</strong> "
            "accuracy on held-out images it never saw (scored by the grader, not the notebook); its first "
            "submission counts. Passing submissions are ranked by the <strong>fewest annotations</strong>, "
            f"then by accuracy. Rows marked <em>review</em> passed with 0 annotations or carry far more code than a "
            f"method needs. {_ATTEMPTS_RULE}")


def to_html(assignment: str, ranked: list[tuple[int, store.Row]], generated: str,
            per_track: PerTrack | None = None, labels: Labels | None = None) -> str:
    names = columns(ranked, per_track, labels)
    tracks = track_names(ranked, per_track)
    head = "".join(f"<th scope=\"col\">{html.escape(c)}</th>" for c in names)
    body = []
    for rank_, row in ranked:
        cells = _cells(rank_, row, labels) | _track_cells(row, per_track, tracks, labels)
        tds = []
        for column in names:
            text = cells[column]
            if column.startswith("accuracy") and text:
                text = f"{float(text):.2%}"
            kind = column.split(" ")[0]
            classes = " ".join(c for c in (kind, "num" if kind in _NUMERIC else "") if c)
            tds.append(f"<td class=\"{classes}\" data-value=\"{html.escape(cells[column])}\">{html.escape(text)}</td>")
        css = " ".join(c for c in ("passed" if row.passed else "", "review" if row.review else "",
                                   "resubmitted" if row.attempts > 1 else "") if c)
        body.append(f"<tr class=\"{css}\">{''.join(tds)}</tr>")
    passed = sum(row.passed for _, row in ranked)
    title = f"Leaderboard: {html.escape(assignment)}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>
<body><h1>{title}</h1>
<p class="rule">{_rule(ranked, tracks, labels)}</p>
<p class="meta">{passed} of {len(ranked)} submissions passed. Generated {html.escape(generated)}.
Click a column header to sort.</p>
<table><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table>
<script>{_SCRIPT}</script>
</body></html>
"""


MAX_PNG_ROWS = 40  # rows drawn in the PNG (the best ranked); the CSV and HTML have them all
PASSED_COLOUR, FAILED_COLOUR = "#1a7f37", "#cf222e"


def figure(assignment: str, ranked: list[tuple[int, store.Row]], per_track: PerTrack | None = None,
           labels: Labels | None = None):
    """The leaderboard's PNG as a matplotlib `Figure` (`to_png` saves it; tests read its artists).

    One row per submission in rank order, named on the y axis, so names never overlap however many
    share a count: on the left the annotations (bars, integer ticks; each track's count as a hollow
    marker when graded on several), on the right the accuracy with the 90% line. The legend counts
    every row of the board, a row without a submission (no accuracy, no count) included.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    shown = ranked[:MAX_PNG_ROWS]
    more = len(ranked) - len(shown)
    names = [f"{rank_}. {clean.mathtext(r.student)}" + (" (review)" if r.review else "") for rank_, r in shown]
    ys = list(range(len(shown)))[::-1]  # rank 1 at the top
    colours = [PASSED_COLOUR if r.passed else FAILED_COLOUR for _, r in shown]
    height = max(3.0, 1.6 + 0.32 * len(shown))
    passed = sum(bool(r.passed) for _, r in ranked)
    legend = [Patch(color=PASSED_COLOUR, label=f"passed ({passed})"),
              Patch(color=FAILED_COLOUR, label=f"not passed ({len(ranked) - passed})")]
    note = f" (best {len(shown)} of {len(ranked)}; all in the CSV)" if more else ""
    if columns(ranked) == POINTS_COLUMNS:  # no submit cell: nbgrader's points per student
        fig = Figure(figsize=(8, height), dpi=120)
        ax = fig.add_subplot()
        ax.barh(ys, [r.score or 0 for _, r in shown], color=colours, height=0.6)
        ax.set_yticks(ys, names)
        ax.set_xlabel("nbgrader points")
        fig.suptitle(f"{clean.mathtext(assignment)}: points (no submit cell){note}")
        ax.legend(handles=legend, loc="lower left", bbox_to_anchor=(0, 1.01), ncol=2, frameon=False, borderaxespad=0)
        fig.tight_layout()
        return fig
    fig = Figure(figsize=(10, height), dpi=120)
    left, right = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    counts = [r.annotations if r.annotations is not None else 0 for _, r in shown]
    left.barh(ys, counts, color=colours, height=0.6, zorder=2)
    for y, (_, r) in zip(ys, shown):
        if r.annotations is None:
            left.text(0, y, f"  no submission ({r.status})", va="center", fontsize=8, color="#555")
    tracks = track_names(ranked, per_track)
    markers = "^sDvP*"
    for number, name in enumerate(tracks):  # each track's own count, small and hollow, on its row
        spots = [(y, per_track[r.student][name]) for y, (_, r) in zip(ys, shown) if name in per_track.get(r.student, {})]
        spots = [(y, p) for y, p in spots if p.annotations is not None]
        handle = left.scatter([p.annotations for _, p in spots], [y for y, _ in spots], marker=markers[number % 6],
                              facecolors="none", edgecolors="#333", s=30, zorder=3,
                              label=f"track {(labels or {}).get(name, name)}")
        legend.append(handle)
    left.set_yticks(ys, names)
    left.set_ylim(-0.7, len(shown) - 0.3)
    left.set_xlim(left=0)
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("annotations (distinct labels bought)" + (",\ntotal over the hidden tracks" if tracks else ""))
    left.grid(axis="x", alpha=.3, zorder=0)
    left.legend(handles=legend, loc="lower left", bbox_to_anchor=(0, 1.01), ncol=len(legend), fontsize=8,
                frameon=False, borderaxespad=0)  # above the bars: it never hides one
    accuracy = [(y, r.accuracy, colour) for y, (_, r), colour in zip(ys, shown, colours) if r.accuracy is not None]
    right.scatter([a for _, a, _ in accuracy], [y for y, _, _ in accuracy], c=[c for _, _, c in accuracy], s=45,
                  zorder=3)
    right.axvline(config.TARGET_ACCURACY, color="#555", linestyle="--", linewidth=1)
    right.text(config.TARGET_ACCURACY, len(shown) - 0.35, f" target {config.TARGET_ACCURACY:.0%}", fontsize=8,
               color="#555", va="bottom")
    for y, a, _ in accuracy:
        right.annotate(f"{a:.1%}", (a, y), textcoords="offset points", xytext=(-7, 0), ha="right", va="center",
                       fontsize=8)
    low = math.floor(10 * min([0.4] + [a - 0.02 for _, a, _ in accuracy])) / 10
    right.set_xlim(low, 1.02)
    right.set_xticks([t / 10 for t in range(round(10 * low), 11)])
    right.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    right.set_xlabel("accuracy on the private held-out images" + ("\n(mean over the hidden tracks)" if tracks else ""))
    right.grid(axis="x", alpha=.3)
    fig.suptitle(f"{clean.mathtext(assignment)}: the ranking{note}")
    fig.tight_layout()
    return fig


def to_png(assignment: str, ranked: list[tuple[int, store.Row]], path: Path,
           per_track: PerTrack | None = None, labels: Labels | None = None) -> None:
    """Write `figure` as a PNG at `path` (atomically)."""
    buffer = io.BytesIO()
    figure(assignment, ranked, per_track, labels).savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())


def build(course_dir: Path, assignment: str, now: _dt.datetime | None = None, *,
          url: str | None = None) -> dict[str, Path]:
    """Write the CSV, HTML and PNG of `assignment` from the results store (`url`: see
    `store.resolve_url`) into ``<course>/leaderboard/``, hidden tracks by label only; return their paths."""
    course_dir = Path(course_dir)
    ranked = rank(store.load(course_dir, assignment, url=url))
    per_track = per_track_rows(course_dir, assignment, url=url)
    now = now or _dt.datetime.now(_dt.timezone.utc)
    generated = now.strftime("%Y-%m-%d %H:%M UTC")
    folder = course_dir / FOLDER
    paths = {ext: folder / f"{assignment}.{ext}" for ext in ("csv", "html", "png")}
    labels = public_labels(ranked, per_track)  # projected and shared: no hidden track's digits
    write_atomic(paths["csv"], to_csv(ranked, per_track, labels))
    write_atomic(paths["html"], to_html(assignment, ranked, generated, per_track, labels))
    to_png(assignment, ranked, paths["png"], per_track, labels)
    return paths


def per_track_rows(course_dir: Path, assignment: str, url: str | None = None) -> PerTrack:
    """student -> {track: row} of the submissions graded on several tracks (empty if none was)."""
    found: PerTrack = {}
    for row in store.load_tracks(course_dir, assignment, url=url):
        found.setdefault(row.student, {})[row.track] = row
    return found


def table(ranked: list[tuple[int, store.Row]], width: int = 60, per_track: PerTrack | None = None) -> str:
    """A plain-text table for the terminal (with each track's accuracy/annotations when graded on several)."""
    tracks = track_names(ranked, per_track)
    header = ["rank", "student", "accuracy", "annotations", "passed", *tracks, "score", "status", "attempts", "detail"]
    lines = []
    for rank_, row in ranked:
        c = _cells(rank_, row)
        t = _track_cells(row, per_track, tracks)
        parts = [(f"{float(t[f'accuracy {n}']):.1%}" if t[f"accuracy {n}"] else "-") + "/"
                 + (t[f"annotations {n}"] or "-") for n in tracks]
        accuracy = "" if row.accuracy is None else f"{row.accuracy:.2%}"
        score = "" if row.score is None else f"{c['score']}/{c['max_score']}"
        detail = clean.line(row.detail, width) + (f" [review: {clean.line(row.review, 60)}]" if row.review else "")
        lines.append([c["rank"], c["student"], accuracy, c["annotations"], c["passed"], *parts, score, row.status,
                      c["attempts"], detail])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)
