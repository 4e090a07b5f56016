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

from course.training import fit, predict, sequential

__all__ = ["HELPERS", "HELPER_NAMES"]

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
