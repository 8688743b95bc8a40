"""course.models: the estimator interface, seeding, embeddings, the checkpoint cache and torch's threads."""

import os

import numpy as np
import pytest
import torch

from course import data, evaluate, models


def test_small_fit_is_seeded_and_sklearn_like(ds, tmp_path):
    x, y = ds.images[:600], ds.labels[:600]
    a = models.CNNClassifier(epochs=1, random_state=3, progress=False).fit(x, y)
    b = models.CNNClassifier(epochs=1, random_state=3, progress=False).fit(x, y)
    assert np.allclose(a.predict_proba(x[:50]), b.predict_proba(x[:50]), atol=1e-6)
    proba = a.predict_proba(x[:50])
    assert proba.shape == (50, len(np.unique(y))) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert set(a.predict(x[:50])) <= set(a.classes_)
    assert a.embed(x[:7]).shape == (7, models.EMBED_DIM)
    assert a.embed(x[:7], layer="conv").shape == (7, models.CONV_DIM)
    with pytest.raises(ValueError, match="conv"):
        a.embed(x[:7], layer="head")
    a.save(tmp_path / "m.pt")
    again = models.CNNClassifier.load(tmp_path / "m.pt")
    assert np.allclose(again.predict_proba(x[:20]), a.predict_proba(x[:20]), atol=1e-6)
    assert not list(tmp_path.glob("*.part"))


def test_contract_errors(ds):
    with pytest.raises(RuntimeError, match="fit"):
        models.CNNClassifier().predict(ds.images[:2])
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        models.to_tensor(np.zeros((2, 784), dtype=np.uint8))
    with pytest.raises(ValueError, match="labels"):
        models.CNNClassifier().fit(ds.images[:5], ds.labels[:4])


def test_thread_count_follows_an_explicit_setting_else_the_usable_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("MKL_NUM_THREADS", "5")
    assert models.thread_count() == 3  # OMP_NUM_THREADS first, as torch reads them
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert models.thread_count() == 5
    monkeypatch.delenv("MKL_NUM_THREADS")
    assert models.thread_count() == len(os.sched_getaffinity(0))  # this process's cores, not the machine's
    for junk in ("0", "two", " "):
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        assert models.thread_count() == len(os.sched_getaffinity(0)), junk


def test_set_threads_gives_torch_the_setting_but_keeps_a_participants_own(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(models, "_threads_given", None)
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        models._set_threads()
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        models._set_threads()  # a later setting is followed: the count is still the one given here
        assert torch.get_num_threads() == 2
        own = models._TORCH_THREADS_AT_IMPORT + 3  # neither torch's default nor a count given above
        torch.set_num_threads(own)  # the participant's own choice
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        models._set_threads()
        assert torch.get_num_threads() == own
    finally:
        torch.set_num_threads(before)


def test_checkpoint_path_is_keyed_by_track_and_seed(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    assert models.checkpoint_path((7, 1), 0) != models.checkpoint_path((4, 9), 0)
    assert models.checkpoint_path((7, 1), 0) != models.checkpoint_path((7, 1), 1)
    assert models.checkpoint_path((7, 1)).parent == tmp_path / "models"


@pytest.mark.slow
def test_baseline_is_accurate_and_cached(baseline_model, ds):
    acc = evaluate.merged_accuracy(baseline_model.predict, "7,1")
    assert acc >= 0.985
    assert list(baseline_model.classes_) == ds.classes
    assert models.checkpoint_path((7, 1)).is_file()
    again = models.baseline("7,1")  # from the cache: same weights
    assert np.allclose(again.predict_proba(ds.test_images[:20]),
                       baseline_model.predict_proba(ds.test_images[:20]), atol=1e-6)


@pytest.mark.slow
def test_baseline_cannot_split_c(baseline_model, ds):
    """The merged model predicts C for both track digits: the workshop's starting point."""
    c_images = evaluate.track_test_images("public")
    assert np.mean(baseline_model.predict(c_images) == data.C) > 0.97


def test_the_numpy_forward_pass_is_the_torch_net(ds, tmp_path):
    """predict_proba and embed run `Net` in numpy: the torch module's own outputs, to float32 rounding."""
    x = ds.images[:600]
    model = models.CNNClassifier(epochs=1, random_state=5, progress=False).fit(x, ds.labels[:600])
    net = model.net_
    with torch.no_grad():
        t = models.to_tensor(x[:300])
        conv = torch.flatten(net.features[:6](t), 1).numpy()
        dense = net.features(t).numpy()
        proba = net(t).softmax(dim=1).numpy()
    assert np.allclose(model.embed(x[:300], layer="conv"), conv, atol=1e-5)
    assert np.allclose(model.embed(x[:300]), dense, atol=1e-5)
    assert np.allclose(model.predict_proba(x[:300]), proba, atol=1e-5)
    model.save(tmp_path / "m.pt")
    loaded = models.CNNClassifier.load(tmp_path / "m.pt")  # read without torch, the same numbers
    assert np.array_equal(loaded.embed(x[:300], layer="conv"), model.embed(x[:300], layer="conv"))
    assert np.allclose(loaded.net_(t).softmax(dim=1).detach().numpy(), proba, atol=1e-6)  # and a torch module again


LOAD_AND_PREDICT = """
import sys
import numpy as np
from course import models
model = models.CNNClassifier.load(sys.argv[1])
model.predict(np.zeros((3, 28, 28), dtype=np.uint8))
model.embed(np.zeros((3, 28, 28), dtype=np.uint8), layer="conv")
print("torch" in sys.modules)
"""


def test_a_loaded_baseline_predicts_without_importing_torch(tmp_path):
    """A graded kernel that only uses the baseline never imports torch (hundreds of MB and seconds)."""
    import subprocess
    import sys

    model = models.CNNClassifier()
    model.classes_ = np.array([0, 2, data.C])
    model.net_ = models.Net(3)
    model.save(tmp_path / "m.pt")
    out = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, str(tmp_path / "m.pt")], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_a_checkpoint_is_read_only_as_the_parameters_of_net(tmp_path):
    """A tensor larger than its storage (a stride-0 view: memory for nothing) or a parameter of the wrong shape
    is refused with a clear error, before anything is computed."""
    import pickle

    model = models.CNNClassifier()
    model.classes_ = np.array([0, 2, data.C])
    model.net_ = models.Net(3)
    state = model.net_.state_dict()
    for name, value, error, match in (("head.bias", torch.zeros(1).expand(3), pickle.UnpicklingError, "storage"),
                                      ("head.weight", torch.zeros(3, 60), ValueError, "head.weight")):
        planted = dict(state, **{name: value})
        torch.save({"state": planted, "classes": model.classes_, "version": models.CHECKPOINT_VERSION},
                   tmp_path / "x.pt")
        with pytest.raises(error, match=match):
            models.CNNClassifier.load(tmp_path / "x.pt")
