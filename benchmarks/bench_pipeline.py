"""One epoch of the chapter's final model: the book's PNG DataBlock pipeline vs the course's tensor pipeline.

Model: the BatchNorm ``simple_cnn`` (8[5x5]-16-32-64-10, stride 2, Conv -> BN -> ReLU), bs 512,
``fit_one_cycle(1, 0.1)``, Adam, cross-entropy, on full MNIST; both runs in the same process, same seed.
Run: ``.venv/bin/python benchmarks/bench_pipeline.py`` (add ``--epochs N`` for more).
Writes ``benchmarks/results/pipeline.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=FutureWarning)

import torch  # noqa: E402
from fastai.callback.schedule import fit_one_cycle  # noqa: E402, F401  (adds Learner.fit_one_cycle)
from fastai.layers import Flatten  # noqa: E402
from fastai.learner import Learner  # noqa: E402
from fastai.metrics import accuracy  # noqa: E402
from fastai.torch_core import set_seed  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from course.dataloaders import mnist_dls, png_dls  # noqa: E402


def conv_bn(ni: int, nf: int, ks: int = 3, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2), nn.BatchNorm2d(nf)]
    return nn.Sequential(*layers, nn.ReLU()) if act else nn.Sequential(*layers)


def simple_cnn_bn() -> nn.Sequential:
    return nn.Sequential(
        conv_bn(1, 8, ks=5), conv_bn(8, 16), conv_bn(16, 32), conv_bn(32, 64), conv_bn(64, 10, act=False), Flatten()
    )


def run(name: str, dls, epochs: int, seed: int) -> dict:
    set_seed(seed, reproducible=True)
    learn = Learner(dls, simple_cnn_bn(), loss_func=F.cross_entropy, metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        t0 = time.perf_counter()
        learn.fit_one_cycle(epochs, 0.1)
        seconds = time.perf_counter() - t0
    acc = float(learn.recorder.values[-1][2])
    print(f"{name:>16}: {seconds:7.1f} s for {epochs} epoch(s) ({seconds / epochs:6.1f} s/epoch), accuracy {acc:.4f}")
    return {"pipeline": name, "seconds": seconds, "seconds_per_epoch": seconds / epochs, "accuracy": acc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1, help="epochs per pipeline (default 1)")
    ap.add_argument("--seed", type=int, default=42, help="seed for both runs (default 42)")
    ap.add_argument(
        "--out",
        default=str(Path(__file__).with_name("results") / "pipeline.json"),
        help="where to write the JSON results",
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    book = png_dls(bs=512)  # writes the PNG layout into the cache once, outside the timed part
    print(f"PNG layout ready / DataBlock built in {time.perf_counter() - t0:.1f} s (not timed below)")
    fast = mnist_dls(bs=512, device="cpu")
    results = [
        run("book PNG DataBlock", book, args.epochs, args.seed),
        run("course tensors", fast, args.epochs, args.seed),
    ]
    ratio = results[0]["seconds"] / results[1]["seconds"]
    gap = abs(results[0]["accuracy"] - results[1]["accuracy"]) * 100
    print(f"speed-up: {ratio:.1f}x, accuracy gap: {gap:.2f} points (targets: >= 5x, <= 0.3 points)")
    report = {
        "benchmark": "one epoch of the BatchNorm simple_cnn, bs 512, fit_one_cycle(lr_max=0.1)",
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "epochs": args.epochs,
        "seed": args.seed,
        "results": results,
        "speedup": ratio,
        "accuracy_gap_points": gap,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print("\n| pipeline | s/epoch | accuracy |\n|---|---:|---:|")
    for r in results:
        print(f"| {r['pipeline']} | {r['seconds_per_epoch']:.1f} | {r['accuracy'] * 100:.2f}% |")


if __name__ == "__main__":
    main()
