"""`course up`: release check for a learner's copy, site staleness, the lock, and the whole thing in Chromium.

The browser test starts `course up` as a learner would (COURSE_DATA/COURSE_OFFLINE come from the environment,
COURSE_CACHE is this session's), runs the first cell of 01_kernels in JupyterLab, loads the site, checks that a
second `course up` says it is already running, then sends Ctrl-C (SIGINT to its process group, as a terminal
does) and checks that no process it started is left. JupyterLab opens a copy of exercises/ so the repository's
notebooks are never saved over.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from playwright.sync_api import expect

from course.cli import main
from course.notebooks import read_notebook
from course.release import check_working_copy, compare_work
from course.site.build import STAMP, BuildResult, build_if_stale
from course.up import ALREADY_RUNNING, AlreadyRunning, UpOptions, UpPaths, single_instance, up

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ release check, learner's copy


def _released(root):
    return read_notebook(root / "exercises/00_demo/00_demo.ipynb")


def test_answers_outputs_and_added_cells_are_the_learners_work(course_root):
    fresh, nb = _released(course_root), _released(course_root)
    nb.cells[3].source = "def hypot(a, b):\n    return (a * a + b * b) ** 0.5"  # an answer cell
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", text="ok\n")]
    nb.cells[4].execution_count = 3
    nb.cells.insert(5, nbformat.v4.new_code_cell("hypot(6, 8)"))  # a scratch cell
    assert compare_work(fresh, nb) == ("work", "")
    nbformat.write(nb, str(course_root / "exercises/00_demo/00_demo.ipynb"))
    problems, notes = check_working_copy(course_root)
    assert problems == [] and notes == ["1 notebook(s) hold your work: exercises/00_demo/00_demo.ipynb"]


def test_a_stale_release_and_changed_graded_cells_are_problems(course_root):
    fresh, nb = _released(course_root), _released(course_root)
    nb.cells[1].source = "# Exercise 0 — Demo, older text"
    assert compare_work(fresh, nb) == ("stale", "cell 1")
    nb.cells[3].source = "def hypot(a, b):\n    return 5"  # the same change plus an answer: cannot tell
    assert compare_work(fresh, nb) == ("edited", "cell 1")
    del nb.cells[4]  # the graded test cell after it
    kind, detail = compare_work(fresh, nb)
    assert kind == "structure" and "'ex0_hypot_test'" in detail

    src = course_root / "solutions/00_demo/00_demo.ipynb"
    source = read_notebook(src)
    source.cells[0].source = "# Exercise 0 — Demo, new text (ex0)"
    nbformat.write(source, str(src))
    problems, _ = check_working_copy(course_root)
    assert problems == [
        "exercises/00_demo/00_demo.ipynb is out of date with solutions/ (cell 1) and holds no work yet: "
        "run `course release 00_demo`"
    ]


def test_up_refuses_an_out_of_sync_release_and_names_the_fix(course_root, tmp_path, capsys):
    (course_root / "exercises/00_demo/00_demo.ipynb").unlink()
    paths = UpPaths(tmp_path / "state")
    assert up(UpOptions(root=course_root, lab=False), paths) == 1
    out = capsys.readouterr().out
    assert "exercises/00_demo/00_demo.ipynb is missing: run `course release 00_demo`" in out
    assert "--no-release-check" in out and not paths.info.exists()


# ------------------------------------------------------------------------------------------- site staleness


def test_the_site_is_built_only_when_an_input_changed(tmp_path, monkeypatch):
    root, site = tmp_path / "course", tmp_path / "course" / "site"
    (root / "docs").mkdir(parents=True)
    (root / "mkdocs.yml").write_text("site_name: demo\n")
    (root / "docs" / "index.md").write_text("# Demo\n")
    builds = []

    def fake_build(site_dir, site_url="", config=None, env=None):
        builds.append(Path(config))
        Path(site_dir).mkdir(parents=True, exist_ok=True)
        (Path(site_dir) / "index.html").write_text("<h1>Demo</h1>")
        return BuildResult(Path(site_dir), 0.1, "")

    monkeypatch.setattr("course.site.build.build_site", fake_build)
    said = []
    build_if_stale(site, root, said.append)
    assert builds == [root / "mkdocs.yml"] and "(no build yet)" in said[0] and (site / STAMP).is_file()
    build_if_stale(site, root, said.append)
    assert len(builds) == 1 and said[-1].endswith("is up to date")
    (root / "docs" / "index.md").write_text("# Demo, edited\n")
    build_if_stale(site, root, said.append)
    assert len(builds) == 2 and "(docs/ changed since the last build)" in said[-2]
    (site / "index.html").unlink()  # a half-deleted build is rebuilt too
    build_if_stale(site, root, said.append)
    assert len(builds) == 3


# ------------------------------------------------------------------------------------------------------ lock


def test_one_course_up_at_a_time_and_a_dead_ones_lock_does_not_block(tmp_path, capsys, monkeypatch):
    paths = UpPaths(tmp_path / "up")
    paths.root.mkdir()
    paths.lock.write_text("999999999\n")  # what a killed run leaves: its pid and its URLs, but no lock held
    paths.info.write_text('{"pid": 999999999, "lab": "http://127.0.0.1:1/lab?token=x"}')
    with single_instance(paths):
        assert not paths.info.exists()
        with pytest.raises(AlreadyRunning) as e, single_instance(paths):
            pass
        assert str(e.value).startswith(f"course up is already running (pid {os.getpid()}), still starting")
        paths.info.write_text(f'{{"pid": {os.getpid()}, "lab": "L", "site": "S"}}')
        monkeypatch.setattr(UpPaths, "default", classmethod(lambda cls: paths))
        assert main(["up", "--root", str(ROOT)]) == ALREADY_RUNNING
        assert capsys.readouterr().out == f"course up is already running (pid {os.getpid()}): L S\n"
    with single_instance(paths):
        pass


# ------------------------------------------------------------------------------------------- the real thing


class Up:
    """`course up` in a subprocess of its own process group, its output collected line by line."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "course.cli", "up", "--quiet", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # like a terminal's foreground job: Ctrl-C goes to the whole group
        )
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        """Kill whatever is left (a failed test), then close the pipe."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reader.join(10)
        self.proc.stdout.close()

    def _read(self):
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """The first output line matching ``pattern``; fail with the whole output when it does not come."""
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if m := re.search(pattern, line):
                return m
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if m := re.search(pattern, line):
                return m
        pytest.fail(f"no line matching {pattern!r} within {timeout:.0f} s; output:\n" + "\n".join(self.lines))

    def tail(self) -> str:
        """The end of JupyterLab's log, for failure messages."""
        log = UpPaths.default().root / "jupyterlab.log"
        return "JupyterLab's log ends:\n" + "\n".join(log.read_text().splitlines()[-30:]) if log.is_file() else ""

    def stop(self, sig=signal.SIGINT, timeout: float = 60) -> int:
        os.killpg(self.proc.pid, sig)
        rc = self.proc.wait(timeout)
        self.wait_for(r"stopped|interrupted|error", 5)
        return rc


def _gone(procs) -> list[str]:
    """The processes among ``procs`` that still exist (zombies included)."""
    return [f"{p.pid} {p.name()}" for p in procs if p.is_running()]


@pytest.mark.slow
@pytest.mark.browser
def test_course_up_in_chromium_then_ctrl_c_leaves_nothing(tmp_path, chromium):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "exercises", notebooks)
    args = ("--notebooks", str(notebooks), "--site-dir", str(tmp_path / "site"), "--lab-port", "0", "--site-port", "0")
    with Up(*args) as run:
        lab = run.wait_for(r"^JupyterLab: (http://127\.0\.0\.1:(\d+)/lab\?token=(\w+))$", 300)
        site = run.wait_for(r"^Site: (http://127\.0\.0\.1:\d+/)$", 5).group(1)
        lab_url, origin, token = lab.group(1), f"http://127.0.0.1:{lab.group(2)}", lab.group(3)
        run.wait_for(r"^Ctrl-C stops both\.$", 5)

        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.goto(f"{origin}/lab/tree/01_kernels/01_kernels.ipynb?token={token}")
        first = page.locator(".jp-Notebook .jp-CodeCell").first
        expect(first.locator(".cm-content")).to_contain_text("import torch", timeout=90_000)
        expect(
            page.locator(".jp-Notebook-toolbarCellType, .jp-Toolbar-item", has_text="Validate").first
        ).to_be_visible()
        prompt = first.locator(".jp-InputArea-prompt")
        try:
            for _ in range(10):  # until Lab has settled and takes the key (restoring its layout can take the focus)
                prompt.click()
                page.keyboard.press("Shift+Enter")
                with contextlib.suppress(AssertionError):
                    expect(prompt).not_to_have_text("[ ]:", timeout=5_000)
                    break
            # the course kernel starts and runs the imports (torch, fastai): the prompt turns from [*] to [1]
            expect(prompt).to_have_text(re.compile(r"\[\d+\]:"), timeout=120_000)
        except Exception as exc:
            dialogs = page.locator(".jp-Dialog").all_inner_texts()
            raise AssertionError(f"the first cell did not run; dialogs: {dialogs}; {run.tail()}") from exc
        assert first.locator(".jp-OutputArea-output").count() == 0, first.locator(".jp-OutputArea").inner_text()

        bad = []
        page.on("requestfailed", lambda r: bad.append(f"failed: {r.url}"))
        page.on("response", lambda r: r.status >= 400 and bad.append(f"HTTP {r.status}: {r.url}"))
        page.on("request", lambda r: r.url.startswith(("http", "ws")) and site not in r.url and bad.append(r.url))
        page.goto(site, wait_until="networkidle")
        expect(page.locator("article h1").first).to_contain_text("Deep Dive into Convolutions")
        assert not errors and not bad, errors + bad
        context.close()

        again = subprocess.run(
            [sys.executable, "-m", "course.cli", "up"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert again.returncode == ALREADY_RUNNING, again.stdout + again.stderr
        assert again.stdout.strip() == f"course up is already running (pid {run.proc.pid}): {lab_url} {site}"

        started = psutil.Process(run.proc.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in started)
        assert "jupyterlab" in names and "ipykernel" in names, names
        lab_pgid = next(os.getpgid(p.pid) for p in started if "jupyterlab" in " ".join(p.cmdline()))
        assert run.stop(signal.SIGINT) == 0, "\n".join(run.lines)
        deadline = time.monotonic() + 10
        while _gone(started) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _gone(started), _gone(started)
        with pytest.raises(ProcessLookupError):
            os.killpg(lab_pgid, 0)
        with single_instance(UpPaths.default()):  # the lock is free again, and the URLs are gone with it
            assert not UpPaths.default().info.exists()


@pytest.mark.slow
def test_a_dead_jupyterlab_is_reported_and_course_up_exits(tmp_path):
    with Up("--no-site", "--no-release-check", "--notebooks", str(ROOT / "exercises"), "--lab-port", "0") as run:
        run.wait_for(r"^JupyterLab: http", 300)
        lab = next(p for p in psutil.Process(run.proc.pid).children() if "jupyterlab" in " ".join(p.cmdline()))
        os.killpg(lab.pid, signal.SIGKILL)
        assert run.proc.wait(30) == 1
        run.wait_for(r"JupyterLab stopped by itself \(exit code -9\)", 5)
