"""course.oracle: charging, repeats, budgets and every kind of refused request."""

import numpy as np
import pytest
import torch

from course import data, oracle


def ledger_state():
    return oracle.count(), oracle.history()


def test_annotate_returns_original_digits(ds):
    idx = ds.c_indices[:5]
    digits = oracle.annotate(idx)
    assert digits.dtype == np.int64 and digits.shape == (5,)
    assert set(digits.tolist()) <= {7, 1}
    assert oracle.count() == 5


def test_repeats_are_free_and_history_is_ordered(ds):
    a, b, c = (int(i) for i in ds.c_indices[:3])
    oracle.annotate([b, a])
    oracle.annotate([a, a, c, b])
    assert oracle.count() == 3
    hist = oracle.history()
    assert [h.index for h in hist] == [b, a, c]
    assert [h.order for h in hist] == [0, 1, 2]
    assert all(h.label in (7, 1) for h in hist)


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


@pytest.mark.parametrize("bad, error", [
    (True, oracle.IndexTypeError),
    ([True, False], oracle.IndexTypeError),
    (3.0, oracle.IndexTypeError),
    ([1.5, 2.0], oracle.IndexTypeError),
    ("12", oracle.IndexTypeError),
    (torch.tensor([1.0]), oracle.IndexTypeError),
    (np.zeros((2, 2), dtype=int), oracle.IndexTypeError),
    ([[1], [2, 3]], oracle.IndexTypeError),
    (-1, oracle.OutOfRangeError),
    (60000, oracle.OutOfRangeError),
])
def test_bad_input_charges_nothing(ds, bad, error):
    oracle.annotate(ds.c_indices[:2])
    before = ledger_state()
    with pytest.raises(error) as err:
        oracle.annotate(bad)
    assert isinstance(err.value, oracle.OracleError)
    assert ledger_state() == before
    assert "expected" in str(err.value) or "outside" in str(err.value)


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
