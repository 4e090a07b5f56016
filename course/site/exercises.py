"""Exercise pages from the notebooks themselves: task headings, points and statements.

Everything comes from :mod:`course.exercises`, which reads each exercise's source notebook (or, without
``solutions/``, its release): titles and numbers from the task headings, points from the visible test cells, and
each task's section is the notebook's own text for it (the markdown between the heading and the answer cell, with
any example code cells in between), so the notebook stays the single source.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from course.exercises import EXERCISES, ExerciseNotebook, find_notebook, read_exercise

__all__ = [
    "exercise_link",
    "page",
    "page_markdown",
    "page_title",
    "read_notebooks",
    "render_exercise",
    "render_overview",
]

ROOT = Path(__file__).resolve().parents[2]
_PAGE_TITLE = re.compile(r"^# Exercise \d+ — (.+?)(?:\s+\{#ex\d+\})?\s*$", re.MULTILINE)


def page(exercise: str) -> str:
    """The exercise's page under docs/."""
    return f"exercises/{EXERCISES[exercise]}.md"


def page_title(exercise: str, docs_dir: Path = ROOT / "docs") -> str:
    """The exercise page's own title, from its first heading (``# Exercise 3 — Our first CNN {#ex3}``)."""
    m = _PAGE_TITLE.search((Path(docs_dir) / page(exercise)).read_text(encoding="utf-8"))
    return m.group(1) if m else EXERCISES[exercise]


@functools.cache
def read_notebooks(root: Path = ROOT) -> dict[str, ExerciseNotebook]:
    """Every exercise's notebook under ``root`` (the source, else the release), read once per build."""
    out = {}
    for ex, nb in EXERCISES.items():
        path = find_notebook(ex, root)
        if path is None:
            raise FileNotFoundError(f"neither solutions/ nor exercises/ under {root} holds {nb}/{nb}.ipynb")
        out[ex] = read_exercise(ex, path=path)
    return out


def exercise_link(target: str, root: Path = ROOT) -> tuple[str, str] | None:
    """(docs-relative href, link text) for an exercise id or a task id; None when it is neither."""
    notebooks = read_notebooks(root)
    if target in notebooks:
        return page(target), f"Exercise {target[2:]} — {page_title(target, root / 'docs')}"
    for ex, nb in notebooks.items():
        for t in nb.tasks:
            if t.grade_id == target:
                return f"{page(ex)}#{target}", f"Exercise {t.number} — {t.title}"
    return None


def page_markdown(text: str, depth: int = 2) -> str:
    """Notebook markdown made fit for a task section: headings outside code fences moved ``depth`` levels down."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            line = "#" * depth + line
        out.append(line)
    return "\n".join(out)


def render_exercise(nb: ExerciseNotebook, rel_notebook: str) -> str:
    """The task table and one section per task (anchors are the task ids)."""
    rows = ["| task | title | task id | points | visible tests |", "|---|---|---|---:|---:|"]
    sections = []
    for t in nb.tasks:
        rows.append(f"| {t.number} | [{t.title}](#{t.grade_id}) | `{t.grade_id}` | {t.points:g} | {len(t.tests)} |")
        pts = f"{t.points:g} point{'s' if t.points != 1 else ''}"
        sections.append(f"### {t.number} {t.title} ({pts}) {{#{t.grade_id}}}\n\n{page_markdown(t.statement)}\n")
    rows.append(f"| | **total** | | **{nb.total:g}** | |")
    return (
        "\n".join(rows)
        + f"\n\nPoints and titles are read from `{rel_notebook}` when the site is built.\n\n## Tasks\n\n"
        + "Each task as the notebook states it; the formulas and examples it refers to stand just before it in "
        "the notebook.\n\n" + "\n".join(sections)
    )


def render_overview(notebooks: dict[str, ExerciseNotebook], docs_dir: Path = ROOT / "docs") -> str:
    """A table of all exercises (titled as their pages are) with their task counts and points."""
    rows = ["| exercise | topic | tasks | points |", "|---|---|---:|---:|"]
    for ex, nb in notebooks.items():
        slug, title = EXERCISES[ex], page_title(ex, docs_dir)
        rows.append(f"| [{ex[2:]} · `{slug}`]({slug}.md) | {title} | {len(nb.tasks)} | {nb.total:g} |")
    return "\n".join(rows) + "\n"
