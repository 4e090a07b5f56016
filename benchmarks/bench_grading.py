"""Grading speed: ``course grade`` against ``nbgrader autograde`` on the same 20 submitted notebooks, same machine.

Submissions are the solution notebooks (full marks) of students s1..s4, in course order, 20 in all (s4 has only
the first two notebooks). Measured: one student's full submission (all six notebooks) with ``course grade``,
then the batch of 20 with ``course grade --jobs N`` and with ``nbgrader autograde`` (one call per assignment,
which executes every notebook top to bottom). Writes ``benchmarks/results/grading.json``.

Run: ``.venv/bin/python benchmarks/bench_grading.py [--jobs 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course.grading.grade import grade_all  # noqa: E402
from course.notebooks import EXERCISES  # noqa: E402

NBS = list(EXERCISES.values())


def make_submissions(base: Path) -> list[Path]:
    paths = []
    for i in range(20):
        student, nb = f"s{i // 6 + 1}", NBS[i % 6]
        p = base / "submitted" / student / nb / f"{nb}.ipynb"
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "solutions" / nb / f"{nb}.ipynb", p)
        paths.append(p)
    return paths


def nbgrader_autograde(base: Path) -> float:
    """Set up an nbgrader course in ``base`` (source = solutions) and autograde every submission."""
    (base / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.CourseDirectory.course_id = 'bench'\n"
        f"c.CourseDirectory.root = {str(base)!r}\n"
        "c.ExecutePreprocessor.timeout = 900\n"
    )
    for nb in NBS:
        (base / "source" / nb).mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "solutions" / nb / f"{nb}.ipynb", base / "source" / nb / f"{nb}.ipynb")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    nbgrader = [sys.executable, "-m", "nbgrader"]
    for nb in NBS:
        subprocess.run(
            [*nbgrader, "generate_assignment", nb, "--force"], cwd=base, env=env, check=True, capture_output=True
        )
    t0 = time.perf_counter()
    for nb in NBS:
        res = subprocess.run([*nbgrader, "autograde", nb, "--force"], cwd=base, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"nbgrader autograde {nb} failed:\n{res.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="parallel graders for course grade")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        base = Path(tmp)
        make_submissions(base)
        t0 = time.perf_counter()
        s1 = sorted((base / "submitted" / "s1").rglob("*.ipynb"))  # one student's six notebooks
        one = grade_all(s1, base / "graded-one", jobs=args.jobs, root=ROOT, progress=False)
        one_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        batch = grade_all([base / "submitted"], base / "graded-batch", jobs=args.jobs, root=ROOT, progress=False)
        batch_s = time.perf_counter() - t0
        nbg_s = nbgrader_autograde(base)
    full = all(r["score"] == r["max_score"] for r in batch)
    isolation = sorted({r["extra"]["isolation"] for r in batch})
    print(f"course grade, one full submission (6 notebooks, --jobs {args.jobs}): {one_s:.1f} s")
    print(f"course grade, batch of 20 (--jobs {args.jobs}): {batch_s:.1f} s; all full marks: {full}")
    print(f"nbgrader autograde, same 20: {nbg_s:.1f} s -> course grade is {nbg_s / batch_s:.1f}x faster")
    out = ROOT / "benchmarks" / "results" / "grading.json"
    out.write_text(
        json.dumps(
            {
                "one_submission_seconds": one_s,
                "one_submission_notebooks": len(one),
                "batch_seconds": batch_s,
                "batch_notebooks": len(batch),
                "nbgrader_autograde_seconds": nbg_s,
                "speedup": nbg_s / batch_s,
                "jobs": args.jobs,
                "all_full_marks": full,
                "isolation": isolation,
                "cpu_count": os.cpu_count(),
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
