"""One training step of the final network with three BatchNorm2d implementations, interleaved, same process.

Why the solution's ``BatchNorm2d`` takes the mean of squared deviations instead of calling ``torch.var_mean``:
on a CPU, ``var_mean`` over ``(0, 2, 3)`` of an NCHW tensor is several times slower than two plain reductions.
The step is forward + cross-entropy + backward of the BatchNorm ``simple_cnn`` (8[5x5]-16-32-64-10) on a batch of
512 random 28x28 images; the three variants take turns for ``--rounds`` rounds (the machine's speed drifts, so
interleaving keeps the comparison fair) and the median per step is reported.

Run: ``.venv/bin/python benchmarks/bench_batchnorm.py [--rounds 6]``; writes ``benchmarks/results/batchnorm.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course.reference import load_references  # noqa: E402


class VarMeanBatchNorm2d(nn.Module):
    """The same layer written with ``torch.var_mean`` and a divide-then-multiply (the earlier solution)."""

    def __init__(self, nf: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight, self.bias = nn.Parameter(torch.ones(nf)), nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)  # (nf,), (nf,)
        x_hat = (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + self.eps)
        return self.weight.view(1, -1, 1, 1) * x_hat + self.bias.view(1, -1, 1, 1)


def network(norm) -> nn.Sequential:
    torch.manual_seed(0)
    widths = [(1, 8, 5, True), (8, 16, 3, True), (16, 32, 3, True), (32, 64, 3, True), (64, 10, 3, False)]
    blocks = [
        nn.Sequential(nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2), norm(nf), *([nn.ReLU()] if act else []))
        for ni, nf, ks, act in widths
    ]
    return nn.Sequential(*blocks, nn.Flatten())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6, help="rounds of 20 steps per variant (default 6)")
    args = ap.parse_args()
    solution = load_references(ROOT)["ex6"].BatchNorm2d
    variants = {
        "solution (two reductions, one scale)": network(solution),
        "torch.var_mean, divide then multiply": network(VarMeanBatchNorm2d),
        "nn.BatchNorm2d (fused kernel)": network(nn.BatchNorm2d),
    }
    x, y = torch.randn(512, 1, 28, 28), torch.randint(0, 10, (512,))
    ms = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, model in variants.items():
            for _ in range(2):  # warm-up
                F.cross_entropy(model(x), y).backward()
            t0 = time.perf_counter()
            for _ in range(20):
                F.cross_entropy(model(x), y).backward()
            ms[name].append((time.perf_counter() - t0) / 20 * 1000)
    rows = {name: {"median_ms": statistics.median(v), "min_ms": min(v), "max_ms": max(v)} for name, v in ms.items()}
    for name, r in rows.items():
        print(f"{name:40} {r['median_ms']:6.1f} ms/step (rounds {r['min_ms']:.1f}-{r['max_ms']:.1f})")
    out = Path(__file__).with_name("results") / "batchnorm.json"
    report = {"benchmark": "one training step, bs 512", "threads": torch.get_num_threads(), "variants": rows}
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
