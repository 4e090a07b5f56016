"""course grade --scheduler: a real dask scheduler and two workers on loopback grade exactly as local grading does.

One cluster (``dask scheduler`` + two ``dask worker`` processes, started here, stopped even when a test fails)
serves the module. The batch is the cheapest notebook (ex2) as a solution, a partly wrong answer, a hostile one,
a second student with the solution's exact bytes (graded once) and two copies by one student (never sent):
local grading of the same batch is the oracle, compared file by file.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from grading_cases.ex2 import WRONG
from grading_cases.hostile import HOSTILE
from submissions import NB2, ROOT, replace_cells, solution_nb, write_submission

from course.grading.cluster import WorkerRefused, grade_on_cluster, grade_task, on_cluster
from course.grading.grade import Settings, discover, fingerprint, grade_all

DASK = Path(sys.executable).parent / "dask"
CELL_TIMEOUT = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A scheduler and workers, each its own process group (nanny, worker, fork server, graders)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        port = _free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        cmd = [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
        # a task whose worker dies twice fails (the default, 3 + 1 deaths, would cost a test 4 worker restarts)
        env = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
        self.scheduler = self._start(cmd, "scheduler", env)

    def _start(self, cmd: list[str], name: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed when the process is stopped
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=log,
                                start_new_session=True)  # fmt: skip
        proc.log = log
        self.procs.append(proc)
        return proc

    def worker(self, name: str, preload: bool = True, **env: str) -> subprocess.Popen:
        """A worker with one grading thread and one CPU per grader (two share this 2-core machine)."""
        cmd = [str(DASK), "worker", self.address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1",
               "--name", name, "--death-timeout", "60"] + ["--preload", "course.grading.cluster"] * preload  # fmt: skip
        return self._start(cmd, name, {"COURSE_GRADER_CPUS": "1", **env})

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s", set_as_default=False) as client:
            client.wait_for_workers(n, timeout=90)

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.log.close()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None or not proc.log.closed:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                proc.log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        c.workers = [c.worker("w1"), c.worker("w2")]
        c.wait_for_workers(2)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Submissions, and local grading's results (``--jobs 2``) of all but ``same_bytes``: the oracle."""
    subs = tmp_path_factory.mktemp("submitted")
    write_submission(subs, "solution", solution_nb())
    wrong_task, cases = next(iter(WRONG.items()))
    hostile = HOSTILE["read_graders"].cells  # reads graders/ (hidden in the sandbox) in the last answer cell
    assert wrong_task not in hostile
    write_submission(subs, "wrong_and_hostile", replace_cells(solution_nb(), {wrong_task: cases[0].source, **hostile}))
    write_submission(subs, "twice", solution_nb())  # two copies by one student: never graded, never sent to the cluster
    write_submission(subs, "twice", solution_nb(), flat=True)
    out = tmp_path_factory.mktemp("graded-local")
    grade_all([subs], out, jobs=2, root=ROOT, progress=False, cell_timeout=CELL_TIMEOUT)
    # the solution's bytes again: one task on the cluster, a result for each
    write_submission(subs, "same_bytes", solution_nb())
    return subs, out


def _results(out: Path) -> dict[str, dict]:
    return {str(p.relative_to(out)): json.loads(p.read_text()) for p in sorted(out.rglob("results.json"))}


def _same_files(local: Path, cluster: Path) -> None:
    """The cluster's results are local grading's; ``same_bytes`` got the solution's (under its own name)."""
    got = _results(cluster)
    same = got.pop(f"same_bytes/{NB2}/results.json")
    assert got == _results(local)
    solution = got[f"solution/{NB2}/results.json"]
    assert same == {**solution, "extra": {**solution["extra"], "student": "same_bytes"}}
    rows = (cluster / "grades.csv").read_text().splitlines()
    assert [r for r in rows if not r.startswith("same_bytes,")] == (local / "grades.csv").read_text().splitlines()
    assert not list(cluster.rglob("*.partial"))


def test_a_cluster_grades_exactly_as_local_grading(cluster, batch, tmp_path):
    subs, local = batch
    on = on_cluster(cluster.address)
    results = grade_all([subs], tmp_path, root=ROOT, progress=False, cell_timeout=CELL_TIMEOUT, backend=on)
    assert len(results) == 4
    _same_files(local, tmp_path)
    by = {r["extra"]["student"]: r for r in results}
    assert by["solution"]["score"] == by["solution"]["max_score"] and by["twice"]["score"] == 0
    failed = {t["name"]: t["output"] for t in by["wrong_and_hostile"]["tests"] if t["status"] == "failed"}
    assert len(failed) == 2 and "FileNotFoundError" in failed["ex2_receptive_field"]
    assert {r["extra"]["isolation"] for r in results} == {"bwrap", "not run"}


def test_a_killed_worker_costs_nothing_and_a_rerun_changes_nothing(cluster, batch, tmp_path):
    """`course grade` with $COURSE_SCHEDULER; one worker is killed (with its grader and sandbox) while it grades."""
    from distributed import Client

    subs, local = batch
    out, log = tmp_path / "graded", tmp_path / "course-grade.log"
    cmd = [sys.executable, "-m", "course.cli", "grade", str(subs), "--out", str(out), "--quiet",
           "--cell-timeout", str(CELL_TIMEOUT)]  # fmt: skip
    env = {**os.environ, "COURSE_SCHEDULER": cluster.address}
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    try:
        victim = None
        with Client(cluster.address, timeout="30s", set_as_default=False) as client:
            deadline = time.monotonic() + 120
            while victim is None and time.monotonic() < deadline and proc.poll() is None:
                busy = [addr for addr, keys in client.processing().items() if keys]
                names = {addr: w["name"] for addr, w in client.scheduler_info()["workers"].items()}
                victim = next((names[a] for a in busy if a in names), None)
                time.sleep(0.2)
        assert victim is not None, "no worker ever started grading"
        time.sleep(3)  # well into its grading: sandbox running
        cluster.kill(cluster.workers[int(victim[1:]) - 1])
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]
    _same_files(local, out)  # every submission has one result, exactly the clean run's
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name != "grades.csv"}
    with open(log, "wb") as f:
        again = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=120)
    assert again.returncode == 0, log.read_text()[-3000:]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name != "grades.csv"} == before  # none rewritten
    _same_files(local, out)


KILLER = '''\
"""Stands in for grade_task: the student "killer" kills the worker process; the others get a made-up outcome."""
import json
import os


def task(payload):
    if payload["student"] == "killer":
        os._exit(1)
    return json.dumps({"outcome": {"rows": [], "sandbox": {"isolation": "not run"}, "problem": "made up"}})
'''


def test_a_notebook_that_kills_its_workers_fails_alone(cluster, tmp_path, monkeypatch):
    """Its workers die twice (the scheduler allows one death per task here), then twice more when it is tried again
    alone: it is reported, and the notebooks that shared a worker with it are graded."""
    from distributed import Client

    module = tmp_path / "course_test_killer.py"
    module.write_text(KILLER)
    with Client(cluster.address, timeout="30s", set_as_default=False) as client:
        client.upload_file(str(module))  # the scheduler and the workers import it from there
    monkeypatch.syspath_prepend(str(tmp_path))
    from course_test_killer import task

    subs = tmp_path / "submitted"
    for student in ("ada", "killer", "bob"):
        path = subs / student / NB2 / f"{NB2}.ipynb"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"cells": [], "student": student}))
    results = grade_on_cluster(discover([subs]), tmp_path, cluster.address, ROOT, False, False, Settings(), task=task)
    by = {r["extra"]["student"]: r for r in results}
    assert set(by) == {"ada", "killer", "bob"}
    assert not by["ada"]["extra"]["error"] and not by["bob"]["extra"]["error"]
    assert "died, also when it was tried again alone" in by["killer"]["extra"]["error"]
    assert by["killer"]["score"] == 0 and all("died" in t["output"] for t in by["killer"]["tests"])
    cluster.wait_for_workers(1)  # the nanny restarted the worker it lost


def test_a_worker_with_a_changed_grader_is_refused(cluster, batch, tmp_path_factory):
    """A worker whose checkout ($COURSE_ROOT) has one byte changed in a grader refuses, before and while grading."""
    from distributed import Client

    from course.grading import cluster as cluster_module

    subs, _ = batch
    other = tmp_path_factory.mktemp("other-checkout")
    shutil.copytree(ROOT / "graders", other / "graders", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "solutions" / NB2, other / "solutions" / NB2)
    grader = other / "graders" / f"test_{NB2}.py"
    data = bytearray(grader.read_bytes())
    data[-2:-1] = b"#" if data[-2:-1] != b"#" else b" "  # one byte of the last line
    grader.write_bytes(bytes(data))
    assert filecmp.cmp(ROOT / "graders" / "conftest.py", other / "graders" / "conftest.py", shallow=False)
    stale = cluster.worker("stale", preload=False, COURSE_ROOT=str(other))
    try:
        with Client(cluster.address, timeout="30s", set_as_default=False) as client:
            deadline = time.monotonic() + 90
            while not (addr := [a for a, w in client.scheduler_info()["workers"].items() if w["name"] == "stale"]):
                assert time.monotonic() < deadline, "the stale worker never joined"
                time.sleep(0.2)
            # a worker that joins after the batch's check refuses each task it is given, with the reason
            job = discover([subs / "solution"])[0]
            task = cluster_module._task(job, "0" * 64, fingerprint(ROOT, job.exercise), Settings())
            reply = json.loads(client.submit(grade_task, task, workers=addr, pure=False).result(timeout=60))
        assert "graders differ from the instructor's" in reply["refused"] and "outcome" not in reply
        out = tmp_path_factory.mktemp("graded-refused")
        with pytest.raises(WorkerRefused, match="graders differ from the instructor's") as refused:
            grade_all([subs / "solution"], out, root=ROOT, progress=False, backend=on_cluster(cluster.address))
        message = str(refused.value)
        assert f"worker {addr[0]} refused" in message and str(other) in message and "nothing was graded" in message
        assert not list(out.rglob("results.json"))
    finally:
        cluster.kill(stale)
