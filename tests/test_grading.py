"""course grade on fixture submissions built from the solutions: full marks, zero, wrong variants, hostile code.

Every expectation is about the whole pipeline (discover -> sandboxed graders -> results.json -> grades.csv).
Hostile cells are put into one task of ex2 (the cheapest notebook to grade); the test then checks that only
that task lost its points, that nothing outside the scratch folder changed and that no hidden data leaked.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from course.grading.grade import _run_graders, discover, grade_all
from course.grading.submission import load_submission
from course.notebooks import EXERCISES, nbgrader_meta

ROOT = Path(__file__).resolve().parents[1]
NB2 = "02_strides_padding"
CANARY = ROOT / "graders" / "canary-must-stay-absent.txt"

# task -> replacement source; each is hostile in a different way and must only cost its own task
HOSTILE = {
    "infinite_loop": ("ex2_receptive_field", "def receptive_field(layers):\n    while True:\n        pass\n"),
    "loop_at_import": ("ex2_receptive_field", "while True:\n    pass\n"),
    "memory_bomb": ("ex2_receptive_field", "hog = bytearray(64 * 2**30)\n"),
    "fork_bomb": (
        "ex2_receptive_field",
        "import os\nfor _ in range(10_000):\n    try:\n        os.fork()\n    except OSError:\n        break\n",
    ),
    "exit": ("ex2_receptive_field", "import os\nos._exit(3)\n"),
    "huge_output": ("ex2_receptive_field", "for _ in range(200):\n    print('x' * 1_000_000)\n"),
    "read_graders": (
        "ex2_receptive_field",
        f"SECRET = open({str(ROOT / 'graders' / 'test_02_strides_padding.py')!r}).read()\n"
        "def receptive_field(layers):\n    raise RuntimeError(SECRET[:300])\n",
    ),
    "read_reference": (
        "ex2_receptive_field",
        f"import os\nSECRET = os.listdir({str(ROOT / 'graders' / 'reference')!r})\n",
    ),
    "write_outside": ("ex2_receptive_field", f"open({str(CANARY)!r}, 'w').write('pwned')\n"),
    "network": ("ex2_receptive_field", "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=2)\n"),
    "patch_comparisons": (
        "ex2_zero_pad",
        "import torch, numpy\ntorch.allclose = lambda *a, **k: True\n"
        "torch.equal = lambda *a, **k: True\nnumpy.array_equal = lambda *a, **k: True\n"
        "def zero_pad(x, padding):\n    return x\n",
    ),
    "rigged_eq": (
        "ex2_receptive_field",
        "class Anything(int):\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = int.__hash__\n"
        "def receptive_field(layers):\n    return Anything(0)\n",
    ),
}


def solution_nb(nb_name: str):
    return nbformat.read(str(ROOT / "solutions" / nb_name / f"{nb_name}.ipynb"), as_version=4)


def write_submission(folder: Path, student: str, nb, name: str = NB2) -> Path:
    path = folder / student / name / f"{name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def replace_cell(nb, grade_id: str, source: str):
    for cell in nb.cells:
        if nbgrader_meta(cell).get("grade_id") == grade_id:
            cell.source = source
            return nb
    raise KeyError(grade_id)


def points(nb_name: str) -> dict[str, float]:
    sub = load_submission(ROOT / "solutions" / nb_name / f"{nb_name}.ipynb", ROOT)
    return {t.grade_id: t.points for t in sub.tasks}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade all fixture submissions of ex2 in one parallel batch (the batch is part of what is tested)."""
    subs = tmp_path_factory.mktemp("submitted")
    out = tmp_path_factory.mktemp("graded")
    write_submission(subs, "solution", solution_nb(NB2))
    shutil.copytree(ROOT / "exercises" / NB2, subs / "unanswered" / NB2)
    for case, (task, source) in HOSTILE.items():
        write_submission(subs, f"hostile_{case}", replace_cell(solution_nb(NB2), task, source))
    nb = solution_nb(NB2)
    nb.cells = [c for c in nb.cells if nbgrader_meta(c).get("grade_id") != "ex2_zero_pad"]
    write_submission(subs, "deleted_cell", nb)
    nb = solution_nb(NB2)
    dup = next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == "ex2_conv_matrix")
    copy = nbformat.from_dict(dup)
    copy["id"] = "duplicated-answer"
    nb.cells.append(copy)
    write_submission(subs, "duplicated_cell", nb)
    nb = solution_nb(NB2)
    for c in nb.cells:
        if nbgrader_meta(c).get("grade_id") == "ex2_receptive_field":
            c.pop("outputs", None)
            c.pop("execution_count", None)
            c.cell_type = "markdown"
    write_submission(subs, "retyped_cell", nb)
    bad = subs / "invalid_json" / NB2 / f"{NB2}.ipynb"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"cells": [ {"cell_type": "code", "source": "while True: pass"')
    CANARY.unlink(missing_ok=True)
    results = grade_all([subs], out, jobs=2, root=ROOT, progress=False, cell_timeout=8)
    return {r["extra"]["student"]: r for r in results}, out, subs


def task_scores(result) -> dict[str, float]:
    return {t["name"]: t["score"] for t in result["tests"]}


def test_solution_scores_full_marks_and_release_scores_zero(graded):
    by, out, _ = graded
    full = points(NB2)
    assert task_scores(by["solution"]) == full
    assert by["unanswered"]["score"] == 0 and by["unanswered"]["max_score"] == sum(full.values())
    assert all("not answered yet" in t["output"] for t in by["unanswered"]["tests"])
    assert all("internal grader error" not in t["output"] for r in by.values() for t in r["tests"])


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_submission_only_loses_its_own_task(graded, case):
    by, _, _ = graded
    task = HOSTILE[case][0]
    want = {t: (0.0 if t == task else p) for t, p in points(NB2).items()}
    assert task_scores(by[f"hostile_{case}"]) == want
    failed = next(t for t in by[f"hostile_{case}"]["tests"] if t["name"] == task)
    assert failed["status"] == "failed" and failed["output"]
    assert "def test_" not in failed["output"] and "assert_close" not in failed["output"]  # no grader source


def test_hostile_code_changed_nothing_outside_the_sandbox(graded):
    by, _, _ = graded
    assert not CANARY.exists()
    text = json.dumps(by)
    assert "weights" not in text and "manifest.json" not in text  # the reference folder was not listed
    assert by["solution"]["extra"]["isolation"] in ("bwrap", "rlimits-only")


@pytest.mark.parametrize(
    "student, task, words",
    [
        ("deleted_cell", "ex2_zero_pad", "is missing"),
        ("duplicated_cell", "ex2_conv_matrix", "appears 2 times"),
        ("retyped_cell", "ex2_receptive_field", "changed to a markdown cell"),
    ],
)
def test_damaged_cells_fail_only_their_task(graded, student, task, words):
    by, _, _ = graded
    want = {t: (0.0 if t == task else p) for t, p in points(NB2).items()}
    assert task_scores(by[student]) == want
    assert words in next(t["output"] for t in by[student]["tests"] if t["name"] == task)


def test_invalid_notebook_scores_zero_with_a_reason(graded):
    by, _, _ = graded
    r = by["invalid_json"]
    assert r["score"] == 0 and all("could not be read" in t["output"] for t in r["tests"])


def test_grades_csv_and_rerun_is_identical(graded):
    by, out, subs = graded
    with open(out / "grades.csv") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(by) and rows["solution"]["score"] == f"{sum(points(NB2).values()):g}"
    before = {p: p.read_bytes() for p in out.rglob("results.json")}
    sol = out / "solution" / NB2 / "results.json"
    sol.unlink()  # as if the batch had been interrupted before this one was written
    again = grade_all([subs], out, jobs=2, root=ROOT, progress=False, cell_timeout=8)
    assert len(again) == len(by)
    assert {p: p.read_bytes() for p in out.rglob("results.json")} == before  # regraded one, identical bytes
    assert not list(out.rglob("*.partial"))


def _sandbox_workers() -> set[int]:
    """Pids of running sandbox workers (``python ... -m course.grading.worker``), read from /proc."""
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or it ended meanwhile
            continue
        if b"course.grading.worker" in cmd and b"bwrap" not in cmd[0]:
            pids.add(int(entry.name))
    return pids


def test_a_grader_past_its_time_limit_is_stopped_with_its_sandbox():
    before = _sandbox_workers()
    job = discover([ROOT / "solutions" / NB2 / f"{NB2}.ipynb"])[0]
    rows, _, problem = _run_graders(job, ROOT, timeout=3, cell_timeout=60)  # the sandbox alone takes ~2 s to start
    assert rows == [] and problem == "grading took longer than 3 s and was stopped"
    deadline = time.monotonic() + 5
    while _sandbox_workers() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _sandbox_workers() - before, "the sandbox outlived its grader"


def test_discover_understands_nbgrader_trees(tmp_path):
    nb = tmp_path / "submitted" / "ada" / NB2 / f"{NB2}.ipynb"
    nb.parent.mkdir(parents=True)
    shutil.copy(ROOT / "exercises" / NB2 / f"{NB2}.ipynb", nb)
    (tmp_path / "submitted" / "ada" / NB2 / "notes.ipynb").write_text("{}")
    jobs = discover([tmp_path / "submitted"])
    assert [(j.student, j.exercise) for j in jobs] == [("ada", "ex2")]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover([tmp_path / "nope"])


def _wrong_variants():
    for ex in EXERCISES:
        try:
            mod = importlib.import_module(f"grading_cases.{ex}")
        except ModuleNotFoundError:
            continue
        for task, source in mod.WRONG.items():
            yield pytest.param(ex, task, source, id=task, marks=pytest.mark.slow)


@pytest.fixture(scope="module")
def wrong_graded(tmp_path_factory):
    subs = tmp_path_factory.mktemp("wrong")
    out = tmp_path_factory.mktemp("wrong-graded")
    for ex, task, source in [p.values for p in _wrong_variants()]:
        write_submission(subs, task, replace_cell(solution_nb(EXERCISES[ex]), task, source), EXERCISES[ex])
    for nb_name in EXERCISES.values():
        write_submission(subs, "solution", solution_nb(nb_name), nb_name)
    results = grade_all([subs], out, jobs=2, root=ROOT, progress=False)
    return {(r["extra"]["student"], r["extra"]["notebook"]): r for r in results}


@pytest.mark.slow
@pytest.mark.parametrize("nb_name", list(EXERCISES.values()))
def test_every_solution_scores_full_marks(wrong_graded, nb_name):
    assert task_scores(wrong_graded[("solution", nb_name)]) == points(nb_name)


@pytest.mark.parametrize("ex, task, source", list(_wrong_variants()))
def test_wrong_variant_loses_exactly_its_task(wrong_graded, ex, task, source):
    nb_name = EXERCISES[ex]
    want = {t: (0.0 if t == task else p) for t, p in points(nb_name).items()}
    assert task_scores(wrong_graded[(task, nb_name)]) == want


@pytest.fixture(scope="module")
def gradebook(tmp_path_factory):
    """An nbgrader course with ex2 generated into its gradebook, as `nbgrader generate_assignment` leaves it."""
    import subprocess
    import sys

    base = tmp_path_factory.mktemp("nbgrader-course")
    (base / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.course_id = 'test'\nc.CourseDirectory.root = {str(base)!r}\n"
    )
    shutil.copytree(ROOT / "solutions" / NB2, base / "source" / NB2)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "nbgrader", "generate_assignment", NB2, "--force"]
    subprocess.run(cmd, cwd=base, env=env, check=True, capture_output=True)
    return base / "gradebook.db"


def test_scores_and_feedback_go_into_the_nbgrader_gradebook(graded, gradebook):
    from nbgrader.api import Gradebook

    from course.grading.gradebook import write_gradebook

    by, _, _ = graded
    results = [by[s] for s in ("solution", "unanswered", "hostile_infinite_loop")]
    url = f"sqlite:///{gradebook}"
    assert write_gradebook(results, url) >= 3 * len(points(NB2))  # at least one test cell per task
    full = sum(points(NB2).values())
    with Gradebook(url, course_id="") as gb:
        scores = {s: gb.find_submission_notebook(NB2, NB2, s).score for s in ("solution", "unanswered")}
        assert scores == {"solution": full, "unanswered": 0}
        hostile = gb.find_submission_notebook(NB2, NB2, "hostile_infinite_loop")
        assert hostile.score == full - points(NB2)["ex2_receptive_field"]
        comment = gb.find_comment("ex2_receptive_field", NB2, NB2, "hostile_infinite_loop").manual_comment
        assert comment.startswith("Hidden graders: 0 / ") and "timeout" in comment.lower()
    zeroed = json.loads(json.dumps(by["solution"]))
    for t in zeroed["tests"]:
        t["status"], t["score"] = "failed", 0.0
    wrong = json.loads(json.dumps(by["solution"]))
    wrong["extra"]["notebook"] = "01_kernels"  # an assignment this gradebook does not have
    with pytest.raises(ValueError, match="no assignment '01_kernels'"):
        write_gradebook([zeroed, wrong], url)
    with Gradebook(url, course_id="") as gb:  # everything is checked before anything is written
        assert gb.find_submission_notebook(NB2, NB2, "solution").score == full
    with pytest.raises(FileNotFoundError, match="no nbgrader gradebook"):
        write_gradebook(results, f"sqlite:///{gradebook.parent / 'missing.db'}")
