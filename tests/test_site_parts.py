"""The site's build-time parts without a full build: figures, artifacts, cache, markers, exercise pages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from course import reference as ref
from course.exercises import EXERCISES, notebook_path, read_exercise
from course.site import exercises, figures, hooks, runs
from course.site.cache import FigureCache

ROOT = Path(__file__).resolve().parents[1]
STATS_FIGURES = {n for n, s in figures.FIGURES.items() if any(x.startswith("ref:") for x in s.needs)}


def write_reference(root: Path, n_batches: int = 12, n_layers: int = 5, broken: bool = False) -> Path:
    """A tiny reference folder in the layout `course reference train` writes (stats/, traces.npz, manifest)."""
    rng = np.random.default_rng(0)
    (root / "stats").mkdir(parents=True)
    for run in ("r2_constant_bs64", "r3_constant_bs512", "r4_one_cycle", "r5_batchnorm"):
        layers = 2 * n_layers if run == "r5_batchnorm" else n_layers
        hist = rng.integers(0, 500, size=(layers, 40, n_batches)).astype(np.float32)
        if broken:
            hist = hist[:, :30]
        np.savez_compressed(
            root / "stats" / f"{run}.npz",
            mean=rng.normal(size=(layers, n_batches)).astype(np.float32),
            std=rng.random((layers, n_batches)).astype(np.float32),
            near_zero=rng.random((layers, n_batches)).astype(np.float32),
            hist=hist,
        )
    lrs, moms = runs.fastai_one_cycle(117, 0.06)
    np.savez_compressed(root / "traces.npz", **{"r4_one_cycle.lr": np.array(lrs), "r4_one_cycle.mom": np.array(moms)})
    write_first_layer(root / figures.FIRST_LAYER_RUN)
    table = [{"epoch": 0, "train_loss": 0.2, "valid_loss": 0.1, "accuracy": 0.9751, "seconds": 3.0}]
    manifest = {
        "schema": 1,
        "seed": 42,
        "environment": {"device": "cuda", "device_name": "Test GPU"},
        "runs": {
            "r4_one_cycle": {"title": "+ 1cycle", "epochs_table": table, "final_accuracy": 0.9751},
            "fr_groupnorm": {"title": "further research: GroupNorm", "epochs_table": table},
        },
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def write_first_layer(path: Path) -> dict:
    """The first two tensors of a trained model's state dict, as `course reference train` saves it."""
    import torch

    gen = torch.Generator().manual_seed(0)
    state = {"0.0.weight": torch.randn(8, 1, 5, 5, generator=gen), "0.0.bias": torch.randn(8, generator=gen)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


@pytest.fixture()
def reference(tmp_path, monkeypatch):
    root = write_reference(tmp_path / "reference")
    monkeypatch.setenv(ref.ENV_REFERENCE, str(root))
    return root


def test_feature_map_matches_pytorch():
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(1)
    img, k = rng.normal(size=(11, 9)), rng.normal(size=(3, 3))
    for stride, padding in ((1, 0), (1, 1), (2, 1), (2, 0), (3, 2)):
        want = F.conv2d(torch.tensor(img)[None, None], torch.tensor(k)[None, None], stride=stride, padding=padding)
        got = figures.feature_map(img, k, stride, padding)
        np.testing.assert_allclose(got, want[0, 0].numpy(), rtol=1e-12, atol=1e-12)


def test_the_three_is_the_chapters_three(mnist):
    """MNIST training image 12 gives the chapter's hand-computed responses 0, 762 and -29."""
    three = mnist.x_train[figures.DIGIT_THREE].astype(int)
    top = figures.KERNELS["top"]
    assert [int((three[r : r + 3, c : c + 3] * top).sum()) for r, c in ((0, 0), (4, 6), (7, 17))] == [0, 762, -29]


def test_one_cycle_schedule_is_fastais():
    lrs, moms = runs.fastai_one_cycle(117, 0.06)
    assert len(lrs) == len(moms) == 117 and lrs[0] == pytest.approx(0.0024) and moms[0] == pytest.approx(0.95)
    assert max(lrs) == pytest.approx(0.06, rel=1e-3) and lrs.index(max(lrs)) == 29 and min(moms) == moms[29]


def test_layer_stats_and_color_dim_draw_the_artifact(reference):
    stats = runs.load_activation_stats(reference / "stats" / "r2_constant_bs64.npz")
    fig = runs.layer_stats_figure(stats, -2, "R2")
    assert [ax.get_title() for ax in fig.axes] == ["mean", "std", "% near zero"]
    for ax, values in zip(fig.axes, (stats.mean[-2], stats.std[-2], stats.near_zero[-2]), strict=True):
        np.testing.assert_allclose(ax.lines[0].get_ydata(), values)
    fig = runs.color_dim_figure(stats, 0)
    (image,) = fig.axes[0].get_images()
    np.testing.assert_allclose(image.get_array(), np.log1p(stats.hist[0]))
    assert image.origin == "lower" and not fig.axes[0].axison


def test_malformed_artifact_names_the_file(tmp_path):
    root = write_reference(tmp_path / "bad", broken=True)
    with pytest.raises(ref.ArtifactError, match=r"r2_constant_bs64\.npz: 'hist' has shape"):
        runs.load_activation_stats(root / "stats" / "r2_constant_bs64.npz")
    (root / "manifest.json").write_text(json.dumps({"runs": {"r1_sample": {"epochs_table": [{"accuracy": 99}]}}}))
    with pytest.raises(ref.ArtifactError, match="not in"):
        ref.load_manifest(root / "manifest.json")


def test_render_all_draws_run_figures_only_when_artifacts_exist(tmp_path, monkeypatch):
    monkeypatch.setenv(ref.ENV_REFERENCE, str(tmp_path / "nothing-here"))
    specs = {n: figures.FIGURES[n] for n in ("padding_stride", *sorted(STATS_FIGURES))}
    cache = FigureCache(tmp_path / "cache", figures.code_digest())
    out = figures.render_all(figures.Sources(tmp_path), cache, specs)
    assert isinstance(out["padding_stride"], figures.Rendered)
    for name in STATS_FIGURES:
        assert isinstance(out[name], figures.Missing)
        assert "`course reference train` writes it" in out[name].reasons[0]

    write_reference(tmp_path / "nothing-here")
    out = figures.render_all(figures.Sources(tmp_path), cache, specs)
    assert all(isinstance(r, figures.Rendered) for r in out.values())
    assert out["color_dim_batchnorm"].path.read_bytes().startswith(b"<?xml")


def test_cache_reuses_figures_and_redraws_what_changed(tmp_path, reference):
    specs = {n: figures.FIGURES[n] for n in ("stats_one_cycle_penultimate", "color_dim_batchnorm", "conv_matmul")}
    first = FigureCache(tmp_path / "cache", figures.code_digest())
    figures.render_all(figures.Sources(tmp_path), first, specs)
    assert (first.hits, first.misses) == (0, 3)
    again = FigureCache(tmp_path / "cache", figures.code_digest())
    figures.render_all(figures.Sources(tmp_path), again, specs)
    assert (again.hits, again.misses) == (3, 0)
    write_reference(tmp_path / "other", n_batches=20)
    (reference / "stats" / "r4_one_cycle.npz").write_bytes((tmp_path / "other/stats/r4_one_cycle.npz").read_bytes())
    third = FigureCache(tmp_path / "cache", figures.code_digest())
    figures.render_all(figures.Sources(tmp_path), third, specs)
    assert (third.hits, third.misses) == (2, 1)
    assert len(list((tmp_path / "cache").glob("stats_one_cycle_penultimate-*"))) == 1  # the old version is pruned


def test_results_tables_show_book_and_ours(reference):
    manifest = ref.load_manifest(reference / "manifest.json")
    table = runs.results_table(manifest)
    assert "| R1 |" in table and "99.02% | not yet trained |" in table  # the book's 0.990186
    assert "| R4 |" in table and "97.43% | 97.51% |" in table
    assert "| R5 |" in table and "98.64% | not yet trained |" in table
    assert "Test GPU (cuda)" in table
    assert "| `fr_groupnorm` |" in runs.research_table(manifest)
    assert "99.12% | not yet trained |" in runs.epochs_table(manifest)
    assert "random starts" not in runs.epochs_table(manifest)
    manifest["runs"]["r6_final"] = {"epochs_table": [], "seed_spread": {"seeds": [42, 0], "mean": 0.992, "min": 0.9914,
                                                                         "max": 0.9926}}  # fmt: skip
    assert "from 2 different random starts ends between 99.14% and 99.26%, 99.20% on average" in runs.epochs_table(
        manifest
    )


def make_state(tmp_path) -> hooks.State:
    state = hooks.State(repo_root=tmp_path, docs_dir=ROOT / "docs", manifest={"runs": {}})
    specs = {n: figures.FIGURES[n] for n in ("kernel_one_location", "color_dim_one_cycle")}
    cache = FigureCache(tmp_path / "cache", figures.code_digest())
    state.figures = figures.render_all(figures.Sources(tmp_path), cache, specs)
    return state


def test_markers_become_figures_notes_and_tables(tmp_path, monkeypatch):
    monkeypatch.setenv(ref.ENV_REFERENCE, str(tmp_path / "none"))
    state = make_state(tmp_path)
    page = "<!-- figure: kernel_one_location -->\n\n<!-- figure: color_dim_one_cycle -->\n\n<!-- results-table -->\n"
    md = hooks.fill_markers(page, "chapter/01-features.md", state)
    assert '<img src="../figures/kernel_one_location.svg"' in md
    assert '!!! note figure-missing "Figure not drawn yet"' in md
    assert "stats/r4_one_cycle.npz" in md and "`course reference train` writes it" in md
    assert "| R6 |" in md and "not yet trained" in md
    assert "`course check 01_kernels` runs" in hooks.fill_markers("<!-- course-check: ex1 -->", "x.md", state)
    used = {name for md in (ROOT / "docs").rglob("*.md") for name, _ in hooks.MARKER.findall(md.read_text())}
    assert used == set(hooks.RENDERERS), "every marker the pages use has a renderer, and every renderer is used"


def test_benchmark_markers_show_the_last_measured_numbers(tmp_path):
    from mkdocs.exceptions import PluginError

    state = hooks.State(repo_root=tmp_path, docs_dir=ROOT / "docs")
    note = hooks.fill_markers("<!-- benchmark: grading -->", "instructor.md", state)
    assert "Not measured yet" in note and "benchmarks/bench_grading.py" in note
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    grading = {
        "one_submission_seconds": 31.44, "one_submission_notebooks": 6, "batch_seconds": 69.61, "batch_notebooks": 20,
        "nbgrader_autograde_seconds": 368.36, "speedup": 5.29, "jobs": 2, "all_full_marks": True,
        "isolation": ["bwrap"], "cpu_count": 2,
    }  # fmt: skip
    (results / "grading.json").write_text(json.dumps(grading))
    md = hooks.fill_markers("<!-- benchmark: grading -->", "instructor.md", state)
    assert "| `course grade`, batch of 20 notebooks (`--jobs 2`) | 69.6 |" in md
    assert "| `nbgrader autograde`, the same 20 notebooks | 368.4 |" in md and "**5.3×** faster" in md
    (results / "grading.json").write_text(json.dumps({"speedup": 5}))
    with pytest.raises(PluginError, match="grading.json is not what benchmarks/bench_grading.py writes"):
        hooks.fill_markers("<!-- benchmark: grading -->", "instructor.md", state)
    with pytest.raises(PluginError, match="no benchmark named 'nope'"):
        hooks.fill_markers("<!-- benchmark: nope -->", "instructor.md", state)
    committed = hooks.State(repo_root=ROOT, docs_dir=ROOT / "docs")
    for name in ("grading", "reference", "pipeline", "batchnorm"):  # what the committed scripts wrote renders
        assert "|---|" in hooks.fill_markers(f"<!-- benchmark: {name} -->", "x.md", committed)


def test_missing_node_modules_says_to_run_npm_ci(tmp_path):
    from mkdocs.exceptions import PluginError

    with pytest.raises(PluginError, match="mathjax is missing .* run `npm ci`"):
        hooks.vendored_files(tmp_path / "node_modules")
    files = dict((dest, src) for src, dest in hooks.vendored_files(ROOT / "node_modules"))
    assert "assets/vendor/mathjax/tex-chtml.js" in files and "assets/vendor/iframe-worker/shim.js" in files
    assert any(d.startswith("assets/vendor/mathjax/output/chtml/fonts/woff-v2/") for d in files)


def test_unknown_markers_stop_the_build(tmp_path):
    from mkdocs.exceptions import PluginError

    state = make_state(tmp_path)
    with pytest.raises(PluginError, match="unknown marker"):
        hooks.fill_markers("<!-- fgure: x -->", "a.md", state)
    with pytest.raises(PluginError, match="no figure named 'nope'"):
        hooks.fill_markers("<!-- figure: nope -->", "a.md", state)


def nb_cell(kind, source, nbgrader=None):
    cell = {"cell_type": kind, "metadata": {}, "source": source}
    if nbgrader:
        cell["metadata"]["nbgrader"] = {"schema_version": 3, **nbgrader}
    return cell


EX2_TASKS = (
    ("ex2_output_size", "Output size"),
    ("ex2_zero_pad", "Zero padding"),
    ("ex2_conv2d", "Convolution from patches"),
    ("ex2_conv_matrix", "The convolution as one matrix"),
    ("ex2_receptive_field", "Receptive fields"),
)


def write_notebook(path: Path, points=(1, 2), heading_points=(1, 3)) -> Path:
    cells = [nb_cell("markdown", "# Exercise 2 — Strides (ex2)\n"), nb_cell("code", "import torch")]
    for k, (task_id, title) in enumerate(EX2_TASKS, start=1):
        p = points[k - 1] if k <= len(points) else 1
        hp = heading_points[k - 1] if k <= len(heading_points) else 1
        cells += [
            nb_cell("markdown", f"## Exercise 2.{k} — {title} ({hp} point{'s' if hp != 1 else ''})\n\nText."),
            nb_cell("code", "def f(): ...", {"grade": False, "solution": True, "locked": False, "grade_id": task_id}),
            nb_cell(
                "code",
                "# checks",
                {"grade": True, "solution": False, "locked": True, "points": p, "grade_id": f"{task_id}_test"},
            ),
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_notebook_tasks_read_points_and_report_mismatches(tmp_path):
    nb = read_exercise("ex2", path=write_notebook(tmp_path / "nb.ipynb"))
    assert [t.grade_id for t in nb.tasks] == [t for t, _ in EX2_TASKS] and nb.preamble == "import torch"
    assert [t.stated_points for t in nb.tasks] == [1, 3, 1, 1, 1]
    assert [t.points for t in nb.tasks] == [1, 2, 1, 1, 1]
    assert nb.problems == ("nb.ipynb: 'Exercise 2.2' says 3 points, its test cells give 2",)
    md = exercises.render_exercise(nb, "solutions/02_strides_padding/02_strides_padding.ipynb")
    assert "| 2.2 | [Zero padding](#ex2_zero_pad) | `ex2_zero_pad` | 2 | 1 |" in md  # the points graders award
    assert "**total** | | **6**" in md
    assert "### 2.5 Receptive fields (1 point) {#ex2_receptive_field}" in md


def test_tests_belong_to_tasks_by_name_and_strays_are_reported(tmp_path):
    from course.exercises import task_of_test, trains

    assert task_of_test("ex2_conv2d_test3") == task_of_test("ex2_conv2d_test") == "ex2_conv2d"
    assert task_of_test("ex2_conv2d") is None and task_of_test("ex2_conv2d_tests") is None
    assert trains("ex3_train") and trains("ex6_final") and not trains("ex2_conv2d")
    path = write_notebook(tmp_path / "nb.ipynb")
    nb = json.loads(path.read_text())
    nb["cells"][3]["metadata"]["nbgrader"]["grade_id"] = "ex2_size"  # 2.1's answer: its tests now name no task
    del nb["cells"][5]  # 2.2's heading
    path.write_text(json.dumps(nb))
    problems = read_exercise("ex2", path=path).problems
    assert "nb.ipynb: answer cell 'ex2_zero_pad' has no '## Exercise N.M' heading before it" in problems
    assert "nb.ipynb: test cells ['ex2_output_size_test'] belong to no answer cell 'ex2_output_size'" in problems


def test_a_checkout_without_the_notebooks_stops_the_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither solutions/ nor exercises/"):
        exercises.read_notebooks(tmp_path)


@pytest.mark.parametrize("ex", list(EXERCISES))
def test_committed_notebooks_agree_with_their_headings(ex):
    """The points in each notebook's headings equal its test cells' points (what the exercise pages show)."""
    nb = read_exercise(ex, ROOT)
    assert nb.problems == ()
    assert nb.total > 0


# ---------------------------------------------------------------------------------------------- issue 12


def test_learned_kernels_figure_shows_the_first_layer_and_its_outputs(reference, mnist):
    import torch

    state = torch.load(reference / figures.FIRST_LAYER_RUN, weights_only=True)
    fig = figures.FIGURES["learned_kernels"].draw(figures.Sources(ROOT))
    axes = np.array(fig.axes).reshape(2, 9)
    for j in range(8):
        (kernel,) = axes[0, j + 1].get_images()
        np.testing.assert_allclose(kernel.get_array(), state["0.0.weight"][j, 0].double().numpy())
        (output,) = axes[1, j + 1].get_images()
        assert output.get_array().shape == (14, 14)  # stride 2, padding 2: the layer's real output
    train = mnist.x_train / 255
    image = (mnist.x_train[figures.DIGIT_THREE] / 255 - train.mean()) / train.std()
    want = figures.feature_map(image, state["0.0.weight"][3, 0].double().numpy(), 2, 2) + float(state["0.0.bias"][3])
    np.testing.assert_allclose(axes[1, 4].get_images()[0].get_array(), want)
    assert figures.FIGURES["learned_kernels"].needs == ("mnist", "ref:weights/r6_final.pt")


def test_colour_channels_caption_says_what_the_figure_shows():
    """A channel at full strength is drawn light, and the caption says so (it once said the opposite)."""
    from matplotlib.colors import to_rgba_array

    from course.site import diagrams

    photo = np.zeros((6, 8, 3), np.uint8)
    photo[:, :4] = 255  # left half: every channel at full strength; right half: every channel off
    fig = diagrams.bear_channels(photo)
    for ax in fig.axes[1:]:
        (image,) = ax.get_images()
        rgba = image.to_rgba(image.get_array())  # (H, W, 4)
        strong, weak = rgba[:, :4, :3].mean(), rgba[:, 4:, :3].mean()
        assert strong > 0.9 > weak, (ax.get_title(), strong, weak)
    caption = figures.FIGURES["bear_channels"].caption
    assert "light where the channel is strong" in caption and "dark" not in caption
    assert to_rgba_array("white").shape == (1, 4)


def test_tables_are_wrapped_in_a_sideways_scrolling_box():
    html = "<p>a</p><table>\n<tr><td>1</td></tr></table><p>b</p><table class='x'><tr><td>2</td></tr></table>"
    out = hooks.wrap_tables(html)
    assert out.count('<div class="course-table-scroll" tabindex="0"') == 2
    assert out.count("</table></div>") == 2 and out.startswith("<p>a</p>") and "</table></div><p>b</p>" in out
    assert hooks.wrap_tables("<p>no table</p>") == "<p>no table</p>"


def test_the_404_page_links_relative_to_the_site_root():
    from types import SimpleNamespace

    config = SimpleNamespace(extra_css=["assets/stylesheets/course.css"], extra_javascript=["assets/javascripts/x.js"])
    context = {"base_url": "/course/", "extra_css": ["/course/assets/stylesheets/course.css"]}
    out = hooks.on_template_context(dict(context), "404.html", config)
    assert out["base_url"] == "."
    assert out["extra_css"] == ["./assets/stylesheets/course.css"]
    assert out["extra_javascript"] == ["./assets/javascripts/x.js"]
    assert hooks.on_template_context(dict(context), "sitemap.xml", config) == context


def test_exercise_pages_show_the_notebooks_own_text_for_each_task(tmp_path):
    path = write_notebook(tmp_path / "nb.ipynb")
    nb = json.loads(path.read_text())
    # task 2.1: a second paragraph, an example code cell and a heading of its own before the answer cell
    nb["cells"][2]["source"] = "## Exercise 2.1 — Output size (1 point)\n\nWrite `conv_output_size`.\n\n### Hint"
    nb["cells"][3:3] = [nb_cell("code", "print(1 + 1)"), nb_cell("markdown", "More text.\n\n```text\n# kept\n```")]
    path.write_text(json.dumps(nb))
    info = read_exercise("ex2", path=path)
    first = exercises.page_markdown(info.tasks[0].statement)
    want = "Write `conv_output_size`.\n\n##### Hint\n\n```python\nprint(1 + 1)\n```\n\n"
    want += "More text.\n\n```text\n# kept\n```"
    assert first == want  # the notebook's "###" sits under the page's "###" task heading, code fences untouched
    md = exercises.render_exercise(info, "solutions/02_strides_padding/02_strides_padding.ipynb")
    assert "### 2.1 Output size (1 point) {#ex2_output_size}\n\nWrite `conv_output_size`." in md
    assert md.count("Text.") == 4  # tasks 2.2-2.5 keep their notebook text
    assert "print(1 + 1)" in md and "def f()" not in md  # examples are shown, answer cells never


@pytest.mark.parametrize("ex", list(EXERCISES))
def test_every_committed_task_has_a_statement_students_already_see(ex):
    """Each task's page text is a real paragraph, and every line of it is in the student release too."""
    from course.notebooks import read_notebook

    info = read_exercise(ex, ROOT)
    release = notebook_path(ex, ROOT, "exercises")
    released = "\n".join(c.source for c in read_notebook(release).cells)
    for task in info.tasks:
        assert len(task.statement) > 80 and "." in task.statement, (task.grade_id, task.statement)
        lines = [line.lstrip("#").strip() for line in task.statement.splitlines()]
        missing = [line for line in lines if line and not line.startswith("```") and line not in released]
        assert not missing, (task.grade_id, missing)


def test_exercise_6_page_and_notebook_agree_on_the_training_time():
    """The page's only claim about the final run's time is the notebook's own sentence."""
    import re

    final = read_exercise("ex6", ROOT).task("ex6_final")
    claim = re.search(r"[^.]*\b\d+ to \d+ s\b[^.]*\.", final.statement.replace("\n", " "))
    assert claim, "the notebook states how long the final training takes"
    page = (ROOT / "docs" / "exercises" / "06_batchnorm.md").read_text()
    assert "minute" not in page and not re.search(r"\d+ s\b", page), "time claims come from the notebook"
    assert "<!-- exercise: ex6 -->" in page


def test_the_instructor_rubric_covers_every_open_quiz_question():
    import re

    from course.site.quiz import load_bank

    bank = load_bank(ROOT / "docs" / "data" / "quiz.yml")
    guide = (ROOT / "docs" / "instructor.md").read_text()
    rubric = guide.split("### A rubric for the open quiz questions", 1)[1].split("\n## ", 1)[0]
    rows = [int(n) for n in re.findall(r"^\| Q(\d+) ", rubric, flags=re.M)]
    assert rows == [int(q.id[1:]) for q in bank.questions if q.kind == "open"]
    plan = guide.split("### A session plan", 1)[1].split("###", 1)[0]
    covered = set()
    for first, last in re.findall(r"\| Q(\d+)–Q(\d+) \|", plan):
        covered |= set(range(int(first), int(last) + 1))
    assert covered == set(range(1, 41)), "the session plan assigns every quiz question to a session"
