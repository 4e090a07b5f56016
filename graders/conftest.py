"""Hidden graders: ``pytest graders --submission PATH [--grade-results OUT.json]``.

The trusted process (this pytest) never runs student code: the submission's answer cells run in a
sandboxed worker (``course.grading``), and checks exchange plain data with it. Each check is marked
with the task it grades (``@pytest.mark.task("ex2_conv2d")``); a task earns its points only when every
one of its checks passes. Only the grader file of the submission's exercise is run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from course.grading import Limits, Sandbox
from course.grading.submission import exercise_of, load_submission
from course.notebooks import EXERCISES, SKIP_SUFFIXES

from .checks import CheckFailed, Worker

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "graders" / "reference"
_MODULE_EXERCISE = {f"test_{nb}": ex for ex, nb in EXERCISES.items()}


def pytest_addoption(parser):
    group = parser.getgroup("graders", "hidden graders")
    group.addoption("--submission", metavar="PATH", help="the submitted notebook to grade (e.g. 03_first_cnn.ipynb)")
    group.addoption("--exercise", metavar="ID", help="exercise id (ex1..ex6) when the file name does not say it")
    group.addoption("--grade-results", metavar="PATH", help="write each check's outcome and feedback as JSON")
    group.addoption("--cell-timeout", type=float, default=60.0, help="seconds an answer cell may run (default 60)")
    group.addoption("--probe-timeout", type=float, default=60.0, help="seconds one check's call may run (default 60)")


def pytest_configure(config):
    config.addinivalue_line("markers", "task(grade_id): the graded task (solution cell) this hidden check belongs to")
    config._grade_rows = []


def _submission_exercise(config) -> str | None:
    path = config.getoption("submission")
    if not path:
        return None
    return config.getoption("exercise") or exercise_of(path)


def pytest_collection_modifyitems(config, items):
    if not config.getoption("submission"):
        raise pytest.UsageError("the graders need a notebook: pytest graders --submission PATH")
    ex = _submission_exercise(config)
    keep, drop = [], []
    for item in items:
        (keep if _MODULE_EXERCISE.get(item.module.__name__.rsplit(".", 1)[-1]) == ex else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def submission(pytestconfig):
    return load_submission(pytestconfig.getoption("submission"), ROOT, _submission_exercise(pytestconfig))


@pytest.fixture(scope="session")
def sandbox_session(submission, pytestconfig):
    limits = Limits(
        probe_seconds=pytestconfig.getoption("probe_timeout"), cell_seconds=pytestconfig.getoption("cell_timeout")
    )
    # training cells (_train, _final) need data the sandbox does not have: their checks read the source and
    # train the student's pieces through the `fit` helper instead
    cells = [(gid, src) for gid, src in submission.sandbox_cells() if not gid.endswith(SKIP_SUFFIXES)]
    session = Sandbox(limits).session(cells)
    with session:
        yield session
        res = session.result()
        pytestconfig._sandbox_info = {
            "isolation": res.isolation,
            "enforced": list(res.enforced),
            "weaker": list(res.weaker),
            "restarts": res.restarts,
        }


@pytest.fixture(scope="session")
def worker(sandbox_session, submission):
    return Worker(sandbox_session, submission)


@pytest.fixture(autouse=True)
def _task_answer_ran(request):
    """Before a check: its task's answer cell must exist and have run cleanly (else the check fails, saying so)."""
    marker = request.node.get_closest_marker("task")
    if marker is None:
        raise pytest.UsageError(f"{request.node.nodeid} has no @pytest.mark.task(...)")
    request.getfixturevalue("worker").require(marker.args[0])


@pytest.fixture(scope="session")
def references():
    """The reference implementations (solution cells of solutions/), loaded in the trusted process."""
    from course.reference import load_references

    return load_references(ROOT)


@pytest.fixture(scope="session")
def manifest():
    path = REFERENCE / "manifest.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `course reference train`")
    return json.loads(path.read_text())


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
            feedback = str(exc).split("\n", 1)[0][:2000]
        else:  # a grader problem, not the student's: say so without grader source
            feedback = f"internal grader error ({type(exc).__name__}); please tell the instructor"
        item.config._grade_rows.append(
            {
                "check": item.name,
                "task": marker.args[0] if marker else None,
                "outcome": "passed" if report.passed else "failed",
                "feedback": feedback,
                "seconds": round(report.duration, 3),
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
