"""Correct stand-ins for the functions earlier tasks define, so that one mistake costs one task.

Later tasks use earlier answers (``map_kernel`` calls ``apply_kernel``, ``conv_bn`` uses ``BatchNorm2d``). When a
check of a later task fails, the graders run it again in a fresh worker that executed only the cells before
that task, then this module's stand-ins for the earlier tasks' names, then the task's own cell (``replay``).
The check passes if it passes there: the task is then right, given right earlier functions. Stand-ins are
built from library code (torch, fastai), take effect only in such replays, and nothing a replay shows is ever
reported to the student.
"""

from __future__ import annotations

import ast

from .rules import parse

__all__ = ["STANDINS", "needs_replay", "standin_cell"]

#: task -> source of stand-ins for the names that task's cell defines (run in the submission's namespace)
STANDINS: dict[str, str] = {
    "ex1_apply_kernel": """
def apply_kernel(image, row, col, kernel):
    import torch.nn.functional as _F
    window = image[None, None, row - 1 : row + 2, col - 1 : col + 2]
    return _F.conv2d(window, kernel[None, None].to(window.dtype))[0, 0, 0, 0]
""",
    "ex2_output_size": """
def conv_output_size(n, ks, stride=1, padding=0):
    for _name, _value, _low in (("ks", ks, 1), ("stride", stride, 1), ("padding", padding, 0)):
        if _value < _low:
            raise ValueError(f"{_name} must be at least {_low}, got {_name}={_value!r}")
    if ks > n + 2 * padding:
        raise ValueError(f"kernel size ks={ks!r} is larger than n + 2*padding = {n + 2 * padding}")
    return (n + 2 * padding - ks) // stride + 1
""",
    "ex2_zero_pad": """
def zero_pad(x, padding):
    import torch.nn.functional as _F
    return _F.pad(x, (padding, padding, padding, padding))
""",
    "ex3_flatten": """
import torch.nn as _nn
class Flatten(_nn.Module):
    def forward(self, x):
        return x.reshape(len(x), -1)
""",
    "ex3_simple_cnn": """
import torch.nn as _nn
def conv(ni, nf, ks=3, act=True):
    return _nn.Sequential(*[_nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2)] + ([_nn.ReLU()] if act else []))
def simple_cnn():
    return _nn.Sequential(conv(1, 4), conv(4, 8), conv(8, 16), conv(16, 32), conv(32, 2, act=False), Flatten())
""",
    "ex4_layer_stats": """
def activation_stats(t, with_hist=True):
    from fastai.callback.hook import ActivationStats as _AS
    return _AS(with_hist=with_hist).hook(None, None, t.detach())
""",
    "ex5_sched_cos": """
def sched_cos(start, end, pos):
    from fastai.callback.schedule import sched_cos as _f
    return _f(start, end, pos)
""",
    "ex5_combined_cos": """
def combined_cos(pct, start, middle, end):
    from fastai.callback.schedule import combined_cos as _f
    return _f(pct, start, middle, end)
""",
    "ex5_one_cycle": """
def one_cycle_schedule(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    from fastai.callback.schedule import combined_cos as _f
    _lr, _mom = _f(pct_start, lr_max / div, lr_max, lr_max / div_final), _f(pct_start, *moms)
    return [_lr(i / n_steps) for i in range(n_steps)], [_mom(i / n_steps) for i in range(n_steps)]
""",
    "ex6_batchnorm": """
import torch.nn as _nn
class BatchNorm2d(_nn.BatchNorm2d):  # a class of this cell, like the student's: "your BatchNorm2d" stays checkable
    pass
""",
    "ex6_conv_bn": """
import torch.nn as _nn
def conv_bn(ni, nf, ks=3, act=True):
    layers = [_nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2), BatchNorm2d(nf)] + ([_nn.ReLU()] if act else [])
    return _nn.Sequential(*layers)
def simple_cnn_bn():
    blocks = [conv_bn(1, 8, ks=5), conv_bn(8, 16), conv_bn(16, 32), conv_bn(32, 64), conv_bn(64, 10, act=False)]
    return _nn.Sequential(*blocks, _nn.Flatten())
""",
}


def _defined(source: str) -> set[str]:
    tree = parse(source)
    out = set()
    for stmt in tree.body if tree else []:
        if isinstance(stmt, ast.FunctionDef | ast.ClassDef):
            out.add(stmt.name)
        elif isinstance(stmt, ast.ImportFrom):
            out |= {a.asname or a.name for a in stmt.names}
    return out


def standin_cell(earlier_tasks: list[str]) -> str:
    """One cell defining stand-ins for the given earlier tasks' names ('' when none has one)."""
    return "\n".join(STANDINS[t].strip() + "\n" for t in earlier_tasks if t in STANDINS)


def needs_replay(earlier_tasks: list[str], used: set[str]) -> bool:
    """True when the task's code uses a name that an earlier task defines and a stand-in exists for."""
    return any(_defined(STANDINS[t]) & used for t in earlier_tasks if t in STANDINS)
