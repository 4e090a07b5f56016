"""JupyterLab for one learner, as ``course up`` runs it: private configuration, start, readiness, stop.

- Configuration lives in one state folder (``<cache>/up/jupyter``): ``JUPYTER_CONFIG_DIR``,
  ``JUPYTER_DATA_DIR``, ``JUPYTER_RUNTIME_DIR``, JupyterLab's settings and workspaces, ranked above the
  venv's (``JUPYTER_PREFER_ENV_PATH=0``). Nothing is read from or written to ``~/.jupyter``, settings and
  open tabs persist from one ``course up`` to the next, and a ``python3`` kernel spec elsewhere cannot
  shadow the course kernel that ``scripts/setup.sh`` installs into the venv.
- nbgrader's student side is on: Validate (runs the notebook with the course kernel, 600 s a cell, as
  ``course check``) and the Assignment List. The Assignment List reads an exchange; for one learner it is an
  empty folder in the state folder, so the list opens without errors and offers nothing to fetch, since the
  notebooks are already in ``exercises/`` (a class gets a real exchange from ``course hub``). The instructor
  tools (formgrader, course list, create assignment) are off, server and lab side, by nbgrader's
  documented switches, the same as ``course hub`` gives its students.
- The server listens on 127.0.0.1 only, with a random token passed in ``JUPYTER_TOKEN`` (``ps`` does not
  show it); it runs in a session of its own, so a terminal's Ctrl-C reaches ``course up`` only, which then
  stops it: SIGTERM (JupyterLab shuts its kernels down), SIGKILL after a grace period, then every process
  it was seen to start, since kernels run in sessions of their own too.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

__all__ = ["LAB_OFF", "SERVER_OFF", "LabError", "LocalLab", "answers"]

DEFAULT_PORT = 8888
#: nbgrader's instructor tools, off for a learner
LAB_OFF = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:course-list", "@jupyter/nbgrader:create-assignment")
SERVER_OFF = ("nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.course_list")

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LabError(RuntimeError):
    """JupyterLab did not start or stopped by itself; the message ends with its log."""


def answers(url: str, token: str | None = None) -> bool:
    """True when ``url`` answers 200 (never through a proxy: these servers are on loopback)."""
    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        with _NO_PROXY.open(urllib.request.Request(url, headers=headers), timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _parent_death_signal() -> Callable[[], None] | None:
    """On Linux, a preexec function that kills the child when its parent dies, even by SIGKILL.

    SIGKILL, not SIGTERM: with nobody left to escalate, a shutdown that hangs would leave the server behind
    (seen once, with a browser still connected); its kernels follow on their own (ipykernel's parent poller).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return functools.partial(prctl, 1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


class LocalLab:
    """One JupyterLab server on 127.0.0.1, opened on ``notebooks``, configured under ``state``."""

    def __init__(self, state: Path, notebooks: Path, course_root: Path, port: int | None = None) -> None:
        self.state, self.notebooks, self.course_root = Path(state), Path(notebooks), Path(course_root)
        self.port = port  # None: 8888 or the next free one (as `jupyter lab`); 0: any free port
        self.token = secrets.token_hex(24)
        self.log = self.state / "jupyterlab.log"
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self._seen: set = set()

    @property
    def jupyter(self) -> Path:
        return self.state / "jupyter"

    def kernel_note(self) -> str | None:
        """A line to show when the course kernel that scripts/setup.sh installs is missing."""
        if (Path(sys.prefix) / "share/jupyter/kernels/python3/kernel.json").is_file():
            return None
        return "the course kernel is not installed in this venv (ipykernel's default is used): run scripts/setup.sh"

    def environment(self) -> dict[str, str]:
        """Write the private configuration; return the environment the server runs in."""
        import traitlets.config

        config, exchange = self.jupyter / "config", self.state / "exchange"
        for d in (
            config / "labconfig",
            self.jupyter / "data",
            self.jupyter / "runtime",
            self.jupyter / "lab",
            exchange,
        ):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        course_id = "deep-dive-convolutions"
        if (self.course_root / "nbgrader_config.py").is_file():  # the id the instructor configured
            loader = traitlets.config.PyFileConfigLoader("nbgrader_config.py", str(self.course_root))
            course_id = loader.load_config().CourseDirectory.get("course_id", course_id)
        files = {
            "labconfig/page_config.json": {"disabledExtensions": dict.fromkeys(LAB_OFF, True)},
            "jupyter_server_config.json": {"ServerApp": {"jpserver_extensions": dict.fromkeys(SERVER_OFF, False)}},
            # offline by design: no news feed, no update check
            "jupyter_lab_config.json": {
                "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"}
            },
            "nbgrader_config.json": {
                "CourseDirectory": {"course_id": course_id},
                "Exchange": {"root": str(exchange)},
                "Execute": {"timeout": 600},
            },
        }
        for name, data in files.items():
            (config / name).write_text(json.dumps(data, indent=1))
        # a learner's setting from the start, theirs to change: never ask about the news feed (offline by design)
        news = self.jupyter / "lab/user-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
        if not news.exists():
            news.parent.mkdir(parents=True, exist_ok=True)
            news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}, indent=1))
        drop = ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env.update(
            JUPYTER_CONFIG_DIR=str(config),
            JUPYTER_DATA_DIR=str(self.jupyter / "data"),
            JUPYTER_RUNTIME_DIR=str(self.jupyter / "runtime"),
            JUPYTER_PREFER_ENV_PATH="0",  # these folders above the venv's, so the student switches win
            JUPYTERLAB_SETTINGS_DIR=str(self.jupyter / "lab" / "user-settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.jupyter / "lab" / "workspaces"),
            PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),  # this venv's tools
        )
        return env

    def start(self) -> None:
        """Start the server in a new session; its output goes to ``self.log``."""
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={DEFAULT_PORT if self.port is None else self.port}",
            f"--ServerApp.port_retries={50 if self.port is None else 0}",
            f"--ServerApp.root_dir={self.notebooks}",
        ]
        if os.geteuid() == 0:  # containers often run as root; the server still listens on loopback only
            cmd.append("--ServerApp.allow_root=True")
        env = {**self.environment(), "JUPYTER_TOKEN": self.token}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.notebooks,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_parent_death_signal(),
            )

    def tail(self, lines: int = 20) -> str:
        """The end of the server's log, indented."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "    (no log)"
        return "\n".join(f"    {line}" for line in text[-lines:])

    def wait_ready(self, timeout: float) -> str:
        """Wait until the server answers /api/status and /lab; return the URL to open (with the token)."""
        info = self.jupyter / "runtime" / f"jpserver-{self.proc.pid}.json"  # it says which port it took
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            port = _read_json(info).get("port")
            origin = f"http://127.0.0.1:{port}"
            if port and answers(f"{origin}/api/status", self.token) and answers(f"{origin}/lab", self.token):
                self.url = f"{origin}/lab?token={self.token}"
                return self.url
            if time.monotonic() > deadline:
                raise LabError(
                    f"JupyterLab did not answer within {timeout:.0f} s; the end of {self.log}:\n{self.tail()}\n"
                    "On a slow machine, give it longer: `course up --timeout 600`"
                )
            time.sleep(0.25)
        raise LabError(
            f"JupyterLab exited with code {self.proc.returncode} while starting; the end of {self.log}:\n{self.tail()}"
        )

    def _track(self) -> None:
        import psutil  # a dependency of ipykernel

        with suppress(psutil.Error):
            self._seen |= set(psutil.Process(self.proc.pid).children(recursive=True))

    def check(self) -> None:
        """Note the processes the server has started; raise LabError when it has stopped by itself."""
        self._track()
        if self.proc.poll() is not None:
            raise LabError(
                f"JupyterLab stopped by itself (exit code {self.proc.returncode}); the end of {self.log}:\n"
                f"{self.tail()}"
            )

    def stop(
        self, force: threading.Event | None = None, grace: float = 15.0, say: Callable[[str], None] | None = None
    ) -> None:
        """SIGTERM the server's group, SIGKILL it after ``grace`` s (at once when ``force`` is set), then end
        every process it was seen to start; reap the server. ``say`` hears about a slow shutdown."""
        import psutil

        if self.proc is None:
            return
        force = force or threading.Event()
        self._track()
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # JupyterLab shuts its kernels down (about 5 s at most)
        start, told = time.monotonic(), False
        while self.proc.poll() is None and time.monotonic() - start < grace and not force.is_set():
            if say and not told and time.monotonic() - start > 3:
                say("JupyterLab is shutting down its kernels; Ctrl-C again to kill it now")
                told = True
            time.sleep(0.1)
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything else left in its group
        left = [p for p in self._seen if p.is_running()]
        for p in left:
            with suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(left, timeout=3)
        for p in alive:
            with suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=3)
