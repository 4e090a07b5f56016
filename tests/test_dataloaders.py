"""course.dataloaders: fast tensor DataLoaders behave like the book's get_dls(bs)."""

from __future__ import annotations

import matplotlib
import pytest
import torch
from fastai.torch_core import TensorCategory, TensorImageBW

from course.dataloaders import mnist_dls, png_dls

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def dls():
    return mnist_dls(bs=256, device="cpu")


def test_batches_have_book_types_and_shapes(dls):
    xb, yb = dls.one_batch()
    assert isinstance(xb, TensorImageBW) and isinstance(yb, TensorCategory)
    assert tuple(xb.shape) == (256, 1, 28, 28) and xb.dtype == torch.float32
    assert tuple(yb.shape) == (256,) and int(yb.min()) >= 0 and int(yb.max()) <= 9
    assert len(dls.train) == 60000 // 256 and len(dls.valid) == -(-10000 // 512)
    assert dls.vocab == [str(d) for d in range(10)] and dls.c == 10


def test_train_batches_are_normalized_over_an_epoch(dls):
    xs = torch.cat([xb.flatten() for xb, _ in dls.train])
    assert abs(xs.mean().item()) < 0.01 and abs(xs.std().item() - 1) < 0.01


def test_validation_covers_the_test_set_in_order(dls):
    ys = torch.cat([yb for _, yb in dls.valid])
    from course.data import load_mnist

    assert torch.equal(ys, torch.from_numpy(load_mnist().y_test.astype("int64")))


def test_decode_undoes_normalization(dls):
    xb, yb = dls.valid.one_batch()
    x, _ = dls.valid.decode((xb, yb))
    from course.data import load_mnist

    first = torch.from_numpy(load_mnist().x_test[0]).long()  # decoding gives back 0..255 pixels, like fastai
    assert (x[0, 0].long() - first).abs().max().item() <= 1


def test_show_batch_titles_are_digit_names(dls):
    import matplotlib.pyplot as plt

    dls.valid.show_batch(max_n=4, figsize=(2, 2))
    titles = [ax.get_title() for ax in plt.gcf().axes if ax.get_title()]
    plt.close("all")
    from course.data import load_mnist

    assert titles == [str(d) for d in load_mnist().y_test[:4]]


def test_sample_dls_are_unnormalized_3_vs_7():
    dls = mnist_dls(bs=64, sample=True, device="cpu")
    xb, yb = dls.valid.one_batch()
    assert dls.vocab == ["3", "7"] and float(xb.min()) == 0.0 and float(xb.max()) == 1.0
    assert set(yb.tolist()) <= {0, 1}


def test_bad_batch_size_is_an_error():
    with pytest.raises(ValueError, match="bs must be a positive batch size, got 0"):
        mnist_dls(bs=0)


@pytest.mark.slow
def test_png_pipeline_yields_the_same_pixels():
    """The book's DataBlock over the written PNGs and the tensor pipeline see the same validation data."""
    book = png_dls(bs=64, sample=True, num_workers=0)
    fast = mnist_dls(bs=64, sample=True, device="cpu")
    xb, yb = book.valid.one_batch()
    names = book.valid.items[:64]
    from course.data import load_mnist

    test_x = load_mnist().x_test
    for i, f in enumerate(names[:8]):
        assert torch.equal((xb[i, 0] * 255).round().byte(), torch.from_numpy(test_x[int(f.stem)]))
    assert book.vocab == list(fast.vocab)
