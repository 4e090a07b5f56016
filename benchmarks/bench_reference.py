"""The chapter's final run (BatchNorm simple_cnn, bs 512, 1cycle lr_max 0.1, 5 epochs), two ways, same process:

1. the course path: run ``r6_final`` of ``course reference train`` (the solutions' own BatchNorm2d, conv_bn and
   OneCycleScheduler, fastai's Learner loop, the tensor DataLoaders), ``--repeats`` times: this machine's speed
   drifts by tens of percent from run to run, so the median is reported (and every repeat must give the same
   accuracy: the run is deterministic on a CPU);
2. the book path: fastai's ``Learner`` with ``nn.BatchNorm2d`` and ``fit_one_cycle`` on the PNG ``DataBlock``, once
   (it takes five times longer, and its time is dominated by decoding PNGs).

Run: ``.venv/bin/python benchmarks/bench_reference.py [--repeats 3]``; writes ``benchmarks/results/reference.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).parent))

from bench_pipeline import run  # noqa: E402

from course.dataloaders import png_dls  # noqa: E402
from course.reference import _environment, load_references, train_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="course-path runs; the median is reported (default 3)")
    args = ap.parse_args()
    refs = load_references(ROOT)
    course = []
    for i in range(args.repeats):
        res = train_run("r6_final", refs, device="cpu", seed=42)
        course.append({"seconds": res["seconds"], "accuracy": res["table"][-1]["accuracy"], "epochs": res["table"]})
        print(f"course path, run {i + 1}: {res['seconds']:.1f} s, accuracy {course[-1]['accuracy']:.4f}", flush=True)
    if len({c["accuracy"] for c in course}) != 1:
        raise SystemExit(f"the course path is not deterministic here: {[c['accuracy'] for c in course]}")
    median = statistics.median(c["seconds"] for c in course)
    book = run("book PNG DataBlock", png_dls(bs=512), epochs=5, seed=42)
    ratio = book["seconds"] / median
    print(
        f"course median {median:.1f} s vs book path {book['seconds']:.1f} s: {ratio:.1f}x; accuracy course "
        f"{course[0]['accuracy']:.2%} vs book path {book['accuracy']:.2%}"
    )
    out = Path(__file__).with_name("results") / "reference.json"
    report = {
        "benchmark": "5 epochs, BatchNorm simple_cnn, bs 512, 1cycle lr_max 0.1, CPU",
        "course": {
            "seconds": median,
            "seconds_each": [c["seconds"] for c in course],
            "accuracy": course[0]["accuracy"],
            "epochs": course[0]["epochs"],
        },
        "book_png_fastai": book,
        "speedup": ratio,
        "environment": _environment(torch.device("cpu")),
    }
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
