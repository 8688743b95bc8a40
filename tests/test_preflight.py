"""Issue 23, item 2: an event hands out what a participant needs, and one command says whether a machine is ready.

- ``autograder event create`` puts the track's baseline checkpoint into the pool file (it saw only merged
  labels); `course.event_client` puts it into the participant's model cache when the pool is downloaded, so
  `course.models.baseline()` loads it instead of training (checked against a real event server); a name
  that is not a plain checkpoint name is never written, and a checkpoint already there is kept.
- ``python -m course.preflight [--event URL [--code CODE]] [--train]``: each check's line says what is
  wrong and what to do (install, cache folder, MNIST or the event, baseline); exit 0 only when ready.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
import zipfile

import numpy as np
import pytest

from autograder.event import cli
from course import data, event_client, models, preflight
from tests.helpers import events as es

TRACK = (7, 1)


def fake_checkpoint(path):
    """An untrained baseline-shaped CNN saved as `course.models` saves one (fast; only the file matters)."""
    model = models.CNNClassifier()
    model.classes_ = np.array([0, 2, 3, 4, 5, 6, 8, 9, 10])
    model.net_ = models.Net(len(model.classes_))
    model.save(path)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("COURSE_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return fake_checkpoint(tmp_path_factory.mktemp("ckpt") / models.checkpoint_path(TRACK).name)


def small_pool() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key, value in (("track", np.array(TRACK)), ("images", np.zeros((3, 28, 28), np.uint8)),
                           ("labels", np.array([10, 0, 10], np.int8)), ("test_images", np.zeros((1, 28, 28), np.uint8)),
                           ("test_labels", np.array([0], np.int8)),
                           ("private_test_images", np.zeros((2, 28, 28), np.uint8))):
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, value)
    return buffer.getvalue()


# --- the baseline comes with the pool ---------------------------------------------------------------


def test_the_pool_carries_the_baseline_into_the_cache(tmp_path, cache, checkpoint, monkeypatch):
    monkeypatch.setattr(cli, "baseline_checkpoint", lambda track: (checkpoint.name, checkpoint.read_bytes()))
    pool_file = tmp_path / "course-grading.npz"
    pool_file.write_bytes(cli.with_baseline(small_pool(), TRACK))
    split = data._grading_split(pool_file, TRACK)  # course.data reads its own keys, as before
    assert len(split.public.images) == 3 and split.private_test_images.shape == (2, 28, 28)
    installed = event_client.install_baseline(pool_file)
    assert installed == models.checkpoint_path(TRACK) and installed.read_bytes() == checkpoint.read_bytes()
    assert models.CNNClassifier.load(installed).classes_.tolist() == [0, 2, 3, 4, 5, 6, 8, 9, 10]
    installed.write_bytes(b"kept")  # one already there is never replaced
    assert event_client.install_baseline(pool_file).read_bytes() == b"kept"


def test_a_hostile_checkpoint_name_is_never_written(tmp_path, cache, monkeypatch):
    for name in ("../../evil.pt", "/tmp/evil.pt", "baseline-v1-track71-seed0.pt/../../x.pt", "x.py"):
        monkeypatch.setattr(cli, "baseline_checkpoint", lambda track, name=name: (name, b"boom"))
        pool_file = tmp_path / "pool.npz"
        pool_file.write_bytes(cli.with_baseline(small_pool(), TRACK))
        assert event_client.install_baseline(pool_file) is None
    assert not list(tmp_path.rglob("evil.pt")) and not (cache / "models").exists()
    plain = tmp_path / "plain.npz"
    plain.write_bytes(small_pool())
    assert event_client.install_baseline(plain) is None  # an event made without one: trained later, as before


def test_joining_a_real_event_brings_the_baseline(tmp_path, tmp_path_factory, cache, checkpoint, monkeypatch):
    """`event create` (its pool with the checkpoint) -> `autograder serve` -> join and download: in the cache."""
    es.reuse_pool(monkeypatch, tmp_path_factory.getbasetemp())
    monkeypatch.setattr(cli, "baseline_checkpoint", lambda track: (checkpoint.name, checkpoint.read_bytes()))
    target = tmp_path / "events.db"
    new_code, _admin = cli.create(str(target), "7,1", "03_clustering")
    server = es.Server(target).start()
    try:
        joined = event_client.join(server.url, new_code, "Ada Lovelace")
        assert not models.checkpoint_path(TRACK).exists()
        folder = event_client.pool_dir(joined)
        assert (folder / event_client.POOL_FILE).stat().st_size == joined.pool_bytes
    finally:
        server.stop()
    assert models.checkpoint_path(TRACK).read_bytes() == checkpoint.read_bytes()
    assert preflight.check_baseline(TRACK).status == preflight.OK  # models.baseline() loads it: nothing to train


# --- python -m course.preflight ----------------------------------------------------------------------


def test_a_ready_machine_says_ready(cache, checkpoint, capsys):
    fake_checkpoint(models.checkpoint_path(TRACK))
    assert preflight.main([]) == 0  # COURSE_DATA_DIR (the tests' MNIST) is set
    out = capsys.readouterr().out
    for name in ("install", "cache", "data", "baseline"):
        assert f"ok    {name}" in out, out
    assert out.strip().endswith("ready.") and "->" not in out


def test_a_missing_library_says_what_to_install():
    found = preflight.check_install(libraries=("numpy", "no_such_library_xyz"))
    assert found.status == preflight.FAIL and "cannot import no_such_library_xyz" in found.message
    assert "pip install -e ." in found.fix
    assert "->" in str(found) and "no_such_library_xyz" in str(found)


def test_an_unwritable_cache_says_how_to_move_it(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("COURSE_CACHE_DIR", str(blocker / "cache"))
    found = preflight.check_cache()
    assert found.status == preflight.FAIL and "cannot write the cache folder" in found.message
    assert "COURSE_CACHE_DIR" in found.fix


def test_missing_mnist_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_candidate_dirs", lambda: [("the repository's data/ folder", tmp_path / "data")])
    found = preflight.check_data()
    assert found.status == preflight.FAIL and "MNIST files are not here" in found.message
    assert str(tmp_path / "data" / "MNIST" / "raw") in found.message
    assert "data/MNIST/raw/" in found.fix and "--event" in found.fix


def test_a_missing_baseline_says_how_to_train_it_or_that_the_event_brings_it(cache):
    found = preflight.check_baseline(TRACK)
    assert found.status == preflight.FAIL and "not trained" in found.message
    assert "python -m course.preflight --train" in found.fix
    assert "--track 4,9" in preflight.check_baseline((4, 9)).fix
    at_event = preflight.check_baseline(TRACK, event=True)
    assert at_event.status == preflight.NOTE and "the event's pool brings it" in at_event.fix
    models.checkpoint_path(TRACK).parent.mkdir(parents=True)
    models.checkpoint_path(TRACK).write_bytes(b"not a checkpoint")
    broken = preflight.check_baseline(TRACK)
    assert broken.status == preflight.FAIL and "does not load" in broken.message and "delete it" in broken.fix


class _Fake(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        answers = {"/api/health": {"ok": True},
                   "/api/events/K7QX2P/board": {"assignment": "03_clustering", "track": "4,9", "closed": False}}
        body = answers.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body or {"ok": False}).encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_event_check_reaches_the_server_and_finds_the_event(fake_server, cache, capsys):
    found, track = preflight.check_event(fake_server)
    assert found.status == preflight.OK and "answers" in found.message and track is None
    found, track = preflight.check_event(fake_server, "k7qx2p-ab3cd4ef")  # a personal code names its event
    assert found.status == preflight.OK and "03_clustering on track 4,9" in found.message and track == (4, 9)
    found, _ = preflight.check_event(fake_server, "NOPE42")
    assert found.status == preflight.FAIL and "has no event NOPE42" in found.message and "code" in found.fix
    assert preflight.main(["--event", fake_server, "--code", "K7QX2P"]) == 0  # a missing baseline is a note
    out = capsys.readouterr().out
    assert "note  baseline" in out and "track 4,9" in out and "data" not in out.split("baseline")[0].split("event")[0]


def test_an_unreachable_event_says_what_to_check(capsys):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    found, _ = preflight.check_event(f"http://127.0.0.1:{port}")
    assert found.status == preflight.FAIL and "cannot reach the event server" in found.message
    assert "address on the board" in found.fix and "same Wi-Fi" in found.fix
    assert preflight.check_event("10.0.0.5:8000")[0].fix.startswith("give the address on the board")
    assert preflight.main(["--event", f"http://127.0.0.1:{port}"]) == 1
    assert "problem" in capsys.readouterr().out


def test_a_broken_cache_is_reported_once_and_the_baseline_not_checked(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("COURSE_CACHE_DIR", str(blocker / "cache"))
    assert preflight.main([]) == 1
    out = capsys.readouterr().out
    assert "FAIL  cache" in out and "not checked: the cache folder cannot be written" in out
