"""course.oracle: charging, repeats, budgets and every kind of refused request."""

import numpy as np
import pytest
import torch

from course import data, oracle
from helpers.mnist import Truth


@pytest.fixture(scope="module")
def truth(mnist_raw):
    """The digits of MNIST's training images, read from the files by the test (not through course.data)."""
    return Truth(mnist_raw, "train")


def ledger_state():
    return oracle.count(), oracle.history()


def test_annotate_returns_original_digits(ds, truth):
    idx = ds.c_indices[:40]
    digits = oracle.annotate(idx)
    assert digits.dtype == np.int64 and digits.shape == (40,)
    assert digits.tolist() == truth.digits(ds.images[idx]).tolist()  # the files' own labels
    assert set(digits.tolist()) == {7, 1}
    assert oracle.count() == 40


def test_repeats_are_free_and_history_is_ordered(ds, truth):
    a, b, c = (int(i) for i in ds.c_indices[:3])
    oracle.annotate([b, a])
    oracle.annotate([a, a, c, b])
    assert oracle.count() == 3
    hist = oracle.history()
    assert [h.index for h in hist] == [b, a, c]
    assert [h.order for h in hist] == [0, 1, 2]
    assert [h.label for h in hist] == truth.digits(ds.images[[b, a, c]]).tolist()


@pytest.mark.parametrize("kind", ["int", "numpy_int", "list", "tuple", "array", "tensor", "uint"])
def test_accepted_index_types(ds, kind):
    i = int(ds.c_indices[10])
    value = {
        "int": i, "numpy_int": np.int32(i), "list": [i], "tuple": (i,),
        "array": np.array([i]), "tensor": torch.tensor([i]), "uint": np.array([i], dtype=np.uint32),
    }[kind]
    digits = oracle.annotate(value)
    assert int(np.asarray(digits).reshape(-1)[0]) in (7, 1)
    assert oracle.count() == 1


def test_scalar_gives_scalar_shaped_answer(ds):
    assert oracle.annotate(int(ds.c_indices[0])).shape == ()


def test_empty_call_charges_nothing():
    assert oracle.annotate([]).shape == (0,)
    assert oracle.count() == 0


@pytest.mark.parametrize("bad, error, message", [
    (True, oracle.IndexTypeError, "expected integer pool indices"),
    ([True, False], oracle.IndexTypeError, "np.flatnonzero(mask)"),
    (np.array([True, False, True]), oracle.IndexTypeError, "np.flatnonzero(mask)"),
    (torch.tensor([True, False]), oracle.IndexTypeError, "np.flatnonzero(mask)"),
    ((np.array([3, 5]),), oracle.IndexTypeError, "np.where(mask)[0]"),
    (np.argwhere(np.array([0, 1, 1])), oracle.IndexTypeError, "np.ravel"),
    (np.zeros((2, 2), dtype=int), oracle.IndexTypeError, "not pool indices"),
    (3.0, oracle.IndexTypeError, ".astype(int)"),
    (np.array([12.0, 40.0]), oracle.IndexTypeError, ".astype(int)"),
    ([1.5, 2.0], oracle.IndexTypeError, "not whole numbers"),
    (np.array([0.73, np.nan]), oracle.IndexTypeError, "not scores or probabilities"),
    (torch.tensor([1.0]), oracle.IndexTypeError, ".long()"),
    ("12", oracle.IndexTypeError, "string"),
    (None, oracle.IndexTypeError, "None"),
    ({3, 4}, oracle.IndexTypeError, "sorted"),
    ([3, None], oracle.IndexTypeError, "None"),
    ([[1], [2, 3]], oracle.IndexTypeError, "ragged"),
    (-1, oracle.OutOfRangeError, "outside the pool"),
    (60000, oracle.OutOfRangeError, "outside the pool"),
])
def test_bad_input_charges_nothing_and_says_what_to_do(ds, bad, error, message):
    oracle.annotate(ds.c_indices[:2])
    before = ledger_state()
    with pytest.raises(error) as err:
        oracle.annotate(bad)
    assert isinstance(err.value, oracle.OracleError)
    assert ledger_state() == before
    assert message in str(err.value)
    if "mask" in message:
        assert ".astype(int)" not in str(err.value), "a mask cast to int would be 0/1 indices, not the chosen ones"


def test_a_mask_converted_as_the_message_says_works(ds):
    mask = np.zeros(len(ds), dtype=bool)
    mask[ds.c_indices[:3]] = True
    with pytest.raises(oracle.IndexTypeError, match="flatnonzero"):
        oracle.annotate(mask)
    assert oracle.annotate(np.flatnonzero(mask)).shape == (3,)
    c_mask = np.zeros(len(ds.c_indices), dtype=bool)
    c_mask[:2] = True
    assert oracle.annotate(ds.c_indices[c_mask]).shape == (2,)
    assert oracle.count() == 3


def test_pandas_and_numpy_int_lists_are_accepted(ds):
    pd = pytest.importorskip("pandas")
    idx = [int(i) for i in ds.c_indices[:3]]
    assert oracle.annotate(pd.Series(idx, index=[10, 20, 30])).shape == (3,)
    assert oracle.annotate([np.int64(i) for i in idx]).shape == (3,)
    with pytest.raises(oracle.IndexTypeError, match="flatnonzero"):
        oracle.annotate(pd.Series([True, False]))
    assert oracle.count() == 3


def test_duplicates_are_sent_once_and_answered_in_place(ds):
    a, b = (int(i) for i in ds.c_indices[:2])
    digits = oracle.annotate([b, a, b, b, a])
    assert digits.tolist() == [digits[0], digits[1], digits[0], digits[0], digits[1]]
    assert [h.index for h in oracle.history()] == [b, a]
    entry = oracle.backend().ledger()[-1]
    assert entry["indices"] == [b, a] and entry["n_new"] == 2 and entry["count"] == 2


def test_known_label_is_refused_and_whole_call_uncharged(ds):
    known = int(np.flatnonzero(ds.labels != data.C)[0])
    with pytest.raises(oracle.NotInCError, match="c_indices"):
        oracle.annotate([int(ds.c_indices[0]), known])
    assert oracle.count() == 0 and oracle.history() == []


def test_budget(ds):
    oracle.set_budget(3)
    oracle.annotate(ds.c_indices[:2])
    with pytest.raises(oracle.BudgetExceededError, match="1 of the budget of 3"):
        oracle.annotate(ds.c_indices[2:4])
    assert oracle.count() == 2
    oracle.annotate(ds.c_indices[:3])  # one new, two repeats: fits
    assert oracle.count() == 3 and oracle.remaining() == 0
    oracle.annotate(ds.c_indices[:3])  # repeats stay free at a full budget
    oracle.set_budget(None)
    assert oracle.remaining() is None


@pytest.mark.parametrize("bad", [-1, 2.5, True, "10"])
def test_bad_budget(bad):
    with pytest.raises(oracle.OracleError, match="budget"):
        oracle.set_budget(bad)


def test_listeners_see_every_charge(ds):
    seen = []
    oracle.subscribe(lambda n, cap: seen.append((n, cap)))
    oracle.set_budget(10)
    oracle.annotate(ds.c_indices[:2])
    assert seen == [(0, 10), (2, 10)]


def test_backend_seam(ds):
    class Recording(oracle.LocalBackend):
        calls = []

        def annotate(self, indices):
            self.calls.append(indices.tolist())
            return super().annotate(indices)

    oracle.use_backend(Recording((7, 1)))
    oracle.annotate([int(ds.c_indices[0])])
    assert Recording.calls == [[int(ds.c_indices[0])]]
    oracle.use_backend(None)
    assert oracle.count() == 0


def test_ledgers_are_per_track(ds):
    oracle.annotate(ds.c_indices[:1])
    ds49 = data.load("4,9")
    assert oracle.count() == 0
    assert set(oracle.annotate(ds49.c_indices[:4]).tolist()) <= {4, 9}
    data.load("7,1")
    assert oracle.count() == 1


def test_one_rule_for_the_active_track(ds, monkeypatch, tmp_path):
    """After data.load("4,9"), the oracle, evaluate and models.baseline() all use 4,9; split() changes nothing."""
    from course import evaluate, models

    data.load("4,9")
    data.split("7,1")
    evaluate.track_test_images("public", track="7,1")
    assert data.active_track() == (4, 9)
    assert set(oracle.annotate(data.load("4,9").c_indices[:5]).tolist()) <= {4, 9}
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    models.checkpoint_path((4, 9)).parent.mkdir(parents=True)
    models.checkpoint_path((4, 9)).touch()
    monkeypatch.setattr(models.CNNClassifier, "load", classmethod(lambda cls, path: path))
    assert models.baseline() == models.checkpoint_path((4, 9))
    assert data.split().public.track == (4, 9)
