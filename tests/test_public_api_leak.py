"""No original label of a C sample, nor any private label, is reachable from public names."""

import inspect

import numpy as np

import course
from course import data, evaluate, grading, models, oracle, plots


def public_arrays(obj, depth=0, seen=None):
    """Every numpy array reachable through public attributes (no leading underscore)."""
    seen = seen if seen is not None else set()
    if id(obj) in seen or depth > 3:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        yield obj
        return
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from public_arrays(item, depth + 1, seen)
        return
    for name in dir(obj):
        if name.startswith("_"):
            continue
        try:
            value = getattr(obj, name)
        except Exception:
            continue
        if inspect.ismodule(value) and not value.__name__.startswith("course"):
            continue
        if isinstance(value, (np.ndarray, list, tuple)) or inspect.ismodule(value) \
                or type(value).__module__.startswith("course"):
            yield from public_arrays(value, depth + 1, seen)


def test_no_public_array_holds_c_digits(ds):
    split = data.split((7, 1))
    secrets = {
        "pool digits": split.pool_digits,
        "C digits": split.pool_digits[ds.c_indices],
        "public test digits": split.public_test_digits,
        "public track test digits": split.public_test_digits[ds.test_labels == data.C],
        "private test digits": split.private_test_digits,
    }
    oracle.backend()  # make sure a ledger exists, so its attributes are searched too
    searched = 0
    for obj in (ds, course, data, oracle, evaluate, grading, models, plots, oracle.backend()):
        for array in public_arrays(obj):
            searched += 1
            for name, secret in secrets.items():
                assert not (array.shape == secret.shape and np.array_equal(array, secret)), \
                    f"a public array equals the {name}"
    assert searched >= 5  # the search did reach the data set's arrays
    assert np.all(ds.labels[ds.c_indices] == data.C)


def test_dataset_fields_are_only_the_documented_ones(ds):
    fields = {n for n in vars(ds) if not n.startswith("_")}
    assert fields == {"images", "labels", "c_indices", "test_images", "test_labels", "track", "source"}
