"""Submissions for the grading tests, built from the source notebooks: a solution with some answer cells replaced,
written where nbgrader's ``submitted/<student>/<assignment>/`` layout puts it, and the scores its result should hold."""

from __future__ import annotations

from pathlib import Path

import nbformat

from course.grading.submission import load_submission
from course.notebooks import nbgrader_meta

ROOT = Path(__file__).resolve().parents[1]
NB2 = "02_strides_padding"


def solution_nb(nb_name: str = NB2):
    return nbformat.read(str(ROOT / "solutions" / nb_name / f"{nb_name}.ipynb"), as_version=4)


def write_submission(folder: Path, student: str, nb, name: str = NB2, flat: bool = False) -> Path:
    """``folder/student/name/name.ipynb`` (``folder/student/name.ipynb`` when ``flat``)."""
    path = folder / student / (f"{name}.ipynb" if flat else f"{name}/{name}.ipynb")
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def replace_cells(nb, sources: dict[str, str]):
    """``nb`` with the answer cells named in ``sources`` (grade_id -> text) replaced; KeyError for an unknown one."""
    for cell in nb.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if gid in sources:
            cell.source = sources[gid]
    missing = set(sources) - {nbgrader_meta(c).get("grade_id") for c in nb.cells}
    if missing:
        raise KeyError(sorted(missing))
    return nb


def points(nb_name: str) -> dict[str, float]:
    sub = load_submission(ROOT / "solutions" / nb_name / f"{nb_name}.ipynb", ROOT)
    return {t.grade_id: t.points for t in sub.tasks}


def task_scores(result) -> dict[str, float]:
    return {t["name"]: t["score"] for t in result["tests"]}


def expected(nb_name: str, zero) -> dict[str, float]:
    """Full points for every task of the notebook but those in ``zero``."""
    return {t: (0.0 if t in zero else p) for t, p in points(nb_name).items()}
