"""Limits for a whole sandbox (all its processes and the shared memory they touch): one control group each.

A ``Cgroup`` is created below the grader's own group, in the cgroup v2 hierarchy when its controllers are
available there, else in the v1 hierarchies (``memory``, ``pids``, ``cpu``, ``cpuacct``), and removed again
when the sandbox ends. It holds:

* ``memory``: every page the sandbox's processes own or touch, shared memory and tmpfs files included
  (v1 ``memory.limit_in_bytes`` and, with swap accounting, ``memory.memsw.limit_in_bytes``; v2 ``memory.max``
  and ``memory.swap.max = 0``); the kernel kills a process of the group when it is exceeded;
* ``pids``: processes and threads together (``pids.max``), so no fork bomb reaches the host's limit;
* ``cpu``: a hard quota of ``cpus`` CPUs (``cpu.cfs_quota_us`` / ``cpu.max``) and an equal weight, so that a
  submission running many busy processes slows down only itself;
* CPU time used by the whole group (``cpuacct.usage`` / ``cpu.stat``), which the sandbox's timeouts count.

Creating groups needs write access to the grader's group (root, or a delegated subtree such as a systemd
service with ``Delegate=yes``). ``Cgroup.create`` returns ``None`` and :func:`cgroup_problem` says why
otherwise; the sandbox then falls back to per-process limits and reports it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from functools import lru_cache
from pathlib import Path

__all__ = ["Cgroup", "cgroup_problem"]

PREFIX = "course-sandbox-"
_V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
_V2_CONTROLLERS = ("memory", "pids", "cpu")
_PERIOD_US = 100_000


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount root, mount point, fstype, super options) of every cgroup mount of this process."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            if len(fields) >= 5 and len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2"):
                out.append((fields[3], fields[4].replace("\\040", " "), rest[0], set(rest[2].split(","))))
    return out


def _own_groups() -> dict[str, str]:
    """Controller (or "" for v2) -> this process's group path, from /proc/self/cgroup."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                out[c] = path
    return out


def _dir(mount_root: str, mount_point: str, path: str) -> Path | None:
    """Where the group ``path`` of a hierarchy appears, given how that hierarchy is mounted here."""
    rel = os.path.relpath(path, mount_root)
    if rel.startswith(".."):
        return None  # our group lies outside what is mounted (e.g. a container's private view)
    return Path(mount_point, rel) if rel != "." else Path(mount_point)


@lru_cache(maxsize=1)
def _layout() -> tuple[str, dict[str, Path]] | str:
    """("v2" | "v1", controller -> the grader's own group folder), or why there is none to use."""
    try:
        mounts, groups = _mounts(), _own_groups()
    except OSError as e:
        return f"cgroups could not be read ({e})"
    for root, point, fstype, _ in mounts:
        if fstype != "cgroup2" or "" not in groups:
            continue
        base = _dir(root, point, groups[""])
        try:
            available = set((base / "cgroup.controllers").read_text().split()) if base else set()
        except OSError:
            available = set()
        if base is not None and set(_V2_CONTROLLERS) <= available:
            return "v2", {c: base for c in _V2_CONTROLLERS}
    found: dict[str, Path] = {}
    for root, point, fstype, opts in mounts:
        if fstype != "cgroup":
            continue
        for c in _V1_CONTROLLERS:
            if c in opts and c in groups and c not in found:
                base = _dir(root, point, groups[c])
                if base is not None:
                    found[c] = base
    missing = [c for c in _V1_CONTROLLERS if c not in found]
    if not missing:
        return "v1", found
    return f"no usable cgroup hierarchy (v2 without {', '.join(_V2_CONTROLLERS)}; v1 without {', '.join(missing)})"


def cgroup_problem() -> str | None:
    """None when sandbox groups can be created here, else why not (checked once, by creating a test group)."""
    return _probe()


@lru_cache(maxsize=1)
def _probe() -> str | None:
    layout = _layout()
    if isinstance(layout, str):
        return layout
    try:
        group = Cgroup._make(layout, memory_bytes=64 << 20, pids=8, cpus=1.0)
    except OSError as e:
        return f"cannot create a cgroup below the grader's own ({e.strerror or e}); run as root or in a delegated group"
    group.remove()
    return None


class Cgroup:
    """One sandbox's control group (see the module docstring); ``procs_files`` are where its first pid goes."""

    def __init__(self, version: str, dirs: dict[str, Path]):
        self.version, self.dirs = version, dirs

    @classmethod
    def create(cls, memory_bytes: int, pids: int, cpus: float, parent: Cgroup | None = None) -> Cgroup | None:
        """A new group with these limits, or None when groups cannot be used here (see ``cgroup_problem``).

        With ``parent``, the group is made inside it: the parent's limits then hold for all its groups together
        (one submission's sessions share one budget)."""
        if cgroup_problem() is not None:
            return None
        if parent is not None:
            return cls._make((parent.version, parent.dirs), memory_bytes, pids, cpus)
        layout = _layout()
        _sweep(layout)
        return cls._make(layout, memory_bytes, pids, cpus)

    @classmethod
    def _make(cls, layout, memory_bytes: int, pids: int, cpus: float) -> Cgroup:
        version, bases = layout
        name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        dirs: dict[str, Path] = {}
        group = cls(version, dirs)
        try:
            for c, base in bases.items():
                d = base / name
                if d not in dirs.values():
                    d.mkdir()
                dirs[c] = d
            group._limit(memory_bytes, pids, cpus)
        except OSError:
            group.remove()
            raise
        return group

    def _limit(self, memory_bytes: int, pids: int, cpus: float) -> None:
        quota = max(1000, int(cpus * _PERIOD_US))
        if self.version == "v2":
            parent = self.dirs["memory"].parent
            with contextlib.suppress(OSError):  # enabled already, or not ours to enable (then writes below fail)
                (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in _V2_CONTROLLERS))
            d = self.dirs["memory"]
            with contextlib.suppress(OSError):  # a group of ours, not yet holding processes: its children get them
                (d / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in _V2_CONTROLLERS))
            (d / "memory.max").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):  # no swap accounting: nothing to forbid
                (d / "memory.swap.max").write_text("0")
            (d / "pids.max").write_text(str(pids))
            (d / "cpu.max").write_text(f"{quota} {_PERIOD_US}")
            (d / "cpu.weight").write_text("100")
            return
        mem = self.dirs["memory"]
        (mem / "memory.limit_in_bytes").write_text(str(memory_bytes))
        with contextlib.suppress(OSError):  # only present with swap accounting
            (mem / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
        (self.dirs["pids"] / "pids.max").write_text(str(pids))
        cpu = self.dirs["cpu"]
        (cpu / "cpu.cfs_period_us").write_text(str(_PERIOD_US))
        (cpu / "cpu.cfs_quota_us").write_text(str(quota))
        (cpu / "cpu.shares").write_text("1024")

    @property
    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process writes its pid into to join (one per hierarchy)."""
        return sorted({str(d / "cgroup.procs") for d in self.dirs.values()})

    def cpu_seconds(self) -> float:
        """CPU time used by every process that ever ran in the group."""
        try:
            if self.version == "v2":
                stat = (self.dirs["cpu"] / "cpu.stat").read_text().split()
                return int(stat[stat.index("usage_usec") + 1]) / 1e6
            return int((self.dirs["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError, IndexError):
            return 0.0

    def oom_kills(self) -> int:
        """Processes of the group the kernel killed for exceeding the memory limit."""
        name = "memory.events" if self.version == "v2" else "memory.oom_control"
        try:
            fields = (self.dirs["memory"] / name).read_text().split()
            return int(fields[fields.index("oom_kill") + 1])
        except (OSError, ValueError, IndexError):
            return 0

    def pids(self) -> list[int]:
        out: set[int] = set()
        for d in set(self.dirs.values()):
            with contextlib.suppress(OSError, ValueError):
                out |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
        return sorted(out)

    def kill(self) -> None:
        """SIGKILL every process in the group (new ones too: forks racing the kill are caught by the loop)."""
        if self.version == "v2":
            with contextlib.suppress(OSError):
                (self.dirs["memory"] / "cgroup.kill").write_text("1")
        for _ in range(50):
            left = self.pids()
            if not left:
                return
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def remove(self) -> None:
        """Kill what is left and delete the group folders (a group can only be removed once empty)."""
        self.kill()
        for d in sorted(set(self.dirs.values()), key=lambda p: len(p.parts), reverse=True):
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        self.dirs = {}


def _sweep(layout) -> None:
    """Remove empty groups that graders which have since died left behind (best effort)."""
    _, bases = layout
    for base in set(bases.values()):
        with contextlib.suppress(OSError):
            for d in base.iterdir():
                if not d.name.startswith(PREFIX):
                    continue
                owner = d.name[len(PREFIX) :].split("-", 1)[0]
                if owner.isdigit() and not Path("/proc", owner).exists():
                    with contextlib.suppress(OSError):
                        d.rmdir()
