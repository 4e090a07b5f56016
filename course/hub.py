"""``course hub``: a class on one machine with JupyterHub, nbgrader and one unprivileged OS user per person.

What a hub is made of (all below one *state* folder, ``.hub/`` by default):

``hub/``           the hub's database, cookie secret, proxy token and password hashes (root only, 0700)
``homes/<name>``   each person's home, owned by their own OS user (0700)
``exchange/``      nbgrader's shared exchange (0777; nbgrader makes ``inbound`` write-only for students)
``course/``        the instructors' nbgrader course root: ``source/`` (the solutions), ``release/``, the
                   gradebook, ``submitted/``, ``autograded/``, ``feedback/`` (group ``course-staff``, 2770);
                   a staff member's server shows it as ``~/course``, where formgrader expects it
``config/<role>``  the Jupyter and nbgrader configuration a student's or a staff member's server reads

Isolation, in two layers that each hold on their own:

1. every roster name is a distinct unprivileged OS user (created by ``ensure_users``), so nbgrader's
   exchange permissions, file ownership and process limits work as on any shared Linux machine;
2. every single-user server starts inside a bubblewrap mount namespace (``CourseSpawner``) that contains
   the system, the Python install and venv, the ``course`` package, the person's own home, the exchange
   and their role's configuration, and nothing else: ``solutions/``, ``graders/``, the repository, other
   homes, the instructors' course folder (for students) and the hub's state are not mounted at all. bwrap
   starts as root, then ``setpriv`` drops to the person's uid with no capabilities and ``no_new_privs``.

The roster is a YAML file::

    course_id: deep-dive-convolutions     # optional (this is the default)
    assignments: [01_kernels, 02_strides_padding]   # optional: default every notebook in exercises/
    students: [ada, grace]
    instructors: [alan]                   # hub admins; formgrader and the course folder
    graders: [barbara]                    # formgrader and the course folder

Names are POSIX user names (lowercase letters, digits, ``-`` and ``_``, starting with a letter, at most 32).
A name that already exists as an OS user is used only if ``course hub`` created it (its comment says so).
"""

from __future__ import annotations

import csv
import grp
import hashlib
import hmac
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from course.files import atomic_write

__all__ = [
    "HubLayout",
    "RosterError",
    "Roster",
    "check_password",
    "ensure_users",
    "load_roster",
    "prepare",
    "remove_users",
    "sandbox_command",
]

ROOT = Path(__file__).resolve().parents[1]
COURSE_ID = "deep-dive-convolutions"
STAFF_GROUP = "course-staff"
STAFF_COURSE = "course"  # where a staff member's server shows the course folder: ~/course
USER_COMMENT = "course hub user"
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_ROLES = ("students", "instructors", "graders")


class RosterError(ValueError):
    """A roster that cannot be used, with what to change."""


@dataclass(frozen=True)
class Roster:
    students: tuple[str, ...]
    instructors: tuple[str, ...] = ()
    graders: tuple[str, ...] = ()
    course_id: str = COURSE_ID
    assignments: tuple[str, ...] = ()

    @property
    def staff(self) -> tuple[str, ...]:
        return self.instructors + self.graders

    @property
    def everyone(self) -> tuple[str, ...]:
        return self.students + self.staff

    def role(self, name: str) -> str:
        return "student" if name in self.students else "staff"


def load_roster(path: str | os.PathLike, root: str | os.PathLike = ROOT) -> Roster:
    """Read and check a roster file (see the module docstring); RosterError says what to fix."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RosterError(f"roster file {path} does not exist; write one (see docs/instructor.md)") from None
    except yaml.YAMLError as e:
        raise RosterError(f"roster file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise RosterError(f"roster file {path} must be a mapping with students:, instructors:, graders:")
    unknown = set(data) - {*_ROLES, "course_id", "assignments"}
    if unknown:
        raise RosterError(f"roster file {path} has unknown keys {sorted(unknown)}; allowed: {', '.join(_ROLES)}, ...")
    lists = {}
    for role in _ROLES:
        names = data.get(role) or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise RosterError(f"roster {role}: must be a list of user names, got {names!r}")
        bad = [n for n in names if not _NAME.fullmatch(n)]
        if bad:
            raise RosterError(
                f"roster {role}: {bad} are not valid user names (lowercase letters, digits, - and _, "
                "starting with a letter, at most 32 characters)"
            )
        lists[role] = tuple(names)
    seen: dict[str, str] = {}
    for role, names in lists.items():
        for n in names:
            if n in seen:
                raise RosterError(f"roster: {n!r} is listed twice ({seen[n]} and {role}); list each person once")
            seen[n] = role
    if not lists["students"]:
        raise RosterError(f"roster file {path} lists no students")
    course_id = data.get("course_id", COURSE_ID)
    if not isinstance(course_id, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", course_id):
        raise RosterError(f"roster course_id {course_id!r} must be letters, digits, '.', '-' or '_'")
    available = sorted(p.name for p in (Path(root) / "exercises").iterdir() if (p / f"{p.name}.ipynb").is_file())
    assignments = data.get("assignments") or available
    missing = [a for a in assignments if a not in available]
    if missing:
        raise RosterError(f"roster assignments {missing} are not in exercises/ (available: {', '.join(available)})")
    return Roster(lists["students"], lists["instructors"], lists["graders"], course_id, tuple(assignments))


def _state_path(*parts: str) -> property:
    """A read-only ``HubLayout`` attribute: its ``state`` folder joined with ``parts``."""
    return property(lambda layout: layout.state.joinpath(*parts))


@dataclass(frozen=True)
class HubLayout:
    """Where a hub keeps its state (see the module docstring)."""

    state: Path
    root: Path = ROOT
    extra_binds: tuple[str, ...] = field(default=())

    private = _state_path("hub")
    homes = _state_path("homes")
    exchange = _state_path("exchange")
    course = _state_path("course")
    passwords = _state_path("hub", "passwords.json")
    new_passwords = _state_path("hub", "new-passwords.csv")

    def config(self, role: str) -> Path:
        return self.state / "config" / role

    def home(self, name: str) -> Path:
        return self.homes / name


# --- passwords: one per person, stored as scrypt hashes ------------------------------------------------------------
def _hash(password: str, salt: bytes) -> str:
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1).hex()


def check_password(layout: HubLayout, name: str, password: str) -> bool:
    """True when ``password`` is ``name``'s (constant-time comparison)."""
    try:
        entry = json.loads(layout.passwords.read_text())[name]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return False
    return hmac.compare_digest(_hash(password, bytes.fromhex(entry["salt"])), entry["hash"])


def _ensure_passwords(layout: HubLayout, roster: Roster) -> list[str]:
    """Give every roster name without a password a new one; write the new ones (only) to new-passwords.csv."""
    stored = json.loads(layout.passwords.read_text()) if layout.passwords.is_file() else {}
    new = {n: secrets.token_urlsafe(12) for n in roster.everyone if n not in stored}
    if not new:
        return []
    for n, pw in new.items():
        salt = secrets.token_bytes(16)
        stored[n] = {"salt": salt.hex(), "hash": _hash(pw, salt)}
    atomic_write(layout.passwords, json.dumps(stored, indent=1, sort_keys=True), mode=0o600)
    rows = []
    if layout.new_passwords.is_file():
        rows = list(csv.reader(layout.new_passwords.read_text().splitlines()))[1:]
    rows = [r for r in rows if r and r[0] not in new] + [[n, roster.role(n), pw] for n, pw in new.items()]
    text = "user,role,password\n" + "".join(f"{u},{r},{p}\n" for u, r, p in rows)
    atomic_write(layout.new_passwords, text, mode=0o600)
    return sorted(new)


# --- OS users -------------------------------------------------------------------------------------------------------
def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PermissionError(f"{what} needs root (it creates OS users and starts servers as them); run it with sudo")


def _ours(name: str) -> bool | None:
    """None: no such OS user; True: made by course hub; False: someone else's account."""
    try:
        return pwd.getpwnam(name).pw_gecos == USER_COMMENT
    except KeyError:
        return None


def ensure_users(layout: HubLayout, roster: Roster) -> list[str]:
    """Create the staff group and one OS user (with a private home) per roster name; the names created."""
    _require_root("course hub")
    clash = [n for n in roster.everyone if _ours(n) is False]
    if clash:
        raise RosterError(
            f"roster names {clash} are existing OS users not created by course hub; rename them in the roster"
        )
    try:
        grp.getgrnam(STAFF_GROUP)
    except KeyError:
        subprocess.run(["groupadd", "--system", STAFF_GROUP], check=True)
    created = []
    layout.homes.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.homes, 0o711)
    for name in roster.everyone:
        if _ours(name) is None:
            cmd = ["useradd", "--no-create-home", "--home-dir", str(layout.home(name)), "--shell", "/bin/bash"]
            subprocess.run([*cmd, "--user-group", "--comment", USER_COMMENT, name], check=True)
            created.append(name)
        if name in roster.staff:
            subprocess.run(["usermod", "--append", "--groups", STAFF_GROUP, name], check=True)
        home = layout.home(name)
        home.mkdir(exist_ok=True)
        u = pwd.getpwnam(name)
        os.chown(home, u.pw_uid, u.pw_gid)
        os.chmod(home, 0o700)
    return created


def remove_users(names) -> list[str]:
    """Delete the OS users course hub created among ``names`` (their homes in the state folder stay)."""
    _require_root("removing hub users")
    removed = []
    for name in names:
        if _ours(name):
            subprocess.run(["pkill", "-KILL", "-u", name], check=False)
            subprocess.run(["userdel", name], check=True, capture_output=True)
            removed.append(name)
    return removed


# --- the course folder and the configuration each role reads ---------------------------------------------------------
def _nbgrader(layout: HubLayout, *args: str) -> subprocess.CompletedProcess:
    """Run an nbgrader command in the course folder (nbgrader needs the venv's bin on PATH for alembic)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=layout.course, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _write_configs(layout: HubLayout, roster: Roster) -> None:
    exchange = repr(str(layout.exchange))
    student_nbgrader = (
        "import os\nc = get_config()\n"
        f"c.CourseDirectory.course_id = {roster.course_id!r}\nc.Exchange.root = {exchange}\n"
        "c.CourseDirectory.student_id = os.environ['JUPYTERHUB_USER']\n"
    )

    def course_nbgrader(root: str) -> str:
        return (
            "import os\nc = get_config()\n"
            f"c.CourseDirectory.course_id = {roster.course_id!r}\n"
            f"c.CourseDirectory.root = {root}\nc.Exchange.root = {exchange}\n"
        )

    off = {"@jupyter/nbgrader:formgrader": True, "@jupyter/nbgrader:course-list": True,
           "@jupyter/nbgrader:create-assignment": True}  # fmt: skip
    server_off = {"nbgrader.server_extensions.formgrader": False, "nbgrader.server_extensions.course_list": False}
    for role, nbgrader_cfg, lab_off, server in (
        ("student", student_nbgrader, off, server_off),
        ("staff", course_nbgrader(f"os.path.expanduser('~/{STAFF_COURSE}')"), {}, {}),
    ):
        d = layout.config(role)
        (d / "labconfig").mkdir(parents=True, exist_ok=True)
        (d / "nbgrader_config.py").write_text(nbgrader_cfg)
        (d / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": lab_off}, indent=1))
        server_cfg = {"ServerApp": {"jpserver_extensions": server}} if server else {}
        (d / "jupyter_server_config.json").write_text(json.dumps(server_cfg, indent=1))
        for p in (d, d / "labconfig"):
            os.chmod(p, 0o755)
    (layout.course / "nbgrader_config.py").write_text(course_nbgrader(repr(str(layout.course))))


def prepare(layout: HubLayout, roster: Roster) -> dict:
    """Everything a hub needs before it starts (idempotent): users, folders, configuration, released assignments.

    The course folder's ``source/`` is ``solutions/``; ``nbgrader generate_assignment`` fills the gradebook, and
    the released notebook is ``exercises/``'s (the course's own release, checked by ``course release --check``).
    """
    _require_root("course hub")
    for d in (layout.state, layout.private, layout.exchange, layout.course):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.state, 0o711)
    os.chmod(layout.private, 0o700)
    os.chmod(layout.exchange, 0o777)
    created = ensure_users(layout, roster)
    new_passwords = _ensure_passwords(layout, roster)
    _write_configs(layout, roster)
    released = []
    for name in roster.assignments:
        src = layout.course / "source" / name
        if src.exists():
            shutil.rmtree(src)
        shutil.copytree(layout.root / "solutions" / name, src)
        _nbgrader(layout, "generate_assignment", name, "--force")
        shutil.copy(layout.root / "exercises" / name / f"{name}.ipynb", layout.course / "release" / name)
        _nbgrader(layout, "release_assignment", name, "--force")
        released.append(name)
    staff = grp.getgrnam(STAFF_GROUP).gr_gid
    for dirpath, dirnames, filenames in os.walk(layout.course):
        for p in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.chown(p, 0, staff)
            os.chmod(p, 0o2770 if os.path.isdir(p) else 0o660)
    return {"created users": created, "new passwords": new_passwords, "released": released}


# --- the sandbox each single-user server runs in ---------------------------------------------------------------------
def sandbox_command(layout: HubLayout, name: str, staff: bool, command: list[str]) -> list[str]:
    """bwrap (as root) + setpriv (to ``name``'s uid): ``command`` sees only what the module docstring lists."""
    from course.grading.isolation import _python_dirs, course_dir

    u = pwd.getpwnam(name)
    home = str(layout.home(name))
    args = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    args += ["--hostname", "course-hub", "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--perms", "1777", "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev"]
    ro = [*_python_dirs(), course_dir(), str(layout.config("staff" if staff else "student")), *layout.extra_binds]
    rw = [home, str(layout.exchange)]
    parents = {str(a) for d in ro + rw for a in Path(d).parents if str(a) not in ("/", "/tmp")}
    for d in sorted(parents, key=lambda d: (d.count("/"), d)):
        args += ["--perms", "0755", "--dir", d]
    for d in ro:
        args += ["--ro-bind", d, d]
    for d in rw:
        args += ["--bind", d, d]
    if staff:  # formgrader wants the course folder below the server's root: it appears as ~/course
        args += ["--bind", str(layout.course), f"{home}/{STAFF_COURSE}"]
    args += ["--remount-ro", "/", "--chdir", home, "--"]
    drop = ["setpriv", f"--reuid={u.pw_uid}", f"--regid={u.pw_gid}", "--init-groups"]
    drop += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return args + drop + command


# --- running it ----------------------------------------------------------------------------------------------------
def proxy_command(root: Path = ROOT) -> str:
    """configurable-http-proxy, pinned in package.json and installed by scripts/setup.sh (npm ci)."""
    local = root / "node_modules" / ".bin" / "configurable-http-proxy"
    found = str(local) if local.is_file() else shutil.which("configurable-http-proxy")
    if not found:
        raise FileNotFoundError("configurable-http-proxy is not installed; run `bash scripts/setup.sh` (needs npm)")
    return found


def hub_env(layout: HubLayout, roster_file: str | os.PathLike, port: int, api_port: int, proxy_api_port: int,
            service_token: str = "") -> dict[str, str]:  # fmt: skip
    """The environment deploy/hub/jupyterhub_config.py reads."""
    env = {
        **os.environ,
        "COURSE_HUB_STATE": str(layout.state),
        "COURSE_HUB_ROSTER": str(Path(roster_file).resolve()),
        "COURSE_HUB_BIND": f"http://127.0.0.1:{port}",
        "COURSE_HUB_API_PORT": str(api_port),
        "COURSE_HUB_PROXY_API_PORT": str(proxy_api_port),
        "COURSE_HUB_PROXY": proxy_command(layout.root),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    if service_token:
        env["COURSE_HUB_SERVICE_TOKEN"] = service_token
    return env


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> bool:
    """Poll the hub's health page until it answers 200; False when the hub exited first."""
    import time
    import urllib.error
    import urllib.request

    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/hub/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    if proc.poll() is None:
        raise TimeoutError(f"JupyterHub did not answer at {url} within {timeout:g} s; see its log above")
    return False


def hub_command(layout: HubLayout) -> list[str]:
    return [sys.executable, "-m", "jupyterhub", "-f", str(layout.root / "deploy" / "hub" / "jupyterhub_config.py")]


def run(layout: HubLayout, roster_file: str | os.PathLike, port: int = 8000, api_port: int = 8081,
        proxy_api_port: int = 8001) -> int:  # fmt: skip
    """Prepare, start the hub in the foreground, stop it (and every server) on Ctrl-C or SIGTERM."""
    import signal

    from course.grading.isolation import bwrap_problem

    problem = bwrap_problem()
    if problem:
        raise RuntimeError(f"course hub isolates every server with bwrap: {problem} (apt-get install bubblewrap)")
    roster = load_roster(roster_file, layout.root)
    done = prepare(layout, roster)
    released = ", ".join(done["released"])
    print(f"course hub: {len(roster.students)} students, {len(roster.staff)} staff; released {released}")
    if done["new passwords"]:
        print(f"  new passwords for {', '.join(done['new passwords'])} in {layout.new_passwords} (root only)")
    proc = subprocess.Popen(hub_command(layout), env=hub_env(layout, roster_file, port, api_port, proxy_api_port),
                            cwd=layout.private)  # fmt: skip

    def stop(signum, frame):
        proc.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if wait_ready(f"http://127.0.0.1:{port}", proc):
            print(f"  JupyterHub: http://127.0.0.1:{port}/  (Ctrl-C stops the hub and every server)", flush=True)
            print(f"  staff: formgrader at http://127.0.0.1:{port}/user/<name>/formgrader", flush=True)
        return proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
