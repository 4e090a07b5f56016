"""Build and serve the site from Python: used by the tests and handy for scripts.

``build_site`` runs ``mkdocs build --strict`` in a subprocess (so MkDocs' logging and warnings stay
out of the caller) into ``site_dir``, with ``site_url`` passed through ``$COURSE_SITE_URL``; ``serve`` is a
static file server on 127.0.0.1 (no ``mkdocs serve``: the tests must see exactly the built files).
``build_if_stale`` builds only when an input changed: ``site_inputs`` digests each group of inputs (content,
not modification times), and the digests of the last build are kept in ``<site>/.course-build.json``
(MkDocs keeps dotfiles when it cleans the site folder), so the reason for a rebuild can be named.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ENV_SITE_URL",
    "STAMP",
    "BuildResult",
    "build_if_stale",
    "build_site",
    "repo_root",
    "serve",
    "site_inputs",
    "site_status",
]

STAMP = ".course-build.json"
#: Python distributions whose version changes the built pages
SITE_TOOLS = (
    "mkdocs",
    "mkdocs-material",
    "mkdocs-quiz",
    "mkdocs-htmlproofer-plugin",
    "mkdocs-glightbox",
    "pymdown-extensions",
)

ENV_SITE_URL = "COURSE_SITE_URL"  # read by mkdocs.yml (`site_url: !ENV [...]`): a deployment sets its real URL


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

    ``site_url`` (else ``$COURSE_SITE_URL``, else mkdocs.yml's default) is where the site will be served.
    ``env`` adds environment variables for the build (e.g. ``COURSE_SITE_CACHE``, ``COURSE_REFERENCE_DIR``).
    """
    config = Path(config or repo_root() / "mkdocs.yml")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", **(env or {})}
    if site_url:
        env[ENV_SITE_URL] = site_url
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(config),
            "--site-dir",
            str(site_dir),
        ],
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


def _digest(paths: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        name = p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)
        h.update(name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _data_identity() -> str:
    """Which MNIST and photo files the figures are drawn from (path, size, modification time)."""
    from course.data import bear_path, locate_mnist

    parts = []
    for where in (locate_mnist, bear_path):
        try:
            st = (p := Path(where())).stat()
            parts.append(f"{p} {st.st_size} {st.st_mtime_ns}")
        except Exception as exc:  # missing data is reported where it is loaded; here it only changes the digest
            parts.append(f"{where.__name__}: {type(exc).__name__}")
    return "\n".join(parts)


def site_inputs(root: str | os.PathLike | None = None) -> dict[str, str]:
    """A digest per group of what the site is built from (the group names say why a build is stale)."""
    from importlib.metadata import PackageNotFoundError, version

    from course.reference import reference_dir

    root = Path(root or repo_root()).resolve()

    def files(*patterns: str) -> list[Path]:
        found = {p for pat in patterns for p in root.glob(pat) if p.is_file() and "__pycache__" not in p.parts}
        return sorted(found)

    notebooks = "solutions" if (root / "solutions").is_dir() else "exercises"  # the pages read the sources first
    reference = reference_dir(root)
    groups = {
        "mkdocs.yml": files("mkdocs.yml"),
        "docs/": files("docs/**/*"),
        "the course package": files("course/**/*.py", "course/assets/*"),
        f"{notebooks}/": files(f"{notebooks}/*/*.ipynb"),
        "the reference artifacts": sorted(p for p in reference.rglob("*") if p.is_file()) if reference.is_dir() else [],
        "the benchmark results": files("benchmarks/results/*.json"),
        "the vendored JavaScript": files("package-lock.json", "node_modules/*/package.json"),
    }
    digests = {name: _digest(paths, root) for name, paths in groups.items()}
    tools = []
    for dist in SITE_TOOLS:
        try:
            tools.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            tools.append(f"{dist} missing")
    digests["the MkDocs packages"] = hashlib.sha256("\n".join(tools).encode()).hexdigest()
    digests[f"${ENV_SITE_URL}"] = hashlib.sha256(os.environ.get(ENV_SITE_URL, "").encode()).hexdigest()
    digests["the data"] = hashlib.sha256(_data_identity().encode()).hexdigest()
    return digests


def site_status(site_dir: str | os.PathLike, root: str | os.PathLike | None = None) -> tuple[str | None, dict]:
    """(why ``site_dir`` must be built, or None when its last build is current; the input digests)."""
    digests = site_inputs(root)
    try:
        stamp = json.loads((Path(site_dir) / STAMP).read_text())["inputs"]
    except (OSError, ValueError, KeyError, TypeError):
        stamp = None
    if not isinstance(stamp, dict) or not (Path(site_dir) / "index.html").is_file():
        return "no build yet", digests
    changed = [name for name, d in digests.items() if stamp.get(name) != d]
    if changed:
        return f"{', '.join(changed)} changed since the last build", digests
    return None, digests


def build_if_stale(
    site_dir: str | os.PathLike, root: str | os.PathLike | None = None, say: Callable[[str], None] = print
) -> BuildResult | None:
    """Build the site of ``root`` into ``site_dir`` when it is stale (see :func:`site_status`); None if not."""
    root, site_dir = Path(root or repo_root()), Path(site_dir)
    reason, digests = site_status(site_dir, root)
    if reason is None:
        say(f"{site_dir} is up to date")
        return None
    say(f"building {site_dir} ({reason}); mkdocs build --strict takes 5-30 s ...")
    (site_dir / STAMP).unlink(missing_ok=True)
    result = build_site(site_dir, config=root / "mkdocs.yml")
    stamp = {"inputs": digests, "built": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(result.seconds, 1)}
    (site_dir / STAMP).write_text(json.dumps(stamp, indent=1))
    say(f"built in {result.seconds:.1f} s")
    return result
