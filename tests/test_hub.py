"""The classroom end to end: a real JupyterHub and proxy on loopback, two students, an instructor, nbgrader.

Students log in over HTTP, fetch and submit 01_kernels through nbgrader's server API, try to read what is not
theirs (every attempt fails), the instructor collects, autogrades, runs the hidden graders into the gradebook,
releases feedback, the students fetch it, and ``nbgrader export`` has the expected scores. Needs root (it
creates OS users, removed again at the end) and bwrap.
"""

from __future__ import annotations

import csv
import grp
import html as htmllib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import requests

from course.hub import (
    STAFF_GROUP,
    HubLayout,
    RosterError,
    hub_command,
    hub_env,
    load_roster,
    prepare,
    remove_users,
    sandbox_command,
    wait_ready,
)
from course.notebooks import nbgrader_meta

sys.path.insert(0, str(Path(__file__).parent))
from grading_cases import ex1  # noqa: E402
from hubclient import HubUser  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NB = "01_kernels"
ADA, BOB, INS = "hubtest-ada", "hubtest-bob", "hubtest-ins"
WRONG_TASK = "ex1_apply_kernel"


@pytest.mark.parametrize(
    "text, words",
    [
        ("students: [Ada]\n", "not valid user names"),
        ("students: [ada]\ngraders: [ada]\n", "listed twice"),
        ("instructors: [alan]\n", "lists no students"),
        ("students: [ada]\nassignments: [07_nope]\n", "not in exercises/"),
        ("students: ada\n", "must be a list"),
        ("pupils: [ada]\n", "unknown keys"),
        ("students: [ada\n", "not valid YAML"),
    ],
)
def test_a_bad_roster_says_what_to_fix(tmp_path, text, words):
    (tmp_path / "r.yml").write_text(text)
    with pytest.raises(RosterError, match=re.escape(words)):
        load_roster(tmp_path / "r.yml")


def test_the_example_roster_is_valid_and_complete():
    r = load_roster(ROOT / "deploy" / "hub" / "roster.example.yml")
    assert r.assignments == tuple(sorted(p.name for p in (ROOT / "exercises").iterdir() if p.is_dir()))
    assert r.students and r.instructors and r.graders


def test_a_server_sees_only_what_its_role_needs(tmp_path):
    layout = HubLayout(tmp_path / "state")
    me = pwd.getpwuid(os.getuid()).pw_name
    student = sandbox_command(layout, me, False, ["server"])
    staff = sandbox_command(layout, me, True, ["server"])
    binds = {a for i, a in enumerate(student) if student[i - 1] in ("--bind", "--ro-bind")}
    assert str(layout.home(me)) in binds and str(layout.exchange) in binds
    assert not {str(ROOT), str(ROOT / "solutions"), str(ROOT / "graders"), str(layout.course), str(layout.private),
                str(layout.homes)} & binds  # fmt: skip
    assert str(layout.course) in staff and str(layout.course) not in student
    assert student[-1] == "server" and "--no-new-privs" in student and "--unshare-pid" in student


def _need_root():
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the hub round trip must run in CI, as root")
        pytest.skip("the hub round trip creates OS users: run it as root (CI does)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(wrong: dict[str, str] | None = None) -> dict[str, str]:
    """Every answer cell of 01_kernels as a student writes it (the solution without nbgrader's markers)."""
    sol = nbformat.read(str(ROOT / "solutions" / NB / f"{NB}.ipynb"), as_version=4)
    out = {}
    for cell in sol.cells:
        meta = nbgrader_meta(cell)
        if meta.get("solution") and not meta.get("grade"):
            lines = [ln for ln in cell.source.splitlines() if not re.search(r"(BEGIN|END) SOLUTION", ln)]
            out[meta["grade_id"]] = "\n".join(lines) + "\n"
    return {**out, **(wrong or {})}


def _filled(nb: dict, answers: dict[str, str]) -> dict:
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nb


def _instructor(layout: HubLayout, *cmd: str) -> str:
    """An instructor's command in the course folder, with the course venv first on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=layout.course, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    _need_root()
    base = tmp_path_factory.mktemp("hub")
    roster_file = base / "roster.yml"
    roster_file.write_text(f"students: [{ADA}, {BOB}]\ninstructors: [{INS}]\nassignments: [{NB}]\n")
    roster = load_roster(roster_file)
    layout = HubLayout(base / "state")
    had_group = STAFF_GROUP in {g.gr_name for g in grp.getgrall()}
    proc = None
    try:
        prepare(layout, roster)
        port = _free_port()
        env = hub_env(layout, roster_file, port, _free_port(), _free_port())
        with open(base / "hub.log", "w") as log:
            proc = subprocess.Popen(hub_command(layout), env=env, cwd=layout.private, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        if not wait_ready(url, proc, timeout=60):
            pytest.fail(f"the hub exited:\n{(base / 'hub.log').read_text()[-3000:]}")
        passwords = {r["user"]: r["password"] for r in csv.DictReader(layout.new_passwords.read_text().splitlines())}
        yield url, layout, passwords, roster
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        left = {n: subprocess.run(["pgrep", "-u", n], capture_output=True, text=True).stdout.split()
                for n in roster.everyone}  # fmt: skip
        remove_users(roster.everyone)
        if not had_group:
            subprocess.run(["groupdel", STAFF_GROUP], check=False)
        shutil.rmtree(base, ignore_errors=True)
        if proc is not None:
            assert not any(left.values()), f"processes outlived the hub: {left}"


def test_login_wants_the_persons_own_password(hub):
    url, _, passwords, _ = hub
    assert HubUser(url, ADA, passwords[BOB]).login() == 403
    assert HubUser(url, "root", "x" * 16).login() == 403
    assert HubUser(url, ADA, passwords[ADA]).login() == 302


def test_round_trip_release_submit_grade_feedback(hub):
    url, layout, passwords, roster = hub
    ada, bob = HubUser(url, ADA, passwords[ADA]), HubUser(url, BOB, passwords[BOB])
    for s in (ada, bob):
        assert s.login() == 302
        s.start_server()
        listed = s.nbgrader("list", roster.course_id)
        assert [(a["assignment_id"], a["status"]) for a in listed] == [(NB, "released")]
        fetched = s.nbgrader("fetch", roster.course_id, NB)
        assert [a["status"] for a in fetched if a["assignment_id"] == NB] == ["fetched"]  # fetch hides its errors
    path = f"{NB}/{NB}.ipynb"
    release = ada.api("GET", f"/api/contents/{path}").json()["content"]
    # the server runs as the student's own OS user
    assert ada.run_python("import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name)").strip() == ADA

    ada.put_notebook(path, _filled(release, _answers()))
    ada.nbgrader("submit", roster.course_id, NB)
    bob.nbgrader("submit", roster.course_id, NB)  # the unanswered notebook first...
    time.sleep(1.1)
    wrong = next(c.source for c in ex1.WRONG[WRONG_TASK])
    bob.put_notebook(path, _filled(release, _answers({WRONG_TASK: wrong})))
    bob.nbgrader("submit", roster.course_id, NB)  # ...then the later, partly wrong one: it counts

    # --- what a student's server must not reach ------------------------------------------------------------------
    probe = f"""
import glob, os
def attempt(what, f):
    try:
        f()
        print(what, "READ")
    except OSError as e:
        print(what, "denied", type(e).__name__)
attempt("solutions", lambda: open({str(ROOT / "solutions" / NB / f"{NB}.ipynb")!r}).read())
attempt("graders", lambda: os.listdir({str(ROOT / "graders")!r}))
attempt("repository", lambda: open({str(ROOT / "pyproject.toml")!r}).read())
attempt("other home", lambda: os.listdir({str(layout.home(BOB))!r}))
attempt("inbound", lambda: os.listdir({str(layout.exchange / roster.course_id / "inbound")!r}))
attempt("course folder", lambda: os.listdir({str(layout.course)!r}))
attempt("gradebook", lambda: open({str(layout.course / "gradebook.db")!r}, "rb").read())
attempt("hub database", lambda: open({str(layout.private / "jupyterhub.sqlite")!r}, "rb").read())
attempt("hub passwords", lambda: open({str(layout.passwords)!r}).read())
print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
print("own home", os.path.isfile({str(layout.home(ADA) / NB / f"{NB}.ipynb")!r}))
print("outbound", os.path.isfile({str(layout.exchange / roster.course_id / "outbound" / NB / f"{NB}.ipynb")!r}))
"""
    out = ada.run_python(probe)
    for what in ("solutions", "graders", "repository", "other home", "inbound", "course folder", "gradebook",
                 "hub database", "hub passwords"):  # fmt: skip
        assert f"{what} denied" in out, out
    pids = eval(re.search(r"pids (\[.*\])", out).group(1))  # noqa: S307 - our own probe's output
    assert max(pids) < 100, f"the student's server sees host processes: {pids}"  # its own pid namespace
    assert "own home True" in out and "outbound True" in out, out  # the probe itself works
    assert bob.api("GET", "/api/contents").status_code == 200
    stolen = requests.get(f"{url}/user/{BOB}/api/contents", headers={"Authorization": f"token {ada.token}"}, timeout=30)
    assert stolen.status_code == 403, stolen.status_code  # ada's token does not open bob's server

    # --- staff grade in formgrader, which students do not have ----------------------------------------------------
    ins = HubUser(url, INS, passwords[INS])
    assert ins.login() == 302
    ins.start_server()
    listed = ins.api("GET", "/formgrader/api/assignments")
    assert listed.status_code == 200 and NB in listed.text, listed.text[:300]
    assert ada.api("GET", "/formgrader/api/assignments").status_code == 404

    # --- the instructor's round --------------------------------------------------------------------------------------
    nbgrader = [sys.executable, "-m", "nbgrader"]
    _instructor(layout, *nbgrader, "collect", NB, "--update")
    _instructor(layout, *nbgrader, "autograde", NB, "--force")
    graded = layout.state / "hidden"
    gradebook = f"sqlite:///{layout.course / 'gradebook.db'}"
    course = [sys.executable, "-m", "course.cli", "grade", str(layout.course / "submitted"), "--out", str(graded),
              "--root", str(ROOT), "--quiet", "--jobs", "2", "--gradebook", gradebook]  # fmt: skip
    _instructor(layout, *course)
    _instructor(layout, *nbgrader, "generate_feedback", NB, "--force")
    _instructor(layout, *nbgrader, "release_feedback", NB)
    _instructor(layout, *nbgrader, "export", "--to", str(layout.state / "grades.csv"))

    sol = nbformat.read(str(ROOT / "solutions" / NB / f"{NB}.ipynb"), as_version=4)
    full = sum(float(nbgrader_meta(c).get("points", 0)) for c in sol.cells if nbgrader_meta(c).get("grade"))
    lost = sum(float(nbgrader_meta(c).get("points", 0)) for c in sol.cells
               if nbgrader_meta(c).get("grade") and nbgrader_meta(c)["grade_id"].startswith(WRONG_TASK))  # fmt: skip
    assert lost > 0
    exported = csv.DictReader((layout.state / "grades.csv").read_text().splitlines())
    rows = {r["student_id"]: r for r in exported if r["assignment"] == NB}
    assert {s: float(rows[s]["raw_score"]) for s in (ADA, BOB)} == {ADA: full, BOB: full - lost}

    # --- each student reads their feedback -------------------------------------------------------------------------
    grader = (ROOT / "graders" / "test_01_kernels.py").read_text()
    hidden_names = set(re.findall(r"def (test_\w+)", grader))
    released = "\n".join(c["source"] for c in release["cells"])
    grader_lines = {ln.strip() for ln in grader.splitlines() if len(ln.strip()) >= 40 and ln.strip() not in released}
    for s in (ada, bob):
        listed = s.nbgrader("fetch_feedback", roster.course_id, NB)
        mine = next(a for a in listed if a["assignment_id"] == NB and a["status"] == "submitted")
        found = list((layout.home(s.name) / NB / "feedback").rglob("*.html"))
        assert len(found) == 1, (mine, found)
        html = found[0].read_text()
        assert "Hidden graders:" in html
        leaked = [n for n in hidden_names if n in html]
        assert not leaked, f"hidden test names in {s.name}'s feedback: {leaked}"
        text = htmllib.unescape(re.sub(r"<[^>]+>", "", html))
        shown = [ln for ln in grader_lines if ln in text]
        assert not shown, f"hidden grader code in {s.name}'s feedback: {shown[:3]}"
        r = s.api("GET", f"/api/contents/{NB}/feedback")
        assert r.status_code == 200  # the student reads it through their own server
    bob_text = htmllib.unescape(next((layout.home(BOB) / NB / "feedback").rglob("*.html")).read_text())
    assert re.search(r"Hidden graders: 0 / \d", bob_text), "bob's feedback does not say which task lost its points"
