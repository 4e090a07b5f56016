"""``course grade --scheduler``: the same grading, on the workers of a ``dask.distributed`` cluster.

The instructor's process (:func:`grade_on_cluster`) finds the submissions, reuses the results that are up to date
(as local grading does), and sends every other notebook to the cluster as one task of plain data: its bytes, the
exercise, the limits, and the fingerprint of what decides grades (``grade.fingerprint``: graders, reference
manifest, source notebook; :func:`environment`: the ``course`` package and the numeric libraries). On a worker,
:func:`grade_task` refuses a task whose fingerprint is not its own checkout's, or whose reference artifacts do not
match their manifest, and otherwise grades exactly as ``course grade`` does locally (``grade.check_notebook``: the
same sandbox, the same hidden graders) and returns the graders' per-check rows as JSON text: no student object,
nothing pickled crosses. Only the instructor's process builds and writes ``results.json``, atomically, once per
submission, as each task ends; so a run stopped by Ctrl-C, a lost scheduler or killed workers is resumed by
running the same command again, and ends with the results of a clean run.

Failures cost one submission, never the batch: each grader has local grading's time limit; dask moves the task
of a worker that dies to another, and reports a task whose workers died ``distributed.scheduler.allowed-failures``
+ 1 times (3 + 1 by default) as ``KilledWorker``, which is then tried once more, alone on the cluster (dask also
blames the tasks that only shared the dead worker); an exception in the task is retried ``retries`` times. A
submission that still fails gets a result that says why and counts as not graded (the next run tries it again).
A worker that refuses (other graders, other libraries, no working bwrap or MNIST) stops the batch with its
reason: nothing is graded with other tests.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import platform
import tempfile
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from course.exercises import EXERCISES
from course.files import file_sha256, files_sha256
from course.grading import grade
from course.grading.grade import Job, Outcome, Settings
from course.grading.submission import MAX_BYTES, load_submission

__all__ = [
    "ClusterLost",
    "WorkerRefused",
    "environment",
    "grade_on_cluster",
    "grade_task",
    "on_cluster",
    "refusal",
    "worker_root",
]

ROOT_ENV = "COURSE_ROOT"  # on a worker: the course checkout it grades with (default: the one its package is in)
CPUS_ENV = "COURSE_GRADER_CPUS"  # on a worker: CPUs per grader (default: its cores / its threads)
LIBRARIES = ("torch", "numpy", "fastai", "nbformat", "hypothesis", "pytest")  # their versions can change a verdict


class WorkerRefused(RuntimeError):
    """A worker's checkout or environment differs from the instructor's: the batch stops, nothing is misgraded."""


class ClusterLost(RuntimeError):
    """The scheduler went away mid-batch; what was written stays, the same command resumes."""


def worker_root() -> Path:
    """The course checkout this process grades with: ``$COURSE_ROOT``, else the one its ``course`` package is in."""
    import course

    return Path(os.environ.get(ROOT_ENV) or Path(course.__file__).resolve().parents[1]).resolve()


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, str]:
    """What decides a grade besides ``graders/``: the ``course`` package's source and the libraries' versions."""
    import course

    pkg = Path(course.__file__).resolve().parent
    digest = files_sha256(sorted(pkg.rglob("*.py")), label=lambda f: f.relative_to(pkg).as_posix())
    env = {"course package": digest, "python": ".".join(platform.python_version_tuple()[:2])}
    for name in LIBRARIES:
        try:
            env[name] = version(name)
        except PackageNotFoundError:
            env[name] = "missing"
    return env


def _reference_problems(root: Path) -> list[str]:
    """Reference artifacts whose bytes are not the ones their manifest (part of the fingerprint) lists."""
    ref = root / "graders" / "reference"
    try:
        listed = json.loads((ref / "manifest.json").read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return ["manifest.json (unreadable)"]
    bad = []
    for rel, digest in sorted(listed.items()):
        f = ref / rel
        if not f.is_file() or file_sha256(f) != digest:
            bad.append(rel)
    return bad


def _where() -> str:
    try:
        from distributed import get_worker

        return f"worker {get_worker().address}"
    except ValueError:  # not inside a dask worker
        return f"host {platform.node()}"


def refusal(graders: dict[str, str], env: dict[str, str], isolation: str = "bwrap") -> str:
    """Why this process must not grade for an instructor whose fingerprints are these ('' when it may)."""
    root = worker_root()
    fix = f"check out the instructor's commit at {root} (or point ${ROOT_ENV} at it) and restart the worker"
    if not (root / "graders" / "reference" / "manifest.json").is_file():
        return f"refused to grade: no graders/ with reference artifacts at {root}; {fix}"
    for ex, fp in sorted(graders.items()):
        mine = grade.fingerprint(root, ex)
        if mine != fp:
            nb = EXERCISES[ex]
            return (
                f"refused to grade {nb}: its graders differ from the instructor's (fingerprint "
                f"{mine[:12]} at {root}, {fp[:12]} expected; graders/*.py, graders/reference/manifest.json or "
                f"solutions/{nb}); {fix}"
            )
    mine = environment()
    differ = [f"{k} {mine.get(k, 'missing')[:12]} here, {v[:12]} expected" for k, v in env.items() if mine.get(k) != v]
    if differ:
        return f"refused to grade: its environment differs ({'; '.join(differ)}); {fix}"
    bad = _reference_problems(root)
    if bad:
        return f"refused to grade: reference artifacts differ from their manifest ({', '.join(bad)}); {fix}"
    from course.data import DataNotFoundError
    from course.grading.sandbox import Sandbox

    try:
        Sandbox(isolation=isolation)
    except RuntimeError as e:
        return f"refused to grade: it cannot sandbox student code ({e})"
    try:
        _mnist()
    except DataNotFoundError as e:  # the graders of ex3..ex6 train on it: without it they would fail honest work
        return f"refused to grade: {e}"
    return ""


@functools.lru_cache(maxsize=1)
def _mnist() -> Path:
    from course.data import locate_mnist

    return locate_mnist()


def _allow_graders() -> None:
    """Let this process start grader processes even when dask's nanny made it a daemon.

    multiprocessing forbids children of daemonic processes so that none outlive them; the graders already cannot:
    each is killed when the fork server ends (``PR_SET_PDEATHSIG``), which ends when this process does, and each
    sandbox dies with its grader (bwrap ``--die-with-parent``).
    """
    me = multiprocessing.current_process()
    if me.daemon:
        me.daemon = False


def dask_setup(worker) -> None:
    """``dask worker ... --preload course.grading.cluster``: start the graders' fork server now, not at the first task.

    The server imports torch, fastai and the graders' libraries (seconds) while the worker waits for its first task.
    """
    grade.start_fork_server()


def _grader_share() -> tuple[int, float]:
    """(torch threads, sandbox CPUs) of each grader on this worker: $COURSE_GRADER_CPUS, else cores / threads."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if os.environ.get(CPUS_ENV):
        cpus = float(os.environ[CPUS_ENV])
        return max(1, int(cpus)), max(1.0, cpus)
    try:
        from distributed import get_worker

        slots = get_worker().state.nthreads
    except ValueError:
        slots = 1
    return grade.grader_share(cores, slots)


def grade_task(task: dict) -> str:
    """On a worker: grade one notebook as local grading does, or refuse; JSON text, never a Python object."""
    settings = Settings(**task["settings"])
    why = refusal(task["graders"], task["environment"], settings.isolation)
    if why:
        return json.dumps({"refused": f"{_where()} {why}"})
    _allow_graders()
    threads, cpus = _grader_share()
    nb = EXERCISES[task["exercise"]]
    with tempfile.TemporaryDirectory(prefix="course-cluster-") as tmp:
        path = Path(tmp) / nb / f"{nb}.ipynb"
        path.parent.mkdir()
        with open(path, "wb") as f:
            f.write(task["notebook"])
            if task["size"] > len(task["notebook"]):
                f.truncate(task["size"])  # a notebook too large to read: same size, no bytes (sparse)
        job = Job(task["student"], task["exercise"], path)
        outcome = grade.check_notebook(job, worker_root(), settings, threads, cpus)
    return json.dumps({"outcome": asdict(outcome)})


def _task(job: Job, sha256: str, graders: str, settings: Settings) -> dict:
    """One task: what the worker must match, the limits, and the notebook's bytes (only its size when too large)."""
    size = job.path.stat().st_size
    return {
        "student": job.student,
        "exercise": job.exercise,
        "sha256": sha256,
        "graders": {job.exercise: graders},
        "environment": environment(),
        "settings": asdict(settings),
        "notebook": job.path.read_bytes() if size <= MAX_BYTES else b"",
        "size": size,
    }


def _key(job: Job, sha256: str, graders: str, settings: Settings) -> str:
    """The same task gets the same key: submissions with identical bytes are graded once."""
    what = [job.exercise, sha256, graders, environment(), asdict(settings)]
    return f"course-grade-{job.notebook}-{hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20]}"


def _failure(exc: BaseException) -> str:
    from distributed.scheduler import KilledWorker

    if isinstance(exc, KilledWorker):
        return (
            "grading on the cluster failed: the Dask workers grading this notebook died, also when it was tried "
            f"again alone ({str(exc)[:300]}); please tell the instructor"
        )
    return f"grading on the cluster failed ({type(exc).__name__}: {str(exc)[:300]}); please tell the instructor"


def on_cluster(scheduler: str):
    """A ``backend`` for ``grade.grade_all``: grade its submissions on the dask.distributed cluster at ``scheduler``."""

    def backend(todo: list[Job], out_dir, root, force: bool, progress: bool, settings: Settings) -> list[dict]:
        return grade_on_cluster(todo, out_dir, scheduler, root, force, progress, settings)

    return backend


def grade_on_cluster(
    todo: list[Job],
    out_dir,
    scheduler: str,
    root,
    force: bool,
    progress: bool,
    settings: Settings,
    retries: int = 1,
    window: int = 64,
    task=grade_task,
) -> list[dict]:
    """Grade ``todo`` on the cluster at ``scheduler``, writing each result here.

    ``retries``: reruns of a task that raised; ``window``: at least this many tasks in flight (four per worker
    thread when that is more), so that the scheduler never holds every notebook of a large batch; ``task``: the
    function the workers run.
    """
    root = Path(root).resolve()
    fps = {ex: grade.fingerprint(root, ex) for ex in sorted({job.exercise for job in todo})}  # one per batch
    results, waiting = [], {}  # task key -> [(job, submission, fingerprint)], one key for identical notebooks
    for job in todo:
        sub = load_submission(job.path, root, job.exercise)
        fp = fps[job.exercise]
        old = None if force else grade.reusable(grade.result_path(job, out_dir), sub.sha256, fp)
        if old is not None:
            results.append(old)
        elif job.others:  # two copies: not graded, no student code runs
            results.append(_write(job, sub, fp, grade.check_notebook(job, root), out_dir))
        else:
            waiting.setdefault(_key(job, sub.sha256, fp, settings), []).append((job, sub, fp))
    bar = grade.Progress(len(todo), progress, done=len(results))
    try:
        if waiting:
            with _client(scheduler) as client, grade.stop_on_sigterm():
                _preflight(client, fps, settings.isolation)
                results += _run(client, waiting, out_dir, bar, settings, retries, window, task)
    finally:
        bar.close()
    return results


def _write(job: Job, sub, fp: str, outcome: Outcome, out_dir) -> dict:
    result = grade.make_result(job, sub, fp, outcome)
    grade.write_result(grade.result_path(job, out_dir), result)
    return result


@contextlib.contextmanager
def _client(address: str):
    """A client of the scheduler at ``address``; its own log of a lost scheduler is silenced (ClusterLost says it)."""
    from distributed import Client

    log = logging.getLogger("distributed.client")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        try:
            client = Client(address, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise ConnectionError(
                f"cannot reach the Dask scheduler at {address} ({e}); start one with `dask scheduler` and workers "
                f"with `dask worker {address}` in the course environment (docs/instructor.md, 'Grading on a cluster')"
            ) from None
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.close(timeout=10)
    finally:
        log.setLevel(level)


def _preflight(client, graders: dict[str, str], isolation: str) -> None:
    """Ask every worker present now whether it may grade; raise with the reasons of those that refuse."""
    answers = client.run(refusal, graders, environment(), isolation)
    refused = [f"worker {addr} {why}" for addr, why in answers.items() if why]
    if refused:
        raise WorkerRefused(
            f"{len(refused)} of {len(answers)} Dask workers refused: {' | '.join(refused)}; nothing was graded"
        )


def _run(client, waiting: dict, out_dir, bar, settings: Settings, retries: int, window: int, task) -> list[dict]:
    """Submit ``waiting`` a window at a time; write each result as its task ends; raise when the batch must stop.

    A task whose workers died is tried once more at the end, alone on the cluster: dask blames every task a dead
    worker held, and a notebook that only shared a worker with one that kills it must not pay for it.
    """
    from distributed import as_completed

    keys = collections.deque(waiting)
    results, futures, again = [], {}, []
    done = as_completed(loop=client.loop)

    def payload(key):
        job, sub, fp = waiting[key][0]
        try:
            return _task(job, sub.sha256, fp, settings)
        except OSError as e:  # unreadable here: nothing to send, no student code runs
            problem = f"the submitted file could not be read ({e.strerror or e})"
            write(key, {"outcome": asdict(Outcome([], {"isolation": "not run"}, problem))})
            return None

    def submit_more():
        threads = sum(w.get("nthreads", 1) for w in client.scheduler_info().get("workers", {}).values())
        while keys and len(futures) < max(window, 4 * threads):
            key = keys.popleft()
            t = payload(key)
            if t is not None:
                futures[key] = client.submit(task, t, key=key, retries=retries, pure=False)
                done.add(futures[key])

    def write(key, reply):
        if "refused" in reply:
            raise WorkerRefused(f"{reply['refused']}; {len(results)} notebooks were graded and written before")
        for job, sub, fp in waiting.pop(key):
            results.append(_write(job, sub, fp, Outcome(**reply["outcome"]), out_dir))
            bar.add(results[-1])

    try:
        submit_more()
        for fut in done:
            del futures[fut.key]
            reply = _reply(fut, len(results))
            if reply is None:
                again.append(fut.key)
            else:
                write(fut.key, reply)
            fut.release()
            submit_more()
        for key in again:  # nothing else is in flight now
            t = payload(key)
            if t is not None:
                fut = futures[key] = client.submit(task, t, key=f"{key}-alone", retries=retries, pure=False)
                reply = _reply(fut, len(results), final=True)
                del futures[key]
                write(key, reply)
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel(list(futures.values()), force=True)
        raise
    return results


def _reply(fut, written: int, final: bool = False) -> dict | None:
    """A finished task's reply; None when its workers died and it has not been tried alone yet."""
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    try:
        return json.loads(fut.result())
    except FutureCancelledError as e:
        raise ClusterLost(
            f"lost the Dask scheduler or this batch's tasks ({e}); {written} notebooks were graded and written; run "
            "the same command again to grade the rest"
        ) from None
    except KilledWorker as e:
        if not final:
            return None
        return {"outcome": asdict(Outcome([], {}, _failure(e), _failure(e)))}
    except Exception as e:  # noqa: BLE001 - the task failed on the cluster: this submission says so
        return {"outcome": asdict(Outcome([], {}, _failure(e), _failure(e)))}
