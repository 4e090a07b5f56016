"""The six exercise notebooks: contract, release sync and leaks, and execution through the self-check plugin."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from course.exercises import EXERCISES, task_of_test
from course.notebooks import graded_cells, nbgrader_meta, read_notebook, solution_cells
from course.release import check_release, find_leaks

ROOT = Path(__file__).resolve().parents[1]
CASES = [pytest.param(ex, nb, marks=getattr(pytest.mark, ex), id=ex) for ex, nb in EXERCISES.items()]
HEADING = re.compile(r"^## Exercise (\d+)\.(\d+) — .+ \((\d+) points?\)\s*$", re.M)


def source(nb_name):
    return ROOT / "solutions" / nb_name / f"{nb_name}.ipynb"


def release(nb_name):
    return ROOT / "exercises" / nb_name / f"{nb_name}.ipynb"


@pytest.mark.parametrize("ex, nb_name", CASES)
def test_source_follows_the_contract(ex, nb_name):
    nb = read_notebook(source(nb_name))
    ids = [nbgrader_meta(c)["grade_id"] for c in nb.cells if "grade_id" in nbgrader_meta(c)]
    assert len(ids) == len(set(ids)), "grade_ids must be unique"
    assert all(i.startswith(f"{ex}_") for i in ids), f"every grade_id starts with {ex}_"
    tests = graded_cells(nb)
    assert tests and all(t.points > 0 and t.description for t in tests)
    for c in nb.cells:
        meta = nbgrader_meta(c)
        assert not (meta.get("points") and not meta.get("grade")), "points only on graded cells"
        assert "HIDDEN TESTS" not in c.source, "hidden checks belong in graders/, not in notebooks"
    # each task heading's points equal the points of its test cells
    tasks = solution_cells(nb)
    headings = [
        (m.group(0), int(m.group(3))) for c in nb.cells if c.cell_type == "markdown" for m in HEADING.finditer(c.source)
    ]
    assert headings, "task headings look like '## Exercise 3.1 — Flatten (1 point)'"
    assert f"({ex})" in nb.cells[0].source, f"the title cell names the exercise id ({ex})"
    points = {t: sum(g.points for g in tests if task_of_test(g.grade_id) == t) for t in tasks}
    assert sorted(p for p in points.values() if p) == sorted(p for _, p in headings), (points, headings)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("outputs", []) == [] for c in code), "outputs are cleared before commit"


def test_release_is_in_sync_and_leak_free():
    assert check_release(ROOT) == []


@pytest.mark.parametrize("ex, nb_name", CASES)
def test_release_leaks_nothing(ex, nb_name):
    assert find_leaks(read_notebook(source(nb_name)), read_notebook(release(nb_name))) == []


def run_plugin(path: Path, report: Path):
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(path), "-p", "no:cacheprovider", "-q", "--course-report", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
@pytest.mark.parametrize("ex, nb_name", CASES)
def test_solution_passes_every_visible_test(ex, nb_name, tmp_path, record_property):
    res = run_plugin(source(nb_name).parent, tmp_path / "r.json")
    rows = json.loads((tmp_path / "r.json").read_text())
    assert res.returncode == 0, res.stdout[-4000:]
    assert [r["grade_id"] for r in rows] == [g.grade_id for g in graded_cells(read_notebook(source(nb_name)))]
    assert all(r["status"] == "ok" for r in rows)
    record_property("notebook_time", (nb_name, rows[0]["notebook_seconds"], sum(r["points"] for r in rows)))


@pytest.mark.slow
@pytest.mark.parametrize("ex, nb_name", CASES)
def test_unanswered_release_fails_every_visible_test(ex, nb_name, tmp_path):
    res = run_plugin(release(nb_name).parent, tmp_path / "r.json")
    rows = json.loads((tmp_path / "r.json").read_text())
    assert res.returncode == 1, res.stdout[-4000:]  # failures, not an internal error
    assert "INTERNALERROR" not in res.stdout + res.stderr
    assert rows and all(r["status"] != "ok" and r["score"] == 0 for r in rows), [r for r in rows if r["score"]]


def test_readme_points_table_matches_the_notebooks():
    from course.grading.submission import load_submission

    readme = (ROOT / "README.md").read_text()
    for ex, nb_name in EXERCISES.items():
        sub = load_submission(source(nb_name), ROOT)
        tasks = ", ".join(f"`{t.grade_id}`: {t.points:g}" for t in sub.tasks)
        row = f"| {ex} | `{nb_name}` | {tasks} | {sum(t.points for t in sub.tasks):g} |"
        assert row in readme, f"README's points row for {ex} is out of date; expected:\n{row}"
