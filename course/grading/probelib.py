"""Trusted helpers that probes run inside the worker (``{"op": "helper", "name": ..., "args": [...]}``).

They run in the submission's process, so their results are data to check, not verdicts: each helper
returns raw outputs (tensors, lists, shapes) and the trusted side compares them with its own oracle.
The worker binds ``HELPERS`` before any submission code runs; a cell that edits this module changes
nothing the graders call.
Arguments arrive decoded (tensors, ndarrays, JSON values, objects named by ``Ref``).

========================= ==============================================================================
helper                    returns
========================= ==============================================================================
describe(obj)             type, MRO names, the class's module, for modules: children, parameter/buffer shapes, parameter
                          count, conv/norm/linear attributes, ``training``
apply_each(fn, arg_lists) ``[{"value": fn(*args)} | {"error": {"type", "message"}}]`` (many calls, one probe)
forward_backward(fn, ...) output, input grads and parameter grads of ``fn(*inputs)`` with ``grad_output``
predict(model, x, ...)    batched eval-mode outputs under ``no_grad`` (``x`` uint8 is scaled to [0, 1])
sequential(layers, ...)   an ``nn.Sequential`` from a layer list the grader chose (torch.nn names,
                          submission classes, or ``["Conv2dFn", conv_fn, ni, nf, ks, {...}]``)
count_hooks(module)       hooks still registered on a module tree (forward, forward_pre, backward)
run_in_context(cm, ...)   enter ``cm``, run ``model`` on batches (optionally raise inside), exit;
                          hooks left afterwards
fit(model, x, y, ...)     a fastai ``Learner`` run (``fit`` or ``fit_one_cycle``) with extra callbacks;
                          per-batch ``lr``/``mom`` actually set on the optimizer, losses, the trained
                          ``state_dict`` (and test logits when test images are given)
figure_summary(fig)       axes titles, labels, line data (x and y), image arrays, ``origin``, axis on/off
========================= ==============================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["HELPERS", "HELPER_NAMES"]

_NN_LAYERS = frozenset(
    {"Conv2d", "BatchNorm2d", "ReLU", "Flatten", "Linear", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "MaxPool2d"}
    | {"AvgPool2d", "GroupNorm", "InstanceNorm2d", "LayerNorm", "Dropout", "Identity", "Sigmoid", "Tanh"}
)
_ATTRS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "in_features")
_ATTRS += ("out_features", "num_features", "num_groups", "num_channels", "eps", "momentum", "affine")


def _type_name(x) -> str:
    return str(type.__dict__["__qualname__"].__get__(type(x)))


def describe(obj) -> dict:
    """Structure of an object without its data: type, MRO, and for modules children, shapes and attributes."""
    cls = obj if isinstance(obj, type) else type(obj)
    out: dict[str, Any] = {
        "type": _type_name(obj),
        "mro": [c.__qualname__ for c in cls.__mro__][:20],
        "module": str(cls.__module__),
        "is_class": isinstance(obj, type),
        "callable": callable(obj),
    }
    if isinstance(obj, nn.Module):
        out["training"] = bool(obj.training)
        out["children"] = [[name, describe(child)] for name, child in obj.named_children()]
        out["parameters"] = {n: list(p.shape) for n, p in obj.named_parameters(recurse=False)}
        out["buffers"] = {n: [list(b.shape), str(b.dtype)] for n, b in obj.named_buffers(recurse=False)}
        out["n_parameters"] = int(sum(p.numel() for p in obj.parameters()))
        out["attrs"] = {a: getattr(obj, a) for a in _ATTRS if a in obj.__dict__ or hasattr(type(obj), a)}
    return out


def apply_each(fn, arg_lists: list, kwargs: dict | None = None) -> list[dict]:
    """``fn(*args, **kwargs)`` for each ``args`` in ``arg_lists``; one failing call does not stop the others."""
    out = []
    for args in arg_lists:
        try:
            out.append({"value": fn(*args, **(kwargs or {}))})
        except Exception as e:  # noqa: BLE001 - the submission's error is a result
            out.append(
                {
                    "error": {
                        "type": _type_name(e),
                        "mro": [c.__name__ for c in type(e).__mro__][:12],
                        "message": str(e)[:500],
                    }
                }
            )
    return out


def forward_backward(fn, inputs: list, grad_output=None, train: bool | None = None) -> dict:
    """Output, input grads and parameter grads of ``fn(*inputs)`` backpropagating ``grad_output`` (default ones)."""
    if isinstance(fn, nn.Module):
        if train is not None:
            fn.train(train)
        fn.zero_grad(set_to_none=True)
    xs = [
        x.detach().clone().requires_grad_(True) if torch.is_tensor(x) and x.is_floating_point() else x for x in inputs
    ]
    out = fn(*xs)
    out.backward(torch.ones_like(out) if grad_output is None else grad_output)
    grads = {n: p.grad for n, p in fn.named_parameters()} if isinstance(fn, nn.Module) else {}
    return {
        "output": out.detach(),
        "input_grads": [x.grad if torch.is_tensor(x) else None for x in xs],
        "param_grads": grads,
    }


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


def count_hooks(module: nn.Module) -> dict:
    """Hooks still registered anywhere in ``module``'s tree, by kind."""
    counts = {"forward": 0, "forward_pre": 0, "backward": 0}
    for m in module.modules():
        counts["forward"] += len(m._forward_hooks)
        counts["forward_pre"] += len(m._forward_pre_hooks)
        counts["backward"] += len(m._backward_hooks) + len(getattr(m, "_backward_pre_hooks", {}))
    return counts


class ProbeInterrupt(RuntimeError):
    """Raised inside a context manager by ``run_in_context(raise_at=...)``."""


def run_in_context(cm, model, batches: list, raise_at: int | None = None) -> dict:
    """``with cm: model(xb) for xb in batches`` (raising ``ProbeInterrupt`` after batch ``raise_at``)."""
    raised, done = False, 0
    try:
        with cm:
            for i, xb in enumerate(batches):
                model(xb)
                done += 1
                if raise_at is not None and i == raise_at:
                    raise ProbeInterrupt(f"raised by the grader after batch {i}")
    except ProbeInterrupt:
        raised = True
    return {"raised": raised, "batches": done, "hooks_after": count_hooks(model)}


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
    from fastai.callback.core import Callback
    from fastai.data.core import DataLoaders
    from fastai.data.transforms import IntToFloatTensor, Normalize
    from fastai.learner import Learner
    from fastai.torch_core import set_seed

    from course.dataloaders import TensorImageDataset, TensorMnistDL

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

    class Trace(Callback):
        order = 1000  # after every scheduler has set this batch's hyper-parameters

        # (names that are not Learner attributes: fastai warns when a callback shadows one, e.g. `moms`)
        def before_fit(self):
            self.lr_trace, self.mom_trace, self.loss_trace = [], [], []

        def before_batch(self):
            if self.training:
                hp = self.opt.hypers[-1]
                self.lr_trace.append(float(hp["lr"]))
                self.mom_trace.append(float(hp.get("mom", float("nan"))))

        def after_loss(self):
            if self.training:
                self.loss_trace.append(float(self.loss))

    trace = Trace()
    learn = Learner(DataLoaders(*dls, device="cpu"), net, loss_func=nn.functional.cross_entropy, cbs=[trace])
    with learn.no_logging(), learn.no_bar():
        getattr(learn, schedule)(epochs, lr, cbs=list(cbs or []))
    logits = None if x_test is None else predict(net, x_test, mean=mean, std=std)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return {
        "lrs": trace.lr_trace,
        "moms": trace.mom_trace,
        "losses": trace.loss_trace,
        "logits": logits,
        "state": state,
    }


def figure_summary(obj, close: bool = True) -> dict:
    """What a matplotlib Figure or Axes shows: per axes title, labels, lines, images, axis on/off."""
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    if isinstance(obj, Axes):
        fig, axes = obj.figure, [obj]
    elif isinstance(obj, Figure):
        fig, axes = obj, list(obj.axes)
    else:
        raise TypeError(f"expected a matplotlib Figure or Axes, got {_type_name(obj)}")
    out = {
        "type": "Axes" if isinstance(obj, Axes) else "Figure",
        "figsize": [float(v) for v in fig.get_size_inches()],
        "axes": [
            {
                "title": ax.get_title(),
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "axis_on": bool(ax.axison),
                "position": [float(v) for v in ax.get_position().bounds],  # x0, y0, width, height in the figure
                "lines": [np.asarray(line.get_ydata(), dtype=np.float64) for line in ax.lines],
                "xlines": [np.asarray(line.get_xdata(), dtype=np.float64) for line in ax.lines],
                "images": [
                    {"array": np.asarray(np.ma.filled(im.get_array(), np.nan), dtype=np.float64), "origin": im.origin}
                    for im in ax.images
                ],
            }
            for ax in axes
        ],
    }
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return out


HELPERS = {
    f.__name__: f
    for f in (
        describe,
        apply_each,
        forward_backward,
        predict,
        sequential,
        count_hooks,
        run_in_context,
        fit,
        figure_summary,
    )
}
HELPER_NAMES = frozenset(HELPERS)
