"""Runs the chapter pages' code blocks with pytest-markdown-docs (tests/test_page_code.py starts it).

    .venv/bin/python -m pytest --markdown-docs --markdown-docs-syntax=superfences docs/chapter

Blocks on one page share state through the plugin's ``continuation`` option (``{.python continuation}``
in the pages, the superfences form that Material renders). Figures are drawn off screen and closed
after every block; runs are the notebooks' quick ones unless ``COURSE_FULL=1``. Torch uses one thread:
the chapter's networks are tiny, one thread trains them as fast as two on an idle machine, and on a
busy one two threads that wait for each other were ten times slower. MkDocs does not publish this
file (``exclude_docs`` in mkdocs.yml).
"""

from __future__ import annotations

import pytest


def pytest_configure(config):
    # The pages use the superfences form of the fence options; with the default syntax the plugin
    # would skip every `{.python continuation}` block without a word.
    if hasattr(config.option, "markdowndocs_syntax"):
        config.option.markdowndocs_syntax = "superfences"
    # fastai's ActivationStats assigns `self.modules` in before_fit, and fastcore warns about it
    config.addinivalue_line("filterwarnings", "ignore:You are shadowing an attribute:UserWarning")
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _offscreen_figures():
    """Draw with Agg (no window) and close every figure a block opened."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    yield
    plt.close("all")
