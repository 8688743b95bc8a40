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
