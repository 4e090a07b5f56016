"""`mkdocs build --strict` of the course site, and what the built files may and may not contain."""

from __future__ import annotations

import itertools
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from course.exercises import EXERCISES, read_exercise
from course.reference import reference_dir
from course.site import figures
from course.site.quiz import load_bank

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
#: URLs inside third-party scripts that never turn into requests on this site, and why.
INERT_IN_THIRD_PARTY_JS = {
    "hub.jupyter.org": "search index text: the Helm chart repository in the Kubernetes page's shell example",
    "api.github.com": "Material's repository facts, fetched only when mkdocs.yml sets repo_url (asserted unset)",
    "unpkg.com": "Material's fallbacks: a ResizeObserver polyfill for old browsers, mermaid for diagram pages "
    "(asserted: no page has a mermaid diagram)",
    "cdn.jsdelivr.net": "MathJax's speech-rule-engine maps, loaded only by the accessibility explorer (off by default)",
    "www.mathjax.org": "a link in MathJax's About dialog",
    "www.w3.org": "XML namespace names",
    "clipboardjs.com": "licence comment",
    "www.apache.org": "licence comment",
    "github.com": "licence and source comments",
    "code.google.com": "lunr language packs: source comments",
    "snowball.tartarus.org": "lunr stemmers: source comments",
    "tartarus.org": "lunr stemmer: source comment",
    "www.mozilla.org": "lunr language packs: licence comments",
    "lunrjs.com": "lunr: source comment",
    "bit.ly": "Material search worker: source comment",
    "cdn.plyr.io": "glightbox's video player, loaded only for a video slide (every slide on this site is an image)",
    "chasen.org": "lunr Japanese segmenter: licence comment",
    "developer.mozilla.org": "lunr word-cut: source comment",
    "docs.python.org": "lunr word-cut: source comment",
    "en.wikipedia.org": "lunr word-cut: source comment",
    "msdn.microsoft.com": "lunr word-cut: source comment",
    "narwhaljs.org": "lunr word-cut: source comment",
    "people.mozilla.org": "lunr word-cut: source comment",
    "underscorejs.org": "lunr word-cut: source comment",
    "wiki.commonjs.org": "lunr word-cut: source comment",
    "wiki.ecmascript.org": "lunr word-cut: source comment",
}
OUR_JS = {p.name for p in (ROOT / "docs" / "assets" / "javascripts").glob("*.js")}
#: An absolute or protocol-relative URL in script text (a protocol-relative one must start a string).
URL = re.compile(r"""(?:https?:|["'`(])//([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)""")


@pytest.fixture(scope="session")
def built(site_build):
    """The session's one strict build of the site (the browser tests use the same one)."""
    return site_build[1]


def nav_pages() -> list[str]:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    pages = []

    def walk(items):
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            if isinstance(value, list):
                walk(value)
            else:
                pages.append(value)

    walk(config["nav"])
    return pages


class _Refs(HTMLParser):
    """Every URL an HTML page would load or link to, with the tag it came from."""

    ATTRS = {"src", "href", "srcset", "action", "poster", "data", "formaction"}

    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self._in_style = tag == "style"
        for name, value in attrs:
            if value is None:
                continue
            if name in self.ATTRS:
                for part in value.split(",") if name == "srcset" else [value]:
                    self.refs.append((tag, part.strip().split(" ")[0]))
            elif name == "style":
                self.refs += [(tag, u) for u in re.findall(r"url\(([^)]*)\)", value)]
            elif name == "content" and ("url=" in value.lower()):
                self.refs.append((tag, value.lower().split("url=", 1)[1]))

    def handle_data(self, data):
        if self._in_style:
            self.refs += [("style", u) for u in re.findall(r"url\(([^)]*)\)|@import\s+['\"]([^'\"]+)", data)]

    def handle_endtag(self, tag):
        self._in_style = False


def outside(url) -> bool:
    url = url if isinstance(url, str) else next(u for u in url if u)
    url = url.strip("'\" ")
    if url.startswith(("data:", "#", "mailto:", "javascript:")) or not url:
        return False
    host = urlparse(url).hostname
    return host is not None and host not in LOCAL_HOSTS


def test_build_is_strict(built):  # how long it takes is for a benchmark to measure, not for a test to assert
    assert "WARNING" not in built.log
    assert "figures:" in built.log and "course site built" in built.log


def test_every_nav_page_is_built(built):
    pages = nav_pages()
    assert len(pages) == 27
    for page in pages:
        html = built.site_dir / page.replace(".md", ".html")
        assert html.is_file(), page
        assert "<h1" in html.read_text(), page


def test_markers_are_all_replaced(built):
    marker = re.compile(r"<!--\s*(figure|results-table|epochs-table|research-table|quiz-bank|exercise)")
    for html in built.site_dir.rglob("*.html"):
        assert not marker.search(html.read_text()), html


def test_html_and_css_reference_no_outside_host(built):
    for html in built.site_dir.rglob("*.html"):
        parser = _Refs()
        parser.feed(html.read_text())
        bad = [(tag, url) for tag, url in parser.refs if outside(url)]
        assert not bad, f"{html.relative_to(built.site_dir)}: {bad}"
        assert "fonts.googleapis" not in html.read_text()
    for css in built.site_dir.rglob("*.css"):
        text = css.read_text()
        refs = re.findall(r"url\(([^)]*)\)", text) + re.findall(r"@import\s+(?:url\()?['\"]?([^'\")\s;]+)", text)
        assert not [u for u in refs if outside(u)], css


def test_scripts_reference_no_outside_host(built):
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    assert "repo_url" not in config  # keeps Material's GitHub API calls dead
    for html in built.site_dir.rglob("*.html"):
        assert "mermaid" not in html.read_text()  # keeps Material's mermaid loader dead
    for js in built.site_dir.rglob("*.js"):
        hosts = set(URL.findall(js.read_text(errors="replace"))) - LOCAL_HOSTS
        if js.name in OUR_JS:
            assert not hosts, f"{js.name} names {hosts}"
        else:
            unexplained = hosts - set(INERT_IN_THIRD_PARTY_JS)
            assert not unexplained, f"{js.relative_to(built.site_dir)} names {unexplained}"


def test_mathjax_and_the_file_shim_are_vendored(built):
    site = built.site_dir
    assert (site / "assets/vendor/mathjax/tex-chtml.js").stat().st_size > 500_000
    assert list((site / "assets/vendor/mathjax/output/chtml/fonts/woff-v2").glob("*.woff"))
    assert (site / "assets/vendor/iframe-worker/shim.js").is_file()
    index = (site / "index.html").read_text()
    assert 'src="assets/vendor/iframe-worker/shim.js"' in index
    assert 'src="assets/vendor/mathjax/tex-chtml.js"' in index
    assert 'href="chapter/index.html"' in index  # file:// needs .html links, not directory URLs


def test_figures_are_built_and_used(built):
    site = built.site_dir
    used = set()
    for html in site.rglob("*.html"):
        used |= set(re.findall(r'src="(?:\.\./)*figures/([\w-]+)\.(?:svg|png)"', html.read_text()))
    drawable = {n for n, s in figures.FIGURES.items() if not any(x.startswith("ref:") for x in s.needs)}
    assert drawable <= used, drawable - used
    for name in used:
        spec = figures.FIGURES[name]
        assert (site / spec.src_uri).stat().st_size > 5_000
    every = set()
    for md in (ROOT / "docs").rglob("*.md"):
        every |= set(re.findall(r"<!-- figure: ([\w-]+) -->", md.read_text()))
    assert every == set(figures.FIGURES)


def test_run_figures_are_drawn_from_the_committed_reference(built):
    assert (reference_dir(ROOT) / "stats" / "r2_constant_bs64.npz").is_file()
    page = (built.site_dir / "chapter" / "09-baseline.html").read_text()
    assert 'src="../figures/stats_baseline_first.svg"' in page and "figure-missing" not in page
    assert "not yet trained" not in (built.site_dir / "chapter" / "index.html").read_text()


def test_quiz_page_holds_all_forty_questions(built):
    bank = load_bank(ROOT / "docs" / "data" / "quiz.yml")
    page = (built.site_dir / "quiz.html").read_text()
    closed = [q for q in bank.questions if q.checkable]
    assert len(re.findall(r'<div class="quiz[" ]', page)) == len(closed)
    assert page.count('class="admonition question open-question"') == 40 - len(closed)
    numbers = [int(n) for n in re.findall(r"<strong>Q(\d+)\.</strong>|Q(\d+) · open question", page) for n in n if n]
    assert numbers == list(range(1, 41))
    assert len(re.findall(r'<input[^>]*data-correct="true"', page)) == sum(q.kind == "choice" for q in bank.questions)


def test_exercise_pages_have_every_task_anchor(built):
    for ex, nb in EXERCISES.items():
        page = (built.site_dir / "exercises" / f"{nb}.html").read_text()
        for task in read_exercise(ex, ROOT).tasks:
            assert f'id="{task.grade_id}"' in page, (nb, task.grade_id)


def _text(html: str) -> str:
    """The visible text of an HTML fragment, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_figures_open_in_the_lightbox(built):
    site = built.site_dir
    assert (site / "assets/javascripts/glightbox.min.js").is_file()
    assert (site / "assets/stylesheets/glightbox.min.css").is_file()
    n_figures = 0
    for html in site.rglob("*.html"):
        text = html.read_text()
        for figure in re.findall(r'<figure class="course-figure".*?</figure>', text, flags=re.S):
            link = re.search(r'<a class="glightbox"[^>]*href="([^"]+)"[^>]*><img src="([^"]+)"', figure)
            assert link and link.group(1) == link.group(2), (html.name, figure[:200])
            n_figures += 1
        if "course-figure" in text:
            assert "GLightbox(" in text and "glightbox.min.js" in text, html.name
    assert n_figures >= len(figures.FIGURES) - 1


def test_every_table_scrolls_sideways_in_its_own_box(built):
    for html in built.site_dir.rglob("*.html"):
        text = html.read_text()
        tables = text.count("<table")
        assert text.count('<div class="course-table-scroll" tabindex="0"') == tables, html.name
    css = (built.site_dir / "assets/stylesheets/course.css").read_text()
    assert re.search(r"\.course-table-scroll \{[^}]*overflow-x: auto", css)


def test_the_404_page_works_under_any_sub_path(built):
    page = (built.site_dir / "404.html").read_text()
    refs = re.findall(r'(?:href|src)="([^"]+)"', page)
    assert refs and not [r for r in refs if r.startswith("/")], "root-absolute links break under a sub-path"
    assert '"base": "."' in page
    for ref in refs:
        if not ref.startswith(("#", "data:", "http")):
            assert (built.site_dir / ref.split("#")[0]).exists(), ref


def test_chapter_pages_show_their_code(built):
    for md in sorted((ROOT / "docs" / "chapter").glob("[0-9][0-9]-*.md")):
        page = (built.site_dir / "chapter" / md.name.replace(".md", ".html")).read_text()
        fences = re.findall(r"^```(?:python|\{\.python[^}]*\})$", md.read_text(), flags=re.M)
        assert fences, md.name
        assert page.count('<div class="highlight"><pre>') >= len(fences), md.name
        assert "continuation" not in _text(page), f"{md.name}: a fence option leaked into the page"


def test_exercise_pages_carry_the_notebooks_paragraphs(built):
    for ex, nb in EXERCISES.items():
        page = (built.site_dir / "exercises" / f"{nb}.html").read_text()
        for task in read_exercise(ex, ROOT).tasks:
            section = page.split(f'id="{task.grade_id}"', 1)[1]
            words = re.sub(r"[`*]", "", task.statement.split("\n\n")[0]).split()[:6]
            words = list(itertools.takewhile(lambda w: "$" not in w and "\\" not in w, words))  # text before math
            assert "".join(words) in "".join(_text(section).split())[:2000], (task.grade_id, words)
    ex6 = _text((built.site_dir / "exercises" / "06_batchnorm.html").read_text())
    assert "It takes about 15 to 30 s on a laptop CPU." in ex6 and "few minutes" not in ex6
    index = (built.site_dir / "exercises" / "index.html").read_text()
    assert 'id="how-to-submit"' in index and "Assignment List" in index
