"""``course grade``: grade submissions with the hidden graders, in parallel, resumably.

For each submitted notebook, ``pytest graders/test_NN_topic.py --submission PATH`` runs in its own process
(the trusted side; student code runs in its sandboxed worker), forked from a server that has imported torch,
fastai and nbformat once for the whole batch. Its per-check outcomes become one
Gradescope-style ``results.json`` per submission: one test per task, worth the task's points, passed only
when all of its hidden checks pass. A class ``grades.csv`` sums them up.

Where submissions are found (``discover``): a notebook path, or a folder in one of two layouts, nbgrader's
``submitted/`` (``FOLDER/<student>/<assignment>/<notebook>.ipynb``, assignment = notebook name) or a flat one
(``FOLDER/<student>/<notebook>.ipynb``). The student is always the first folder below FOLDER, so nothing a
student puts inside their own folder can be graded as someone else's; other files, deeper paths and symbolic
links are ignored (and listed). Two submissions of one notebook by one student are both left ungraded, with
a result that says so; the rest of the batch goes on.

Results carry the submission's sha256 and a fingerprint of the graders, so re-running skips what is
already graded (``--force`` regrades) and an interrupted batch resumes where it stopped. Every file is
written to a temporary name and renamed, so a result is either complete or absent. A grader that fails
for a reason that is not the submission's writes a result that says so and is graded again next time.
SIGTERM or Ctrl-C stops every grader and sandbox of the batch and removes their temporary folders.
``course grade --scheduler`` grades on a dask cluster with the same steps (``course.grading.cluster``).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from course.exercises import EXERCISES, exercise_of
from course.files import atomic_write, files_sha256
from course.grading.submission import Submission, load_submission

__all__ = [
    "Job",
    "Outcome",
    "Settings",
    "check_notebook",
    "discover",
    "fingerprint",
    "grade_all",
    "grade_one",
    "make_result",
    "write_grades_csv",
]

RESULTS = "results.json"
_NOTEBOOKS = {f"{nb}.ipynb": ex for ex, nb in EXERCISES.items()}


@dataclass(frozen=True)
class Job:
    """One notebook to grade: who submitted it, for which exercise, where it is (``others``: more copies)."""

    student: str
    exercise: str
    path: Path
    others: tuple[Path, ...] = ()

    @property
    def notebook(self) -> str:
        return EXERCISES[self.exercise]


def _student_of(nb: Path) -> str:
    # a single file: nbgrader's <student>/<assignment>/<notebook>.ipynb, else the folder holding it
    parent = nb.parent
    owner = parent.parent if parent.name == nb.stem else parent
    return owner.name or "student"


def _walk(folder: Path, ignored: list[str]) -> list[tuple[str, Path]]:
    """(student, notebook) pairs in nbgrader's or the flat layout below ``folder``; anything else into ``ignored``."""
    found = []
    for student in sorted(folder.iterdir()):
        if student.is_symlink() or not student.is_dir() or student.name.startswith("."):
            continue
        for dirpath, dirnames, filenames in os.walk(student):  # os.walk does not follow symbolic links
            here = Path(dirpath)
            depth = len(here.relative_to(student).parts)
            dirnames[:] = [d for d in sorted(dirnames) if d != ".ipynb_checkpoints"]
            for name in sorted(filenames):
                if not name.endswith(".ipynb"):
                    continue
                path = here / name
                flat = depth == 0 and name in _NOTEBOOKS
                nbgrader = depth == 1 and name in _NOTEBOOKS and here.name == name[: -len(".ipynb")]
                if (flat or nbgrader) and path.is_file() and not path.is_symlink():
                    found.append((student.name, path))
                else:
                    ignored.append(str(path))
    return found


def discover(paths: list[str | os.PathLike], ignored: list[str] | None = None) -> list[Job]:
    """Notebooks to grade (see the module docstring); ``ignored`` collects the notebooks that are not taken."""
    ignored = [] if ignored is None else ignored
    pairs: list[tuple[str, Path]] = []
    for p in map(Path, paths):
        if p.is_file():
            pairs.append((_student_of(p.resolve()), p))
        elif p.is_dir():
            pairs += _walk(p, ignored)
        else:
            raise FileNotFoundError(f"{p} does not exist; pass notebooks, folders of them, or nbgrader's submitted/")
    by_key: dict[tuple[str, str], list[Path]] = {}
    for student, path in pairs:
        key = (student, exercise_of(path))
        if path.resolve() not in by_key.setdefault(key, []):
            by_key[key].append(path.resolve())
    return [Job(student, ex, found[0], tuple(found[1:])) for (student, ex), found in by_key.items()]


def fingerprint(root: Path, exercise: str) -> str:
    """Hash of everything that decides this exercise's grades: the grader modules, the source notebook and the
    reference manifest."""
    nb = EXERCISES[exercise]
    g = root / "graders"
    files = sorted(g.glob("*.py")) + [g / "reference" / "manifest.json", root / "solutions" / nb / f"{nb}.ipynb"]
    return files_sha256(files)


@functools.lru_cache(maxsize=1)
def _grader_context():
    """A ``forkserver`` context whose server has imported ``course.grading.preload``; graders are forked from it.

    The server runs no student code and no torch computation before it forks (no thread pools to inherit),
    so each grader starts in milliseconds instead of re-importing torch, fastai and nbformat.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["course.grading.preload"])
    return ctx


def start_fork_server() -> None:
    """Start the graders' fork server now (it imports their libraries, seconds) instead of at the first notebook."""
    from multiprocessing import forkserver

    _grader_context()
    forkserver.ensure_running()


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the one that forked it (the fork server) ends."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(1)


def _pytest_child(args: list[str], root: str, log: str, tmp: str, threads: int) -> None:
    """In the forked grading process: quiet stdio into ``log``, then one pytest session (exit code = pytest's)."""
    _die_with_parent()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.chdir(root)
    os.environ["TMPDIR"] = tmp  # every temporary folder of this grader lives in the job's folder, removed after it
    tempfile.tempdir = None
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


_RUNNING: set = set()  # grader processes of this batch, so that a stop can end them all
_LOCK = threading.Lock()
_STOPPING = threading.Event()


class Stopped(Exception):
    """The batch is being stopped: no result is written for a submission whose grader was interrupted."""


def _stop_all() -> None:
    _STOPPING.set()
    with _LOCK:
        procs = list(_RUNNING)
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.kill()  # its sandboxes (bwrap --die-with-parent, cgroups) go with it


def _run_graders(
    job: Job,
    root: Path,
    timeout: float,
    cell_timeout: float,
    threads: int = 1,
    cpus: float = 1.0,
    isolation: str = "bwrap",
) -> tuple[list[dict], dict, str]:
    """Run the exercise's grader file on one submission; (check rows, sandbox info, problem or '')."""
    job_dir = Path(tempfile.mkdtemp(prefix="course-grade-"))
    try:
        out, log, tmp = job_dir / "checks.json", job_dir / "pytest.log", job_dir / "tmp"
        tmp.mkdir(mode=0o700)
        args = [
            str(root / "graders" / f"test_{job.notebook}.py"),
            "--submission", str(job.path), "--exercise", job.exercise, "--grade-results", str(out),
            "--cell-timeout", f"{cell_timeout:g}", "--probe-timeout", f"{cell_timeout:g}",
            "--cpus", f"{cpus:g}", "--isolation", isolation,
            "-p", "_hypothesis_pytestplugin", "-p", "no:cacheprovider", "-q", "--no-header", "--rootdir", str(root),
            "--tb=no",  # feedback is the check's own message; formatting tracebacks cost ~0.1 s per failed check
        ]  # fmt: skip
        proc = _grader_context().Process(target=_pytest_child, args=(args, str(root), str(log), str(tmp), threads))
        with _LOCK:
            if _STOPPING.is_set():
                raise Stopped()
            proc.start()
            _RUNNING.add(proc)
        try:
            proc.join(timeout)
            timed_out = proc.is_alive()
            if timed_out:
                proc.kill()  # its sandbox (bwrap --die-with-parent) goes with it
                proc.join()
        finally:
            with _LOCK:
                _RUNNING.discard(proc)
        exitcode = proc.exitcode
        proc.close()
        if _STOPPING.is_set():
            raise Stopped()
        if timed_out:
            return [], {}, f"grading took longer than {timeout:.0f} s and was stopped"
        if not out.is_file():
            text = log.read_text(errors="replace") if log.is_file() else ""
            tail = text.strip().splitlines()[-3:] or [f"exit code {exitcode}"]
            return [], {}, "the grader could not run: " + " | ".join(tail)[:500]
        data = json.loads(out.read_text())
        return data["checks"], data.get("sandbox", {}), ""
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


@dataclass(frozen=True)
class Settings:
    """How each notebook of a batch is graded, wherever it runs (plain data: a cluster task carries it)."""

    timeout: float = 900  # seconds one notebook's grader may run
    cell_timeout: float = 60  # seconds of sandbox CPU time per answer cell and per check's call
    isolation: str = "bwrap"  # or "auto": per-process limits only where bwrap does not work


@dataclass
class Outcome:
    """What grading one notebook gave: per-check rows, sandbox info, a problem that fails every task, an error.

    ``error`` (a grader fault, not the submission's) makes the result count as not graded: the next run regrades
    it. Only plain JSON: this is all a cluster worker sends back (``course.grading.cluster``).
    """

    rows: list[dict]
    sandbox: dict
    problem: str = ""
    error: str = ""


def check_notebook(
    job: Job, root: Path, settings: Settings = Settings(), threads: int = 1, cpus: float = 1.0
) -> Outcome:
    """Run the hidden graders on one submission (never raises for a grader fault, only for :class:`Stopped`)."""
    if job.others:
        copies = ", ".join(str(p) for p in (job.path, *job.others))
        problem = f"not graded: {len(job.others) + 1} submissions of {job.notebook} ({copies})"
        return Outcome([], {"isolation": "not run"}, problem)
    try:
        rows, sandbox, problem = _run_graders(
            job, root, settings.timeout, settings.cell_timeout, threads, cpus, settings.isolation
        )
    except Stopped:
        raise
    except Exception as e:  # noqa: BLE001 - a grader fault: this submission says so, the batch goes on
        problem = f"internal grader error ({type(e).__name__}: {str(e)[:200]}); please tell the instructor"
        return Outcome([], {}, problem, problem)
    return Outcome(rows, sandbox, problem, problem if problem.startswith("the grader could not run") else "")


def result_path(job: Job, out_dir: str | os.PathLike) -> Path:
    """Where a submission's ``results.json`` goes: ``out_dir/<student>/<notebook>/results.json``."""
    return Path(out_dir) / job.student / job.notebook / RESULTS


def reusable(target: Path, sha256: str, graders: str) -> dict | None:
    """The result at ``target`` when it is up to date: same submission bytes, same graders, no grader error."""
    if not target.is_file():
        return None
    old = json.loads(target.read_text())
    extra = old.get("extra", {})
    if extra.get("submission_sha256") == sha256 and extra.get("graders") == graders and not extra.get("error"):
        return old
    return None


def _task_result(task, rows: list[dict], problem: str) -> dict:
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
            else "\n".join(f"- {r['check'].removeprefix('test_').replace('_', ' ')}: {r['feedback']}" for r in failed)
        )
    return {
        "name": task.grade_id,
        "score": task.points if passed else 0.0,
        "max_score": task.points,
        "status": "passed" if passed else "failed",
        "output": output,
        "visibility": "visible",
    }


def make_result(job: Job, sub: Submission, graders: str, outcome: Outcome) -> dict:
    """The Gradescope-style result of one submission: one test per task of ``sub`` (tasks come from the source)."""
    tests = [_task_result(task, outcome.rows, outcome.problem) for task in sub.tasks]
    isolation_used = outcome.sandbox.get("isolation", "unknown")
    if isolation_used == "not run":
        ran = "no student code ran"
    else:
        note = "" if isolation_used == "bwrap" else " (weaker isolation: bwrap was not used)"
        ran = f"student code ran sandboxed ({isolation_used}){note}"
    return {
        "score": sum(t["score"] for t in tests),
        "max_score": sum(t["max_score"] for t in tests),
        "tests": tests,
        "output": f"graded {job.notebook} with the hidden graders; {ran}",
        "visibility": "visible",
        "extra": {
            "student": job.student,
            "exercise": job.exercise,
            "notebook": job.notebook,
            "submission_sha256": sub.sha256,
            "graders": graders,
            "isolation": isolation_used,
            "enforced": outcome.sandbox.get("enforced", []),
            "weaker": outcome.sandbox.get("weaker", []),
            "error": outcome.error,
        },
    }


def write_result(target: Path, result: dict) -> None:
    """Write one ``results.json`` atomically (complete or absent)."""
    atomic_write(target, json.dumps(result, indent=1, sort_keys=True) + "\n", mode=0o600)


def grade_one(
    job: Job,
    out_dir: str | os.PathLike,
    root: str | os.PathLike = ".",
    force: bool = False,
    settings: Settings = Settings(),
    threads: int = 1,
    cpus: float = 1.0,
) -> dict:
    """Grade one submission into ``out_dir/<student>/<notebook>/results.json``; reuse an up-to-date result."""
    root = Path(root).resolve()
    target = result_path(job, out_dir)
    sub = load_submission(job.path, root, job.exercise)
    fp = fingerprint(root, job.exercise)
    old = None if force else reusable(target, sub.sha256, fp)
    if old is not None:
        return old
    result = make_result(job, sub, fp, check_notebook(job, root, settings, threads, cpus))
    write_result(target, result)
    return result


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
    atomic_write(path, buf.getvalue(), mode=0o600)


@contextlib.contextmanager
def stop_on_sigterm():
    """SIGTERM becomes KeyboardInterrupt in the main thread (so the batch stops the same way as on Ctrl-C)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def find_jobs(paths, ignored: list[str] | None = None) -> list[Job]:
    """:func:`discover`, refusing an empty batch."""
    todo = discover(paths, ignored)
    if not todo:
        raise FileNotFoundError(f"no submissions named like the exercises under {', '.join(map(str, paths))}")
    return todo


def grader_share(cores: int, slots: int) -> tuple[int, float]:
    """(torch threads per trusted grader, CPU quota per sandbox) when ``slots`` graders share ``cores``."""
    slots = max(1, slots)
    return max(1, cores // slots), max(1.0, cores / slots)


class Progress:
    """The batch's progress bar: done/total, rate and ETA (tqdm's), and how many could not be graded."""

    def __init__(self, total: int, enabled: bool, done: int = 0):
        from tqdm.auto import tqdm

        self.failed = 0
        self.bar = tqdm(total=total, initial=done, desc="grading", unit="nb", disable=not enabled)

    def add(self, result: dict) -> None:
        if result["extra"].get("error"):
            self.failed += 1
            self.bar.set_postfix(failed=self.failed, refresh=False)
        self.bar.update()

    def close(self) -> None:
        self.bar.close()


def grade_all(
    paths,
    out_dir,
    jobs: int = 2,
    root=".",
    force: bool = False,
    progress: bool = True,
    cell_timeout: float = 60,
    isolation: str = "bwrap",
    ignored: list[str] | None = None,
    backend=None,
) -> list[dict]:
    """Grade every submission found under ``paths`` with ``jobs`` in parallel; write results and grades.csv.

    ``isolation``: "bwrap" (required; the default) or "auto" (per-process limits only where bwrap does not
    work, said in each result). ``backend``: grade elsewhere instead, e.g. ``course.grading.cluster.on_cluster``
    (``jobs`` is then unused). The graders are started through :mod:`multiprocessing` (``forkserver``), so a
    script that calls this needs the usual ``if __name__ == "__main__":`` guard.
    """
    settings = Settings(cell_timeout=cell_timeout, isolation=isolation)
    todo = find_jobs(paths, ignored)
    if backend is None:
        from course.grading.sandbox import Sandbox

        Sandbox(isolation=isolation)  # fail closed before anything starts: raises when bwrap is required but broken
        results = _grade_here(todo, out_dir, max(1, jobs), root, force, progress, settings)
    else:
        results = backend(todo, out_dir, root, force, progress, settings)
    write_grades_csv(results, Path(out_dir) / "grades.csv")
    return results


def _grade_here(todo: list[Job], out_dir, jobs: int, root, force: bool, progress: bool, settings: Settings):
    threads, cpus = grader_share(os.cpu_count() or 1, jobs)  # together no more than the machine
    results = []
    _STOPPING.clear()
    pool = ThreadPoolExecutor(max_workers=jobs)
    bar = Progress(len(todo), progress)
    try:
        with stop_on_sigterm():
            futures = {pool.submit(grade_one, job, out_dir, root, force, settings, threads, cpus): job for job in todo}
            for fut in as_completed(futures):
                results.append(fut.result())
                bar.add(results[-1])
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        _stop_all()
        raise
    finally:
        bar.close()
        pool.shutdown(wait=True)
    return results
