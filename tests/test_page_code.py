"""Every code block on the chapter pages runs, in page order, with pytest-markdown-docs.

The pages are collected by the plugin itself (``--markdown-docs``), in the superfences form that
Material renders (``{.python continuation}`` continues a page's earlier blocks); ``docs/chapter/conftest.py``
draws figures off screen and keeps torch on one thread. The training blocks run the notebooks' quick
versions (``COURSE_FULL=1`` runs the full ones). They run in a child pytest so that the pages' seeds,
warnings filters and matplotlib state never reach the other tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "docs" / "chapter"
PAGES = sorted(CHAPTER.glob("[0-9][0-9]-*.md"))
FENCE = re.compile(r"^```(\{\.python[^}]*\}|python\b[^\n]*)$", re.M)
#: what the whole run may take on a busy 2-core machine (it takes about a minute)
BUDGET_S = 240


def test_every_chapter_page_shows_code():
    assert len(PAGES) == 14
    bare = [p.name for p in PAGES if not FENCE.search(p.read_text(encoding="utf-8"))]
    assert not bare, f"pages without a Python block: {bare}"
    for page in PAGES:
        for info in FENCE.findall(page.read_text(encoding="utf-8")):
            assert "notest" not in info, f"{page.name}: every block runs ({info})"


def test_chapter_code_blocks_run_in_order():
    env = {**os.environ, "COURSE_FULL": "0", "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "--markdown-docs", "--markdown-docs-syntax=superfences"]
    cmd += ["-p", "no:cacheprovider", "-q", "--no-header", "-rfE", str(CHAPTER.relative_to(ROOT))]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-20_000:]}\n{proc.stderr[-5_000:]}"
    n_blocks = sum(len(FENCE.findall(p.read_text(encoding="utf-8"))) for p in PAGES)
    assert f"{n_blocks} passed" in summary, summary
    assert seconds < BUDGET_S, f"the chapter's code took {seconds:.0f} s"
