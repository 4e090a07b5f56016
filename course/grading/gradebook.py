"""Write hidden-grader scores into an nbgrader gradebook, where ``nbgrader autograde`` put the visible ones.

nbgrader keeps one grade per visible test cell, and a task's points are the sum of its test cells' points
(``<task>_test...``). A task that passed all its hidden checks gets each of its test cells' full points as
the *manual* score (nbgrader's override of the autograded score, used by the formgrader and
``nbgrader export``); a task that failed gets 0 on each. The hidden feedback becomes the comment on the
task's answer cell, where the formgrader shows it. Everything is written in one transaction: a gradebook
is either fully updated or unchanged.
"""

from __future__ import annotations

from pathlib import Path

from course.exercises import task_of_test

__all__ = ["write_gradebook"]

PREFIX = "Hidden graders: "


def _sqlite_file(db_url: str) -> Path | None:
    return Path(db_url.removeprefix("sqlite:///")) if db_url.startswith("sqlite:///") else None


def write_gradebook(results: list[dict], db_url: str) -> int:
    """Store ``results`` (``course grade``'s, one per notebook) in the gradebook at ``db_url``; grades written.

    Every result is checked against the gradebook's assignments before anything is written.
    """
    from nbgrader.api import Gradebook, MissingEntry

    db_file = _sqlite_file(db_url)
    if db_file is not None and not db_file.is_file():
        raise FileNotFoundError(
            f"no nbgrader gradebook at {db_file}; run `nbgrader generate_assignment` (or `nbgrader autograde`) "
            "from the course root first, or pass --gradebook sqlite:///path/to/gradebook.db"
        )
    with Gradebook(db_url, course_id="") as gb:  # "": find existing entries, never add a course row
        plans = [_plan(gb, r, MissingEntry) for r in results]
        for result in results:  # a submission nbgrader has not seen yet: create it (nbgrader commits this)
            student, name = result["extra"]["student"], result["extra"]["notebook"]
            try:
                gb.find_submission(name, student)
            except MissingEntry:
                gb.update_or_create_student(student)
                with gb.db.no_autoflush:  # nbgrader builds the submission's rows lazily; SQLAlchemy 2 warns otherwise
                    gb.add_submission(name, student)
        written = 0
        try:
            for result, cells in zip(results, plans, strict=True):
                written += _write_scores(gb, result, cells)
            gb.db.commit()
        except BaseException:
            gb.db.rollback()
            raise
    return written


def _plan(gb, result: dict, missing) -> dict[str, list]:
    """Task -> its visible test cells in the gradebook (the assignment and notebook have the notebook's name)."""
    name = result["extra"]["notebook"]
    try:
        notebook = gb.find_notebook(name, name)
    except missing:
        raise ValueError(
            f"the gradebook has no assignment {name!r}: run `nbgrader generate_assignment {name}` first"
        ) from None
    solution = {cell.name for cell in notebook.solution_cells}
    plan = {}
    for test in result["tests"]:
        task = test["name"]
        plan[task] = [(c.name, c.max_score) for c in notebook.grade_cells if task_of_test(c.name) == task]
        if not plan[task] or task not in solution:
            raise ValueError(f"the gradebook's {name!r} has no cells for task {task!r}; regenerate the assignment")
    return plan


def _write_scores(gb, result: dict, plan: dict[str, list]) -> int:
    student, name = result["extra"]["student"], result["extra"]["notebook"]
    n = 0
    for test in result["tests"]:
        for cell, max_score in plan[test["name"]]:
            grade = gb.find_grade(cell, name, name, student)
            grade.manual_score = float(max_score) if test["status"] == "passed" else 0.0
            grade.needs_manual_grade = False
            n += 1
        comment = gb.find_comment(test["name"], name, name, student)
        comment.manual_comment = f"{PREFIX}{test['score']:g} / {test['max_score']:g}. {test['output']}"
    return n
