"""Student answers for the six exercise notebooks, used to check that the hidden graders are fair.

One module per exercise (``ex1.py`` ... ``ex6.py``), each with two dicts from a task's grade_id to a list of
``Case``s, whose ``source`` is the whole replacement text of that task's answer cell:

* ``PEERS``: correct answers written differently from the reference solution (other tensor idioms, loops or
  vectorised code, fastai and fastcore helpers, named constants, ...). Each passes every visible test cell of its
  task and respects the rules the notebook states; a fair grader gives it full marks.
* ``WRONG``: plausible mistakes. Each breaks the task's contract: it fails one of the task's visible test cells,
  or it breaks a requirement the notebook states in words, which its ``why`` then marks with ``states:``.

``python -m tests.grading_cases.visible`` runs every case through the notebooks' visible tests (see visible.py).
"""

from typing import NamedTuple


class Case(NamedTuple):
    """One replacement answer cell: a short unique name, the cell's whole source, and why it is right or wrong."""

    name: str
    source: str
    why: str
