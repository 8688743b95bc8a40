"""benchmarks.unsupervised: the contrastive features, the clustering and its label-free check separate an easy pair."""

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from benchmarks import unsupervised


@pytest.fixture(scope="module")
def easy_pair(ds):
    """300 images each of two known digits of 7,1 that look nothing alike (0 and 4), their labels free."""
    rows = np.concatenate([np.flatnonzero(ds.labels == d)[:300] for d in (0, 4)])
    return ds.images[rows], ds.labels[rows]


def test_augment_and_loss_are_seeded_and_finite():
    import torch

    x = torch.rand(8, 1, 28, 28)
    a = unsupervised.augment(x, torch.Generator().manual_seed(1))
    b = unsupervised.augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    z = torch.randn(8, 16)
    assert float(unsupervised.nt_xent(z, z)) < float(unsupervised.nt_xent(z, torch.randn(8, 16)))


def test_contrastive_features_cluster_an_easy_pair(easy_pair):
    unsupervised.one_thread()
    images, labels = easy_pair
    encode = unsupervised.contrastive_encoder(images, base=None, steps=5, batch=64, seed=0)
    features = encode(images)
    assert features.shape == (len(images), 1568) and np.allclose(np.linalg.norm(features, axis=1), 1, atol=1e-4)
    assert np.allclose(encode(images[:10]), features[:10], atol=1e-5), "the features are a function of the image"
    z = PCA(unsupervised.N_COMPONENTS, random_state=0).fit_transform(features)
    ids = unsupervised.spectral(z, 2, seed=0)
    assert adjusted_rand_score(labels, ids) > 0.9
    assert unsupervised.stability(z, seed=0) > unsupervised.AGREE, "two real groups: the check trusts them"
    typical = unsupervised.most_typical(z, ids)
    assert [ids[r] for r in typical] == [0, 1]
    assert len({int(labels[r]) for r in typical}) == 2, "each cluster's typical member is its own digit"


def test_stability_does_not_trust_one_blob():
    blob = np.random.default_rng(0).normal(size=(600, 5))
    assert unsupervised.stability(blob, seed=0) < unsupervised.AGREE


@pytest.mark.slow
def test_run_spends_one_annotation_on_7_1_in_exam_mode(baseline_model):
    from course import oracle

    result = unsupervised.run("conv-spectral", "7,1", seed=0)
    assert result.annotations == 1 and result.trusted
    assert result.accuracy >= unsupervised.TARGET
    assert oracle.backend().count() == 0, "the run leaves a fresh ledger behind"
