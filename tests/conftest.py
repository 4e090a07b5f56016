"""Shared fixtures: each session writes into its own cache and temporary folder, never the user's; one built site.

The suite runs in parallel with pytest-xdist (``-n 2``, the README's test command): ``XDIST_GROUPS`` keeps the
tests that share an expensive module or session fixture on one worker, so nothing is computed twice.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

#: Test module -> xdist group. A module not listed is one group of its own (its module fixtures run once);
#: ``None`` spreads its tests over the workers (each test is independent and costly on its own).
XDIST_GROUPS: dict[str, str | None] = {
    "test_site_build": "site",  # the three share the one built site (``site_build``)
    "test_browser_site": "site",
    "test_browser_playground": "site",
    "test_notebooks": None,  # each test executes its own notebook
}


def pytest_configure(config):
    """On an xdist worker, the processes it starts (notebook kernels, page-code runs) share the cores with the other
    workers: give torch's OpenMP pool its share instead of every core (two pools spinning on two cores made a
    notebook run 5 to 10 times slower)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = int(os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(workers)))))
        import torch  # and this worker's own pool

        torch.set_num_threads(threads)


#: Modules that take longest on two cores, longest first: they run first (xdist hands out work in this order),
#: so that the short modules fill the gaps at the end instead of a long one starting last.
LONGEST_FIRST = (
    "test_grading_corpus",
    "test_grading",
    "test_notebooks",
    "test_hub",
    "test_up",
    "test_grading_cluster",
    "test_reference",
    "test_site_build",
    "test_browser_site",
    "test_browser_playground",
    "test_data",
    "test_page_code",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.path)).stem, len(rank)))  # stable: file order otherwise


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's load-scope scheduling with ``XDIST_GROUPS`` as the scopes (its own ``xdist_group`` marks are not
    applied under pytest 9: it renames items through an attribute pytest no longer reads)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = Path(nodeid.split("::", 1)[0]).stem
            group = XDIST_GROUPS.get(module, module)
            return nodeid if group is None else group

    config.option.loadscopereorder = False  # keep LONGEST_FIRST's order (xdist would sort by number of tests)
    return GroupScheduling(config, log)


@pytest.fixture(scope="session", autouse=True)
def session_tmpdir(tmp_path_factory):
    """$TMPDIR of this session and of every process it starts: checks for leftover sandboxes and temporary folders
    then see only this session's, also while another xdist worker grades next to it."""
    old = os.environ.get("TMPDIR")
    path = tmp_path_factory.mktemp("tmp")
    os.environ["TMPDIR"] = str(path)
    tempfile.tempdir = None  # gettempdir() caches its first answer
    yield path
    if old is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = old
    tempfile.tempdir = None


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """Point $COURSE_CACHE at a fresh folder for the whole session (layouts are written once)."""
    old = os.environ.get("COURSE_CACHE")
    path = tmp_path_factory.mktemp("course-cache")
    os.environ["COURSE_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("COURSE_CACHE", None)
    else:
        os.environ["COURSE_CACHE"] = old


@pytest.fixture
def course_root(tmp_path):
    """A demo course (one source notebook, the release header) with a fresh release in ``exercises/``."""
    from demo_course import make_course

    return make_course(tmp_path)


@pytest.fixture(scope="session")
def site_build(tmp_path_factory):
    """(origin, BuildResult): the one strict build of the site in a session, served at http://127.0.0.1:<port>/
    (its ``site_url``) while the session lasts."""
    from course.site.build import build_site, serve

    site = tmp_path_factory.mktemp("browser-site") / "site"
    cache = tmp_path_factory.getbasetemp() / "site-figures"
    with serve(site) as origin:
        yield origin, build_site(site, origin + "/", env={"COURSE_SITE_CACHE": str(cache)})


@pytest.fixture(scope="session")
def served(site_build):
    """(origin, site folder) of the built site, for browser tests."""
    origin, build = site_build
    return origin, build.site_dir


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium, headless, driven by Playwright (never `playwright install`).

    One per test module: Playwright's sync API keeps an event loop running while it is open, and later
    modules (the hub round trip) need asyncio.run."""
    from browser import CHROMIUM, FLAGS

    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh --dev does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def mnist():
    from course.data import load_mnist

    return load_mnist()


_NOTEBOOK_TIMES: dict[str, tuple[float, float]] = {}


def pytest_runtest_logreport(report):
    """Collect ``record_property("notebook_time", (name, seconds, points))`` (reports reach xdist's controller too)."""
    for key, value in report.user_properties:
        if key == "notebook_time":
            name, seconds, points = value
            _NOTEBOOK_TIMES[name] = (seconds, points)


def pytest_terminal_summary(terminalreporter):
    if _NOTEBOOK_TIMES:
        terminalreporter.section("solution notebook run times (this machine)")
        terminalreporter.write_line(f"{'notebook':<24}{'seconds':>9}{'points':>8}")
        for name, (seconds, points) in sorted(_NOTEBOOK_TIMES.items()):
            terminalreporter.write_line(f"{name:<24}{seconds:>9.1f}{points:>8g}")
