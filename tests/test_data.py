"""course.data and course.layouts: sources, verification, PNG layouts."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from course import data as D
from course.layouts import layout_path

# MNIST's published per-digit counts, written out here independently of the module's constants.
PUBLISHED_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
PUBLISHED_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture
def no_sources(tmp_path, monkeypatch):
    """A machine with no MNIST anywhere: no $COURSE_DATA, empty cache, empty fastai folder."""
    monkeypatch.delenv(D.ENV_DATA, raising=False)
    monkeypatch.setenv(D.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setattr(D, "fastai_data_dir", lambda: tmp_path / "fastai-data")
    return tmp_path


def small_copy(mnist, tmp_path, **changes):
    """Write MNIST (optionally altered) to an npz in tmp_path and return its path."""
    arrays = {k: getattr(mnist, k) for k in ("x_train", "y_train", "x_test", "y_test")}
    arrays.update(changes)
    p = tmp_path / "mnist.npz"
    np.savez(p, **arrays)
    return p


def test_label_counts_match_published_counts(mnist):
    assert np.bincount(mnist.y_train, minlength=10).tolist() == PUBLISHED_TRAIN
    assert np.bincount(mnist.y_test, minlength=10).tolist() == PUBLISHED_TEST
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28)


def test_tensors_are_n1hw_uint8_or_float(mnist):
    x, y = mnist.tensors("test")
    assert tuple(x.shape) == (10000, 1, 28, 28) and str(x.dtype) == "torch.uint8"
    xf, _ = mnist.tensors("test", dtype="float")
    assert xf.min() >= 0 and xf.max() <= 1 and abs(xf[0, 0, 14, 14].item() - x[0, 0, 14, 14].item() / 255) < 1e-7
    assert str(y.dtype) == "torch.int64"
    with pytest.raises(ValueError, match="'valid'"):
        mnist.tensors("valid")


def test_mnist_sample_is_all_threes_and_sevens(mnist):
    s = D.load_mnist_sample()
    assert (len(s.y_train), len(s.y_valid)) == (12396, 2038)
    assert np.array_equal(s.x_train, mnist.x_train[s.idx_train])
    assert np.array_equal(s.x_valid, mnist.x_test[s.idx_valid])
    # label 1 is a 7, label 0 a 3, and nothing else is included
    assert np.array_equal(np.where(s.y_train == 1, 7, 3), mnist.y_train[s.idx_train])
    assert set(np.unique(mnist.y_test[s.idx_valid])) == {3, 7}
    assert int((s.y_valid == 1).sum()) == PUBLISHED_TEST[7]


def test_explicit_path_wins_and_folder_holding_npz_is_found(mnist, tmp_path, monkeypatch):
    p = small_copy(mnist, tmp_path)
    monkeypatch.setenv(D.ENV_DATA, "/does/not/exist")
    assert D.locate_mnist(tmp_path) == p  # explicit argument beats the variable
    monkeypatch.setenv(D.ENV_DATA, str(tmp_path))
    assert D.locate_mnist() == p


def test_cache_then_fastai_folder_are_used_before_download(mnist, no_sources, monkeypatch):
    def no_download():
        raise AssertionError("must not download when a local copy exists")

    monkeypatch.setattr(D, "_download_mnist", no_download)
    fastai_png = no_sources / "fastai-data" / "mnist_png"
    (fastai_png / "training").mkdir(parents=True)
    (fastai_png / "testing").mkdir()
    assert D.locate_mnist() == fastai_png
    cached = no_sources / "cache" / "mnist.npz"
    cached.parent.mkdir()
    shutil.copy(small_copy(mnist, no_sources), cached)
    assert D.locate_mnist() == cached


def test_offline_without_data_names_the_variable(no_sources, monkeypatch):
    monkeypatch.setenv(D.ENV_OFFLINE, "1")
    with pytest.raises(D.DataNotFoundError, match=r"COURSE_DATA=/path/to/mnist.npz"):
        D.load_mnist()


def test_failed_download_names_the_variable(no_sources, monkeypatch):
    import fastai.data.external as ext

    def unreachable(url, *a, **k):
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.delenv(D.ENV_OFFLINE, raising=False)
    monkeypatch.setattr(ext, "untar_data", unreachable)
    with pytest.raises(D.DataNotFoundError, match="Network is unreachable.*COURSE_DATA="):
        D.load_mnist()


def test_variable_pointing_at_nothing_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv(D.ENV_DATA, str(tmp_path / "nowhere"))
    with pytest.raises(D.DataNotFoundError, match="COURSE_DATA = .*nowhere.*holds no MNIST"):
        D.load_mnist()


def test_truncated_npz_is_a_clear_error(tmp_path):
    good = D.locate_mnist()
    bad = tmp_path / "mnist.npz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(D.DataIntegrityError, match="damaged or truncated"):
        D.load_mnist(bad)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"y_test": np.zeros(10000, np.uint8)}, r"y_test digit counts"),
        ({"x_train": np.zeros((60000, 28, 27), np.uint8)}, r"x_train is uint8\[60000, 28, 27\]"),
        ({"x_test": np.zeros((10000, 28, 28), np.float32)}, r"x_test is float32"),
        ({"y_train": np.full(60000, 11, np.uint8)}, r"labels outside 0..9"),
    ],
)
def test_wrong_arrays_are_rejected(mnist, tmp_path, change, message):
    with pytest.raises(D.DataIntegrityError, match=message):
        D.load_mnist(small_copy(mnist, tmp_path, **change))


def test_npz_without_mnist_keys_is_rejected(tmp_path):
    p = tmp_path / "other.npz"
    np.savez(p, images=np.zeros(3))
    with pytest.raises(D.DataIntegrityError, match=r"keys \['x_train'"):
        D.load_mnist(p)


def test_bear_is_a_colour_photo():
    with Image.open(D.bear_path()) as im:
        assert im.mode == "RGB" and min(im.size) >= 256


@pytest.mark.slow
def test_png_layout_decodes_pixel_identical(mnist):
    root = layout_path("mnist_png", progress=False)
    counts = [len(list((root / "training" / str(d)).glob("*.png"))) for d in range(10)]
    assert counts == PUBLISHED_TRAIN
    # the folder is also a valid source: decoded once (read_mnist_png, 70,000 files), then served from the cache's npz
    from_png = D.load_mnist(root)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(from_png, k), getattr(mnist, k)), k
    assert (D.cache_dir() / "mnist.npz").is_file()


@pytest.mark.slow
def test_sample_layout_matches_fastai_layout(mnist):
    root = layout_path("mnist_sample", progress=False)
    s = D.load_mnist_sample()
    for split, n in (("train", 12396), ("valid", 2038)):
        files = sorted((root / split).glob("*/*.png"))
        assert len(files) == n
        assert {f.parent.name for f in files} == {"3", "7"}
    with open(root / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12396 + 2038 and set(rows[0]) == {"name", "label"}
    assert all(r["label"] == str(int(r["name"].split("/")[1] == "7")) for r in rows)
    i = int(s.idx_valid[5])
    digit = s.vocab[s.y_valid[5]]
    assert np.array_equal(np.asarray(Image.open(root / "valid" / digit / f"{i}.png")), mnist.x_test[i])


def test_interrupted_layout_leaves_nothing_behind(mnist, tmp_path, monkeypatch):
    import course.layouts as L

    def crash(root, items, progress, desc):
        (root / "train" / "3").mkdir(parents=True)
        (root / "train" / "3" / "0.png").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(L, "_write_pngs", crash)
    dest = tmp_path / "mnist_sample"
    with pytest.raises(KeyboardInterrupt):
        layout_path("mnist_sample", dest, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unknown_layout_and_foreign_folder_are_errors(tmp_path):
    with pytest.raises(ValueError, match="layout must be one of"):
        layout_path("cifar10")
    (tmp_path / "mnist_png").mkdir()
    (tmp_path / "mnist_png" / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="delete it"):
        layout_path("mnist_png", tmp_path / "mnist_png")
    assert (tmp_path / "mnist_png" / "mine.txt").read_text() == "keep me"
