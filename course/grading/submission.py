"""Find a submission's answers: its solution cells, by nbgrader ``grade_id``, checked against the source notebook.

A missing, duplicated or retyped cell (or a notebook that is not valid JSON) fails only the tasks it
touches, with a message saying what was found; everything else is graded normally.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from course.notebooks import EXERCISES, graded_cells, nbgrader_meta, read_notebook

__all__ = ["Submission", "Task", "exercise_of", "load_submission", "source_notebook", "tasks_of"]


@dataclass(frozen=True)
class Task:
    """A graded task: its grade_id (the solution cell), points, and title."""

    grade_id: str
    points: float


@dataclass
class Submission:
    """What the graders need: the trusted preamble, the student's cells, and per-task problems."""

    path: Path
    exercise: str
    notebook: str
    sha256: str
    tasks: list[Task]
    preamble: str
    cells: dict[str, str] = field(default_factory=dict)  # grade_id -> student source
    problems: dict[str, str] = field(default_factory=dict)  # grade_id -> why the task cannot be graded

    def sandbox_cells(self) -> list[tuple[str, str]]:
        """The cells to execute in the worker: trusted imports first, then the student's answers in order."""
        return [("imports", self.preamble)] + [
            (t.grade_id, self.cells[t.grade_id]) for t in self.tasks if t.grade_id in self.cells
        ]


def source_notebook(exercise: str, root: str | os.PathLike = ".") -> Path:
    """The instructor's source notebook of an exercise id (ex1..ex6)."""
    nb = EXERCISES[exercise]
    return Path(root) / "solutions" / nb / f"{nb}.ipynb"


def exercise_of(path: str | os.PathLike) -> str:
    """The exercise id of a submitted notebook, from its file name (e.g. 03_first_cnn.ipynb -> ex3)."""
    stem = Path(path).stem
    for ex, nb in EXERCISES.items():
        if stem == nb:
            return ex
    known = ", ".join(f"{nb}.ipynb" for nb in EXERCISES.values())
    raise ValueError(f"cannot tell which exercise {Path(path).name!r} is; submissions are named {known}")


def tasks_of(source_nb) -> list[Task]:
    """Tasks of a source notebook, with points = the sum of their visible test cells' points."""
    tests = graded_cells(source_nb)
    tasks = []
    for cell in source_nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("solution") and "grade_id" in meta:
            gid = str(meta["grade_id"])
            tasks.append(Task(gid, sum(t.points for t in tests if t.grade_id.startswith(f"{gid}_test"))))
    return tasks


def load_submission(path: str | os.PathLike, root: str | os.PathLike = ".", exercise: str | None = None) -> Submission:
    """Read a submitted notebook next to its source; never raises for a damaged submission."""
    path = Path(path)
    exercise = exercise or exercise_of(path)
    src = read_notebook(source_notebook(exercise, root))
    tasks = tasks_of(src)
    code = [c for c in src.cells if c.cell_type == "code"]
    raw = path.read_bytes() if path.is_file() else b""
    sub = Submission(path, exercise, EXERCISES[exercise], hashlib.sha256(raw).hexdigest(), tasks, code[0].source)
    try:
        nb = read_notebook(path)
    except ValueError as exc:
        reason = f"the submitted notebook could not be read ({str(exc).split('(', 1)[-1].rstrip(')')[:200]})"
        sub.problems = {t.grade_id: reason for t in tasks}
        return sub
    found: dict[str, list] = {}
    for cell in nb.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if gid is not None:
            found.setdefault(str(gid), []).append(cell)
    for t in tasks:
        cells = found.get(t.grade_id, [])
        if not cells:
            sub.problems[t.grade_id] = f"the answer cell '{t.grade_id}' is missing from the notebook"
        elif len(cells) > 1:
            sub.problems[t.grade_id] = f"the answer cell '{t.grade_id}' appears {len(cells)} times; keep exactly one"
        elif cells[0].cell_type != "code":
            sub.problems[t.grade_id] = f"the answer cell '{t.grade_id}' was changed to a {cells[0].cell_type} cell"
        else:
            sub.cells[t.grade_id] = cells[0].source
    return sub
