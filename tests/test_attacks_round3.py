"""Attacks, round 3: holes found by a hostile participant on surfaces the earlier attack tests leave open.

Every attack runs for real: one `autograder grade` batch of the toy course on the course track and a
hidden one (`graded`: three attacking students), then one regrade of one of them. A hole still open is
a strict xfail whose reason names the owner file, what works and the fix at the root; it asserts only
the hole (``raises=AssertionError``: a broken precondition or setup is a failure, never an xfail), so it
turns into a failure (XPASS) the day the hole is closed, whichever root fix closes it: remove the mark then.

- (closed, now a passing test) Labels bought in an attempt that made no counted submission were free
  in the next attempt: it annotated, put what it bought into the row's ``detail`` and crashed before
  ``submit``; the same shuffle let the next attempt type the labels in and pass with one annotation.
  Now a run that bought labels shows them on its row and spends the attempt (`autograder/grading/attempts.py`),
  and the shared board's detail no longer echoes the kernel (`autograder/results/leaderboard.py`); the spy
  reads its labels from its kept executed notebook (what its feedback shows) instead.
- (closed, now a passing test) Hidden tracks did not catch a table of the course track's private test
  images with an honest fallback on every other track (1 + 60 annotations): a row graded on several
  tracks is now ranked by the hidden tracks' count (the table buys nothing) and far-apart counts are
  marked for review (`autograder/grading/tracks.py`; a cheap fallback: tests/test_memory_rank.py).
- (open, strict xfail) Hidden tracks do not catch a small table of *pool* images: the pool is MNIST's
  whole training set on every track, only shuffled, so 50 image hashes per digit (all ten digits,
  4.5 kB) find their images on any track; the notebook trains on them, pays one annotation per track
  and passes every track, as does a model trained at home on all ten digits. No grader can tell such
  knowledge from code on a public data set (README, "What the grader defends").
- (closed, now a passing test) The projected board named the hidden tracks; it now calls them
  "hidden 1", ... (`autograder/results/leaderboard.py`).
- (closed, now a passing test) A student folder named ``memo.track25`` wrote its ledger over memo's
  kept hidden-track ledger; each student now has a folder of their own (`autograder/results/store.py`).
- (closed, now a passing test) `autograder grade --tracks 7,1 1,7` took the course track's own pair, in
  another order, as a hidden track; tracks are now compared as sets of digits.
- (closed, now a passing test) A kernel's active outputs (JavaScript, HTML event handlers) would run in
  nbgrader's formgrader on the instructor's Jupyter server; the kept notebook holds none
  (`autograder/results/inert.py`), checked in a real browser on the formgrader's own rendering.

Cost: one toy batch of three students on two tracks and one regrade of one student on two tracks, plus a
browser start: 172-258 s for the module at load 4-9 (2 cores shared with other test runs), 157-247 s of it
the fixture; the kernels' own runs are ~100 s of that (10-19 s per student and track).
"""

from __future__ import annotations

import csv
import hashlib
import re
import shutil

import pytest

from autograder.results import store
from course import data
from helpers.courses import HONEST, add_submission, make_course, run_cli, solution

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")]

A = "toy"
TRACKS = ["7,1", "2,5"]  # the course track and a hidden one
LIMITS = ["--memory", "3", "--timeout", "300"]
BOUGHT = 60  # labels the spy's first attempt buys (the toy's honest answer buys the same 60)
PER_DIGIT = 50  # memorised pool images per digit
HASH_CHARS = 8  # hex characters of an image hash in the table
# the fallback memoriser's student id: once memo's hidden-track ledger file name (ledgers/<a>/<student>.track25.jsonl)
IMPOSTOR = "memo.track" + TRACKS[1].replace(",", "")

# attempt 1: buy the labels, put them in the row's detail (an exception's message), never submit
SPY = ("indices = ds.c_indices[:%d]\n"
       "digits = oracle.annotate(indices)\n"
       "raise RuntimeError('LEAK ' + ''.join('1' if d == digits[0] else '0' for d in digits) + ' ' + str(digits[0]))\n"
       % BOUGHT)

# attempt 2: on the course track the same indices (the same shuffle) with their labels typed in, one annotation
# paid; on the hidden track the toy's honest answer
REUSE = ("if ds.track == %r:\n"
         "    bits, first = %r, %d\n"
         "    indices = ds.c_indices[:%d]\n"
         "    paid = oracle.annotate(indices[bits.index('0'):bits.index('0') + 1])  # one label: the other digit\n"
         "    digits = np.array([first if b == '1' else int(paid[0]) for b in bits])\n"
         "else:\n"
         "    indices = ds.c_indices[:60]\n"
         "    digits = oracle.annotate(indices)\n"
         "model = LogisticRegression(max_iter=1000).fit(ds.images[indices].reshape(len(indices), -1) / 255.0, digits)\n\n"
         "def predict(images):\n    return model.predict(images.reshape(len(images), -1) / 255.0).astype(int)\n")

# a table of pool images typed in at home (image hash -> digit, every digit), found on whatever track is graded
PAYLOAD = "document.title = 'pwned by memo'"  # would run as the instructor on the Jupyter server's origin
ACTIVE = ("from IPython.display import HTML, Javascript, display\n"  # outputs nbgrader's formgrader renders as they are
          "display(Javascript(%r))\n"
          "display(HTML('<img src=\"data:,\" onerror=\"' + %r + '\">'))\n" % (PAYLOAD, PAYLOAD))
MEMO = (ACTIVE + "import hashlib\n"
        "PACKED = %r  # hash, digit; hash, digit; ...\n"
        "TABLE = {PACKED[k:k + %d]: int(PACKED[k + %d]) for k in range(0, len(PACKED), %d)}\n"
        "known = {i: TABLE[h] for i, h in enumerate(hashlib.sha1(im.tobytes()).hexdigest()[:%d] for im in ds.images)\n"
        "         if TABLE.get(h) in ds.track}\n"
        "indices = np.array(sorted(known))\n"
        "oracle.annotate(ds.c_indices[:1])  # one paid annotation: a 0-annotation pass would be marked for review\n"
        "model = LogisticRegression(max_iter=1000).fit(ds.images[indices].reshape(len(indices), -1) / 255.0,\n"
        "                                             [known[i] for i in indices])\n\n"
        "def predict(images):\n    return model.predict(images.reshape(len(images), -1) / 255.0).astype(int)\n")


# the README's own example, a table of the course track's private test images (made at home with course.data), with
# an honest fallback: the table answers on the course track, the toy's honest answer on any other
FALLBACK = ("import hashlib\n"
            "PACKED = %r\n"
            "TABLE = {PACKED[k:k + %d]: int(PACKED[k + %d]) for k in range(0, len(PACKED), %d)}\n"
            "key = lambda image: hashlib.sha1(image.tobytes()).hexdigest()[:%d]\n"
            "if ds.track == %r:\n"
            "    oracle.annotate(ds.c_indices[:1])  # one paid annotation: a 0-annotation pass would be marked for review\n"
            "    def predict(images):\n"
            "        return np.array([TABLE.get(key(image), ds.track[0]) for image in images])\n"
            "else:\n" + "".join("    " + line + "\n" for line in HONEST.splitlines()))


def _fallback_packed() -> str:
    """What a participant makes at home with `course.data`: the course track's private test images, by hash."""
    home = data.split(TRACKS[0])
    return "".join(f"{hashlib.sha1(image.tobytes()).hexdigest()[:HASH_CHARS]}{int(digit)}"
                   for image, digit in zip(home.private_test_images, home.private_test_digits))


def _memo_packed() -> str:
    """The table as the notebook types it: each hash followed by its digit, one string."""
    return "".join(f"{key}{digit}" for key, digit in _memo_table().items())


def _memo_table() -> dict[str, int]:
    """What a participant makes at home from public MNIST: PER_DIGIT training images per digit, by hash."""
    images, digits, _, _ = data._read_mnist()
    table: dict[str, int] = {}
    counts = dict.fromkeys(range(data.N_DIGITS), 0)
    for image, digit in zip(images, digits.tolist()):
        if counts[digit] < PER_DIGIT:
            key = hashlib.sha1(image.tobytes()).hexdigest()[:HASH_CHARS]
            if key not in table:
                table[key] = digit
                counts[digit] += 1
    return table


def _csv_row(course_dir, student: str) -> dict:
    with open(course_dir / "leaderboard" / f"{A}.csv", newline="") as handle:
        return next(r for r in csv.DictReader(handle) if r["student"] == student)


def _grade(course_dir, *args: str) -> None:
    run = run_cli("grade", A, "--course", str(course_dir), *LIMITS, *args)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One batch on the course track and a hidden one (the spy's first attempt, two memorisers), then the spy's
    second attempt graded on the course track, typed in from what the first one put on the leaderboard."""
    packed = _memo_packed()
    assert len(packed) == data.N_DIGITS * PER_DIGIT * (HASH_CHARS + 1) < 5000, len(packed)  # one short cell
    fallback = _fallback_packed()
    course_dir = make_course(tmp_path_factory.mktemp("round3"), {
        "mallory": solution(SPY),
        "memo": solution(MEMO % (packed, HASH_CHARS, HASH_CHARS, HASH_CHARS + 1, HASH_CHARS)),
        IMPOSTOR: solution(FALLBACK % (fallback, HASH_CHARS, HASH_CHARS, HASH_CHARS + 1, HASH_CHARS,
                                         data.parse_track(TRACKS[0])))})
    _grade(course_dir, "--tracks", *TRACKS)
    first = {r.student: r for r in store.load(course_dir, A)}
    board = _csv_row(course_dir, "mallory")
    # the shared board no longer echoes the kernel (issue 21, hole 4); its kept executed notebook, which its
    # feedback shows, still does: the labels reach the participant, the attempts rule is what makes them worthless
    kept = (course_dir / "autograded" / "mallory" / A / f"{A}.ipynb").read_text()
    leaked = re.search(r"LEAK ([01]{%d}) (\d)" % BOUGHT, kept)
    shutil.rmtree(course_dir / "submitted" / "mallory")
    if leaked:
        add_submission(course_dir, "mallory", solution(REUSE % (data.parse_track(TRACKS[0]), leaked.group(1),
                                                                int(leaked.group(2)), BOUGHT)))
        _grade(course_dir, "--student", "mallory", "--tracks", *TRACKS)
    return {"course": course_dir, "first": first, "leaked": leaked, "board": board,
            "ranked": {r.student: r for r in store.load(course_dir, A)},
            "tracks": {(r.student, r.track): r for r in store.load_tracks(course_dir, A)}}


def test_the_spy_does_not_read_its_bought_labels_on_the_shared_board(graded):
    """The attack's first half: an attempt that buys labels and crashes put them into its row's detail, which the
    leaderboard CSV showed to everyone; the visible detail is now the grader's own words (issue 21, hole 4)."""
    first = graded["first"]["mallory"]
    assert first.accuracy is None and not first.passed, first  # no counted submission
    assert graded["leaked"], "the spy's kept notebook does not show what it bought: the attack's premise is gone"
    assert "LEAK" not in graded["board"]["detail"] and graded["leaked"].group(1) not in graded["board"]["detail"], (
        graded["board"]["detail"])


def test_labels_bought_in_an_uncounted_attempt_are_not_free_in_the_next(graded):
    second = store.load_attempts(graded["course"], A, "mallory")[-1]
    if not (second.attempt == 2 and second.passed):  # the attack's notebook must work: else a failure, not an xfail
        pytest.fail(f"the spy's second attempt did not pass: {second}")
    ranked = graded["ranked"]["mallory"]
    course_track = graded["tracks"][("mallory", TRACKS[0])]
    assert not (ranked.passed and (course_track.annotations or 0) < BOUGHT), (
        f"ranked attempt {ranked.attempt} passed {TRACKS[0]} with {course_track.annotations} annotation(s) while "
        f"the student had bought {BOUGHT} labels there in attempt 1 ({ranked.annotations} in all: {ranked.detail})")


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "owner autograder/grading/prepare.py (and README 'What the grader defends', autograder/grading/tracks.py): the pool is "
    "MNIST's whole training set on every track, only shuffled, so a 4.5 kB table of 50 training-image hashes "
    "per digit (all ten) finds its images on any track: the notebook passes 7,1 and the hidden 2,5 with 1 "
    "annotation each and no review note. Root fix: a grading pool that exact image knowledge does not "
    "find (a secret subset of the training images per assignment and a seeded per-grading jitter of every "
    "image: one-pixel shifts or noise), and the README saying that a table of pool images, or a model trained "
    "at home on all ten digits, passes every track"))
def test_a_small_table_of_pool_images_of_every_digit_fails_a_hidden_track(graded):
    memo = graded["ranked"]["memo"]
    assert not (memo.passed and not memo.review), (
        f"a memorised table passed every track with {memo.annotations} annotations, no review: {memo.detail}")


def _formgrader_html(notebook) -> str:
    """The page nbgrader's formgrader serves for an autograded notebook (its exporter and template, as it sets them)."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config

    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    resources = {"assignment_id": A, "notebook_id": A, "submission_id": "s1", "index": 0, "total": 1,
                 "base_url": "", "student": "memo", "last_name": None, "first_name": None, "notebook_path": "n"}
    return HTMLExporter(config=config).from_filename(str(notebook), resources=resources)[0]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no system chromium (apt-get install -y chromium)")
def test_the_instructors_formgrader_runs_no_participant_script(graded):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    page_html = _formgrader_html(graded["course"] / "autograded" / "memo" / A / f"{A}.ipynb")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--headless"])
        try:
            page = browser.new_page()
            page.route("**/*", lambda route: route.abort())  # no server here: only what the page itself holds runs
            page.set_content(page_html, wait_until="load")
            page.wait_for_timeout(300)
            title = page.title()
        finally:
            browser.close()
    assert "pwned" not in title, f"participant script ran in the formgrader page (document.title = {title!r})"


def test_a_memorised_course_track_with_an_honest_fallback_buys_no_rank(graded):
    cheat = graded["ranked"][IMPOSTOR]
    honest = 60  # the toy's honest answer on the hidden track, what ranks a row graded on several tracks
    assert cheat.passed and graded["tracks"][(IMPOSTOR, TRACKS[0])].annotations == 1, cheat  # the attack works
    assert cheat.annotations >= honest and cheat.review.startswith("annotations per track far apart"), (
        f"a memorised course track ranks with {cheat.annotations} annotations (honest: {honest}): {cheat}")


def test_the_projected_board_does_not_name_the_hidden_tracks(graded):
    board = (graded["course"] / "leaderboard" / f"{A}.html").read_text()
    table = (graded["course"] / "leaderboard" / f"{A}.csv").read_text()
    hidden = TRACKS[1]
    assert hidden not in board and hidden not in table, (
        f"the hidden track {hidden} is named on the board ({board.count(hidden)} times in the HTML page)")


def test_a_student_id_cannot_replace_another_students_kept_ledger(graded):
    folder = graded["course"] / "ledgers" / A
    tag = f".track{TRACKS[1].replace(',', '')}"
    kept = list((folder / "attempts" / "memo").glob(f"*{tag}.jsonl"))  # memo's own copy, per attempt
    if len(kept) != 1:
        pytest.fail(f"memo's kept {TRACKS[1]} ledger is not there: {kept}")
    latest = store.ledger_path(graded["course"], A, "memo", track=TRACKS[1])  # memo's latest run there
    assert latest.read_text() == kept[0].read_text(), (
        f"{latest.name} is no longer memo's {TRACKS[1]} ledger: student {IMPOSTOR!r} wrote its own there")


def test_a_hidden_track_is_not_the_course_track_in_another_order():
    from autograder.grading import tracks

    refused = False
    try:
        tracks.parse(["7,1", "1,7"])
    except ValueError:
        refused = True
    assert refused, "tracks.parse took 1,7 as a hidden track of 7,1"
