"""Shared fixtures: each session writes into its own cache, never the user's; one built site for browser tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """The site built for, and served at, http://127.0.0.1:<port>/ (one build for all browser tests)."""
    from course.site.build import build_site, serve

    site = tmp_path_factory.mktemp("browser-site") / "site"
    cache = tmp_path_factory.getbasetemp() / "site-figures"
    with serve(site) as origin:
        build_site(site, origin + "/", env={"COURSE_SITE_CACHE": str(cache)})
        yield origin, site


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


@pytest.fixture(scope="session")
def notebook_times():
    """Notebook name -> (seconds to execute, points); printed as a table at the end of the run."""
    return _NOTEBOOK_TIMES


def pytest_terminal_summary(terminalreporter):
    if _NOTEBOOK_TIMES:
        terminalreporter.section("solution notebook run times (this machine)")
        terminalreporter.write_line(f"{'notebook':<24}{'seconds':>9}{'points':>8}")
        for name, (seconds, points) in sorted(_NOTEBOOK_TIMES.items()):
            terminalreporter.write_line(f"{name:<24}{seconds:>9.1f}{points:>8g}")
