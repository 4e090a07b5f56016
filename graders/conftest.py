"""Hidden graders: ``pytest graders --submission PATH [--grade-results OUT.json]``.

The trusted process (this pytest) never runs student code: the submission's answer cells run in a
sandboxed worker (``course.grading``), and checks exchange plain data with it. Each check is marked
with the task it grades (``@pytest.mark.task("ex2_conv2d")``); a task earns its points only when every
one of its checks passes. Only the grader file of the submission's exercise is run.

Sessions (``Grading``): the notebook's answer cells run in order in one worker, and each task's checks run
right after its own cell, before any later cell, as the notebook's visible tests do. Training tasks get a
fresh worker that has run only the cells before them (so no weights sent to the main worker can reach
them). When a check of a task that uses an earlier task's functions fails, it runs once more in a fresh
worker where those functions are correct stand-ins (``standins.py``); passing there means the mistake
was the earlier task's, which already loses its own points.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import pytest

from course.exercises import EXERCISES, exercise_of, read_exercise
from course.grading import Limits, Sandbox
from course.grading.submission import Submission, load_submission
from course.reference import load_manifest

from .checks import CheckFailed, RuleBroken, SandboxedSubmission, fail
from .rules import modules_imported, names_used, tampering
from .standins import needs_replay, standin_cell

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "graders" / "reference"
_MODULE_EXERCISE = {f"test_{nb}": ex for ex, nb in EXERCISES.items()}
FEEDBACK_CHARS = 2000


def pytest_addoption(parser):
    group = parser.getgroup("graders", "hidden graders")
    group.addoption("--submission", metavar="PATH", help="the submitted notebook to grade (e.g. 03_first_cnn.ipynb)")
    group.addoption("--exercise", metavar="ID", help="exercise id (ex1..ex6) when the file name does not say it")
    group.addoption("--grade-results", metavar="PATH", help="write each check's outcome and feedback as JSON")
    group.addoption("--cell-timeout", type=float, default=60.0, help="seconds an answer cell may run (default 60)")
    group.addoption("--probe-timeout", type=float, default=60.0, help="seconds one check's call may run (default 60)")
    group.addoption("--cpus", type=float, default=1.0, help="CPU quota of the sandbox (default 1)")
    group.addoption(
        "--isolation",
        choices=("bwrap", "auto"),
        default="bwrap",
        help="bwrap (required, the default) or auto (per-process limits only when bwrap does not work here)",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "task(grade_id): the graded task (solution cell) this hidden check belongs to")
    config._grade_rows = []


def _submission_exercise(config) -> str | None:
    path = config.getoption("submission")
    if not path:
        return None
    return config.getoption("exercise") or exercise_of(path)


def task_of(item) -> str:
    marker = item.get_closest_marker("task")
    if marker is None:
        raise pytest.UsageError(f"{item.nodeid} has no @pytest.mark.task(...)")
    return marker.args[0]


def pytest_collection_modifyitems(config, items):
    if not config.getoption("submission"):
        raise pytest.UsageError("the graders need a notebook: pytest graders --submission PATH")
    ex = _submission_exercise(config)
    keep, drop = [], []
    for item in items:
        (keep if _MODULE_EXERCISE.get(item.module.__name__.rsplit(".", 1)[-1]) == ex else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    order = {t.grade_id: i for i, t in enumerate(read_exercise(ex, ROOT).tasks)}
    keep.sort(key=lambda item: order.get(task_of(item), len(order)))  # stable: file order within a task
    items[:] = keep


class Grading:
    """The sandboxed sessions of one submission (see the module docstring)."""

    def __init__(self, submission: Submission, sandbox: Sandbox):
        self.sub, self.sandbox = submission, sandbox
        self.deadline = time.monotonic() + sandbox.limits.run_seconds  # for all sessions of this notebook together
        self.imports = ("imports", submission.preamble)
        runs = [t.grade_id for t in submission.tasks if not t.trains and t.grade_id in submission.cells]
        self.main_cells = [self.imports] + [(gid, submission.cells[gid]) for gid in runs]
        self.main = None
        self.current: str | None = None
        self.fresh: dict[str, object] = {}
        self.replays: dict[str, object] = {}
        self.stopped: dict[str, str] = {}  # task -> what stopped a worker in one of its checks
        self.cell_errors: dict[str, str] = {}  # task -> what its answer cell raised when it ran

    def _session(self, cells):
        session = self.sandbox.session(cells, deadline=self.deadline)
        session.start()
        return session

    def _done_with_others(self, task: str) -> None:
        """Close the fresh and replay sessions of the tasks already checked (they stay within one budget)."""
        for sessions in (self.fresh, self.replays):
            for t in [t for t in sessions if t != task]:
                sessions.pop(t).close()

    def worker(self, task: str) -> SandboxedSubmission:
        """The worker for ``task``'s checks: the main one, advanced to just after the task's cell."""
        self._done_with_others(task)
        if self.sub.task(task).trains:
            if task not in self.fresh:
                self.fresh[task] = self._session([self.imports] + self.sub.cells_before(task))
            return SandboxedSubmission(self.fresh[task], self.sub, task, self.stopped, self.cell_errors)
        if self.main is None:
            self.main = self.sandbox.session(self.main_cells, deadline=self.deadline)
            self.main.start(upto=1)
        if task != self.current:
            self.main.new_task()
            self.current = task
        names = [gid for gid, _ in self.main_cells]
        upto = names.index(task) + 1 if task in names else len([g for g, _ in self.sub.cells_before(task)]) + 1
        self.main.advance(upto)
        return SandboxedSubmission(self.main, self.sub, task, self.stopped, self.cell_errors)

    def replay(self, task: str) -> SandboxedSubmission | None:
        """A fresh worker with correct stand-ins for the earlier tasks' functions, or None when the task uses
        none of them."""
        earlier = [t.grade_id for t in self.sub.tasks[: self.sub.tasks.index(self.sub.task(task))]]
        trains = self.sub.task(task).trains
        if task in self.sub.problems or not needs_replay(earlier, names_used(self.sub.cells[task]) | _trains(trains)):
            return None
        if task not in self.replays:
            ran = {c.grade_id: c.ok for c in (self.main.cells if self.main is not None else [])}
            before = [(gid, src) for gid, src in self.sub.cells_before(task) if ran.get(gid, True)]
            own = [] if trains else [(task, self.sub.cells[task])]
            self.replays[task] = self._session([self.imports, *before, ("standins", standin_cell(earlier)), *own])
        return SandboxedSubmission(self.replays[task], self.sub, task)  # its notes stay out of the feedback

    def close(self) -> dict:
        """Close every session; the isolation report of the main one (or of any that ran)."""
        sessions = [s for s in (self.main, *self.fresh.values(), *self.replays.values()) if s is not None]
        info = {"isolation": "not run"}  # every task was refused or failed before any student code ran
        if sessions:
            res = sessions[0].result()
            info = {
                "isolation": res.isolation,
                "enforced": list(res.enforced),
                "weaker": list(res.weaker),
                "restarts": sum(s.restarts for s in sessions),
                "stops": [stop for s in sessions for stop in s.stops][:20],
            }
        for s in sessions:
            s.close()
        self.sandbox.close()
        return info


def _trains(trains: bool) -> set[str]:
    """A training task trains the model its earlier tasks built (simple_cnn, simple_cnn_bn)."""
    return {"simple_cnn", "simple_cnn_bn", "conv", "conv_bn", "BatchNorm2d", "Flatten"} if trains else set()


@pytest.fixture(scope="session")
def submission(pytestconfig) -> Submission:
    return load_submission(pytestconfig.getoption("submission"), ROOT, _submission_exercise(pytestconfig))


@pytest.fixture(scope="session")
def grading(submission, pytestconfig):
    limits = Limits(
        probe_seconds=pytestconfig.getoption("probe_timeout"),
        cell_seconds=pytestconfig.getoption("cell_timeout"),
        cpus=pytestconfig.getoption("cpus"),
    )
    isolation = pytestconfig.getoption("isolation")
    # the launcher imports the modules of the notebook's imports cell once, for every worker of this notebook
    g = Grading(submission, Sandbox(limits, isolation, preload=modules_imported(submission.preamble)))
    pytestconfig._grading = g
    try:
        yield g
    finally:
        pytestconfig._sandbox_info = g.close()


@functools.cache
def _tampering(cells: tuple[tuple[str, str], ...], task: str) -> list[str]:
    """``rules.tampering``, once per task instead of once per check."""
    return tampering(list(cells), task)


@pytest.fixture(autouse=True)
def _task_answer_present(request, submission):
    """Before any check: its task's answer cell must be in the notebook, undamaged, and neither it nor an earlier
    answer cell may reach into the interpreter (``rules.tampering``)."""
    task = task_of(request.node)
    if task in submission.problems:
        fail(submission.problems[task])
    found = _tampering((*submission.cells_before(task), (task, submission.cells[task])), task)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        fail(
            f"the answer cell '{task}' cannot be graded: code before its checks {found[0]}{more}; the notebook "
            "allows only code the graders can read (names written out, imports from its list, no frames, eval, "
            "exec, gc or ctypes)"
        )


@pytest.fixture
def worker(request, grading) -> SandboxedSubmission:
    """The sandboxed submission for this check's task; fails the check when the task's cell did not run."""
    w = grading.worker(task_of(request.node))
    w.require()
    return w


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run the check; when it fails and its task uses earlier answers, run it once more with correct ones."""
    if "worker" not in pyfuncitem.funcargs:
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    try:
        pyfuncitem.obj(**args)
    except RuleBroken:  # the task's own code broke its rule: correct earlier answers change nothing
        raise
    except CheckFailed as first:
        replay = pyfuncitem._request.getfixturevalue("grading").replay(task_of(pyfuncitem))
        if replay is None:
            raise
        try:
            replay.require()
            pyfuncitem.obj(**{**args, "worker": replay})
        except Exception:  # noqa: BLE001 - the replay only decides pass/fail; its details are never shown
            raise first from None
        pyfuncitem.user_properties.append(("replayed", True))
    return True


@pytest.fixture(scope="session")
def manifest():
    path = REFERENCE / "manifest.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `course reference train`")
    return load_manifest(path)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        marker = item.get_closest_marker("task")
        exc = call.excinfo.value if call.excinfo else None
        if exc is None:
            feedback = ""
        elif isinstance(exc, CheckFailed):
            feedback = str(exc)[:FEEDBACK_CHARS]
            grading = getattr(item.config, "_grading", None)
            note = grading.cell_errors.get(marker.args[0]) if grading is not None and marker else None
            if note:
                feedback += f"\n(note: when it ran here, without the data sets, {note[:500]})"
        else:  # a grader problem, not the student's: say so without grader source
            feedback = f"internal grader error ({type(exc).__name__}); please tell the instructor"
        item.config._grade_rows.append(
            {
                "check": item.name,
                "task": marker.args[0] if marker else None,
                "outcome": "passed" if report.passed else "failed",
                "feedback": feedback,
                "seconds": round(report.duration, 3),
                "replayed": dict(item.user_properties).get("replayed", False),
            }
        )


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    out = config.getoption("grade_results") if hasattr(config.option, "grade_results") else None
    if not out:
        return
    data = {"checks": config._grade_rows, "sandbox": getattr(config, "_sandbox_info", {})}
    tmp = Path(out).with_suffix(".partial")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(out)
