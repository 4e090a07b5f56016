"""How a worker is isolated: the bwrap command line, the scrubbed environment, and words for what held.

bwrap mounts a new root: ``/usr`` (and the ``/bin``, ``/lib*`` links), a few ``/etc`` files the
dynamic loader and matplotlib read, the Python install and the venv at their own paths, the
``course`` package at ``/sandbox/lib/course`` and the session's inputs at ``/sandbox/inputs``, all
read-only, on a root that is itself remounted read-only; tmpfs ``/sandbox/scratch`` (cwd and
``$HOME``) and ``/tmp`` are the only writable places.
The repository root is never mounted, so ``graders/``, ``solutions/``, other submissions and the data
folder do not exist inside. Namespaces: pid, ipc, uts, net (no network, not even the host's
loopback), cgroup; all capabilities are dropped, and a seccomp filter (``course.grading.seccomp``)
refuses new namespaces, mounts, tracing and memory the limits cannot see. When the grader runs as root,
bwrap keeps CAP_SETUID/CAP_SETGID just long enough for the worker to switch to a random unprivileged uid
(so that RLIMIT_NPROC applies and no host file is writable through ownership); otherwise bwrap maps the
user into a new user namespace and forbids nested ones. ``/dev/shm`` is a small tmpfs of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

__all__ = [
    "SANDBOX_INPUTS",
    "SANDBOX_LIB",
    "SANDBOX_SCRATCH",
    "bwrap_args",
    "bwrap_problem",
    "course_dir",
    "exit_reason",
    "report",
    "worker_env",
]

SANDBOX_LIB, SANDBOX_INPUTS, SANDBOX_SCRATCH = "/sandbox/lib", "/sandbox/inputs", "/sandbox/scratch"
WORKER = ["-P", "-s", "-B", "-u", "-m", "course.grading.worker"]
_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime", "/etc/fonts")


def course_dir() -> str:
    """The ``course`` package folder (mounted read-only; the repository around it is not)."""
    return str(Path(__file__).resolve().parents[1])


def worker_env(home: str, tmp: str, lib: str, threads: int) -> dict[str, str]:
    """The whole environment a worker gets: nothing is inherited from the grader."""
    n = str(threads)
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": lib,
        "PYTHONHASHSEED": "0",
        "PYTHONNOUSERSITE": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": f"{tmp}/matplotlib",
        "XDG_CACHE_HOME": f"{tmp}/cache",
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "MALLOC_ARENA_MAX": "2",
        "CUDA_VISIBLE_DEVICES": "",
        "COURSE_OFFLINE": "1",
    }


def bwrap_args(course: str, inputs: str, tmpfs_bytes: int, seccomp_fd: int | None = None) -> list[str]:
    """bwrap options (without the command): see the module docstring."""
    args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-ipc", "--unshare-pid", "--unshare-net"]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    args += ["--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox", "--cap-drop", "ALL"]
    if os.geteuid() == 0:
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]  # the worker drops to a per-run uid
    else:
        args += ["--unshare-user"]
        if "--disable-userns" in _bwrap_help():
            args += ["--disable-userns"]
    args += ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for etc in _ETC:
        args += ["--ro-bind-try", etc, etc]
    size = str(tmpfs_bytes)
    # /tmp first: a Python or venv that lives below /tmp is then bound on top of the tmpfs, not hidden by it
    args += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
    binds = [(p, p) for p in _python_dirs()] + [(course, f"{SANDBOX_LIB}/course"), (inputs, SANDBOX_INPUTS)]
    parents = {str(a) for _, dest in binds for a in Path(dest).parents if str(a) not in ("/", "/tmp")}
    for d in sorted(parents | {SANDBOX_SCRATCH}, key=lambda d: (d.count("/"), d)):
        args += ["--perms", "0755", "--dir", d]  # bwrap would make them 0700: the per-run uid must traverse
    for src, dest in binds:
        args += ["--ro-bind", src, dest]
    args += ["--perms", "1777", "--size", size, "--tmpfs", SANDBOX_SCRATCH]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--size", str(tmpfs_bytes // 4), "--tmpfs", "/dev/shm"]
    args += ["--remount-ro", "/", "--chdir", SANDBOX_SCRATCH]
    return args


def _python_dirs() -> list[str]:
    """The Python install and the venv, outermost first, skipping what /usr already covers."""
    exe_dir = os.path.dirname(os.path.realpath(sys.executable))
    dirs = {sys.prefix, sys.base_prefix, exe_dir} | {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)}
    keep: list[str] = []
    for d in sorted(dirs, key=len):
        if d == "/usr" or d.startswith("/usr/") or any(d == k or d.startswith(k + "/") for k in keep):
            continue
        keep.append(d)
    return keep


@lru_cache(maxsize=1)
def _bwrap_help() -> str:
    out = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10)
    return out.stdout + out.stderr


@lru_cache(maxsize=1)
def bwrap_problem() -> str | None:
    """None when bwrap works here, else why not (checked once per process with a tiny sandboxed Python)."""
    if shutil.which("bwrap") is None:
        return "bwrap is not installed"
    with tempfile.TemporaryDirectory(prefix="course-sandbox-check-") as d:
        cmd = bwrap_args(course_dir(), d, 1 << 20) + ["--", sys.executable, "-S", "-c", "pass"]
        try:
            out = subprocess.run(cmd, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"bwrap failed to run: {e}"
    if out.returncode != 0:
        return f"bwrap does not work here: {out.stderr.decode(errors='replace').strip()[:200]}"
    return None


def report(mode: str, fallback_reason: str, limits, group: str | None, seccomp: bool) -> tuple[list[str], list[str]]:
    """What the sandbox enforces outside the worker, and what is weaker than intended.

    ``group``: "v1"/"v2" when a cgroup holds the whole sandbox, else why not; ``seccomp``: the filter applied.
    """
    cpu = "CPU time of the whole sandbox" if group in ("v1", "v2") else "wall clock"
    common = [
        f"time: {limits.cell_seconds:g} s per cell, {limits.probe_seconds:g} s per probe ({cpu}), "
        f"{limits.run_seconds:g} s per run; then the worker is killed",
        f"output: first {limits.output_bytes >> 10} KiB of stdout and of stderr kept",
        "environment: scrubbed (fixed allow-list, no COURSE_DATA, no credentials)",
        f"replies: JSON only, at most {limits.reply_bytes >> 20} MiB each, validated on the trusted side (no pickle)",
    ]
    enforced, weaker = [], []
    if group in ("v1", "v2"):
        enforced.append(
            f"whole sandbox (cgroup {group}): {_gib(limits.memory_bytes)} memory with shared memory and tmpfs "
            f"files, {limits.pids} processes and threads, {limits.cpus:g} CPU (hard quota, equal share)"
        )
    else:
        weaker.append(f"no cgroup ({group}): memory and processes are limited per process only, CPU is not shared")
    if mode == "bwrap":
        enforced += [
            "filesystem: read-only system, Python install, venv and course package only; "
            "repository, graders, solutions and data not mounted",
            f"writable: tmpfs scratch and /tmp ({limits.tmpfs_bytes >> 20} MiB each), /dev/shm "
            f"({limits.tmpfs_bytes >> 22} MiB), gone after the run",
            "network: none (new network namespace)",
            "processes: new pid, ipc and uts namespaces; killed with the grader",
            "capabilities: all dropped, no new privileges",
        ]
        if seccomp:
            enforced.append(
                "system calls (seccomp): no new namespaces, mounts, ptrace, SysV shared memory, memfd, bpf, io_uring"
            )
        else:
            weaker.append("system calls: no seccomp filter for this architecture (new user namespaces possible)")
        return enforced + common, weaker
    return enforced + common, weaker + [
        f"no bwrap ({fallback_reason}): files this user can read or write are exposed",
        "network: not blocked",
        "processes: no pid namespace",
        "signals: the worker runs as the grader's user and can signal its processes",
    ]


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 1 << 30 else f"{n >> 20} MiB"


def exit_reason(rc: int | None, mode: str, limits) -> str:
    """Words for how a worker ended; bwrap reports a signal as 128 + signo."""
    import signal

    if rc is None:
        return "worker still running"
    sig = -rc if rc < 0 else (rc - 128 if mode == "bwrap" and 128 < rc < 160 else None)
    if sig == signal.SIGXCPU:
        return f"CPU time limit ({limits.cpu_seconds} s)"
    if sig == signal.SIGXFSZ:
        return f"file size limit ({limits.file_bytes >> 20} MiB)"
    if sig is None:
        return f"worker exited with code {rc}"
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    memory_signals = (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGKILL)
    hint = " (often the memory limit)" if sig in memory_signals else ""
    return f"worker killed by {name}{hint}"
