"""`autograder verify`: the winners' notebooks re-run in the sandboxed grader on the event's data (issue 14, step 5).

A real event server (uvicorn), a real toy course (nbgrader), real kernels: one participant runs
the toy notebook live against the event (a real kernel, joined by a cell, uploading itself by a
cell); another's live submission comes from a script that bought more labels than the notebook
the instructor collected for him (`--notebooks`); a third has no notebook anywhere; a fourth
(Mallory) carries a table of the 7/1 MNIST test images (hash -> digit, made at home from public
MNIST) and buys 1 label. `autograder verify --top 4` (the real command, the bubblewrap sandbox)
re-runs the notebooks with the event's track and seed, and those that match there once more on the
hidden track 2,5: the honest notebook is verified with the same accuracy and count, the script's
is marked as differing (no hidden run), the memorised one matches on 7,1 but fails on 2,5 and is
marked for review, the third is reported missing; the board and the admin page show it.
Five kernel runs in all (Ada and Mallory twice, Bob once).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import time

import nbformat
import numpy as np
import pytest

from autograder.event import pool, store, tables, verify
from course import config, data
from tests import event_server as es
from tests.helpers.courses import CLUSTER, TOY, make_course, solution, tool_env

pytestmark = [pytest.mark.slow,  # five real gradings in the sandbox (see the test for its measured time)
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="the grader's sandbox needs bubblewrap")]


@pytest.fixture(scope="module")
def event(tmp_path_factory):
    """A toy-assignment event on the session's shuffle, its own server, and the toy course."""
    db, events = es.template(tmp_path_factory.getbasetemp())
    folder = tmp_path_factory.mktemp("verify")
    copy = store.Store(es.copy_db(db, folder / "events.db"))
    source_code = events["api"][0]
    blobs = copy.blob(source_code, "pool"), copy.blob(source_code, "truth")
    code, admin = copy.create_event((7, 1), "toy", str(es.SEED), *blobs)
    truth = pool.read_truth(blobs[1])
    copy.dispose()
    server = es.Server(folder / "events.db").start()
    course = make_course(folder, {})
    yield {"server": server, "url": server.url, "code": code, "admin": admin, "truth": truth, "course": course,
           "db": folder / "events.db", "folder": folder, "blobs": blobs}
    server.stop()


def participant_notebook(url: str, code: str, name: str) -> nbformat.NotebookNode:
    """The toy notebook as a participant runs it in the event: a join cell first, an upload cell last."""
    nb = nbformat.read(TOY, as_version=4)
    join = nbformat.v4.new_code_cell(f"from course import event\nevent.join({url!r}, {code!r}, {name!r})")
    upload = nbformat.v4.new_code_cell("event.upload('toy.ipynb')")
    nb.cells = [join, *nb.cells, upload]
    return nb


def run_live(nb: nbformat.NotebookNode, folder) -> nbformat.NotebookNode:
    """Execute `nb` in a real kernel on the participant's machine: no MNIST, its own cache."""
    from nbclient import NotebookClient

    folder.mkdir(parents=True)
    nbformat.write(nb, folder / "toy.ipynb")  # the saved file is what event.upload sends
    with pytest.MonkeyPatch.context() as patch:  # the kernel's environment only
        patch.setenv(config.ENV_DATA_DIR, str(folder / "no-data"))
        patch.setenv(config.ENV_CACHE_DIR, str(folder / "cache"))
        for name in (config.ENV_EVENT_URL, config.ENV_EVENT_CODE, config.ENV_SERVICE, config.ENV_EXAM):
            patch.delenv(name, raising=False)
        client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
        client.execute()
    return nb


def test_verify_marks_honest_verified_scripted_differing_memorised_for_review_and_missing(
        event, tmp_path):
    url, code, truth = event["url"], event["code"], event["truth"]
    api = f"{url}/api/events/{code}"

    # Ada: the notebook itself, live, in a real kernel (60 annotations, then the counted submission)
    ran = run_live(participant_notebook(url, code, "Ada Lovelace"), tmp_path / "ada")
    text = "".join(o.get("text", "") for c in ran.cells for o in c.get("outputs", []))
    assert "joined event" in text and "uploaded toy.ipynb" in text

    # Bob: a script buys 300 labels and submits the truth; the instructor collected his notebook, the honest
    # 60-label one (and he also uploaded it: a collected notebook comes first)
    status, reply = es.call(f"{api}/join", {"name": "Bob"})
    bob = reply["result"]["token"]
    c_all = np.flatnonzero(np.isin(truth["pool_digits"], truth["track"]))
    assert es.call(f"{api}/op", {"op": "annotate", "indices": c_all[:300].tolist()}, token=bob)[0] == 200
    status, reply = es.call(f"{api}/op", {"op": "score", "split": "private",
                                          "predictions": truth["private_digits"].tolist()}, token=bob)
    assert status == 200 and reply["result"]["count"] == 300
    status, reply = es.call(f"{api}/notebook", token=bob, raw=b'{"cells": [], "metadata": {}, "nbformat": 4, '
                                                               b'"nbformat_minor": 5}')
    assert status == 200, reply
    collected = tmp_path / "collected"
    collected.mkdir()
    shutil.copyfile(tmp_path / "ada" / "toy.ipynb", collected / "Bob.ipynb")

    # Cy: submits (a constant guess, 2 labels) and uploads nothing
    status, reply = es.call(f"{api}/join", {"name": "Cy"})
    cy = reply["result"]["token"]
    es.call(f"{api}/op", {"op": "annotate", "indices": c_all[:2].tolist()}, token=cy)
    assert es.call(f"{api}/op", {"op": "score", "split": "private",
                                 "predictions": [7] * len(truth["private_digits"])}, token=cy)[0] == 200

    # Mallory: at home, from public MNIST, every 7/1 test image's hash and digit; live, 1 label and the table's
    # answers (100%); her upload is the toy notebook with the same table and the same 1 label (its digit for
    # an image not in the table: a valid guess on any track)
    _, _, test_images, test_labels = data._read_mnist()
    keep = np.isin(test_labels, (7, 1))
    table = {image_hash(im): int(d) for im, d in zip(test_images[keep], test_labels[keep])}
    status, reply = es.call(f"{api}/join", {"name": "Mallory"})
    mallory = reply["result"]["token"]
    status, pool_bytes = es.call(f"{api}/pool", token=mallory)
    with np.load(io.BytesIO(pool_bytes)) as f:
        private = f["private_test_images"]
    assert es.call(f"{api}/op", {"op": "annotate", "indices": c_all[:1].tolist()}, token=mallory)[0] == 200
    status, reply = es.call(f"{api}/op", {"op": "score", "split": "private",
                                          "predictions": [table[image_hash(im)] for im in private]}, token=mallory)
    assert status == 200 and reply["result"]["accuracy"] == 1.0, reply
    memorised = nbformat.read(TOY, as_version=4)
    solution(f"import hashlib\nTABLE = {table!r}\ndigits = oracle.annotate(ds.c_indices[:1])\n\n"
             "def predict(images):\n    return np.array([TABLE.get(hashlib.sha1(np.ascontiguousarray(im, "
             "dtype=np.uint8).tobytes()).hexdigest()[:12], int(digits[0])) for im in images])\n")(memorised)
    assert es.call(f"{api}/notebook", token=mallory, raw=nbformat.writes(memorised).encode())[0] == 200

    status, board = es.call(f"{api}/board")
    live = {r["name"]: r for r in board["rows"]}
    ada_live = next(r for r in board["rows"] if r["annotations"] == 60)
    assert ada_live["passed"] and ada_live["rank"] == 2 and ada_live["verified"] is None
    assert next(r for r in board["rows"] if r["annotations"] == 1)["rank"] == 1  # the memorised one leads live

    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "autograder.cli", "verify", code.lower(), "--top", "4",
                           "--course", str(event["course"]), "--db", str(event["db"]), "--notebooks", str(collected)],
                          capture_output=True, text=True, timeout=900, env=tool_env())
    out = done.stdout
    print(f"autograder verify --top 4: {time.monotonic() - started:.1f} s\n{out}")
    assert done.returncode == 1, done.stdout + done.stderr  # not all verified
    assert "1 verified, 1 differ, 1 to review, 1 missing" in out, out + done.stderr[-3000:]
    assert "#2 Ada Lovelace" in out and "verified - live" in out and "hidden track 2,5: passed" in out
    assert "#3 Bob" in out and "DIFFERS" in out and "annotations 300 live, 60 in the re-run" in out
    assert "#4 Cy" in out and "MISSING" in out and "uploaded none" in out and str(collected / "cy.ipynb") in out
    assert "#1 Mallory" in out and "REVIEW - live 100.00% with 1, re-run 100.00% with 1" in out, out
    assert "it fails on a hidden track (2,5:" in out, out
    assert out.count("on track 2,5 ...") == 2, out  # Bob: not re-run there

    status, board = es.call(f"{api}/board")
    rows = {r["name"]: r for r in board["rows"]}
    assert rows[ada_live["name"]]["verified"] == "verified"
    bob_row = next(r for r in board["rows"] if r["annotations"] == 300)
    assert bob_row["verified"] == "differs" and bob_row["verified_annotations"] == 60
    assert bob_row["verified_accuracy"] == pytest.approx(ada_live["accuracy"])  # the same notebook, same data
    assert sum(r["verified"] == "missing" for r in board["rows"]) == 1
    mallory_row = next(r for r in board["rows"] if r["annotations"] == 1)
    assert mallory_row["verified"] == "review" and mallory_row["verified_note"].startswith("fails on a hidden track")
    assert "2,5" not in mallory_row["verified_note"]  # the board does not name the hidden track
    assert set(rows) == set(live)

    status, view = es.call(f"{url}/api/admin/{code}", token=event["admin"])
    people = {p["name"]: p for p in view["participants"]}
    ada = people["Ada Lovelace"]["verification"]
    assert ada["status"] == "verified" and ada["annotations"] == 60 and ada["accuracy"] == ada_live["accuracy"]
    assert ada["grader_status"] == "ok" and ada["source"] == "upload"
    assert people["Bob"]["verification"]["source"] == "Bob.ipynb" and people["Cy"]["notebook"] is None
    assert people["Cy"]["verification"]["status"] == "missing"
    assert ada["hidden_track"] == "2,5" and ada["hidden_annotations"] == 60 and ada["hidden_accuracy"] >= 0.9
    assert people["Bob"]["verification"]["hidden_track"] is None  # it differed on the event's data already
    bad = people["Mallory"]["verification"]
    assert bad["status"] == "review" and bad["annotations"] == 1 and bad["accuracy"] == 1.0
    assert bad["hidden_track"] == "2,5" and bad["hidden_annotations"] == 1 and bad["hidden_accuracy"] < 0.9
    assert "memorised" in bad["detail"]


def image_hash(image) -> str:
    return hashlib.sha1(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).hexdigest()[:12]


def test_collected_notebooks_are_found_by_name(tmp_path):
    (tmp_path / "Ada Lovelace.ipynb").write_text("{}")
    (tmp_path / "bob-b.ipynb").write_text("{}")
    (tmp_path / "cy").mkdir()
    (tmp_path / "cy" / "03_clustering (1).ipynb").write_text("{}")
    (tmp_path / "p4-dee.ipynb").write_text("{}")
    (tmp_path / "dee.ipynb").write_text("{}")
    everyone = {1: "Ada Lovelace", 2: "Bob B", 3: "Cy", 4: "Dee", 5: "Eve"}
    assert verify.collected(tmp_path, 1, "Ada Lovelace", everyone)[0].name == "Ada Lovelace.ipynb"
    assert verify.collected(tmp_path, 2, "Bob B", everyone)[0].name == "bob-b.ipynb"
    assert verify.collected(tmp_path, 3, "Cy", everyone)[0].name == "03_clustering (1).ipynb"
    assert verify.collected(tmp_path, 4, "Dee", everyone)[0].name == "p4-dee.ipynb"  # the unique form first
    assert verify.collected(tmp_path, 5, "Eve", everyone) == (None, "")
    assert verify.safe_id(12, "Zoë O'Neil") == "p12-zoe-o-neil" and verify.safe_id(3, "???") == "p3"


def test_a_join_name_never_reaches_another_participants_collected_notebook(tmp_path):
    """A join name is free text: a path, a look-alike of another name, another participant's p<id>- form."""
    folder = tmp_path / "collected"
    folder.mkdir()
    (folder / "ada-lovelace.ipynb").write_text("{}")
    (folder / "p1-ada-lovelace.ipynb").write_text("{}")
    (tmp_path / "secret.ipynb").write_text("{}")
    everyone = {1: "Ada Lovelace", 2: "ADA LOVELACE", 3: "../collected/ada-lovelace", 4: "../secret",
                5: "p1-ada-lovelace", 6: "/etc/passwd", 7: ".."}
    for pid in (2, 3, 4, 5, 6, 7):
        path, note = verify.collected(folder, pid, everyone[pid], everyone)
        assert path is None, (everyone[pid], path)
    assert verify.collected(folder, 1, "Ada Lovelace", everyone)[0].name == "p1-ada-lovelace.ipynb"
    path, note = verify.collected(folder, 2, "ADA LOVELACE", everyone)
    assert note.startswith("ambiguous: ") and "p1-ada-lovelace.ipynb or p2-ada-lovelace.ipynb" in note, note
    (folder / "p1-ada-lovelace.ipynb").unlink()  # without the unique form, Ada's look-alike blocks her too
    path, note = verify.collected(folder, 1, "Ada Lovelace", everyone)
    assert path is None and "ambiguous" in note, note
    assert verify.collected(folder, 1, "Ada Lovelace", {1: "Ada Lovelace"})[0].name == "ada-lovelace.ipynb"
    assert not verify.plain_name("../x") and not verify.plain_name("..") and not verify.plain_name("a\\b")
    assert verify.plain_name("Ada Lovelace") and verify.plain_name("Zoë O'Neil")


def test_verify_refuses_an_unknown_event_and_a_course_without_the_assignment(event, tmp_path):
    with pytest.raises(verify.VerifyError, match="no event ZZZZZZ"):
        verify.verify(str(event["db"]), "ZZZZZZ", event["course"], 3)
    with pytest.raises(verify.VerifyError, match="not an nbgrader course"):
        verify.verify(str(event["db"]), event["code"], tmp_path, 3)


def test_compare_needs_the_same_count_and_pass_and_an_accuracy_within_the_tolerance():
    assert verify.compare(0.95, 60, 0.95, 60) == ("verified", "")
    status, detail = verify.compare(0.95, 60, 0.948, 60)
    assert status == "verified" and "within the tolerance" in detail  # training not bit-for-bit reproducible
    assert verify.compare(0.95, 60, 0.93, 60)[0] == "differs"
    status, detail = verify.compare(0.902, 60, 0.899, 60)
    assert status == "differs" and "passed live, failed in the re-run" in detail
    status, detail = verify.compare(0.95, 20, 0.95, 60)
    assert status == "differs" and "annotations 20 live, 60 in the re-run" in detail
    assert verify.compare(0.95, 20, None, None) == ("differs", "the re-run made no counted submission.")


def test_hidden_compare_reviews_a_failure_or_far_more_annotations_on_the_hidden_track():
    assert verify.hidden_compare(60, "2,5", 0.95, 60)[0] == "verified"
    assert verify.hidden_compare(9, "2,5", 0.99, 12)[0] == "verified"  # 05 on 7,1 and on the harder 4,9
    assert verify.hidden_compare(1, "2,5", 0.99, 4)[0] == "verified"  # 03 on 7,1 and on 4,9
    status, why = verify.hidden_compare(1, "2,5", 0.46, 1)
    assert status == "review" and "fails on a hidden track (2,5: 46.00% with 1" in why
    status, why = verify.hidden_compare(1, "2,5", 0.97, 60)  # a table of 7/1, an honest method elsewhere
    assert status == "review" and "1 annotations on the event's track but 60" in why
    status, why = verify.hidden_compare(20, "2,5", None, None, "error, NameError")
    assert status == "review" and "no counted submission" in why and "NameError" in why
    assert verify.hidden_compare(20, "2,5", 0.95, 60)[0] == "verified"  # 3x: not more
    assert verify.hidden_compare(20, "2,5", 0.95, 61)[0] == "review"


def test_the_hidden_track_is_never_the_events_and_can_be_chosen():
    assert verify.default_hidden_track((7, 1)) == "2,5" and verify.default_hidden_track((2, 5)) == "7,1"
    assert verify.default_hidden_track((4, 9)) == "3,5"
    for track in [(a, b) for a in range(10) for b in range(10) if a != b]:
        assert not set(map(int, verify.default_hidden_track(track).split(","))) & set(track), track
    assert verify.hidden_track_for((7, 1), None) == "2,5"
    assert verify.hidden_track_for((7, 1), "6, 0") == "6,0" and verify.hidden_track_for((7, 1), "none") is None
    with pytest.raises(verify.VerifyError, match="shares digit 7 with the event's track 7,1; take .* e.g. 2,5"):
        verify.hidden_track_for((7, 1), "7,2")


def test_an_older_event_store_gains_the_hidden_track_columns(tmp_path):
    import sqlite3

    db = tmp_path / "old.db"
    store.Store(db).dispose()
    with sqlite3.connect(db) as conn:  # the store as made before the hidden track
        for column in tables.NEW_COLUMNS["verifications"]:
            conn.execute(f"ALTER TABLE verifications DROP COLUMN {column}")
    events = store.Store(db)
    code, _ = events.create_event((7, 1), "toy", "1", b"pool", b"truth")
    pid = events.join(events.event(code), "Ada", None)[0].id
    events.save_verification(pid, "review", accuracy=1.0, annotations=1, live_accuracy=1.0, live_annotations=1,
                             grader_status="ok", detail="d", source="upload", hidden_track="2,5",
                             hidden_accuracy=0.4, hidden_annotations=1)
    assert events.verifications(code)[pid]["hidden_accuracy"] == 0.4
    events.dispose()


def test_hole2_a_table_of_the_event_tracks_images_with_a_cheap_honest_fallback_is_not_verified(event, tmp_path):
    """Issue 21, hole 2. Trent carries a table of the event track's MNIST test images (hash -> digit, made at home
    from public MNIST): live, 0 annotations and 100%. His upload uses the table when the track is the event's and
    an honest 2-annotation method elsewhere, so the hidden track's count (2) was inside the far-apart slack and
    `autograder verify` marked him verified. A pass with 0 annotations is never verified now (the rule of
    ``grade --tracks``, `autograder.grading.tracks.reviews`); the notebook is also flagged for the knowledge it carries.
    Its own event on the module's server; two kernel runs (7,1 and 2,5)."""
    events = store.Store(event["db"])
    code, _ = events.create_event((7, 1), "toy", str(es.SEED), *event["blobs"])
    events.dispose()
    api = f"{event['url']}/api/events/{code}"
    _, _, test_images, test_labels = data._read_mnist()
    keep = np.isin(test_labels, (7, 1))
    table = {image_hash(im): int(d) for im, d in zip(test_images[keep], test_labels[keep])}
    status, reply = es.call(f"{api}/join", {"name": "Trent"})
    trent = reply["result"]["token"]
    status, pool_bytes = es.call(f"{api}/pool", token=trent)
    with np.load(io.BytesIO(pool_bytes)) as f:
        private = f["private_test_images"]
    status, reply = es.call(f"{api}/op", {"op": "score", "split": "private",
                                          "predictions": [table[image_hash(im)] for im in private]}, token=trent)
    assert status == 200 and reply["result"]["accuracy"] == 1.0 and reply["result"]["count"] == 0, reply
    upload = nbformat.read(TOY, as_version=4)
    solution(f"import hashlib\nTABLE = {table!r}\n"
             "if tuple(ds.track) == (7, 1):\n"
             "    def predict(images):\n"
             "        return np.array([TABLE.get(hashlib.sha1(np.ascontiguousarray(im, dtype=np.uint8).tobytes())"
             ".hexdigest()[:12], 7) for im in images])\n"
             "else:\n" + "".join("    " + line + "\n" for line in CLUSTER.splitlines()))(upload)
    assert es.call(f"{api}/notebook", token=trent, raw=nbformat.writes(upload).encode())[0] == 200

    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "autograder.cli", "verify", code.lower(), "--top", "1",
                           "--course", str(event["course"]), "--db", str(event["db"])],
                          capture_output=True, text=True, timeout=900, env=tool_env())
    out = done.stdout
    print(f"autograder verify --top 1: {time.monotonic() - started:.1f} s\n{out}")
    assert "re-run 100.00% with 0" in out and "hidden track 2,5: " in out, out + done.stderr[-3000:]
    assert "#1 Trent" in out and "REVIEW" in out and "verified - live" not in out, out
    assert "passed with 0 annotations" in out, out
    check = store.Store(event["db"]).verifications(code)
    [(_, mine)] = check.items()
    assert mine["status"] == "review" and mine["hidden_annotations"] == 2 and mine["hidden_accuracy"] >= 0.9, mine
