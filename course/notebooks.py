"""Reading and executing notebooks: nbgrader cells by grade_id, and per-cell outcomes.

Used by the release pipeline, the student self-check plugin, the reference loader and the graders; which
notebooks and tasks the course has is :mod:`course.exercises`' business.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

__all__ = [
    "CellOutcome",
    "ExecutedNotebook",
    "GradedCell",
    "execute_notebook",
    "graded_cells",
    "nbgrader_meta",
    "read_notebook",
    "solution_cells",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def read_notebook(path: str | os.PathLike) -> nbformat.NotebookNode:
    """Read a notebook as nbformat v4; raise ValueError naming the file when it is not valid notebook JSON."""
    try:
        with warnings.catch_warnings():  # repaired ids or an old minor version are not errors for a reader
            warnings.simplefilter("ignore")
            return nbformat.read(os.fspath(path), as_version=4)
    except Exception as exc:  # nbformat raises JSON, validation and reader errors of several types
        raise ValueError(f"{path} is not a readable Jupyter notebook ({type(exc).__name__}: {exc})") from exc


def nbgrader_meta(cell) -> dict:
    """The cell's nbgrader metadata, or {} when it has none."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


@dataclass(frozen=True)
class GradedCell:
    """A visible test cell: its grade_id, points, index in the notebook and one-line description."""

    grade_id: str
    points: float
    index: int
    description: str
    source: str


def graded_cells(nb) -> list[GradedCell]:
    """The autograded test cells (``grade: true`` code cells), in notebook order."""
    out = []
    for i, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            first = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), "")
            desc = first.lstrip("#").strip() if first.startswith("#") else ""
            out.append(
                GradedCell(str(meta.get("grade_id", f"cell-{i}")), float(meta.get("points", 0)), i, desc, cell.source)
            )
    return out


def solution_cells(nb) -> dict[str, str]:
    """grade_id -> source of every solution code cell (what a student writes)."""
    return {
        str(nbgrader_meta(c)["grade_id"]): c.source
        for c in nb.cells
        if c.cell_type == "code" and nbgrader_meta(c).get("solution") and "grade_id" in nbgrader_meta(c)
    }


@dataclass
class CellOutcome:
    """What happened when one code cell ran."""

    index: int
    status: str  # "ok", "error", "not run"
    error: str = ""  # "ExceptionName: message" (first line)
    traceback: str = ""  # plain text, ANSI codes removed
    seconds: float = 0.0


@dataclass
class ExecutedNotebook:
    """Per-cell outcomes of one top-to-bottom run; ``fatal`` is set when the run itself broke off."""

    path: Path
    outcomes: dict[int, CellOutcome] = field(default_factory=dict)
    seconds: float = 0.0
    fatal: str = ""

    def outcome(self, index: int) -> CellOutcome:
        return self.outcomes.get(index, CellOutcome(index, "not run", self.fatal or "the cell was not executed"))


def execute_notebook(
    path: str | os.PathLike, timeout: int = 600, kernel_name: str | None = None, env: dict | None = None
) -> ExecutedNotebook:
    """Run a notebook top to bottom in a fresh kernel (cwd = its folder), going on after errors.

    ``timeout`` is per cell, in seconds; ``env`` adds variables to the kernel's environment (this process's
    stays as it is). Never raises for errors inside the notebook: they are recorded per cell, and a dead
    kernel or timeout is recorded in ``fatal``.
    """
    from nbclient import NotebookClient

    path = Path(path)
    result = ExecutedNotebook(path)
    nb = read_notebook(path)
    name = kernel_name or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    client = NotebookClient(
        nb, timeout=timeout, kernel_name=name, allow_errors=True, resources={"metadata": {"path": str(path.parent)}}
    )
    t_start = time.perf_counter()
    start = {"stderr": subprocess.DEVNULL}  # kernel logs, not cell output
    if env:
        start["env"] = {**os.environ, **env}  # without it the kernel inherits this process's environment
    try:
        with client.setup_kernel(**start):
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                t0 = time.perf_counter()
                client.execute_cell(cell, i)
                result.outcomes[i] = _outcome(i, cell, time.perf_counter() - t0)
    except Exception as exc:  # kernel death, cell timeout, broken kernelspec: the run breaks off here
        result.fatal = f"{type(exc).__name__}: {_first_line(str(exc))}"
    result.seconds = time.perf_counter() - t_start
    return result


def _first_line(text: str) -> str:
    return next((ln for ln in text.strip().splitlines() if ln.strip()), "")[:500]


def _outcome(index: int, cell, seconds: float) -> CellOutcome:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            tb = _ANSI.sub("", "\n".join(out.get("traceback", [])))
            msg = _first_line(out.get("evalue", ""))
            return CellOutcome(
                index, "error", f"{out.get('ename')}: {msg}" if msg else str(out.get("ename")), tb, seconds
            )
    return CellOutcome(index, "ok", seconds=seconds)
