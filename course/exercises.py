"""The course's one registry: exercise ids, their notebooks, and the tasks each source notebook defines.

Follow one exercise id, ``ex2``, from its notebook to its graded result:

- ``EXERCISES["ex2"]`` is its notebook name, ``02_strides_padding``: the source
  ``solutions/02_strides_padding/02_strides_padding.ipynb`` (:func:`notebook_path`), the student release under
  ``exercises/``, the site page ``docs/exercises/02_strides_padding.md``, the hidden grader
  ``graders/test_02_strides_padding.py`` and the pytest marker ``ex2``;
- :func:`read_exercise` reads its tasks from the source notebook: each answer cell (nbgrader ``solution``) is a
  task named by its grade_id (``ex2_conv2d``), stated under a heading ``## Exercise 2.3 — Title (4 points)``;
- a task's visible test cells are the graded cells named ``<task>_test``, ``<task>_test2``, ...
  (:func:`task_of_test`); their points are the task's points in the self-check, in the graders'
  ``results.json`` and in the nbgrader gradebook;
- a task whose grade_id ends in ``_train`` or ``_final`` trains on the full data set (:func:`trains`): the graders
  and the reference loader read its cell but never run it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from course.notebooks import GradedCell, graded_cells, nbgrader_meta, read_notebook

__all__ = [
    "EXERCISES",
    "TRAINING_SUFFIXES",
    "ExerciseNotebook",
    "Task",
    "exercise_of",
    "find_notebook",
    "notebook_path",
    "read_exercise",
    "resolve_exercise",
    "task_of_test",
    "trains",
]

#: Exercise id -> notebook name (the folder and file name under solutions/ and exercises/, the docs page's slug).
EXERCISES = {
    "ex1": "01_kernels",
    "ex2": "02_strides_padding",
    "ex3": "03_first_cnn",
    "ex4": "04_activation_stats",
    "ex5": "05_one_cycle",
    "ex6": "06_batchnorm",
}
#: grade_id endings of the tasks whose answer cell trains a model on the full data set
TRAINING_SUFFIXES = ("_train", "_final")
_TEST = re.compile(r"^(?P<task>.+)_test\d*$")
_HEADING = re.compile(r"^##\s+Exercise\s+(\d+\.\d+)\s+[—–-]\s+(.+?)\s+\((\d+)\s+points?\)\s*$", re.MULTILINE)


def trains(grade_id: str) -> bool:
    """Whether the task's answer cell trains on the full data set (graders read it and train a short run)."""
    return grade_id.endswith(TRAINING_SUFFIXES)


def task_of_test(grade_id: str) -> str | None:
    """The task a visible test cell checks (``ex2_conv2d_test3`` -> ``ex2_conv2d``); None for other names."""
    m = _TEST.match(grade_id)
    return m.group("task") if m else None


def notebook_path(exercise: str, root: str | os.PathLike = ".", kind: str = "solutions") -> Path:
    """The notebook of an exercise id under ``root/kind`` (``solutions``: the source; ``exercises``: the release)."""
    nb = EXERCISES[exercise]
    return Path(root) / kind / nb / f"{nb}.ipynb"


def find_notebook(exercise: str, root: str | os.PathLike = ".") -> Path | None:
    """The source notebook, else the student release (same headings, tasks and tests), else None."""
    return next((p for k in ("solutions", "exercises") if (p := notebook_path(exercise, root, k)).is_file()), None)


def exercise_of(path: str | os.PathLike) -> str:
    """The exercise id of a notebook, from its file name (e.g. 03_first_cnn.ipynb -> ex3)."""
    stem = Path(path).stem
    for ex, nb in EXERCISES.items():
        if stem == nb:
            return ex
    known = ", ".join(f"{nb}.ipynb" for nb in EXERCISES.values())
    raise ValueError(f"cannot tell which exercise {Path(path).name!r} is; submissions are named {known}")


def resolve_exercise(name: str, root: str | os.PathLike = ".", kind: str = "exercises") -> Path:
    """Accept 'ex3', '03_first_cnn', '3', a folder or a notebook path; return the notebook's folder."""
    p = Path(name)
    if p.suffix == ".ipynb" and p.is_file():
        return p.parent
    if p.is_dir() and any(p.glob("*.ipynb")):
        return p
    key = name.lower().removeprefix("ex").lstrip("0")
    for ex, nb in EXERCISES.items():
        if name in (ex, nb) or key == ex[2:]:
            folder = Path(root) / kind / nb
            if folder.is_dir():
                return folder
            raise FileNotFoundError(f"{folder} does not exist; run `course release` or check the course folder")
    known = ", ".join(f"{ex} ({nb})" for ex, nb in EXERCISES.items())
    raise ValueError(f"unknown exercise {name!r}; use one of {known}, or a notebook path")


@dataclass(frozen=True)
class Task:
    """A graded task: its answer cell's grade_id, its visible test cells, and its heading in the notebook."""

    grade_id: str
    tests: tuple[GradedCell, ...] = ()
    number: str = ""  # "2.3", from the heading
    title: str = ""
    stated_points: int | None = None  # what the heading says; equals ``points`` in a sound notebook
    statement: str = ""  # the notebook's text between the heading and the answer cell (markdown, example code)

    @property
    def points(self) -> float:
        """The sum of its visible test cells' points: what the self-check, graders and gradebook award."""
        return sum(t.points for t in self.tests)

    @property
    def trains(self) -> bool:
        return trains(self.grade_id)


@dataclass(frozen=True)
class ExerciseNotebook:
    """One exercise notebook as the registry reads it; ``problems`` are breaks of the conventions above."""

    exercise: str
    path: Path
    preamble: str  # the imports cell, which every run of the notebook's answers starts with
    tasks: tuple[Task, ...]
    problems: tuple[str, ...] = ()

    @property
    def total(self) -> float:
        return sum(t.points for t in self.tasks)

    def task(self, grade_id: str) -> Task:
        return next(t for t in self.tasks if t.grade_id == grade_id)


def read_exercise(exercise: str, root: str | os.PathLike = ".", path: str | os.PathLike | None = None):
    """Read an exercise's notebook (its source under ``root``, or ``path``): its tasks, their tests and text."""
    path = Path(path) if path is not None else notebook_path(exercise, root)
    nb = read_notebook(path)
    tests: dict[str, list[GradedCell]] = {}
    for cell in graded_cells(nb):
        tests.setdefault(task_of_test(cell.grade_id) or "", []).append(cell)
    tasks, problems = [], []
    heading: list | None = None  # [number, title, points, statement parts] until its answer cell comes
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type == "markdown":
            found = list(_HEADING.finditer(cell.source))
            for m in found:
                if heading is not None:
                    problems.append(f"{path.name}: heading 'Exercise {heading[0]}' has no answer cell after it")
                heading = [m.group(1), m.group(2).strip(), int(m.group(3)), [cell.source[found[-1].end() :]]]
            if heading is not None and not found:
                heading[3].append(cell.source)
        elif cell.cell_type == "code" and meta.get("solution") and "grade_id" in meta:
            gid = str(meta["grade_id"])
            if heading is None:
                problems.append(f"{path.name}: answer cell '{gid}' has no '## Exercise N.M' heading before it")
                heading = ["", "", None, []]
            number, task_title, stated, parts = heading
            text = "\n\n".join(p.strip() for p in parts if p.strip())
            tasks.append(Task(gid, tuple(tests.pop(gid, ())), number, task_title, stated, text))
            heading = None
        elif cell.cell_type == "code" and heading is not None and not meta and cell.source.strip():
            heading[3].append(f"```python\n{cell.source.strip()}\n```")  # an example the statement refers to
    if heading is not None:
        problems.append(f"{path.name}: heading 'Exercise {heading[0]}' has no answer cell after it")
    for t in tasks:
        if t.stated_points is not None and t.stated_points != t.points:
            says = f"'Exercise {t.number}' says {t.stated_points} points"
            problems.append(f"{path.name}: {says}, its test cells give {t.points:g}")
    for task, cells in tests.items():
        problems.append(f"{path.name}: test cells {[c.grade_id for c in cells]} belong to no answer cell '{task}'")
    code = [c for c in nb.cells if c.cell_type == "code"]
    return ExerciseNotebook(exercise, path, code[0].source if code else "", tuple(tasks), tuple(problems))
