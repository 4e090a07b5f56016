"""The training loop and batched prediction that the grading sandbox and the trusted side share.

``fit`` trains a model with fastai on arrays (no DataBlock, no files), ``predict`` runs it in eval mode,
``sequential`` builds a network from a plain layer list. Inside the sandbox they are probe helpers (see
``course.grading.probelib``); the reference trainer and the hidden graders call the same functions in the
trusted process, so both sides compute the same thing the same way.
"""

from __future__ import annotations

import time

import torch
from torch import nn

__all__ = ["Conv2dFn", "fit", "hyper_trace", "predict", "sequential"]

_NN_LAYERS = frozenset(
    {"Conv2d", "BatchNorm2d", "ReLU", "Flatten", "Linear", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "MaxPool2d"}
    | {"AvgPool2d", "GroupNorm", "InstanceNorm2d", "LayerNorm", "Dropout", "Identity", "Sigmoid", "Tanh"}
)


def _prepare(x: torch.Tensor, mean: float | None, std: float | None) -> torch.Tensor:
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    return (x - mean) / std if mean is not None and std is not None else x


def predict(model, x: torch.Tensor, bs: int = 1024, mean: float | None = None, std: float | None = None):
    """``model`` outputs for ``x`` in eval mode, batch by batch, without gradients."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(_prepare(x[i : i + bs], mean, std)) for i in range(0, len(x), bs)])


class Conv2dFn(nn.Module):
    """A conv layer whose arithmetic is a submitted ``conv2d`` function; same state_dict keys as ``nn.Conv2d``."""

    def __init__(self, fn, ni: int, nf: int, ks: int, stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__()
        ref = nn.Conv2d(ni, nf, ks, stride=stride, padding=padding, bias=bias)
        self.weight, self.bias = ref.weight, ref.bias
        self.fn, self.stride, self.padding = fn, stride, padding

    def forward(self, x):
        return self.fn(x, self.weight, self.bias, stride=self.stride, padding=self.padding)


def sequential(layers: list, state_dict: dict | None = None, seed: int | None = None) -> nn.Sequential:
    """``nn.Sequential`` from ``[[name_or_class, *args, {kwargs}?], ...]``; ``state_dict`` loaded strictly."""
    if seed is not None:
        torch.manual_seed(seed)
    mods = []
    for spec in layers:
        head, *args = spec
        kwargs = args.pop() if args and isinstance(args[-1], dict) else {}
        if head == "Conv2dFn":
            mods.append(Conv2dFn(*args, **kwargs))
        elif isinstance(head, str):
            if head not in _NN_LAYERS:
                raise ValueError(f"layer {head!r} is not one of {sorted(_NN_LAYERS)}")
            mods.append(getattr(nn, head)(*args, **kwargs))
        else:
            mods.append(head(*args, **kwargs))  # a class or factory the submission defined
    model = nn.Sequential(*mods)
    if state_dict is not None:
        model.load_state_dict(state_dict, strict=True)
    return model


def hyper_trace():
    """A fastai callback that records, at each training batch, the learning rate and momentum the optimizer has
    once every scheduler has set them, and the batch's loss (a detached tensor); and each epoch's wall time. Read
    ``lr_trace``, ``mom_trace``, ``loss_trace`` and ``epoch_s`` after fitting."""
    from fastai.callback.core import Callback

    class HyperTrace(Callback):
        order = 1000  # after every scheduler (fastai's run at 60; a student's may choose any order)

        # (names that are not Learner attributes: fastai warns when a callback shadows one, e.g. `moms`)
        def before_fit(self):
            self.lr_trace, self.mom_trace, self.loss_trace, self.epoch_s = [], [], [], []

        def before_epoch(self):
            self._t0 = time.perf_counter()

        def before_batch(self):
            if self.training:
                hp = self.opt.hypers[-1]
                self.lr_trace.append(float(hp["lr"]))
                self.mom_trace.append(float(hp.get("mom", float("nan"))))

        def after_loss(self):
            if self.training:
                self.loss_trace.append(self.loss.detach())  # a tensor: no device sync per batch

        def after_epoch(self):
            self.epoch_s.append(time.perf_counter() - self._t0)

    return HyperTrace()


def fit(
    model,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor | None = None,
    epochs: int = 1,
    lr: float = 0.01,
    bs: int = 64,
    schedule: str = "fit_one_cycle",
    cbs: list | None = None,
    mean: float | None = None,
    std: float | None = None,
    seed: int = 42,
    n_valid: int = 256,
) -> dict:
    """Train ``model`` (a module, or a factory called after seeding) with fastai on the arrays sent in.

    Images (N, 1, H, W) uint8 become floats in [0, 1] (then normalized with ``mean``/``std`` if given),
    as in ``course.dataloaders.mnist_dls``. The first ``n_valid`` training items double as fastai's
    validation set, so no held-out label is needed. Returns the learning rates and momentums the
    optimizer actually had at each training batch, per-batch training losses, the test logits (when
    ``x_test`` is given) and the trained ``state`` (its ``state_dict``): graders evaluate that themselves.
    """
    import fastai.callback.progress  # noqa: F401  (adds Learner.no_bar)
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle)
    from fastai.data.core import DataLoaders
    from fastai.data.transforms import IntToFloatTensor, Normalize
    from fastai.learner import Learner
    from fastai.torch_core import set_seed

    from course.dataloaders import TensorImageDataset, TensorMnistDL  # fastai is imported on first use only

    if schedule not in ("fit", "fit_one_cycle"):
        raise ValueError(f"schedule must be 'fit' or 'fit_one_cycle', got {schedule!r}")
    set_seed(seed, reproducible=True)
    net = model if isinstance(model, nn.Module) else model()
    vocab = [str(c) for c in range(int(y_train.max()) + 1)]
    after = [IntToFloatTensor()] + ([Normalize.from_stats(mean, std, cuda=False)] if mean is not None else [])
    splits = ((x_train, y_train, bs, True), (x_train[:n_valid], y_train[:n_valid], 2 * bs, False))
    opts = {"num_workers": 0, "after_batch": after, "device": "cpu"}
    dls = [
        TensorMnistDL(TensorImageDataset(x, y, vocab), bs=b, shuffle=s, drop_last=s, **opts) for x, y, b, s in splits
    ]

    trace = hyper_trace()
    learn = Learner(DataLoaders(*dls, device="cpu"), net, loss_func=nn.functional.cross_entropy, cbs=[trace])
    with learn.no_logging(), learn.no_bar():
        getattr(learn, schedule)(epochs, lr, cbs=list(cbs or []))
    logits = None if x_test is None else predict(net, x_test, mean=mean, std=std)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return {
        "lrs": trace.lr_trace,
        "moms": trace.mom_trace,
        "losses": [float(v) for v in trace.loss_trace],
        "logits": logits,
        "state": state,
    }
