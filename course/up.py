"""``course up``: one learner, one command. Release check, data, site and JupyterLab, all on 127.0.0.1.

In order, one line each:

1. take the lock ``<cache>/up/lock`` (``fcntl.flock``: a crashed run leaves no stale lock); a second
   ``course up`` prints the pid and URLs of the running one and exits with ``ALREADY_RUNNING`` (3);
2. check ``exercises/`` against ``solutions/`` with :func:`course.release.check_working_copy`, first because
   it fails fast, and refuse to start on a real problem (a missing or stale notebook, changed graded
   cells), naming the command that fixes it. A learner's answers, outputs and added cells are their work,
   not drift: refusing to start because somebody did the exercises, or sending them to ``course release``
   (which would replace their answers), would be wrong. ``--no-release-check`` starts anyway;
3. prepare the data like ``course start`` (the PNG layouts are written once, with a progress bar), verify it;
4. build the site into ``site/`` only when an input changed (:func:`course.site.build.build_if_stale`
   names the reason), then serve it from this process;
5. start JupyterLab (:class:`course.lab.LocalLab`), wait until both servers answer, print both URLs;
6. wait. Ctrl-C, SIGTERM or SIGHUP stop JupyterLab and everything it started; a second Ctrl-C kills at once.
   If JupyterLab dies by itself, say so with the end of its log and exit 1.

Ports: the site is built with the ``site_url`` of ``mkdocs.yml`` (port 8000) and served on 8000 when that is
free, so Material's instant navigation works; on another port the pages load one by one. JupyterLab takes
8888 or, like ``jupyter lab``, the next free port. ``--lab-port``/``--site-port`` pin a port; 0 picks any.
POSIX only (process groups, ``flock``).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from course.files import atomic_write

__all__ = ["ALREADY_RUNNING", "AlreadyRunning", "UpOptions", "UpPaths", "single_instance", "up"]

ALREADY_RUNNING = 3
SITE_PORT = 8000


class AlreadyRunning(RuntimeError):
    """Another ``course up`` holds the lock; ``info`` has its pid and, once it is ready, its URLs."""

    def __init__(self, info: dict) -> None:
        self.info = info
        urls = " ".join(info[k] for k in ("lab", "site") if info.get(k))
        where = f": {urls}" if urls else ", still starting (its terminal shows the URLs when ready)"
        super().__init__(f"course up is already running (pid {info.get('pid', '?')}){where}")


class StartError(RuntimeError):
    """Something stops the start; the message says what and what to do."""


@dataclass(frozen=True)
class UpPaths:
    """Where ``course up`` keeps its lock, what it serves (``up.json``) and JupyterLab's state."""

    root: Path

    @classmethod
    def default(cls) -> UpPaths:
        from course.data import cache_dir

        return cls(cache_dir() / "up")

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def info(self) -> Path:
        return self.root / "up.json"


@dataclass
class UpOptions:
    """What ``course up`` starts and where (the command-line options)."""

    root: Path = Path(".")
    notebooks: Path | None = None  # default: root/exercises
    site_dir: Path | None = None  # default: root/site
    lab: bool = True
    site: bool = True
    lab_port: int | None = None  # None: 8888 or the next free one; 0: any free port
    site_port: int | None = None  # None: 8000 when free, else any; 0: any free port
    release_check: bool = True
    progress: bool = True
    timeout: float = 180.0
    open_browser: bool = False


@contextmanager
def single_instance(paths: UpPaths):
    """Hold ``paths.lock`` while the block runs; raise AlreadyRunning when another process holds it."""
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.root.chmod(0o700)  # JupyterLab's state, log and token live below
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(_running_info(paths)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        paths.info.unlink(missing_ok=True)  # a killed run's URLs
        try:
            yield
        finally:
            paths.info.unlink(missing_ok=True)
    finally:
        os.close(fd)  # releases the lock


def _running_info(paths: UpPaths) -> dict:
    try:
        pid = int(paths.lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pid = None
    try:
        info = json.loads(paths.info.read_text())
    except (OSError, ValueError):
        info = {}
    return {**(info if isinstance(info, dict) and info.get("pid") == pid else {}), "pid": pid}


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server does
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def _signals(handler, sigs=(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)):
    """Route ``sigs`` to ``handler`` inside the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in sigs}
    for sig in sigs:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def up(opts: UpOptions, paths: UpPaths | None = None) -> int:
    """Run ``course up`` (see the module docstring) until Ctrl-C; return the exit status."""
    out = functools.partial(print, flush=True)
    opts.root = Path(opts.root).resolve()
    opts.notebooks = Path(opts.notebooks).resolve() if opts.notebooks else opts.root / "exercises"
    opts.site_dir = Path(opts.site_dir).resolve() if opts.site_dir else opts.root / "site"
    if not (opts.lab or opts.site):
        raise ValueError("--no-lab and --no-site together leave nothing to start")
    if not opts.notebooks.is_dir():
        raise FileNotFoundError(
            f"{opts.notebooks} is not a folder: run `course up` in the course folder or pass --root"
        )
    paths = paths or UpPaths.default()
    # Ctrl-C, SIGTERM and SIGHUP (terminal closed) all stop, even where SIGINT came in ignored (`cmd &`)
    with _signals(signal.default_int_handler):
        try:
            with single_instance(paths):
                t0 = time.perf_counter()
                _prepare(opts, out)
                return _serve(opts, paths, out, t0)
        except AlreadyRunning as exc:
            out(str(exc))
            return ALREADY_RUNNING
        except StartError as exc:
            out(f"course up: {exc}")
            return 1
        except KeyboardInterrupt:
            out("\ncourse up: interrupted before the servers started")
            return 130


def _prepare(opts: UpOptions, out: Callable[[str], None]) -> None:
    """Release check, data, site build; StartError when one of them stops the start."""
    from course.data import cache_dir
    from course.layouts import LAYOUTS, data_summary, layout_path
    from course.release import check_working_copy
    from course.site.build import build_if_stale

    out(f"course up: {opts.root}")
    if opts.release_check:
        problems, notes = check_working_copy(opts.root)
        if problems:
            listed = "".join(f"\n    {p}" for p in problems)
            raise StartError(
                f"not started: exercises/ is out of sync with solutions/:{listed}\n"
                "Fix the above, or start anyway with `course up --no-release-check`."
            )
        out("  release   exercises/ is in sync with solutions/" + "".join(f"\n            {n}" for n in notes))
    if not all((cache_dir() / name / ".complete.json").is_file() for name in LAYOUTS):
        out("  data      writing the PNG layouts into the cache, once (about 20 s) ...")
    for name in LAYOUTS:
        layout_path(name, progress=opts.progress)
    s = data_summary()
    out(f"  data      MNIST {s['MNIST']}; MNIST_SAMPLE {s['MNIST_SAMPLE']}; layouts in {s['cache']}")
    if opts.site:
        try:
            build_if_stale(opts.site_dir, opts.root, say=lambda msg: out(f"  site      {msg}"))
        except RuntimeError as exc:
            tail = "\n".join(f"    {line}" for line in str(exc).strip().splitlines()[-15:])
            raise StartError(
                f"the site did not build:\n{tail}\nFix it, or start without the site: `course up --no-site`"
            ) from None


class _Stopper:
    """Signal handler: the first Ctrl-C (SIGTERM, SIGHUP) asks to stop, a second one to kill at once.

    While the servers start, the first signal also raises KeyboardInterrupt to cut a wait short; once they
    serve, signals only set flags, so that stopping is never cut short by an exception.
    """

    def __init__(self) -> None:
        self.stop, self.force, self.serving = threading.Event(), threading.Event(), False

    def __call__(self, signum, frame) -> None:
        if self.stop.is_set():
            self.force.set()
            return
        self.stop.set()
        if not self.serving:
            raise KeyboardInterrupt


def _serve(opts: UpOptions, paths: UpPaths, out: Callable[[str], None], t0: float) -> int:
    """Start the servers, print the URLs, wait for Ctrl-C or a dead JupyterLab, stop everything."""
    from course.lab import LabError, LocalLab, answers
    from course.site.build import serve

    lab = LocalLab(paths.root, opts.notebooks, opts.root, opts.lab_port) if opts.lab else None
    urls, signals = {}, _Stopper()
    with _signals(signals):
        try:
            with ExitStack() as stack:
                if lab:
                    out(f"  lab       starting JupyterLab on {opts.notebooks} (log: {lab.log}) ...")
                    if note := lab.kernel_note():
                        out(f"  kernel    {note}")
                    lab.start()
                if opts.site:
                    port = opts.site_port
                    if port is None:
                        port = SITE_PORT if _port_free(SITE_PORT) else 0
                    try:
                        origin = stack.enter_context(serve(opts.site_dir, port))
                    except OSError as exc:
                        raise StartError(
                            f"the site cannot listen on 127.0.0.1:{port} ({exc.strerror}): "
                            "choose another --site-port, or 0 for any free port"
                        ) from None
                    if not answers(origin + "/"):
                        raise StartError(f"the site server at {origin} does not serve {opts.site_dir}/index.html")
                    urls["site"] = origin + "/"
                if lab:
                    urls["lab"] = lab.wait_ready(opts.timeout)
                signals.serving = True
                info = {"pid": os.getpid(), **urls, "log": str(lab.log) if lab else None}
                atomic_write(paths.info, json.dumps(info, indent=1), mode=0o600)  # the lab URL carries its token
                out(f"\nReady in {time.perf_counter() - t0:.1f} s.")
                if lab:
                    out(f"JupyterLab: {urls['lab']}")
                if opts.site:
                    out(f"Site: {urls['site']}")
                out("Ctrl-C stops " + ("both." if lab and opts.site else "it."))
                if opts.open_browser:
                    import webbrowser

                    webbrowser.open(urls.get("lab") or urls["site"])
                while not signals.stop.wait(0.5):
                    if lab:
                        lab.check()
                out("\ncourse up: stopping ...")
                return 0
        except (StartError, LabError) as exc:
            out(f"course up: {exc}")
            return 1
        except KeyboardInterrupt:
            out("\ncourse up: stopping ...")
            return 0
        finally:
            signals.serving = True  # from here on, signals only set flags: a second Ctrl-C kills at once
            if lab:
                lab.stop(signals.force, say=lambda msg: out(f"course up: {msg}"))
            if urls:
                out("course up: stopped")
