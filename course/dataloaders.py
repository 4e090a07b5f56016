"""fastai DataLoaders for MNIST: a fast one built straight from tensors, and the book's PNG pipeline.

``mnist_dls`` slices whole batches out of a uint8 tensor (no PNG decoding, no per-item Python), then
applies the same batch transforms as the book's ``get_dls``: ``IntToFloatTensor`` and ``Normalize``.
Batches carry fastai's types (``TensorImageBW``, ``TensorCategory``), so ``show_batch``,
``Learner.summary`` and callbacks behave as they do in the book.
"""

from __future__ import annotations

import torch
from fastai.data.core import DataLoaders, TfmdDL
from fastai.data.transforms import Category, Normalize
from fastai.torch_core import TensorCategory, TensorImageBW
from fastai.vision.core import PILImageBW  # noqa: F401  (registers show methods for TensorImageBW)
from fastai.vision.data import ImageBlock
from fastcore.basics import chunked

from course.data import load_mnist, load_mnist_sample

__all__ = ["TensorImageDataset", "TensorMnistDL", "mnist_dls", "pixel_stats", "png_dls"]


class TensorImageDataset:
    """Images (N, 1, H, W) uint8 and integer labels (N,), indexable item by item, decodable for display."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, vocab):
        if x.ndim != 4 or x.shape[0] != y.shape[0]:
            raise ValueError(f"expected x (N, C, H, W) and y (N,), got x {tuple(x.shape)} and y {tuple(y.shape)}")
        self.x, self.y, self.vocab = x, y, list(vocab)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return TensorImageBW(self.x[i]), TensorCategory(self.y[i])

    def decode(self, o, full: bool = True):
        """Map a decoded (image, label) pair to something fastai can show: the label becomes its name."""
        x, y = o
        return x, Category(self.vocab[int(y)])


class TensorMnistDL(TfmdDL):
    """A TfmdDL that indexes whole batches out of tensors instead of collating items one by one."""

    def create_batches(self, samps):
        ds = self.dataset
        for idxs in chunked(samps, self.bs, self.drop_last):
            idx = torch.as_tensor(idxs, device=ds.x.device)
            yield TensorImageBW(ds.x[idx]), TensorCategory(ds.y[idx])  # (bs, 1, 28, 28), (bs,)


def pixel_stats(x: torch.Tensor) -> tuple[float, float]:
    """Mean and std of uint8 images scaled to [0, 1] (0.1307 / 0.3081 for the MNIST training set)."""
    xf = x.float() / 255
    return xf.mean().item(), xf.std().item()


def mnist_dls(
    bs: int = 64, sample: bool = False, normalize: bool | None = None, device=None, shuffle: bool = True, path=None
) -> DataLoaders:
    """Fast MNIST DataLoaders from tensors (train = MNIST train, valid = MNIST test).

    ``sample=True`` gives MNIST_SAMPLE (3 vs 7). ``normalize`` defaults to what the book does:
    yes for full MNIST (``get_dls``), no for the sample. Normalization uses the training set's pixel
    mean and std (0.1307 / 0.3081 for MNIST). ``device`` defaults to fastai's default device; the
    tensors move there once, so a GPU batch costs one index operation.
    """
    if bs < 1:
        raise ValueError(f"bs must be a positive batch size, got {bs!r}")
    from fastai.data.transforms import IntToFloatTensor
    from fastai.torch_core import default_device

    data = load_mnist_sample(path) if sample else load_mnist(path)
    valid_split = "valid" if sample else "test"
    vocab = list(data.vocab) if sample else [str(d) for d in range(10)]
    normalize = (not sample) if normalize is None else normalize
    device = default_device() if device is None else torch.device(device)
    (xt, yt), (xv, yv) = data.tensors("train"), data.tensors(valid_split)
    after_batch = [IntToFloatTensor()]
    if normalize:
        mean, std = pixel_stats(xt)
        after_batch.append(Normalize.from_stats(mean, std, cuda=False))
    dls = []
    for x, y, train in ((xt, yt, True), (xv, yv, False)):
        ds = TensorImageDataset(x.to(device), y.to(device), vocab)
        dls.append(
            TensorMnistDL(
                ds,
                bs=bs if train else 2 * bs,
                shuffle=shuffle and train,
                drop_last=train,
                num_workers=0,
                after_batch=after_batch,
                device=device,
            )
        )
    out = DataLoaders(*dls, device=device)
    out.vocab, out.c = vocab, len(vocab)
    return out


def png_dls(bs: int = 64, sample: bool = False, normalize: bool | None = None, num_workers: int | None = None):
    """The book's pipeline: a ``DataBlock`` over the PNG folders (written once into the cache)."""
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.data.transforms import GrandparentSplitter, get_image_files, parent_label

    from course.layouts import mnist_png_path, mnist_sample_path

    normalize = (not sample) if normalize is None else normalize
    if sample:
        path, splitter = mnist_sample_path(), GrandparentSplitter()
    else:
        path, splitter = mnist_png_path(), GrandparentSplitter("training", "testing")
    block = DataBlock(
        blocks=(ImageBlock(cls=PILImageBW), CategoryBlock),
        get_items=get_image_files,
        splitter=splitter,
        get_y=parent_label,
        batch_tfms=[Normalize()] if normalize else None,
    )
    kwargs = {} if num_workers is None else {"num_workers": num_workers}
    return block.dataloaders(path, bs=bs, **kwargs)
