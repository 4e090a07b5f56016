"""Wrong-variant fixture submissions for the hidden graders, one module per exercise (``ex1.py``, ...).

Each module defines ``WRONG = {grade_id: source}``: the full replacement source of that answer cell, a
plausible mistake a student could make. A submission built from the solution notebook with exactly that
cell replaced must lose exactly that task's points and keep every other task's (``tests/test_grading.py``).
"""
