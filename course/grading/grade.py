"""``course grade``: grade submissions with the hidden graders, in parallel, resumably.

For each submitted notebook, ``pytest graders/test_NN_topic.py --submission PATH`` runs in its own process
(the trusted side; student code runs in its sandboxed worker), forked from a server that has imported torch,
fastai and nbformat once for the whole batch. Its per-check outcomes become one
Gradescope-style ``results.json`` per submission: one test per task, worth the task's points, passed only
when all of its hidden checks pass. A class ``grades.csv`` sums them up.

Results carry the submission's sha256 and a fingerprint of the graders, so re-running skips what is
already graded (``--force`` regrades) and an interrupted batch resumes where it stopped. Every file is
written to a temporary name and renamed, so a result is either complete or absent.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import multiprocessing
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from course.grading.submission import exercise_of, load_submission
from course.notebooks import EXERCISES

__all__ = ["Job", "discover", "grade_all", "grade_one", "write_grades_csv"]

RESULTS = "results.json"


@dataclass(frozen=True)
class Job:
    """One notebook to grade: who submitted it, for which exercise, where it is."""

    student: str
    exercise: str
    path: Path

    @property
    def notebook(self) -> str:
        return EXERCISES[self.exercise]


def _student_of(nb: Path) -> str:
    # nbgrader layout: submitted/<student>/<assignment>/<notebook>.ipynb, where <assignment> == <notebook>
    parent = nb.parent
    owner = parent.parent if parent.name == nb.stem else parent
    return owner.name or "student"


def discover(paths: list[str | os.PathLike]) -> list[Job]:
    """Notebooks to grade under files, folders or an nbgrader ``submitted/`` tree; named like the exercises."""
    names = {f"{nb}.ipynb" for nb in EXERCISES.values()}
    jobs = []
    for p in map(Path, paths):
        if p.is_file():
            files = [p]
        elif p.is_dir():
            files = sorted(f for f in p.rglob("*.ipynb") if f.name in names and ".ipynb_checkpoints" not in f.parts)
        else:
            raise FileNotFoundError(f"{p} does not exist; pass notebooks, folders of them, or nbgrader's submitted/")
        for f in files:
            jobs.append(Job(_student_of(f.resolve()), exercise_of(f), f.resolve()))
    seen = {}
    for job in jobs:
        key = (job.student, job.exercise)
        if key in seen and seen[key] != job.path:
            raise ValueError(
                f"two submissions of {job.notebook} for student {job.student!r}: {seen[key]} and {job.path}"
            )
        seen[key] = job.path
    return list(dict.fromkeys(jobs))


def fingerprint(root: Path, exercise: str) -> str:
    """Hash of everything that decides this exercise's grades: its grader file, the shared harness, the source
    notebook and the reference manifest."""
    nb = EXERCISES[exercise]
    g = root / "graders"
    files = [
        g / "__init__.py",
        g / "conftest.py",
        g / "checks.py",
        g / "strategies.py",
        g / f"test_{nb}.py",
        g / "reference" / "manifest.json",
        root / "solutions" / nb / f"{nb}.ipynb",
    ]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes() if f.is_file() else b"<missing>")
    return h.hexdigest()


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.lru_cache(maxsize=1)
def _grader_context():
    """A ``forkserver`` context whose server has imported ``course.grading.preload``; graders are forked from it.

    The server runs no student code and no torch computation before it forks (no thread pools to inherit),
    so each grader starts in milliseconds instead of re-importing torch, fastai and nbformat.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["course.grading.preload"])
    return ctx


def _pytest_child(args: list[str], root: str, log: str, threads: int) -> None:
    """In the forked grading process: quiet stdio into ``log``, then one pytest session (exit code = pytest's)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.chdir(root)
    sys.dont_write_bytecode = True
    # only the plugins the graders use: entry-point plugins (anyio's, via fastai) were imported by the fork server
    # before pytest could install its assertion rewriting, which pytest would warn about (an error here)
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    import pytest
    import torch

    torch.set_num_threads(threads)
    code = pytest.main(args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code))


def _run_graders(
    job: Job, root: Path, timeout: float, cell_timeout: float, threads: int = 1
) -> tuple[list[dict], dict, str]:
    """Run the exercise's grader file on one submission; (check rows, sandbox info, problem or '')."""
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        out, log = Path(tmp) / "checks.json", Path(tmp) / "pytest.log"
        args = [
            str(root / "graders" / f"test_{job.notebook}.py"),
            "--submission",
            str(job.path),
            "--exercise",
            job.exercise,
            "--grade-results",
            str(out),
            "--cell-timeout",
            f"{cell_timeout:g}",
            "--probe-timeout",
            f"{cell_timeout:g}",
            "-p",
            "_hypothesis_pytestplugin",
            "-p",
            "no:cacheprovider",
            "-q",
            "--no-header",
            "--rootdir",
            str(root),
        ]
        proc = _grader_context().Process(target=_pytest_child, args=(args, str(root), str(log), threads))
        proc.start()
        proc.join(timeout)
        timed_out = proc.is_alive()
        if timed_out:
            proc.kill()  # its sandbox (bwrap --die-with-parent) goes with it
            proc.join()
        exitcode = proc.exitcode
        proc.close()
        if timed_out:
            return [], {}, f"grading took longer than {timeout:.0f} s and was stopped"
        if not out.is_file():
            text = log.read_text(errors="replace") if log.is_file() else ""
            tail = text.strip().splitlines()[-3:] or [f"exit code {exitcode}"]
            return [], {}, "the grader could not run: " + " | ".join(tail)[:500]
        data = json.loads(out.read_text())
        return data["checks"], data.get("sandbox", {}), ""


def grade_one(
    job: Job,
    out_dir: str | os.PathLike,
    root: str | os.PathLike = ".",
    force: bool = False,
    timeout: float = 900,
    cell_timeout: float = 60,
    threads: int = 1,
) -> dict:
    """Grade one submission into ``out_dir/<student>/<notebook>/results.json``; reuse an up-to-date result."""
    root, out_dir = Path(root).resolve(), Path(out_dir)
    target = out_dir / job.student / job.notebook / RESULTS
    sub = load_submission(job.path, root, job.exercise)
    fp = fingerprint(root, job.exercise)
    if target.is_file() and not force:
        old = json.loads(target.read_text())
        if old.get("extra", {}).get("submission_sha256") == sub.sha256 and old["extra"].get("graders") == fp:
            return old
    rows, sandbox, problem = _run_graders(job, root, timeout, cell_timeout, threads)
    tests = []
    for task in sub.tasks:
        checks = [r for r in rows if r["task"] == task.grade_id]
        failed = [r for r in checks if r["outcome"] != "passed"]
        if problem:
            passed, output = False, problem
        elif not checks:
            passed, output = False, "no hidden check ran for this task; please tell the instructor"
        else:
            passed = not failed
            output = (
                f"all {len(checks)} hidden checks passed"
                if passed
                else "\n".join(
                    f"- {r['check'].removeprefix('test_').replace('_', ' ')}: {r['feedback']}" for r in failed
                )
            )
        tests.append(
            {
                "name": task.grade_id,
                "score": task.points if passed else 0.0,
                "max_score": task.points,
                "status": "passed" if passed else "failed",
                "output": output,
                "visibility": "visible",
            }
        )
    isolation = sandbox.get("isolation", "unknown")
    note = "" if isolation == "bwrap" else " (weaker isolation: bwrap was not available)"
    results = {
        "score": sum(t["score"] for t in tests),
        "max_score": sum(t["max_score"] for t in tests),
        "tests": tests,
        "output": f"graded {job.notebook} with the hidden graders; student code ran sandboxed ({isolation}){note}",
        "visibility": "visible",
        "extra": {
            "student": job.student,
            "exercise": job.exercise,
            "notebook": job.notebook,
            "submission_sha256": sub.sha256,
            "graders": fp,
            "isolation": isolation,
            "weaker": sandbox.get("weaker", []),
        },
    }
    _atomic_write(target, json.dumps(results, indent=1, sort_keys=True) + "\n")
    return results


def write_grades_csv(results: list[dict], path: str | os.PathLike) -> None:
    """One row per (student, notebook): score, max_score and each task's score."""
    tasks = sorted({t["name"] for r in results for t in r["tests"]})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", "notebook", "score", "max_score", *tasks])
    for r in sorted(results, key=lambda r: (r["extra"]["student"], r["extra"]["notebook"])):
        by = {t["name"]: t["score"] for t in r["tests"]}
        w.writerow(
            [
                r["extra"]["student"],
                r["extra"]["notebook"],
                f"{r['score']:g}",
                f"{r['max_score']:g}",
                *[f"{by[t]:g}" if t in by else "" for t in tasks],
            ]
        )
    _atomic_write(Path(path), buf.getvalue())


def grade_all(
    paths, out_dir, jobs: int = 2, root=".", force: bool = False, progress: bool = True, cell_timeout: float = 60
) -> list[dict]:
    """Grade every submission found under ``paths`` with ``jobs`` in parallel; write results and grades.csv.

    The graders are started through :mod:`multiprocessing` (``forkserver``), so a script that calls this
    needs the usual ``if __name__ == "__main__":`` guard.
    """
    from tqdm.auto import tqdm

    todo = discover(paths)
    if not todo:
        raise FileNotFoundError(f"no submissions named like the exercises under {', '.join(map(str, paths))}")
    jobs = max(1, jobs)
    threads = max(1, (os.cpu_count() or 1) // jobs)  # torch threads per trusted grader; workers use one each
    results = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(grade_one, job, out_dir, root, force, 900, cell_timeout, threads): job for job in todo}
        with tqdm(total=len(todo), desc="grading", unit="nb", disable=not progress) as bar:
            for fut in as_completed(futures):
                results.append(fut.result())
                bar.update()
    write_grades_csv(results, Path(out_dir) / "grades.csv")
    return results
