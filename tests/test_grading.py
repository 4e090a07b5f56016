"""course grade on hostile, damaged and oddly placed submissions: exact scores, nothing changed outside the
sandbox, and a batch that no notebook, grader, busy neighbour or signal can break.

Every expectation is about the whole pipeline (discover -> sandboxed graders -> results.json -> grades.csv).
Hostile cases live in ``tests/grading_cases/hostile.py`` (attacks, each with the exact scores it must end with);
correct and wrong answers are in ``test_grading_corpus.py``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from grading_cases.hostile import CANARY, GRADER_FILE, HOSTILE, REFERENCE_FILE
from submissions import NB2, ROOT, expected, points, replace_cells, solution_nb, task_scores, write_submission

from course.grading.grade import _run_graders, discover, grade_all
from course.notebooks import nbgrader_meta


# --- hostile notebooks, damaged notebooks and submission layouts: one batch ------------------------------------------
def _damaged(subs: Path) -> None:
    """Notebooks damaged in ways a file on disk can be, each in one task's cell (plus a non-notebook)."""
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
    # raw JSON edits nbformat would refuse to write: no cell_type, no source, a number as source, a list of numbers
    raw = json.loads(nbformat.writes(solution_nb(NB2)))
    for cell in raw["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid == "ex2_output_size":
            del cell["cell_type"]
        elif gid == "ex2_zero_pad":
            del cell["source"]
        elif gid == "ex2_conv2d":
            cell["source"] = 42
        elif gid == "ex2_conv_matrix":
            cell["source"] = [1, 2]
    raw["cells"].insert(0, 7)  # not even a cell
    path = subs / "damaged_cells" / NB2 / f"{NB2}.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(raw))


def _layouts(subs: Path) -> None:
    """What a student can put into their own folder: another student's path, a second copy, a symbolic link."""
    nested = subs / "mallory" / NB2 / "victim" / NB2 / f"{NB2}.ipynb"
    nested.parent.mkdir(parents=True)
    nbformat.write(solution_nb(NB2), str(nested))
    write_submission(subs, "mallory", replace_cells(solution_nb(NB2), {"ex2_receptive_field": "receptive_field = 0"}))
    write_submission(subs, "twice", solution_nb(NB2))
    nbformat.write(solution_nb(NB2), str(subs / "twice" / f"{NB2}.ipynb"))  # the flat layout, a second copy
    (subs / "linked" / NB2).mkdir(parents=True)
    (subs / "linked" / NB2 / f"{NB2}.ipynb").symlink_to(subs / "twice" / f"{NB2}.ipynb")


HOSTILE_CPU = 5  # CPU seconds per cell and call in the hostile batch: its endless loops each spend this much


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade every hostile, damaged and oddly placed submission in one parallel batch (the batch is tested too)."""
    subs = tmp_path_factory.mktemp("submitted")
    out = tmp_path_factory.mktemp("graded")
    write_submission(subs, "solution", solution_nb(NB2))
    shutil.copytree(ROOT / "exercises" / NB2, subs / "unanswered" / NB2)
    for case, h in HOSTILE.items():
        write_submission(subs, f"hostile_{case}", replace_cells(solution_nb(h.notebook), h.cells), h.notebook)
    _damaged(subs)
    _layouts(subs)
    CANARY.unlink(missing_ok=True)
    ignored: list[str] = []
    t0 = time.monotonic()
    results = grade_all([subs], out, jobs=2, root=ROOT, progress=False, cell_timeout=HOSTILE_CPU, ignored=ignored)
    seconds = time.monotonic() - t0
    by = {(r["extra"]["student"], r["extra"]["notebook"]): r for r in results}
    return by, out, subs, ignored, seconds


def test_solution_scores_full_marks_and_release_scores_zero(graded):
    by, *_ = graded
    assert task_scores(by[("solution", NB2)]) == points(NB2)
    release = by[("unanswered", NB2)]
    assert release["score"] == 0 and release["max_score"] == sum(points(NB2).values())
    assert all("not answered yet" in t["output"] for t in release["tests"])
    assert all("internal grader error" not in t["output"] for r in by.values() for t in r["tests"])


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_submission_gets_exactly_its_scores(graded, case):
    by, *_ = graded
    h = HOSTILE[case]
    result = by[(f"hostile_{case}", h.notebook)]
    assert task_scores(result) == expected(h.notebook, h.zero), [t["output"][:300] for t in result["tests"]]
    for t in result["tests"]:
        if t["name"] in h.zero:
            assert t["status"] == "failed" and t["output"]
            assert h.says in t["output"], t["output"][:500]
        assert "def test_" not in t["output"] and "assert_close(" not in t["output"]  # no grader source
    assert not result["extra"]["error"]


def test_hostile_code_changed_nothing_outside_the_sandbox(graded):
    by, *_ = graded
    assert not CANARY.exists()
    # read_graders and read_reference raise what they read; read_visible_file shows that such text does reach
    # the feedback, so these checks would catch a read that worked
    secret = GRADER_FILE.read_text()[:300]
    weights = repr(REFERENCE_FILE.read_bytes()[:64])
    assert weights.startswith("b'PK\\x03\\x04")
    for r in by.values():
        for t in r["tests"]:
            assert secret not in t["output"] and weights[2:40] not in t["output"]
    ran = {r["extra"]["isolation"] for r in by.values() if not r["extra"]["error"]}
    assert ran == {"bwrap", "not run"}  # "not run": a notebook whose every task was refused before running


@pytest.mark.parametrize(
    "student, task, words",
    [
        ("deleted_cell", "ex2_zero_pad", "is missing"),
        ("duplicated_cell", "ex2_conv_matrix", "appears 2 times"),
        ("retyped_cell", "ex2_receptive_field", "changed to a markdown cell"),
    ],
)
def test_damaged_cells_fail_only_their_task(graded, student, task, words):
    by, *_ = graded
    assert task_scores(by[(student, NB2)]) == expected(NB2, {task})
    assert words in next(t["output"] for t in by[(student, NB2)]["tests"] if t["name"] == task)


def test_cells_without_type_or_text_fail_only_their_tasks(graded):
    by, *_ = graded
    result = by[("damaged_cells", NB2)]
    damaged = {"ex2_output_size", "ex2_zero_pad", "ex2_conv2d", "ex2_conv_matrix"}
    assert task_scores(result) == expected(NB2, damaged)
    outputs = {t["name"]: t["output"] for t in result["tests"]}
    assert "no cell_type" in outputs["ex2_output_size"] and "not text" in outputs["ex2_conv2d"]


def test_invalid_notebook_scores_zero_with_a_reason(graded):
    by, *_ = graded
    r = by[("invalid_json", NB2)]
    assert r["score"] == 0 and all("not valid JSON" in t["output"] for t in r["tests"])


def test_only_the_submission_layout_counts(graded):
    by, _, subs, ignored, _ = graded
    students = {s for s, _ in by}
    assert "victim" not in students  # a path inside mallory's folder grades nobody else
    assert task_scores(by[("mallory", NB2)]) == expected(NB2, {"ex2_receptive_field"})
    assert str(subs / "mallory" / NB2 / "victim" / NB2 / f"{NB2}.ipynb") in ignored
    assert "linked" not in students and str(subs / "linked" / NB2 / f"{NB2}.ipynb") in ignored
    twice = by[("twice", NB2)]  # two copies: neither is graded, the batch goes on
    assert twice["score"] == 0 and all("2 submissions" in t["output"] for t in twice["tests"])


def test_grades_csv_and_rerun_is_identical(graded):
    by, out, subs, _, _ = graded
    with open(out / "grades.csv") as f:
        rows = {(r["student"], r["notebook"]): r for r in csv.DictReader(f)}
    assert set(rows) == set(by) and rows[("solution", NB2)]["score"] == f"{sum(points(NB2).values()):g}"
    before = {p: p.read_bytes() for p in out.rglob("results.json")}
    sol = out / "solution" / NB2 / "results.json"
    sol.unlink()  # as if the batch had been interrupted before this one was written
    again = grade_all([subs], out, jobs=2, root=ROOT, progress=False, cell_timeout=HOSTILE_CPU)
    assert len(again) == len(by)
    assert {p: p.read_bytes() for p in out.rglob("results.json")} == before  # regraded one, identical bytes
    assert not list(out.rglob("*.partial*"))


# --- a batch no grader or signal can break ---------------------------------------------------------------------------
def _sandbox_workers() -> set[int]:
    """Pids of this session's running sandbox workers (``python ... -m course.grading.worker`` inside a bwrap that
    mounts a folder of this session's $TMPDIR, see conftest), read from /proc."""
    mine = tempfile.gettempdir().encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            if b"course.grading.worker" not in cmd or b"bwrap" in cmd[0] or cmd[0].endswith(b"sh"):
                continue
            parent = (entry / "stat").read_text().rpartition(")")[2].split()[1]
            if mine in Path(f"/proc/{parent}/cmdline").read_bytes():
                pids.add(int(entry.name))
        except OSError:  # not a process, or it ended meanwhile
            continue
    return pids


def _temp_folders() -> set[str]:
    """The grader's and the sandboxes' temporary folders (other course tools' are not this test's business)."""
    tmp = Path(tempfile.gettempdir())
    return {p.name for pattern in ("course-grade-*", "course-sandbox-*") for p in tmp.glob(pattern)}


def test_a_grader_past_its_time_limit_is_stopped_with_its_sandbox():
    before, temps = _sandbox_workers(), _temp_folders()
    job = discover([ROOT / "solutions" / NB2 / f"{NB2}.ipynb"])[0]
    rows, _, problem = _run_graders(job, ROOT, timeout=3, cell_timeout=60)  # the sandbox alone takes ~2 s to start
    assert rows == [] and problem == "grading took longer than 3 s and was stopped"
    deadline = time.monotonic() + 5
    while _sandbox_workers() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _sandbox_workers() - before, "the sandbox outlived its grader"
    assert _temp_folders() <= temps, "the grader's temporary folders outlived it"


def test_sigterm_stops_the_whole_batch(tmp_path):
    subs, out = tmp_path / "submitted", tmp_path / "graded"
    for i in range(4):
        write_submission(subs, f"s{i}", solution_nb("06_batchnorm"), "06_batchnorm")
    before, temps = _sandbox_workers(), _temp_folders()
    cmd = [sys.executable, "-m", "course.cli", "grade", str(subs), "--out", str(out), "--jobs", "2", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (_sandbox_workers() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _sandbox_workers() - before, "grading never started a sandbox"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    deadline = time.monotonic() + 10
    while (_sandbox_workers() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _sandbox_workers() - before, "sandboxes outlived the stopped batch"
    assert not _temp_folders() - temps, "temporary folders outlived the stopped batch"
    assert not list(out.rglob("*.partial*"))
    for result in out.rglob("results.json"):  # whatever finished before the signal is complete
        assert not json.loads(result.read_text())["extra"]["error"]


def test_grading_refuses_to_start_without_bwrap_unless_asked(tmp_path, monkeypatch):
    import course.grading.sandbox as sandbox_module

    monkeypatch.setattr(sandbox_module, "bwrap_problem", lambda: "bwrap is not installed")
    path = write_submission(tmp_path, "ada", solution_nb(NB2))
    with pytest.raises(RuntimeError, match="bwrap isolation is required"):
        grade_all([path], tmp_path / "out", jobs=1, root=ROOT, progress=False)
    assert not (tmp_path / "out").exists()


def test_discover_understands_nbgrader_and_flat_layouts(tmp_path):
    nb = tmp_path / "submitted" / "ada" / NB2 / f"{NB2}.ipynb"
    nb.parent.mkdir(parents=True)
    shutil.copy(ROOT / "exercises" / NB2 / f"{NB2}.ipynb", nb)
    (tmp_path / "submitted" / "ada" / NB2 / "notes.ipynb").write_text("{}")
    flat = tmp_path / "submitted" / "bob" / f"{NB2}.ipynb"
    flat.parent.mkdir(parents=True)
    shutil.copy(nb, flat)
    ignored: list[str] = []
    jobs = discover([tmp_path / "submitted"], ignored)
    assert sorted((j.student, j.exercise, j.others) for j in jobs) == [("ada", "ex2", ()), ("bob", "ex2", ())]
    assert ignored == [str(tmp_path / "submitted" / "ada" / NB2 / "notes.ipynb")]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover([tmp_path / "nope"])


# --- fairness between submissions ----------------------------------------------------------------------------------
BUSY = (  # 32 busy children (torch's multiprocessing: answer cells may not import os), left running after 5 s
    "import time\nimport torch.multiprocessing as mp\n\ndef _spin():\n    while True:\n        pass\n\n"
    "for _ in range(32):\n    mp.get_context('fork').Process(target=_spin, daemon=True).start()\ntime.sleep(5)\n"
)


def test_a_busy_neighbour_costs_an_honest_submission_nothing(tmp_path):
    """An honest ex6 (with its short training run) graded next to a notebook whose cell leaves 32 busy processes."""
    subs, out = tmp_path / "submitted", tmp_path / "graded"
    write_submission(subs, "honest", solution_nb("06_batchnorm"), "06_batchnorm")
    sol = solution_nb(NB2)
    output_size = next(c.source for c in sol.cells if nbgrader_meta(c).get("grade_id") == "ex2_output_size")
    write_submission(subs, "busy", replace_cells(sol, {"ex2_output_size": BUSY + output_size}))
    results = grade_all([subs], out, jobs=2, root=ROOT, progress=False, cell_timeout=30)
    by = {r["extra"]["student"]: r for r in results}
    assert task_scores(by["honest"]) == points("06_batchnorm"), [t["output"][:300] for t in by["honest"]["tests"]]
    # the children spun within their cell's CPU budget and were stopped when it ended: no later task paid for them
    assert task_scores(by["busy"]) == points(NB2), [t["output"][:300] for t in by["busy"]["tests"]]
    assert any("killed when it ends" in line for line in by["busy"]["extra"]["enforced"])


# --- the nbgrader gradebook -------------------------------------------------------------------------------------------


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

    by, *_ = graded
    results = [by[(s, NB2)] for s in ("solution", "unanswered", "hostile_infinite_loop")]
    url = f"sqlite:///{gradebook}"
    assert write_gradebook(results, url) >= 3 * len(points(NB2))  # at least one test cell per task
    full = sum(points(NB2).values())
    with Gradebook(url, course_id="") as gb:
        scores = {s: gb.find_submission_notebook(NB2, NB2, s).score for s in ("solution", "unanswered")}
        assert scores == {"solution": full, "unanswered": 0}
        hostile = gb.find_submission_notebook(NB2, NB2, "hostile_infinite_loop")
        assert hostile.score == full - points(NB2)["ex2_receptive_field"]
        comment = gb.find_comment("ex2_receptive_field", NB2, NB2, "hostile_infinite_loop").manual_comment
        assert comment.startswith("Hidden graders: 0 / ") and "cpu time" in comment.lower()
    zeroed = json.loads(json.dumps(by[("solution", NB2)]))
    for t in zeroed["tests"]:
        t["status"], t["score"] = "failed", 0.0
    wrong = json.loads(json.dumps(by[("solution", NB2)]))
    wrong["extra"]["notebook"] = "01_kernels"  # an assignment this gradebook does not have
    with pytest.raises(ValueError, match="no assignment '01_kernels'"):
        write_gradebook([zeroed, wrong], url)
    with Gradebook(url, course_id="") as gb:  # everything is checked before anything is written
        assert gb.find_submission_notebook(NB2, NB2, "solution").score == full
    with pytest.raises(FileNotFoundError, match="no nbgrader gradebook"):
        write_gradebook(results, f"sqlite:///{gradebook.parent / 'missing.db'}")
