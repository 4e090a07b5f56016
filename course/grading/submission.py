"""Find a submission's answers: its solution cells, by nbgrader ``grade_id``, checked against the source notebook.

The submitted file is read as plain JSON, cell by cell, without trusting its structure: a missing, duplicated,
retyped or damaged cell (no ``cell_type``, no ``source``, a source that is not text) fails only the task it
belongs to, with a message saying what was found; a file that is not a notebook at all fails every task.
Nothing here raises for anything inside the submitted file.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from course.exercises import EXERCISES, Task, exercise_of, read_exercise

__all__ = ["Submission", "load_submission", "runnable"]

MAX_BYTES = 32 << 20  # a notebook larger than this is not read at all


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

    def task(self, grade_id: str) -> Task:
        return next(t for t in self.tasks if t.grade_id == grade_id)

    def cells_before(self, grade_id: str) -> list[tuple[str, str]]:
        """The answer cells (grade_id, source) of the tasks before ``grade_id`` that run in the sandbox."""
        out = []
        for t in self.tasks:
            if t.grade_id == grade_id:
                break
            if not t.trains and t.grade_id in self.cells:
                out.append((t.grade_id, self.cells[t.grade_id]))
        return out


def strip_magics(source: str) -> str:
    """Comment out IPython line magics (``%...``) and shell escapes (``!...``) at the start of a line."""
    return "".join(
        "# " + line if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines(keepends=True)
    )


def runnable(source: str) -> str:
    """The one text a cell is both run as (in the sandbox) and read as (by the graders' rules).

    The cell itself when it is valid Python; otherwise the cell with its IPython magics and shell escapes
    commented out (which may still not be valid Python: then it runs as a syntax error and defines nothing).
    """
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return strip_magics(source)
    return source


def _grade_id(cell) -> str | None:
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
    gid = nbg.get("grade_id") if isinstance(nbg, dict) else None
    return gid if isinstance(gid, str) else None


def _source(cell) -> str | None:
    """A cell's source as text (nbformat allows a string or a list of strings), or None when it is neither."""
    src = cell.get("source")
    if isinstance(src, str):
        return src
    if isinstance(src, list) and all(isinstance(s, str) for s in src):
        return "".join(src)
    return None


def _problem(gid: str, cells: list) -> str | None:
    if not cells:
        return f"the answer cell '{gid}' is missing from the notebook"
    if len(cells) > 1:
        return f"the answer cell '{gid}' appears {len(cells)} times; keep exactly one"
    kind = cells[0].get("cell_type")
    if kind != "code":
        what = f"changed to a {kind} cell" if isinstance(kind, str) else "damaged (it has no cell_type)"
        return f"the answer cell '{gid}' was {what[:80]}"
    if _source(cells[0]) is None:
        return f"the answer cell '{gid}' is damaged: its source is not text"
    return None


def load_submission(path: str | os.PathLike, root: str | os.PathLike = ".", exercise: str | None = None) -> Submission:
    """Read a submitted notebook next to its source; never raises for anything in the submitted file."""
    path = Path(path)
    exercise = exercise or exercise_of(path)
    source = read_exercise(exercise, root)
    tasks = list(source.tasks)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise OSError(f"it is larger than {MAX_BYTES >> 20} MB ({size >> 20} MB)")
        raw = path.read_bytes()
    except OSError as e:
        raw, unreadable = b"", f"the submitted file could not be read ({e.strerror or e})"
    else:
        unreadable = ""
    sub = Submission(path, exercise, EXERCISES[exercise], hashlib.sha256(raw).hexdigest(), tasks, source.preamble)
    cells = None
    if not unreadable:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as e:
            unreadable = f"the submitted notebook is not valid JSON ({type(e).__name__})"
        else:
            cells = data.get("cells") if isinstance(data, dict) else None
            if not isinstance(cells, list):
                unreadable = "the submitted notebook could not be read (it has no list of cells)"
    if unreadable:
        sub.problems = {t.grade_id: unreadable for t in tasks}
        return sub
    found: dict[str, list] = {}
    for cell in cells:
        gid = _grade_id(cell)
        if gid is not None:
            found.setdefault(gid, []).append(cell)
    for t in tasks:
        problem = _problem(t.grade_id, found.get(t.grade_id, []))
        if problem:
            sub.problems[t.grade_id] = problem
        else:
            sub.cells[t.grade_id] = runnable(_source(found[t.grade_id][0]))
    return sub
