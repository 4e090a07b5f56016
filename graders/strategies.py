"""Shared hypothesis strategies for the hidden checks: valid convolution shapes, images and kernels."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

__all__ = ["conv_case", "rand", "settings_for_graders"]


def settings_for_graders(max_examples: int = 20):
    """Deterministic (same examples on every run, no database), without per-example deadlines, and without
    hypothesis's "explain" phase: it re-runs a failing check many more times only to annotate which arguments
    mattered, which doubled the grading time of a wrong answer and put notes in the feedback a student cannot use.
    """
    from hypothesis import HealthCheck, Phase, settings

    return settings(
        max_examples=max_examples,
        deadline=None,
        phases=[p for p in Phase if p is not Phase.explain],
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def rand(*shape: int, seed: int) -> torch.Tensor:
    """A reproducible standard-normal tensor of the given shape."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@st.composite
def conv_case(draw, max_hw: int = 12, max_channels: int = 4, max_batch: int = 3):
    """(N, C_in, C_out, H, W, ks, stride, padding) for which the convolution has at least one output."""
    ks = draw(st.sampled_from([1, 2, 3, 5]))
    padding = draw(st.integers(0, ks // 2 + 1))
    stride = draw(st.integers(1, 3))
    lo = max(1, ks - 2 * padding)
    h = draw(st.integers(lo, max_hw))
    w = draw(st.integers(lo, max_hw))
    return {
        "N": draw(st.integers(1, max_batch)),
        "C_in": draw(st.integers(1, max_channels)),
        "C_out": draw(st.integers(1, max_channels)),
        "H": h,
        "W": w,
        "ks": ks,
        "stride": stride,
        "padding": padding,
        "bias": draw(st.booleans()),
        "seed": draw(st.integers(0, 10_000)),
    }


def settings_for_slow_graders(max_examples: int = 5):
    """``settings_for_graders`` without shrinking, for checks whose every example trains or builds models.

    A failing example is reported as generated instead of being re-run dozens of times to find a smaller one,
    so a wrong submission costs about as much grading time as a right one.
    """
    from hypothesis import Phase, settings

    return settings(settings_for_graders(max_examples), phases=[Phase.explicit, Phase.generate])
