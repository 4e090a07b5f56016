"""Grading speed: ``course grade`` against ``nbgrader autograde`` on the same 20 submitted notebooks, same machine,
and ``course grade --scheduler`` on a 2-worker local Dask cluster against ``--jobs 2``.

Submissions are the solution notebooks (full marks) of students s1..s4, in course order, 20 in all (s4 has only
the first two notebooks); each carries its student's name in its metadata, so no two have the same bytes (a cluster
grades identical notebooks once). Measured: one student's full submission (all six notebooks) with ``course
grade``, then the batch of 20 with ``course grade --jobs N`` and with ``nbgrader autograde`` (one call per
assignment, which executes every notebook top to bottom).

Cluster row (``--only cluster`` runs just this part): the batch through a ``distributed.LocalCluster`` of two
one-thread workers (one CPU per grader, as ``--jobs 2``), against ``grade_all(jobs=2)``, in the order local,
cluster, cluster, local (the machine's speed drifts); both warmed by one student's notebooks first. Scaling: a real
scheduler and 1..64 worker threads whose task sleeps the measured per-notebook time instead of grading (this machine
has 2 cores), with the instructor's side unchanged (discovery, fingerprints, sending notebooks, writing results).
Writes ``benchmarks/results/grading.json``.

Run: ``.venv/bin/python benchmarks/bench_grading.py [--jobs 2] [--only cluster]``.
"""

from __future__ import annotations

import argparse
import functools
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

from course.exercises import EXERCISES  # noqa: E402
from course.grading.cluster import CPUS_ENV, grade_on_cluster, on_cluster  # noqa: E402
from course.grading.grade import Settings, discover, grade_all  # noqa: E402

NBS = list(EXERCISES.values())


def make_submissions(base: Path, n: int = 20, notebooks: list[str] = NBS, folder: str = "submitted") -> list[Path]:
    """``n`` solution notebooks of students s1.., six each in course order, each stamped with its student."""
    paths = []
    for i in range(n):
        student, nb = f"s{i // len(notebooks) + 1}", notebooks[i % len(notebooks)]
        p = base / folder / student / nb / f"{nb}.ipynb"
        p.parent.mkdir(parents=True, exist_ok=True)
        data = json.loads((ROOT / "solutions" / nb / f"{nb}.ipynb").read_text())
        data["metadata"]["bench_student"] = student
        p.write_text(json.dumps(data, indent=1))
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


def _timed(fn, *args, **kwargs) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def _simulated_task(task: dict, seconds: float) -> str:
    """Stands in for ``grade_task`` on a worker: sleeps the measured grading time, answers like a real task."""
    time.sleep(seconds)
    return json.dumps({"outcome": {"rows": [], "sandbox": {"isolation": "simulated"}, "problem": "simulated"}})


def cluster_vs_local(base: Path, workers: int = 2) -> dict:
    """The batch of 20 with ``grade_all(jobs=workers)`` and on a local cluster of ``workers`` one-thread workers."""
    from distributed import LocalCluster

    os.environ[CPUS_ENV] = "1"  # inherited by the workers: one CPU per grader, as --jobs 2 gives on 2 cores
    s1 = sorted((base / "submitted" / "s1").rglob("*.ipynb"))
    local_s, cluster_s = [], []
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      preload=["course.grading.cluster"]) as lc:  # fmt: skip
        grade_all(s1, base / "warm-local", jobs=workers, root=ROOT, progress=False)
        grade_all(s1, base / "warm-cluster", root=ROOT, progress=False, backend=on_cluster(lc.scheduler_address))
        for i, where in enumerate(("local", "cluster", "cluster", "local")):
            out = base / f"batch-{where}-{i}"
            if where == "local":
                seconds, res = _timed(grade_all, [base / "submitted"], out, jobs=workers, root=ROOT, progress=False)
                local_s.append(seconds)
            else:
                seconds, res = _timed(grade_all, [base / "submitted"], out, root=ROOT, progress=False,
                                      backend=on_cluster(lc.scheduler_address))  # fmt: skip
                cluster_s.append(seconds)
            assert all(r["score"] == r["max_score"] for r in res), f"{where}: not all full marks"
            print(f"  {where}: batch of {len(res)} in {seconds:.1f} s", flush=True)
    local, cluster = sum(local_s) / len(local_s), sum(cluster_s) / len(cluster_s)
    return {
        "workers": workers,
        "local_seconds": local_s,
        "cluster_seconds": cluster_s,
        "overhead": cluster / local - 1,
        "per_notebook_seconds": cluster * workers / 20,
    }


def scaling(base: Path, seconds: float, slots=(1, 2, 4, 8, 16, 32, 64), per_slot: int = 2) -> list[dict]:
    """Throughput of a real scheduler and instructor with ``n`` worker threads whose tasks sleep ``seconds``."""
    from distributed import LocalCluster

    rows = []
    for n in slots:
        procs = min(n, 8)
        subs = base / f"sim-{n}"
        make_submissions(subs, n * per_slot, ["02_strides_padding"], folder=".")
        with LocalCluster(n_workers=procs, threads_per_worker=n // procs, processes=True,
                          dashboard_address=None) as lc:  # fmt: skip
            task = functools.partial(_simulated_task, seconds=seconds)
            wall, res = _timed(grade_on_cluster, discover([subs]), base / f"sim-out-{n}", lc.scheduler_address, ROOT,
                               False, False, Settings(), task=task)  # fmt: skip
        rate = len(res) / wall * 60
        rows.append({"threads": n, "notebooks": len(res), "seconds": wall, "notebooks_per_minute": rate,
                     "efficiency": rate / (n * 60 / seconds)})  # fmt: skip
        print(f"  {n:>3} threads: {len(res)} notebooks in {wall:.1f} s, {rate:.0f}/min, "
              f"{rows[-1]['efficiency']:.0%} of ideal", flush=True)  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="parallel graders for course grade")
    ap.add_argument("--only", choices=["cluster"], help="run only the cluster row and update it in grading.json")
    args = ap.parse_args()
    out = ROOT / "benchmarks" / "results" / "grading.json"
    report = json.loads(out.read_text()) if args.only and out.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        base = Path(tmp)
        make_submissions(base)
        if not args.only:
            s1 = sorted((base / "submitted" / "s1").rglob("*.ipynb"))  # one student's six notebooks
            one_s, one = _timed(grade_all, s1, base / "graded-one", jobs=args.jobs, root=ROOT, progress=False)
            batch_s, batch = _timed(grade_all, [base / "submitted"], base / "graded-batch", jobs=args.jobs, root=ROOT,
                                    progress=False)  # fmt: skip
            nbg_s = nbgrader_autograde(base)
            full = all(r["score"] == r["max_score"] for r in batch)
            print(f"course grade, one full submission (6 notebooks, --jobs {args.jobs}): {one_s:.1f} s")
            print(f"course grade, batch of 20 (--jobs {args.jobs}): {batch_s:.1f} s; all full marks: {full}")
            print(f"nbgrader autograde, same 20: {nbg_s:.1f} s -> course grade is {nbg_s / batch_s:.1f}x faster")
            report.update(
                {
                    "one_submission_seconds": one_s,
                    "one_submission_notebooks": len(one),
                    "batch_seconds": batch_s,
                    "batch_notebooks": len(batch),
                    "nbgrader_autograde_seconds": nbg_s,
                    "speedup": nbg_s / batch_s,
                    "jobs": args.jobs,
                    "all_full_marks": full,
                    "isolation": sorted({r["extra"]["isolation"] for r in batch}),
                    "cpu_count": os.cpu_count(),
                }
            )
        print("course grade --scheduler (2-worker local Dask cluster) against --jobs 2, batch of 20:")
        cluster = cluster_vs_local(base)
        print(f"  overhead {cluster['overhead']:+.1%}; {cluster['per_notebook_seconds']:.1f} s per notebook per worker")
        print(f"scaling, tasks sleeping {cluster['per_notebook_seconds']:.1f} s:")
        cluster["scaling"] = scaling(base, cluster["per_notebook_seconds"])
        report["cluster"] = cluster
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
