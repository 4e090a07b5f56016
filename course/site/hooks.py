"""MkDocs event handlers for the course site (loaded through ``docs/hooks/site_hooks.py``).

Pages hold markers that this module fills in at build time:

- ``<!-- figure: NAME -->`` a generated figure (or a note naming the command that makes its input);
- ``<!-- results-table -->``, ``<!-- epochs-table -->``, ``<!-- research-table -->``,
  ``<!-- run-result: RUN -->`` the book's numbers beside the reference runs';
- ``<!-- quiz-bank -->`` the 40 self-check questions from ``docs/data/quiz.yml``;
- ``<!-- exercise: exN -->``, ``<!-- exercise-overview -->`` task tables read from the notebooks;
- ``<!-- cli-status -->``, ``<!-- course-check: exN -->``, ``<!-- coming-soon -->`` which ``course``
  commands this checkout provides;
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

from course.site import benchmarks, exercises, figures, playground, quiz, runs
from course.site.cache import ENV_SITE_CACHE, FigureCache

__all__ = [
    "MARKER",
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
COMMANDS = (
    ("course release", "regenerate `exercises/` from `solutions/` (nbgrader `generate_assignment`)", ""),
    ("course check", "run an exercise notebook's visible tests and report points", ""),
    (
        "course reference train",
        "train the chapter's runs and write `graders/reference/`",
        "coming with the grader release",
    ),
    (
        "course reference verify",
        "check the reference artifacts against their manifest",
        "coming with the grader release",
    ),
    ("course grade", "grade submitted notebooks with the hidden graders", "coming with the grader release"),
)


@dataclass
class State:
    """Everything one build computes once and the pages read."""

    repo_root: Path
    docs_dir: Path
    figures: dict = field(default_factory=dict)
    manifest: dict | None = None
    bank: quiz.QuizBank | None = None
    notebooks: dict = field(default_factory=dict)
    commands: set = field(default_factory=set)
    started: float = field(default_factory=time.perf_counter)

    @property
    def reference_available(self) -> bool:
        return "reference train" in self.commands


_state: State | None = None


def on_config(config, **kwargs):
    global _state
    repo_root = Path(config.config_file_path).resolve().parent
    _state = State(repo_root=repo_root, docs_dir=Path(config.docs_dir))
    bank_path = _state.docs_dir / "data" / "quiz.yml"
    _state.bank = quiz.load_bank(bank_path)
    problems = quiz.validate_bank(_state.bank, _state.docs_dir)
    if problems:
        raise PluginError(f"{bank_path} breaks its rules:\n  " + "\n  ".join(problems))
    _state.commands = exercises.cli_commands()
    _state.manifest = _load_manifest(repo_root)
    _state.notebooks = _load_notebooks(repo_root)
    return config


def _load_manifest(repo_root: Path) -> dict | None:
    path = runs.reference_dir(repo_root) / "manifest.json"
    if not path.is_file():
        log.info("results tables show the book only: no %s yet; `%s` writes it", path.name, runs.REFERENCE_COMMAND)
        return None
    try:
        return runs.load_manifest(path)
    except runs.ArtifactError as exc:
        raise PluginError(str(exc)) from exc


def _load_notebooks(repo_root: Path) -> dict:
    infos = {}
    for ex in exercises.EXERCISES.values():
        path = exercises.find_notebook(repo_root, ex)
        if path is None:
            log.info("exercise page %s lists the contract's tasks: no notebook for %s yet", ex.page, ex.slug)
            infos[ex.id] = None
            continue
        info = exercises.read_notebook_info(path, ex)
        for problem in info.problems:
            log.warning("exercise notebook: %s", problem)
        infos[ex.id] = info
    return infos


def on_files(files: Files, config, **kwargs):
    state = _require_state()
    cache_root = Path(os.environ.get(ENV_SITE_CACHE) or state.repo_root / ".cache" / "site-figures")
    cache = FigureCache(cache_root, figures.code_digest())
    state.figures = figures.render_all(figures.Sources(state.repo_root, state.reference_available), cache)
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


def fill_markers(markdown: str, page_uri: str, state: State) -> str:
    """Replace every marker in a page; an unknown marker or figure name stops the build."""

    def sub(m: re.Match) -> str:
        name, arg = m.group(1), m.group(2)
        if name == "figure":
            return _figure_md(arg, page_uri, state)
        if name == "results-table":
            return runs.results_table(state.manifest, state.reference_available)
        if name == "run-result":
            return runs.run_result(state.manifest, arg, state.reference_available)
        if name == "research-table":
            return runs.research_table(state.manifest, state.reference_available)
        if name == "epochs-table":
            return runs.epochs_table(state.manifest)
        if name == "quiz-bank":
            return quiz.render_quiz(state.bank, page_uri)
        if name == "exercise":
            ex = exercises.EXERCISES[arg]
            info = state.notebooks.get(arg)
            rel = info.path.relative_to(state.repo_root).as_posix() if info else f"solutions/{ex.slug}/{ex.slug}.ipynb"
            return exercises.render_exercise(ex, info, rel)
        if name == "exercise-overview":
            return exercises.render_overview(state.notebooks)
        if name == "cli-status":
            return _cli_status(state.commands)
        if name == "coming-soon":
            return _coming_soon(state.commands)
        if name == "course-check":
            slug = exercises.EXERCISES[arg].slug
            if "check" in state.commands:
                return f"`course check {slug}` runs the same checks and prints a table of points.\n"
            return f"*A `course check {slug}` command that prints a table of points is not in this checkout yet.*\n"
        if name == "playground-data":
            return _playground_data(state)
        if name == "benchmark":
            try:
                return benchmarks.render_benchmark(state.repo_root, arg)
            except (KeyError, ValueError) as exc:
                raise PluginError(f"{page_uri}: {exc}") from exc
        raise PluginError(f"{page_uri}: unknown marker <!-- {m.group(0)[4:-3].strip()} -->")

    return MARKER.sub(sub, markdown)


def _caption_html(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


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
    return (
        f'<figure class="course-figure" id="fig-{name}">\n<img src="{src}" alt="{alt}">\n'
        f"<figcaption>{_caption_html(caption)}</figcaption>\n</figure>\n"
    )


def _cli_status(commands: set[str]) -> str:
    rows = ["| command | what it does | status |", "|---|---|---|"]
    for cmd, what, later in COMMANDS:
        verb = cmd.removeprefix("course ")
        status = "available" if verb in commands else (later or "not in this checkout yet")
        rows.append(f"| `{cmd}` | {what} | {status} |")
    return "\n".join(rows) + "\n"


def _coming_soon(commands: set[str]) -> str:
    later = [cmd for cmd, _, note in COMMANDS if note and cmd.removeprefix("course ") not in commands]
    if not later:
        return ""
    listed = " and ".join(f"`{c}`" for c in later)
    return (
        f'!!! note "Coming with the grader release"\n    {listed} {"is" if len(later) == 1 else "are"} not in this '
        "checkout yet. Until the reference runs exist, the figures that need them show a note instead, and the "
        "results tables list the book's numbers only.\n"
    )


def _playground_data(state: State) -> str:
    return playground.marker_html(figures.Sources(state.repo_root))
