"""The chapter's final run (BatchNorm simple_cnn, bs 512, 1cycle lr_max 0.1, 5 epochs), two ways, same process:

1. the course path: ``course reference train --only r6_final`` (the solutions' own BatchNorm2d, conv_bn and
   OneCycleScheduler, fastai's Learner loop, the tensor DataLoaders);
2. the book path: fastai's ``Learner`` with ``nn.BatchNorm2d`` and ``fit_one_cycle`` on the PNG ``DataBlock``.

Run: ``.venv/bin/python benchmarks/bench_reference.py``; writes ``benchmarks/results/reference.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).parent))

from bench_pipeline import run  # noqa: E402

from course.dataloaders import png_dls  # noqa: E402
from course.reference import train_reference  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        manifest = train_reference(Path(tmp) / "ref", device="cpu", only=["r6_final"], root=ROOT, progress=False)
        course_s = time.perf_counter() - t0
    r6 = manifest["runs"]["r6_final"]
    print(f"course path: {r6['seconds']:.1f} s training ({course_s:.1f} s with loading), "
          f"accuracy {r6['final_accuracy']:.4f}")
    book = run("book PNG DataBlock", png_dls(bs=512), epochs=5, seed=42)
    ratio = book["seconds"] / r6["seconds"]
    print(f"speed-up {ratio:.1f}x; accuracy course {r6['final_accuracy']:.2%} vs book path {book['accuracy']:.2%}")
    out = Path(__file__).with_name("results") / "reference.json"
    out.write_text(json.dumps({
        "benchmark": "5 epochs, BatchNorm simple_cnn, bs 512, 1cycle lr_max 0.1, CPU",
        "course": {"seconds": r6["seconds"], "accuracy": r6["final_accuracy"], "epochs": r6["epochs_table"]},
        "book_png_fastai": book, "speedup": ratio, "environment": manifest["environment"],
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
