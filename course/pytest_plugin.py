"""Student self-check: ``pytest exercises/03_first_cnn`` runs the notebook and reports each visible test cell.

Installed with the ``course`` package (entry point ``pytest11``). Every ``.ipynb`` given to pytest that has
nbgrader test cells becomes a test file: the notebook runs once, top to bottom, in a fresh kernel, and each
graded cell is reported as its own test, named by its ``grade_id``, with its points. Options:
``--nb-timeout`` (seconds per cell) and ``--course-report PATH`` (a JSON summary of the graded cells).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from course.exercises import EXERCISES
from course.notebooks import CellOutcome, GradedCell, execute_notebook, graded_cells, nbgrader_meta, read_notebook

__all__ = ["BrokenNotebookItem", "CellFailed", "GradedCellItem", "NotebookFile"]


def pytest_addoption(parser):
    group = parser.getgroup("course", "course notebook self-check")
    group.addoption("--nb-timeout", type=int, default=600, help="seconds each notebook cell may run (default 600)")
    group.addoption("--course-report", metavar="PATH", help="write a JSON summary of graded cells and points to PATH")


def pytest_configure(config):
    for ex, nb in EXERCISES.items():
        config.addinivalue_line("markers", f"{ex}: visible tests of {nb}")
    config._course_results = []


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix != ".ipynb" or ".ipynb_checkpoints" in file_path.parts:
        return None
    try:
        if not graded_cells(read_notebook(file_path)):
            return None
    except ValueError:
        return NotebookFile.from_parent(parent, path=file_path)  # collect() reports the damage
    return NotebookFile.from_parent(parent, path=file_path)


class CellFailed(Exception):
    """A graded cell did not pass; carries what the student needs to fix it."""

    def __init__(self, cell: GradedCell, outcome: CellOutcome, hint: str):
        super().__init__(outcome.error)
        self.cell, self.outcome, self.hint = cell, outcome, hint


class NotebookFile(pytest.File):
    """One notebook: executed once, lazily, when its first graded cell runs."""

    def collect(self):
        try:
            nb = read_notebook(self.path)
        except ValueError as exc:  # damaged: one failing test that says so; other notebooks still run
            yield BrokenNotebookItem.from_parent(self, name="notebook", message=str(exc))
            return
        self._nb, self._run = nb, None
        for cell in graded_cells(nb):
            item = GradedCellItem.from_parent(self, name=cell.grade_id, cell=cell)
            ex = cell.grade_id.split("_", 1)[0]
            if ex in EXERCISES:
                item.add_marker(ex)
            item.user_properties.append(("points", cell.points))
            yield item

    def executed(self):
        if self._run is None:
            self._run = execute_notebook(self.path, timeout=self.config.getoption("nb_timeout"))
        return self._run

    def unanswered_before(self, index: int) -> list[str]:
        """grade_ids of solution cells above ``index`` that raised (e.g. NotImplementedError)."""
        run = self.executed()
        out = []
        for i, cell in enumerate(self._nb.cells[:index]):
            meta = nbgrader_meta(cell)
            if meta.get("solution") and cell.cell_type == "code" and run.outcome(i).status == "error":
                out.append(f"{meta.get('grade_id', f'cell {i}')} ({run.outcome(i).error})")
        return out


class BrokenNotebookItem(pytest.Item):
    """Stands for a notebook that cannot be read: fails with the reason."""

    def __init__(self, *, message: str, **kwargs):
        super().__init__(**kwargs)
        self.message = message

    def runtest(self):
        raise ValueError(self.message)

    def repr_failure(self, excinfo, style=None):
        return f"{self.message}\n  fix: restore the notebook from your last good copy (File > Revert) and rerun"

    def reportinfo(self):
        return self.path, None, f"{self.path.name} (unreadable)"


class GradedCellItem(pytest.Item):
    """One visible test cell of a notebook."""

    def __init__(self, *, cell: GradedCell, **kwargs):
        super().__init__(**kwargs)
        self.cell = cell

    def runtest(self):
        run = self.parent.executed()
        outcome = run.outcome(self.cell.index)
        passed = outcome.status == "ok"
        self.config._course_results.append(
            {
                "notebook": str(self.path),
                "grade_id": self.cell.grade_id,
                "points": self.cell.points,
                "score": self.cell.points if passed else 0.0,
                "status": outcome.status,
                "error": outcome.error,
                "notebook_seconds": round(run.seconds, 2),
            }
        )
        if not passed:
            blocked = self.parent.unanswered_before(self.cell.index)
            if blocked:
                hint = "earlier solution cells did not run cleanly: " + "; ".join(blocked)
            elif outcome.error.startswith("NotImplementedError"):
                hint = "this task is not answered yet: replace `raise NotImplementedError()` with your code"
            else:
                hint = ""
            raise CellFailed(self.cell, outcome, hint)

    def repr_failure(self, excinfo, style=None):
        if not isinstance(excinfo.value, CellFailed):
            return super().repr_failure(excinfo)
        err = excinfo.value
        pts = f"{err.cell.points:g} point{'s' if err.cell.points != 1 else ''}"
        lines = [
            f"{err.cell.grade_id} ({pts}): {err.cell.description or 'visible test cell'}",
            f"  {err.outcome.error or err.outcome.status}",
        ]
        if err.hint:
            lines.append(f"  hint: {err.hint}")
        if err.outcome.traceback:
            tail = err.outcome.traceback.strip().splitlines()[-12:]
            lines += ["  --- end of the cell's traceback ---"] + [f"  {ln}" for ln in tail]
        return "\n".join(lines)

    def reportinfo(self):
        return self.path, self.cell.index, f"{self.cell.grade_id} [{self.cell.points:g} pts]"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = getattr(config, "_course_results", [])
    if not results:
        return
    by_nb: dict[str, list] = {}
    for r in results:
        by_nb.setdefault(r["notebook"], []).append(r)
    terminalreporter.section("course: points from visible tests")
    for nb, rows in by_nb.items():
        got, total = sum(r["score"] for r in rows), sum(r["points"] for r in rows)
        terminalreporter.write_line(
            f"{Path(nb).name}: {got:g} / {total:g} points "
            f"({sum(r['status'] == 'ok' for r in rows)}/{len(rows)} cells, "
            f"notebook ran {rows[0]['notebook_seconds']:.1f} s)"
        )
    path = config.getoption("course_report")
    if path:
        Path(path).write_text(json.dumps(results, indent=1) + "\n")
