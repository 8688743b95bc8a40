"""course.models: the estimator interface, seeding, embeddings and the checkpoint cache."""

import numpy as np
import pytest

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
