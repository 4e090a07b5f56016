"""Benchmark results on the site: tables drawn at build time from ``benchmarks/results/<name>.json``.

Each ``benchmarks/bench_<name>.py`` writes its JSON; the site never runs a benchmark, it only shows the
numbers the last run measured (and says which script to run when a file is missing).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["BENCHMARKS", "render_benchmark"]


def _grading(r: dict) -> str:
    rows = [
        "| what | seconds |",
        "|---|---:|",
        f"| `course grade`, one full submission ({r['one_submission_notebooks']} notebooks, `--jobs {r['jobs']}`) "
        f"| {r['one_submission_seconds']:.1f} |",
        f"| `course grade`, batch of {r['batch_notebooks']} notebooks (`--jobs {r['jobs']}`) "
        f"| {r['batch_seconds']:.1f} |",
        f"| `nbgrader autograde`, the same {r['batch_notebooks']} notebooks | {r['nbgrader_autograde_seconds']:.1f} |",
    ]
    marks = "every submission got full marks" if r["all_full_marks"] else "NOT every submission got full marks"
    return (
        "\n".join(rows)
        + f"\n\n`course grade` was **{r['speedup']:.1f}×** faster on the batch ({r['cpu_count']} CPU cores, "
        f"isolation: {', '.join(r['isolation'])}; {marks}).\n"
    )


def _reference(r: dict) -> str:
    course, book = r["course"], r["book_png_fastai"]
    each = course.get("seconds_each", [])
    spread = f" (median of {len(each)} runs, {min(each):.1f}–{max(each):.1f} s)" if len(each) > 1 else ""
    return (
        "| path | 5 epochs | accuracy |\n|---|---:|---:|\n"
        f"| course: the solutions' `BatchNorm2d` and `OneCycleScheduler`, tensor DataLoaders | "
        f"{course['seconds']:.1f} s{spread} | {course['accuracy']:.2%} |\n"
        f"| book: fastai `Learner`, `nn.BatchNorm2d`, `fit_one_cycle`, PNG `DataBlock` | "
        f"{book['seconds']:.1f} s | {book['accuracy']:.2%} |\n\n"
        f"The course path was **{r['speedup']:.1f}×** faster ({r['environment']['device']}, "
        f"{r['environment']['cpu_count']} cores, torch {r['environment']['torch']}).\n"
    )


def _pipeline(r: dict) -> str:
    rows = ["| pipeline | s/epoch | accuracy |", "|---|---:|---:|"]
    rows += [f"| {p['pipeline']} | {p['seconds_per_epoch']:.1f} | {p['accuracy']:.2%} |" for p in r["results"]]
    return (
        "\n".join(rows) + f"\n\nSpeed-up **{r['speedup']:.1f}×**, accuracy gap {r['accuracy_gap_points']:.2f} points.\n"
    )


def _batchnorm(r: dict) -> str:
    rows = ["| `BatchNorm2d` | ms per training step (median) |", "|---|---:|"]
    rows += [f"| {name} | {v['median_ms']:.1f} |" for name, v in r["variants"].items()]
    return "\n".join(rows) + f"\n\nOne step of the final network, batch of 512, {r['threads']} CPU threads.\n"


#: name -> (script that measures it, renderer of its JSON)
BENCHMARKS = {
    "grading": ("benchmarks/bench_grading.py", _grading),
    "reference": ("benchmarks/bench_reference.py", _reference),
    "pipeline": ("benchmarks/bench_pipeline.py", _pipeline),
    "batchnorm": ("benchmarks/bench_batchnorm.py", _batchnorm),
}


def render_benchmark(repo_root: Path, name: str) -> str:
    """The Markdown table of one benchmark's last results, or a note saying how to measure them."""
    if name not in BENCHMARKS:
        raise KeyError(f"no benchmark named {name!r} (known: {', '.join(BENCHMARKS)})")
    script, render = BENCHMARKS[name]
    path = Path(repo_root) / "benchmarks" / "results" / f"{name}.json"
    if not path.is_file():
        return f'!!! note "Not measured yet"\n\n    Run `.venv/bin/python {script}`, then rebuild the site.\n'
    try:
        return render(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not what {script} writes ({type(exc).__name__}: {exc}); rerun it") from exc
