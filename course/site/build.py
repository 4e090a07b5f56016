"""Build and serve the site from Python: used by the tests and handy for scripts.

``build_site`` runs ``mkdocs build --strict`` in a subprocess (so MkDocs' logging and warnings stay
out of the caller) with ``site_url`` and ``site_dir`` overridden; ``serve`` is a static file server on
127.0.0.1 (no ``mkdocs serve``: the tests must see exactly the built files).
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BuildResult", "build_site", "repo_root", "serve"]

_BUILD = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)-7s -  %(message)s")
from mkdocs.commands.build import build
from mkdocs.config import load_config
cfg = load_config(sys.argv[1], site_dir=sys.argv[2], site_url=sys.argv[3] or None, strict=True)
build(cfg)
"""


def repo_root() -> Path:
    """The repository that holds ``mkdocs.yml`` (this package lives in ``<root>/course/site``)."""
    return Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class BuildResult:
    site_dir: Path
    seconds: float
    log: str


def build_site(
    site_dir: str | os.PathLike,
    site_url: str = "",
    config: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
) -> BuildResult:
    """Build the site strictly into ``site_dir``; raise RuntimeError with MkDocs' log when it fails.

    ``env`` adds environment variables for the build (e.g. ``COURSE_SITE_CACHE``, ``COURSE_REFERENCE_DIR``).
    """
    config = Path(config or repo_root() / "mkdocs.yml")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", **(env or {})}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _BUILD, str(config), str(site_dir), site_url],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"mkdocs build --strict failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return BuildResult(Path(site_dir), seconds, proc.stdout + proc.stderr)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class names it so
        pass


@contextmanager
def serve(directory: str | os.PathLike, port: int = 0) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 in a thread; yields the origin, e.g. ``http://127.0.0.1:41234``."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
