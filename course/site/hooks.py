"""MkDocs event handlers for the course site (loaded through ``docs/hooks/site_hooks.py``).

Pages hold markers that this module fills in at build time:

- ``<!-- figure: NAME -->`` a generated figure (or a note naming the command that makes its input);
- ``<!-- results-table -->``, ``<!-- epochs-table -->``, ``<!-- research-table -->``,
  ``<!-- run-result: RUN -->`` the book's numbers beside the reference runs';
- ``<!-- quiz-bank -->`` the 40 self-check questions from ``docs/data/quiz.yml``;
- ``<!-- exercise: exN -->``, ``<!-- exercise-overview -->`` task tables read from the notebooks;
- ``<!-- course-check: exN -->`` the ``course check`` command for the exercise's notebook;
- ``<!-- playground-data -->`` the digits and photo crop the playground page works on, as inline JSON;
- ``<!-- benchmark: NAME -->`` the last measured results of ``benchmarks/bench_NAME.py``.

It also copies MathJax and the iframe-worker shim from ``node_modules`` (``npm ci``) into the site,
wraps every table in a box that scrolls sideways on a narrow screen, and renders the 404 page with links
relative to the site root, so that it works under any sub-path and from ``file://``.
"""

from __future__ import annotations

import html
import json
import logging
import os
import posixpath
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.utils import normalize_url

from course import reference
from course.exercises import EXERCISES
from course.site import benchmarks, exercises, figures, playground, quiz, runs
from course.site.cache import ENV_SITE_CACHE, FigureCache

__all__ = [
    "MARKER",
    "RENDERERS",
    "State",
    "fill_markers",
    "on_config",
    "on_files",
    "on_page_content",
    "on_page_markdown",
    "on_post_build",
    "on_template_context",
    "wrap_tables",
]

log = logging.getLogger("mkdocs.hooks.course_site")

MARKER = re.compile(r"<!--\s*([a-z-]+)(?::\s*([\w-]+))?\s*-->")
#: (source under node_modules, destination under the site, file patterns)
VENDORED = (
    (
        "mathjax/es5",
        "assets/vendor/mathjax",
        ("tex-chtml.js", "input/tex/extensions/**/*.js", "output/chtml/fonts/woff-v2/*.woff", "ui/*.js", "a11y/*.js"),
    ),
    ("mathjax", "assets/vendor/mathjax", ("LICENSE",)),
    ("iframe-worker/shim", "assets/vendor/iframe-worker", ("index.js",)),
    ("iframe-worker", "assets/vendor/iframe-worker", ("LICENSE",)),
)
PINNED = {"mathjax": "3.2.2", "iframe-worker": "1.0.4"}


@dataclass
class State:
    """Everything one build computes once and the pages read."""

    repo_root: Path
    docs_dir: Path
    figures: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    bank: quiz.QuizBank | None = None
    notebooks: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)


_state: State | None = None


def on_config(config, **kwargs):
    global _state
    repo_root = Path(config.config_file_path).resolve().parent
    _state = State(repo_root=repo_root, docs_dir=Path(config.docs_dir))
    exercises.read_notebooks.cache_clear()  # a served site is rebuilt after a notebook changes
    try:
        _state.manifest = reference.load_manifest(reference.reference_dir(repo_root) / "manifest.json")
        _state.notebooks = exercises.read_notebooks(repo_root)
    except (reference.ArtifactError, FileNotFoundError) as exc:
        raise PluginError(str(exc)) from exc
    for nb in _state.notebooks.values():
        for problem in nb.problems:
            log.warning("exercise notebook: %s", problem)
    bank_path = _state.docs_dir / "data" / "quiz.yml"
    _state.bank = quiz.load_bank(bank_path)
    problems = quiz.validate_bank(_state.bank, _state.docs_dir)
    if problems:
        raise PluginError(f"{bank_path} breaks its rules:\n  " + "\n  ".join(problems))
    return config


def on_files(files: Files, config, **kwargs):
    state = _require_state()
    cache_root = Path(os.environ.get(ENV_SITE_CACHE) or state.repo_root / ".cache" / "site-figures")
    cache = FigureCache(cache_root, figures.code_digest())
    state.figures = figures.render_all(figures.Sources(state.repo_root), cache)
    for result in state.figures.values():
        if isinstance(result, figures.Rendered):
            files.append(File.generated(config, result.spec.src_uri, abs_src_path=str(result.path)))
    log.info(
        "figures: %d reused, %d drawn, %d waiting for inputs",
        cache.hits,
        cache.misses,
        sum(isinstance(r, figures.Missing) for r in state.figures.values()),
    )
    for f in vendored_files(state.repo_root / "node_modules"):
        files.append(File.generated(config, f[1], abs_src_path=str(f[0])))
    # what the playground must show, computed by F.conv2d (read by tests/test_browser_playground.py)
    cases = playground.cases_json(figures.Sources(state.repo_root))
    files.append(File.generated(config, playground.CASES_URI, content=cases))
    return files


on_files.mkdocs_priority = 50  # before plugins that index the files (htmlproofer, search)


def vendored_files(node_modules: Path) -> list[tuple[Path, str]]:
    """(source file, site path) for every vendored browser asset; a clear error when `npm ci` has not run."""
    for package, version in PINNED.items():
        meta = node_modules / package / "package.json"
        if not meta.is_file():
            raise PluginError(f"{package} is missing from {node_modules}: run `npm ci` in the repository root")
        got = json.loads(meta.read_text(encoding="utf-8")).get("version")
        if got != version:
            raise PluginError(f"{package} {got} is installed, the site pins {version}: run `npm ci`")
    out = []
    for src, dest, patterns in VENDORED:
        root = node_modules / src
        for pattern in patterns:
            for path in sorted(root.glob(pattern)):
                rel = path.relative_to(root).as_posix()
                if src.endswith("shim"):
                    rel = "shim.js"
                out.append((path, f"{dest}/{rel}"))
    return out


def on_page_markdown(markdown: str, page, config, files, **kwargs):
    return fill_markers(markdown, page.file.src_uri, _require_state())


on_page_markdown.mkdocs_priority = 100  # before mkdocs-quiz reads the <quiz> blocks we insert


def on_page_content(html_text: str, page, config, files, **kwargs):
    return wrap_tables(html_text)


TABLE_WRAP = '<div class="course-table-scroll" tabindex="0" role="region" aria-label="table, scrolls sideways">'


def wrap_tables(html_text: str) -> str:
    """Put every table in a box that scrolls sideways (narrow screens) instead of overflowing the page."""
    return re.sub(r"(<table\b.*?</table>)", lambda m: f"{TABLE_WRAP}{m.group(1)}</div>", html_text, flags=re.S)


def on_template_context(context, template_name, config, **kwargs):
    """Give the 404 page links relative to the site root (it lives there) instead of root-absolute ones.

    MkDocs makes an error page's links absolute from ``site_url``'s path, which breaks as soon as the
    site is served under another sub-path than the one it was built for, or opened from ``file://``.
    """
    if template_name != "404.html":
        return context
    context["base_url"] = "."
    context["extra_css"] = [normalize_url(path, None, ".") for path in config.extra_css]
    context["extra_javascript"] = [normalize_url(str(script), None, ".") for script in config.extra_javascript]
    return context


def on_post_build(config, **kwargs):
    state = _require_state()
    log.info("course site built in %.1f s", time.perf_counter() - state.started)


def _require_state() -> State:
    if _state is None:
        raise PluginError("the course site hook was not configured (on_config did not run)")
    return _state


# ---------------------------------------------------------------------------------------------- markers


def _figure_md(name: str, page_uri: str, state: State) -> str:
    result = state.figures.get(name)
    if result is None:
        raise PluginError(f"{page_uri}: no figure named {name!r} (known: {', '.join(sorted(state.figures))})")
    caption = result.spec.caption
    if isinstance(result, figures.Missing):
        reasons = " ".join(r.rstrip(".") + "." for r in result.reasons)
        return (
            f'!!! note figure-missing "Figure not drawn yet"\n\n    *It will show:* {caption}\n\n    {reasons} '
            "Then rebuild the site.\n"
        )
    src = posixpath.relpath(result.spec.src_uri, posixpath.dirname(page_uri) or ".")
    alt = html.escape(caption.split(":")[0].replace("`", ""), quote=True)
    caption_html = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(caption, quote=False))
    return (
        f'<figure class="course-figure" id="fig-{name}">\n<img src="{src}" alt="{alt}">\n'
        f"<figcaption>{caption_html}</figcaption>\n</figure>\n"
    )


def _exercise_md(exercise: str, page_uri: str, state: State) -> str:
    nb = state.notebooks[exercise]
    return exercises.render_exercise(nb, nb.path.relative_to(state.repo_root).as_posix())


def _benchmark_md(name: str, page_uri: str, state: State) -> str:
    try:
        return benchmarks.render_benchmark(state.repo_root, name)
    except (KeyError, ValueError) as exc:
        raise PluginError(f"{page_uri}: {exc}") from exc


#: marker name -> renderer(argument, page uri, build state) -> markdown
RENDERERS = {
    "figure": _figure_md,
    "results-table": lambda arg, uri, state: runs.results_table(state.manifest),
    "run-result": lambda arg, uri, state: runs.run_result(state.manifest, arg),
    "research-table": lambda arg, uri, state: runs.research_table(state.manifest),
    "epochs-table": lambda arg, uri, state: runs.epochs_table(state.manifest),
    "quiz-bank": lambda arg, uri, state: quiz.render_quiz(state.bank, uri),
    "exercise": _exercise_md,
    "exercise-overview": lambda arg, uri, state: exercises.render_overview(state.notebooks, state.docs_dir),
    "course-check": lambda arg, uri, state: (
        f"`course check {EXERCISES[arg]}` runs the same checks and prints a table of points.\n"
    ),
    "playground-data": lambda arg, uri, state: playground.marker_html(figures.Sources(state.repo_root)),
    "benchmark": _benchmark_md,
}


def fill_markers(markdown: str, page_uri: str, state: State) -> str:
    """Replace every marker in a page; an unknown marker or figure name stops the build."""

    def sub(m: re.Match) -> str:
        render = RENDERERS.get(m.group(1))
        if render is None:
            raise PluginError(f"{page_uri}: unknown marker <!-- {m.group(0)[4:-3].strip()} -->")
        return render(m.group(2), page_uri, state)

    return MARKER.sub(sub, markdown)
