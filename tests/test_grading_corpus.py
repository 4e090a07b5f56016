"""course grade on the corpus of answers students might write: every correct answer written differently from the
solution gets full marks, every wrong one loses exactly its own task.

The corpora live in ``tests/grading_cases`` (``exN.PEERS`` and ``exN.WRONG``). They are packed into few notebooks,
one case per task each, so that every notebook also checks that one mistake costs one task while the other tasks
hold other answers. All of them are graded in one batch.
"""

from __future__ import annotations

import importlib

import pytest
from submissions import ROOT, expected, points, replace_cells, solution_nb, task_scores, write_submission

from course.exercises import EXERCISES
from course.grading.grade import grade_all


def corpus():
    """(exercise, task, kind, Case) for every peer and wrong answer of the corpus."""
    for ex in EXERCISES:
        mod = importlib.import_module(f"grading_cases.{ex}")
        for kind, table in (("peer", mod.PEERS), ("wrong", mod.WRONG)):
            for task, cases in table.items():
                for case in cases:
                    yield ex, task, kind, case


def corpus_notebooks() -> list[tuple[str, str, dict[str, tuple[str, object]]]]:
    """(exercise, student, {task: (kind, case)}): the n-th notebook of an exercise holds every task's n-th case."""
    by_ex: dict[str, dict[str, list]] = {}
    for ex, task, kind, case in corpus():
        by_ex.setdefault(ex, {}).setdefault(task, []).append((kind, case))
    out = []
    for ex, tasks in by_ex.items():
        for n in range(max(len(v) for v in tasks.values())):
            picked = {task: cases[n] for task, cases in tasks.items() if n < len(cases)}
            out.append((ex, f"{ex}_corpus{n:02d}", picked))
    return out


@pytest.fixture(scope="module")
def corpus_graded(tmp_path_factory):
    subs = tmp_path_factory.mktemp("corpus")
    out = tmp_path_factory.mktemp("corpus-graded")
    for ex, student, picked in corpus_notebooks():
        nb = replace_cells(solution_nb(EXERCISES[ex]), {t: case.source for t, (_, case) in picked.items()})
        write_submission(subs, student, nb, EXERCISES[ex])
    for nb_name in EXERCISES.values():
        write_submission(subs, "solution", solution_nb(nb_name), nb_name)
    results = grade_all([subs], out, jobs=2, root=ROOT, progress=False)
    return {(r["extra"]["student"], r["extra"]["notebook"]): r for r in results}


@pytest.mark.parametrize("nb_name", list(EXERCISES.values()))
def test_every_solution_scores_full_marks(corpus_graded, nb_name):
    assert task_scores(corpus_graded[("solution", nb_name)]) == points(nb_name)


@pytest.mark.parametrize("ex, student, picked", corpus_notebooks(), ids=[s for _, s, _ in corpus_notebooks()])
def test_corpus_notebook_scores_exactly_its_answers(corpus_graded, ex, student, picked):
    nb_name = EXERCISES[ex]
    result = corpus_graded[(student, nb_name)]
    wrong = {t for t, (kind, _) in picked.items() if kind == "wrong"}
    got, want = task_scores(result), expected(nb_name, wrong)
    misgraded = {
        f"{picked[t][0]} {t}:{picked[t][1].name}": next(x["output"] for x in result["tests"] if x["name"] == t)[:400]
        for t in want
        if got[t] != want[t] and t in picked
    }
    assert got == want, misgraded
    assert not result["extra"]["error"]
