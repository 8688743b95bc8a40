"""course.proxy: free curves on two known digits, deterministic, and blind to the track's labels."""

from __future__ import annotations

import numpy as np
import pytest

from course import data, oracle, proxy


class Confuses:
    """A stand-in baseline (no training): right on every known digit except that it
    answers 5 for a third of the 3s, and 8 for a tenth of the 2s."""

    def predict(self, images):
        ds = data.load("7,1")
        lookup = {img.tobytes(): int(lab) for img, lab in zip(ds.test_images, ds.test_labels)}
        said = np.array([lookup[img.tobytes()] for img in images])
        threes, twos = np.flatnonzero(said == 3), np.flatnonzero(said == 2)
        said[threes[::3]] = 5
        said[twos[::10]] = 8
        return said


class NoLabels:
    """An oracle backend that fails on any use: the proxy must never need it."""

    submit_split = "public"

    def __getattr__(self, name):
        raise AssertionError(f"the proxy used the oracle ({name})")


@pytest.fixture
def blind(monkeypatch, ds):
    """No way to the track's labels: the truth arrays are gone, the oracle and scores fail."""
    full = data._split(ds.track)
    stripped = data._Split(full.public, full.private_test_images, None, None, None)
    monkeypatch.setattr(data, "_cached_split", lambda track, key: stripped)
    oracle.use_backend(NoLabels(), ds.track)
    from course import evaluate

    def refuse(*args, **kwargs):
        raise AssertionError("the proxy scored on the track's held-out images")

    monkeypatch.setattr(evaluate, "accuracy", refuse)
    return ds


def nearest_centroid(images, label_of, budget, rng):
    """A tiny pipeline: `budget` random labels, nearest class mean in pixels."""
    rows = rng.choice(len(images), size=budget, replace=False)
    digits = label_of(rows)
    flat = images.reshape(len(images), -1).astype(float)
    classes = np.unique(digits)
    centres = np.stack([flat[rows[digits == c]].mean(0) for c in classes])

    def predict(new):
        x = new.reshape(len(new), -1).astype(float)
        return classes[((x[:, None, :] - centres[None]) ** 2).sum(2).argmin(1)]

    return predict


def test_pair_is_the_most_confused_known_pair(ds):
    task = proxy.task("7,1", base=Confuses())
    assert task.digits == (3, 5)
    assert not set(task.digits) & set(ds.track)
    assert np.all(np.isin(ds.labels[task.pool_indices], task.digits))
    assert np.array_equal(task.pool_labels, ds.labels[task.pool_indices])
    assert set(np.unique(task.test_labels)) == {3, 5}
    assert "3 vs 5" in repr(task)


def test_run_is_deterministic_and_blind(blind):
    kwargs = dict(budgets=[4, 10], repetitions=2, n_images=300, random_state=1, track="7,1",
                  base=Confuses(), progress=False)
    first = proxy.run(nearest_centroid, **kwargs)
    again = proxy.run(nearest_centroid, **kwargs)
    assert np.array_equal(first.accuracy, again.accuracy)
    assert first.accuracy.shape == (2, 2) and np.all((first.accuracy > 0.5) & (first.accuracy <= 1))
    assert first.labels_used.tolist() == [[4, 10], [4, 10]]
    assert first.measured_on == "held-out proxy images" and first.digits == (3, 5)
    x, y = first.line()
    assert x.tolist() == [4, 10] and np.allclose(y, first.accuracy.mean(0))
    assert first.at(10) == pytest.approx(first.mean()[1])
    other = proxy.run(nearest_centroid, **{**kwargs, "random_state": 2})
    assert not np.array_equal(first.accuracy, other.accuracy)


def test_budget_is_enforced(blind):
    def greedy(images, label_of, budget, rng):
        label_of(np.arange(budget))
        label_of(np.arange(budget))  # asking again is free
        label_of([budget])           # one more is not
    with pytest.raises(proxy.ProxyBudgetError, match="budget of 3"):
        proxy.run(greedy, [3], repetitions=1, n_images=50, track="7,1", base=Confuses(), progress=False)


def test_pool_predictions_and_prepare(blind):
    def by_cluster(features, label_of, budget, rng):
        digits = label_of(np.arange(budget))
        return np.full(len(features), digits[0])  # one digit for the whole pool
    curves = proxy.run(by_cluster, [1], repetitions=2, n_images=200, track="7,1", base=Confuses(),
                       prepare=lambda images: images.reshape(len(images), -1), progress=False)
    assert curves.measured_on == "the proxy pool"
    assert np.all((curves.accuracy > 0.2) & (curves.accuracy < 0.8))  # one digit right, the other wrong


def test_run_loop_reads_the_history(blind):
    def loop(images, label_of, budget, rng):
        history, rows = [], []
        for k in range(min(budget, 3)):  # stops early, after 3 labels
            rows.append(k)
            digits = label_of(rows)
            history.append(np.full(len(images), digits[-1]))
        return history
    curves = proxy.run_loop(loop, 5, repetitions=2, n_images=100, track="7,1", base=Confuses(), progress=False)
    assert curves.budgets.tolist() == [1, 2, 3, 4, 5]
    assert curves.labels_used.tolist() == [[1, 2, 3, 3, 3]] * 2
    assert np.allclose(curves.accuracy[:, 3:], curves.accuracy[:, 2:3])
    assert curves.measured_on == "the proxy pool"


def test_prepare_runs_once_per_pool(blind):
    calls = []

    def prepare(images):
        calls.append(len(images))
        return images

    def first_label(images, label_of, budget, rng):
        return np.full(len(images), label_of([0])[0])

    for _ in range(2):
        proxy.run(first_label, [1, 2], repetitions=2, n_images=60, track="7,1", base=Confuses(),
                  prepare=prepare, progress=False)
    assert calls == [60, 60], "prepare runs once per repetition, and its result is reused by later runs"
