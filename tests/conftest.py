"""Shared fixtures: every test session writes into its own cache, never the user's."""

from __future__ import annotations

import os

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
