"""Exercise pages from the notebooks themselves: task headings, points and statements.

Titles and points come from the task headings and nbgrader metadata; each task's section on its page is
the notebook's own text for it (the markdown between the heading and the answer cell, with any example
code cells in between), so the notebook stays the single source. The task ids are the contract with the
graders. When a notebook is not in the checkout yet, its page lists the contract's tasks without points
and says so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EXERCISES",
    "TASK_TITLES",
    "Exercise",
    "NotebookInfo",
    "TaskInfo",
    "cli_commands",
    "exercise_link",
    "read_notebook_info",
    "render_exercise",
    "render_overview",
]


@dataclass(frozen=True)
class Exercise:
    id: str
    slug: str
    title: str
    tasks: tuple[tuple[str, str, str], ...]  # (task id, title, what students implement)

    @property
    def number(self) -> int:
        return int(self.id[2:])

    @property
    def page(self) -> str:
        return f"exercises/{self.slug}.md"


EXERCISES: dict[str, Exercise] = {
    e.id: e
    for e in (
        Exercise(
            "ex1",
            "01_kernels",
            "Kernels and feature maps",
            (
                (
                    "ex1_edge_kernels",
                    "Edge kernels",
                    "four 3×3 float tensors: `top_edge`, `left_edge` and two diagonal detectors",
                ),
                (
                    "ex1_apply_kernel",
                    "One kernel at one pixel",
                    "`apply_kernel(image, row, col, kernel)`: kernel times the 3×3 window centred on a pixel, summed",
                ),
                (
                    "ex1_map_kernel",
                    "Mapping a kernel over an image",
                    "`map_kernel(image, kernel)`: the whole (H−2)×(W−2) feature map, as one nested list comprehension",
                ),
                (
                    "ex1_batch_conv",
                    "A batch of images, a stack of kernels",
                    "`edge_features(images, kernels)` with `F.conv2d`, getting the rank-4 shapes right",
                ),
                (
                    "ex1_color_conv",
                    "A colour convolution",
                    "`color_conv(image, kernels, bias)`: one kernel per channel, everything summed, plus a bias",
                ),
            ),
        ),
        Exercise(
            "ex2",
            "02_strides_padding",
            "Strides, padding and the convolution as a matrix",
            (
                (
                    "ex2_output_size",
                    "Output size",
                    "`conv_output_size(n, ks, stride, padding)` with errors that name the bad value",
                ),
                ("ex2_zero_pad", "Zero padding", "`zero_pad(x, padding)` on the last two axes of any tensor"),
                (
                    "ex2_conv2d",
                    "Convolution from patches",
                    "`conv2d(x, weight, bias, stride, padding)` via `unfold` and a matrix product, equal to `F.conv2d`",
                ),
                (
                    "ex2_conv_matrix",
                    "The convolution as one matrix",
                    "`conv_matrix(kernel, h, w)`: the matrix with fixed zeros and tied weights",
                ),
                (
                    "ex2_receptive_field",
                    "Receptive fields",
                    "`receptive_field(layers)` for a stack of (kernel size, stride) layers",
                ),
            ),
        ),
        Exercise(
            "ex3",
            "03_first_cnn",
            "Our first CNN",
            (
                ("ex3_flatten", "Flatten", "a `Flatten` module that keeps the batch axis"),
                (
                    "ex3_simple_cnn",
                    "The conv block and `simple_cnn`",
                    "`conv(ni, nf, ks, act)` and the 3-vs-7 network with 6,722 parameters",
                ),
                (
                    "ex3_counts",
                    "Counting parameters and multiplications",
                    "`count_params(model)` and `conv_mults(h, w, conv)` (56,448 for layers 2 and 3)",
                ),
                (
                    "ex3_train",
                    "Training on 3s and 7s",
                    "a `Learner` trained with `fit_one_cycle(2, 0.01)`, reaching at least 98%",
                ),
            ),
        ),
        Exercise(
            "ex4",
            "04_activation_stats",
            "Activation statistics",
            (
                (
                    "ex4_layer_stats",
                    "Statistics of one activation tensor",
                    "`activation_stats(t)`: mean, std, near-zero fraction and histogram, as fastai computes them",
                ),
                (
                    "ex4_activation_stats",
                    "An `ActivationStats` callback",
                    "forward hooks that record every training batch and always remove themselves",
                ),
                (
                    "ex4_plots",
                    "`plot_layer_stats` and `color_dim`",
                    "the two diagnostic plots from recorded statistics",
                ),
            ),
        ),
        Exercise(
            "ex5",
            "05_one_cycle",
            "1cycle training",
            (
                ("ex5_sched_cos", "Cosine annealing", "`sched_cos(start, end, pos)`"),
                (
                    "ex5_combined_cos",
                    "Two cosine phases",
                    "`combined_cos(pct, start, middle, end)`, joined like fastai's `combine_scheds`",
                ),
                (
                    "ex5_one_cycle",
                    "The 1cycle schedule",
                    "`one_cycle_schedule(n_steps, lr_max, ...)`: the learning rate and momentum of every batch",
                ),
                (
                    "ex5_scheduler",
                    "A scheduler callback",
                    "`OneCycleScheduler` that sets the optimizer's hyper-parameters before each batch",
                ),
            ),
        ),
        Exercise(
            "ex6",
            "06_batchnorm",
            "Batch normalization",
            (
                (
                    "ex6_batchnorm",
                    "`BatchNorm2d` from scratch",
                    "batch statistics in training, running statistics in evaluation, γ and β",
                ),
                ("ex6_conv_bn", "The conv + BN block", "`conv_bn` and `simple_cnn_bn()` with 30,542 parameters"),
                ("ex6_final", "The final model", "train `simple_cnn_bn()` with 1cycle for 5 epochs to at least 99%"),
                (
                    "ex6_norm_variants",
                    "Other normalizations",
                    "`make_norm(kind, nf)` and `conv_norm` for the further-research experiments",
                ),
            ),
        ),
    )
}

#: task id -> (exercise id, task title)
TASK_TITLES: dict[str, tuple[str, str]] = {t[0]: (e.id, t[1]) for e in EXERCISES.values() for t in e.tasks}


def exercise_link(target: str) -> tuple[str, str]:
    """(docs-relative href, link text) for an exercise id or a task id."""
    if target in EXERCISES:
        ex = EXERCISES[target]
        return ex.page, f"Exercise {ex.number} — {ex.title}"
    ex_id, title = TASK_TITLES[target]
    ex = EXERCISES[ex_id]
    k = [t[0] for t in ex.tasks].index(target) + 1
    return f"{ex.page}#{target}", f"Exercise {ex.number}.{k} — {title}"


# ---------------------------------------------------------------------------------------------- notebooks

_HEADING = re.compile(r"^##\s+Exercise\s+(\d+)\.(\d+)\s+[—–-]\s+(.+?)\s+\((\d+)\s+points?\)\s*$", re.MULTILINE)
_TEST_SUFFIX = re.compile(r"_test\d*$")


@dataclass(frozen=True)
class TaskInfo:
    task_id: str
    number: str  # "1.3"
    title: str
    points: int  # from the heading
    test_points: int  # sum of the visible test cells' points
    n_tests: int
    statement: str = ""  # the notebook's markdown for the task, as page markdown


@dataclass(frozen=True)
class NotebookInfo:
    path: Path
    title: str
    tasks: tuple[TaskInfo, ...]
    problems: tuple[str, ...]

    @property
    def total(self) -> int:
        return sum(t.points for t in self.tasks)


def read_notebook_info(path: str | Path, exercise: Exercise) -> NotebookInfo:
    """Task headings, points and test cells of one nbgrader notebook, and any mismatch with the contract."""
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    title, headings, test_points, n_tests = "", [], {}, {}
    current: list | None = None  # [number, title, points, task id, statement parts]
    for cell in nb.get("cells", []):
        src = "".join(cell.get("source", []))
        meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
        kind = cell.get("cell_type")
        collecting = current is not None and current[3] is None
        if kind == "markdown":
            if not title and src.startswith("# "):
                title = src.splitlines()[0][2:].strip()
            matches = list(_HEADING.finditer(src))
            for m in matches:
                current = [f"{m.group(1)}.{m.group(2)}", m.group(3).strip(), int(m.group(4)), None, []]
                headings.append(current)
            if matches:
                current[4].append(src[matches[-1].end() :])
            elif collecting:
                current[4].append(src)
        elif meta.get("solution") and current is not None and current[3] is None:
            current[3] = meta.get("grade_id")
        elif kind == "code" and collecting and not meta and src.strip():
            current[4].append(f"```python\n{src.strip()}\n```")
        if meta.get("grade") and meta.get("grade_id"):
            task = _TEST_SUFFIX.sub("", meta["grade_id"])
            test_points[task] = test_points.get(task, 0) + int(meta.get("points", 0))
            n_tests[task] = n_tests.get(task, 0) + 1
    problems = []
    tasks = []
    for number, heading_title, points, task_id, parts in headings:
        if task_id is None:
            problems.append(f"{path.name}: heading 'Exercise {number}' has no solution cell after it")
            continue
        statement = page_markdown("\n\n".join(p.strip() for p in parts if p.strip()))
        tasks.append(
            TaskInfo(
                task_id,
                number,
                heading_title,
                points,
                test_points.get(task_id, 0),
                n_tests.get(task_id, 0),
                statement,
            )
        )
        if points != test_points.get(task_id, 0):
            problems.append(
                f"{path.name}: 'Exercise {number}' says {points} points, "
                f"its test cells give {test_points.get(task_id, 0)}"
            )
    expected = [t[0] for t in exercise.tasks]
    got = [t.task_id for t in tasks]
    if got != expected:
        problems.append(f"{path.name}: task ids {got} differ from the contract {expected}")
    return NotebookInfo(path, title, tuple(tasks), tuple(problems))


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


def find_notebook(repo_root: str | Path, exercise: Exercise) -> Path | None:
    """The instructor's source notebook, else the student release, else None."""
    for folder in ("solutions", "exercises"):
        p = Path(repo_root) / folder / exercise.slug / f"{exercise.slug}.ipynb"
        if p.is_file():
            return p
    return None


def cli_commands() -> set[str]:
    """The ``course`` commands this checkout provides, as 'verb' and 'verb action' strings."""
    import argparse

    from course.cli import build_parser

    def walk(parser: argparse.ArgumentParser, prefix: str) -> set[str]:
        found = set()
        for action in parser._actions:  # argparse keeps subcommands only here
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    full = f"{prefix} {name}".strip()
                    found |= {full} | walk(sub, full)
        return found

    return walk(build_parser(), "")


# ---------------------------------------------------------------------------------------------- render


def render_exercise(exercise: Exercise, info: NotebookInfo | None, rel_notebook: str) -> str:
    """The task table and one section per task (anchors are the task ids)."""
    by_id = {t.task_id: t for t in info.tasks} if info else {}
    rows = ["| task | title | task id | points | visible tests |", "|---|---|---|---:|---:|"]
    for k, (task_id, title, _) in enumerate(exercise.tasks, start=1):
        t = by_id.get(task_id)
        rows.append(
            f"| {exercise.number}.{k} | [{t.title if t else title}](#{task_id}) | `{task_id}` | "
            f"{t.points if t else '—'} | {t.n_tests if t else '—'} |"
        )
    if info:
        rows.append(f"| | **total** | | **{info.total}** | |")
        source = f"Points and titles are read from `{rel_notebook}` when the site is built."
    else:
        source = (
            f'!!! note "Notebook not in this checkout yet"\n    `{rel_notebook}` is not here yet, so points are '
            "not shown. They appear when the site is rebuilt with the notebook in place."
        )
    sections = []
    for k, (task_id, title, what) in enumerate(exercise.tasks, start=1):
        t = by_id.get(task_id)
        pts = f" ({t.points} point{'s' if t.points != 1 else ''})" if t else ""
        body = t.statement if t and t.statement else f"You implement {what}."
        sections.append(f"### {exercise.number}.{k} {t.title if t else title}{pts} {{#{task_id}}}\n\n{body}\n")
    lead = (
        "Each task as the notebook states it; the formulas and examples it refers to stand just before it in "
        "the notebook.\n\n"
        if info
        else ""
    )
    return "\n".join(rows) + "\n\n" + source + "\n\n## Tasks\n\n" + lead + "\n".join(sections)


def render_overview(infos: dict[str, NotebookInfo | None]) -> str:
    """A table of all exercises with their task counts and points."""
    rows = ["| exercise | topic | tasks | points |", "|---|---|---:|---:|"]
    for ex in EXERCISES.values():
        info = infos.get(ex.id)
        rows.append(
            f"| [{ex.number} · `{ex.slug}`]({ex.slug}.md) | {ex.title} | {len(ex.tasks)} "
            f"| {info.total if info else '—'} |"
        )
    return "\n".join(rows) + "\n"
