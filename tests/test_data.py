"""course.data: tracks, loading, checksums, the merge and the public/private split."""

import numpy as np
import pytest
from conftest import copy_mnist_gz

from course import config, data


def test_parse_track_forms():
    assert data.parse_track("7,1") == (7, 1)
    assert data.parse_track(" 3, 5 ,8") == (3, 5, 8)
    assert data.parse_track((4, 9)) == (4, 9)
    assert data.parse_track(None) == (7, 1)


def test_parse_track_from_env(monkeypatch):
    monkeypatch.setenv(config.ENV_TRACK, "4,9")
    assert data.parse_track(None) == (4, 9)


@pytest.mark.parametrize("bad", ["7", "7,7", "7,x", "1,12", "", "-1,3"])
def test_parse_track_rejects(bad):
    with pytest.raises(data.TrackError, match="track"):
        data.parse_track(bad)


def test_merge_replaces_track_digits_only():
    merged = data.merge(np.array([7, 1, 3, 7, 0]), (7, 1))
    assert merged.tolist() == [data.C, data.C, 3, data.C, 0]
    assert data.C == 10
    assert data.class_name(10) == "C" and data.class_name(3) == "3"


def test_load_shapes_and_merge(ds):
    assert ds.images.shape == (60000, 28, 28) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (60000,)
    assert set(np.unique(ds.labels)) == {0, 2, 3, 4, 5, 6, 8, 9, data.C}
    assert ds.track == (7, 1)
    assert np.array_equal(ds.c_indices, np.flatnonzero(ds.labels == data.C))
    assert len(ds.c_indices) == 6265 + 6742  # MNIST's training 7s and 1s
    assert ds.classes == [0, 2, 3, 4, 5, 6, 8, 9, data.C]
    assert ds.class_names[-1] == "C"
    assert "7,1" in repr(ds)


def test_public_test_split_has_half_the_track(ds):
    n_track_public = int(np.sum(ds.test_labels == data.C))
    assert n_track_public == round(1028 / 2) + round(1135 / 2)  # test 7s and 1s
    assert len(ds.test_images) == 10000 - (1028 + 1135 - n_track_public)


def test_split_is_fixed_and_disjoint():
    digits = data._read_mnist()[3]
    pub1, priv1 = data.split_test_indices(digits, (7, 1))
    pub2, priv2 = data.split_test_indices(digits, (7, 1))
    assert np.array_equal(priv1, priv2) and np.array_equal(pub1, pub2)
    assert not set(pub1) & set(priv1)
    assert len(pub1) + len(priv1) == len(digits)
    assert set(digits[priv1]) == {7, 1}


def test_arrays_are_read_only(ds):
    with pytest.raises(ValueError):
        ds.labels[ds.c_indices[0]] = 7
    with pytest.raises(ValueError):
        ds.images[0, 0, 0] = 1


def test_other_track(monkeypatch):
    monkeypatch.setenv(config.ENV_TRACK, "4,9")
    ds49 = data.load()
    assert ds49.track == (4, 9)
    assert set(np.unique(ds49.labels)) == {0, 1, 2, 3, 5, 6, 7, 8, data.C}
    three = data.load("3,5,8")
    assert len(three.classes) == 8


def test_gz_only_read_only_folder_is_unpacked_to_cache(tmp_path, monkeypatch, mnist_raw):
    src = copy_mnist_gz(mnist_raw, tmp_path / "src" / "MNIST" / "raw")
    src.chmod(0o555)
    monkeypatch.setenv(config.ENV_CACHE_DIR, str(tmp_path / "cache"))
    monkeypatch.setenv(config.ENV_DATA_DIR, str(tmp_path / "src"))
    raw = data._verified_raw_dir()
    assert raw == tmp_path / "cache" / "MNIST" / "raw"
    assert all((raw / n).is_file() for n in data.RAW_FILES)
    assert not list(raw.glob("*.part"))


def test_corrupt_file_is_rejected(tmp_path, monkeypatch):
    raw = tmp_path / "d" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.RAW_FILES:
        (raw / name).write_bytes(b"not mnist")
    monkeypatch.setenv(config.ENV_DATA_DIR, str(tmp_path / "d"))
    with pytest.raises(data.DataError, match="SHA-256"):
        data._verified_raw_dir()


def test_mnist_is_read_without_torchvision(mnist_raw):
    """Every kernel and grader reads MNIST: with numpy, not by importing torchvision (seconds each)."""
    import json
    import subprocess
    import sys

    code = ("import json, sys\nfrom course import data\nx, y, tx, ty = data._read_mnist()\n"
            "print(json.dumps([x.shape, str(x.dtype), str(y.dtype), tx.shape, y[:5].tolist(), ty[:5].tolist(), "
            "x.flags.writeable, 'torchvision' in sys.modules, 'torch' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # MNIST's first training digits are 5 0 4 1 9, its first test digits 7 2 1 0 4
    assert json.loads(done.stdout) == [[60000, 28, 28], "uint8", "int64", [10000, 28, 28], [5, 0, 4, 1, 9],
                                       [7, 2, 1, 0, 4], True, False, False]


def test_a_file_that_is_not_idx_is_refused(tmp_path):
    (tmp_path / "x").write_bytes(b"\x1f\x8b\x08\x00 gzip, not unpacked")
    with pytest.raises(data.DataError, match="not an MNIST file"):
        data._read_idx(tmp_path / "x")


def test_missing_files_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ENV_DATA_DIR, str(tmp_path / "empty"))
    monkeypatch.setenv(config.ENV_CACHE_DIR, str(tmp_path / "cache"))
    monkeypatch.setenv(config.ENV_OFFLINE, "1")
    monkeypatch.setattr(config, "REPO_DATA_DIR", tmp_path / "nodata")
    with pytest.raises(data.DataError, match="MNIST files not found") as err:
        data._verified_raw_dir()
    assert "COURSE_DATA_DIR" in str(err.value) and str(tmp_path / "empty") in str(err.value)


def test_grading_file_is_read_and_has_no_truth(tmp_path, monkeypatch, ds):
    np.savez(tmp_path / data.GRADING_FILE, track=np.array([7, 1]), images=ds.images[:100],
             labels=ds.labels[:100], test_images=ds.test_images[:50],
             test_labels=ds.test_labels[:50], private_test_images=ds.test_images[:20])
    monkeypatch.setenv(config.ENV_DATA_DIR, str(tmp_path))
    graded = data.load()
    assert graded.source == "grading" and len(graded) == 100
    split = data._split((7, 1))
    assert split.pool_digits is None and split.private_test_digits is None
    with pytest.raises(data.TrackError, match="grading data is for track 7,1"):
        data.load("4,9")
