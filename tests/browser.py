"""Helpers for the tests that drive the built site in headless Chromium (fixtures are in conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["CHROMIUM", "FLAGS", "Watch", "screenshot"]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Watch:
    """Console errors, page errors, failed requests and requests to other hosts seen by one page."""

    def __init__(self, page, allowed_scheme_host: tuple[str, str | None]):
        self.problems: list[str] = []
        scheme, host = allowed_scheme_host
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))

        def on_request(request):
            u = urlparse(request.url)
            if u.scheme in ("data", "blob", "about"):
                return
            if u.scheme != scheme or u.hostname != host:
                self.problems.append(f"outside request: {request.url}")

        page.on("request", on_request)

    def assert_clean(self):
        assert not self.problems, "\n".join(self.problems)


def screenshot(page, name: str):
    """Keep a full-page screenshot in $COURSE_SCREENSHOTS, when it is set."""
    folder = os.environ.get("COURSE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name.replace('/', '_').removesuffix('.html')}.png"), full_page=True)
