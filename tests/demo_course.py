"""A one-notebook demo course (``solutions/00_demo``) for the release and ``course up`` tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from course.release import generate_release

ROOT = Path(__file__).resolve().parents[1]


def nb_cell(kind, source, **nbgrader):
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    if nbgrader:
        cell.metadata["nbgrader"] = {"schema_version": 3, "locked": not nbgrader.get("solution"), **nbgrader}
    return cell


def demo_notebook():
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["celltoolbar"] = "Create Assignment"
    nb.cells = [
        nb_cell("markdown", "# Exercise 0 — Demo (ex0)"),
        nb_cell("code", "import math"),
        nb_cell(
            "code",
            "def hypot(a, b):\n    ### BEGIN SOLUTION\n    return math.sqrt(a * a + b * b)\n    ### END SOLUTION",
            grade=False,
            solution=True,
            grade_id="ex0_hypot",
        ),
        nb_cell(
            "code",
            "# hypot of a 3-4-5 triangle\nassert hypot(3, 4) == 5",
            grade=True,
            solution=False,
            grade_id="ex0_hypot_test",
            points=2,
        ),
        nb_cell(
            "code",
            "### BEGIN SOLUTION\nanswer_constant = 41 + 1\n### END SOLUTION",
            grade=False,
            solution=True,
            grade_id="ex0_answer",
        ),
        nb_cell(
            "code",
            "# the answer is 42\nassert answer_constant == 42",
            grade=True,
            solution=False,
            grade_id="ex0_answer_test",
            points=1,
        ),
    ]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="left over output\n")]
    nb.cells[1].execution_count = 7
    nb.cells[1].metadata["tags"] = ["imports"]
    return nb


def make_course(root: Path) -> Path:
    """``root`` with the demo's source notebook, the course's release header and a fresh release of both."""
    src = root / "solutions" / "00_demo"
    src.mkdir(parents=True)
    nbformat.write(demo_notebook(), str(src / "00_demo.ipynb"))
    shutil.copy(ROOT / "solutions" / "header.ipynb", root / "solutions")
    generate_release(root, root / "exercises")
    return root
