"""Run a submission's code in a sandboxed worker and ask it questions (probes); the trusted side only reads data.

    from course.grading import Limits, Ref, Sandbox

    sandbox = Sandbox(Limits(probe_seconds=20))
    result = sandbox.run(
        [("imports", "import torch\\nimport torch.nn.functional as F"), ("ex2_conv2d", source)],
        [{"id": "p1", "op": "call", "target": "conv2d", "args": [x, w], "kwargs": {"stride": 2}}],
    )
    result.cells[1].ok, result["p1"].status, result["p1"].value   # value: a plain torch.Tensor

or interactively (hypothesis examples, checks that depend on earlier answers)::

    with sandbox.session(cells) as s:
        bn = s.store("bn", "BatchNorm2d", 4)            # value Ref("$bn", "BatchNorm2d")
        s.call("$bn", x); s.get("$bn.running_mean"); s.call("$bn.eval")

Probe vocabulary (one JSON object per probe; ``id`` is optional in a session, unique in ``run``):

======== ================================ =====================================================
op       fields                           does (in the worker)
======== ================================ =====================================================
call     target, args, kwargs             ``resolve(target)(*args, **kwargs)``
get      target                           ``resolve(target)``: a name, ``$ref`` or attribute path
set      target, value                    ``setattr(resolve(owner), attr, value)``
helper   name, args, kwargs               a helper from ``course.grading.probelib``, bound when the
                                          worker started (training runs, predictions, figure
                                          summaries, forward/backward...); its result is data
======== ================================ =====================================================

Options on any probe: ``store`` (keep the result as ``$name`` and reply with a ``Ref``), ``discard``
(reply ``None``), ``seed`` (seed ``random``, numpy and torch first), ``no_grad``, ``timeout`` (seconds),
``watch`` (a regex: the worker records the torch operators, e.g. ``aten.convolution.default``, and the numpy
``convolve``/``correlate``/``pad`` calls the probe ran whose names match it; ``ProbeResult.watched`` lists them;
``Session.watch`` sets it for every probe).
Targets: ``name`` looks up the submission's namespace, ``$name`` a stored object, ``.attr`` parts follow
attributes. Arguments are ``protocol.encode``-able values: JSON, numpy arrays, torch tensors (arrays over
``Limits.spill_bytes`` go through ``.npy`` files in a read-only inputs folder), ``Ref`` and ``Npy``
(``Session.put`` writes a named array once for many probes).

Results: ``ProbeResult.status`` is ``ok`` (``value`` is plain data: JSON types, tuples, ``torch.Tensor``
or ``np.ndarray``, ``Ref``, ``Opaque(type)`` for objects with no plain form), ``error`` (the submission
raised: ``error.type``, ``error.mro``, ``error.message``, a short traceback without install paths),
``invalid`` (the reply broke the protocol or was too large), ``timeout``, ``crashed`` (the worker died:
exit code, signal, CPU limit) or ``skipped`` (the worker had stopped earlier; ``detail`` says why).

What the caller must not send: expected values, labels of held-out data, reference weights the check
is about, or anything else that would let the submission answer without computing. Training labels
that a training helper needs are inputs; test labels stay on the trusted side, which compares the
returned logits with them. Everything in a reply can be forged by the submission (it owns its
process), so checks compare returned data with trusted results and never ask the worker for verdicts.

Isolation: ``bwrap`` (read-only system, Python install, venv and the ``course`` package only; no
repository, no data; tmpfs scratch and /tmp; no network; new pid, ipc and uts namespaces; all
capabilities dropped, a seccomp filter, and, when the grader runs as root, a per-run unprivileged uid).
It is required unless the caller asks for weaker isolation (``isolation="auto"`` or ``"rlimits"``).
Where each worker can get its own uid and cgroup (bwrap, root, cgroups), a ``Sandbox`` is one bwrap whose
launcher imports the libraries once (``preload``) and forks each session's worker (``process.Launcher``).
Every session's processes share one cgroup when this machine allows it (memory with shared memory,
processes, a CPU quota; timeouts then count the sandbox's CPU time), and each process gets rlimits (CPU
time, data memory, address space, processes, file size, open files), a scrubbed environment and capped
output. ``RunResult.enforced`` and ``RunResult.weaker`` list what held and what did not.

Cells: each runs in one shared namespace (``__main__``), in order, when the caller asks for them
(``start(upto)``, ``advance(upto)``), so a grader can check a task before the cells after it run. A
cell that raises records its error and the next cell runs. A cell that hangs or kills the worker is
recorded (``timeout``/``crashed``) and the cells after it run on a fresh worker that first replays the
earlier cells. A probe that hangs or kills the worker marks the probes after it ``skipped``;
``Session.restart()`` gives a grader a fresh worker. Restarts are counted per task (``new_task()``
resets the count), at most ``Limits.max_restarts`` each.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from course.grading.cgroup import Cgroup, cgroup_problem
from course.grading.isolation import (
    SANDBOX_INPUTS,
    SANDBOX_LIB,
    SANDBOX_SCRATCH,
    WORKER,
    bwrap_args,
    bwrap_problem,
    course_dir,
    exit_reason,
    report,
    worker_env,
)
from course.grading.process import Capture, Launcher, WorkerProcess
from course.grading.protocol import Budget, Npy, ProtocolError, decode, encode, valid_npy_name
from course.grading.seccomp import filter_program

__all__ = ["CellResult", "ErrorInfo", "Frame", "Limits", "ProbeResult", "RunResult", "Sandbox", "Session"]

OPS = ("call", "get", "set", "helper")  # each op is surface a submission can drive: only what graders use
STATUSES = ("ok", "error", "invalid", "timeout", "crashed", "skipped")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_PATH = re.compile(r"^\$?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_WORKER_LIMITS = ("cpu_seconds", "memory_bytes", "address_space_bytes", "processes", "file_bytes", "open_files")
_WORKER_LIMITS += ("reply_bytes", "threads")
WEAK_ISOLATION_HINT = "install bubblewrap (apt-get install bubblewrap), or accept weaker isolation explicitly"


@dataclass(frozen=True)
class Limits:
    """What one sandbox may use. Defaults fit a short CPU training run.

    ``memory_bytes`` caps the whole sandbox (its cgroup: all processes, shared memory and tmpfs files) and,
    as RLIMIT_DATA, each process's heap (torch + fastai start at ~1.0 GiB); ``address_space_bytes`` caps each
    process's mappings (RLIMIT_AS; the CUDA build of torch maps ~3.8 GiB of libraries). ``pids`` counts the
    sandbox's processes and threads together, ``processes`` is RLIMIT_NPROC. ``cpus`` is the sandbox's CPU
    quota. ``cell_seconds`` and ``probe_seconds`` count the sandbox's CPU time when it has a cgroup (with a
    wall-clock backstop, ``process.wall_cap``), else wall-clock time. ``reply_bytes`` caps one reply,
    ``session_reply_bytes`` everything one worker sends.
    """

    cpu_seconds: int = 300
    memory_bytes: int = 4 << 30
    address_space_bytes: int = 8 << 30
    processes: int = 64
    pids: int = 128
    cpus: float = 1.0
    file_bytes: int = 64 << 20
    open_files: int = 256
    tmpfs_bytes: int = 256 << 20
    output_bytes: int = 64 << 10
    reply_bytes: int = 8 << 20
    session_reply_bytes: int = 512 << 20
    spill_bytes: int = 1 << 20
    threads: int = 1
    startup_seconds: float = 60.0
    cell_seconds: float = 60.0
    probe_seconds: float = 60.0
    run_seconds: float = 900.0
    max_restarts: int = 2


@dataclass(frozen=True)
class Frame:
    """One frame of the submission's code in a traceback: cell (grade_id), function, line, source line."""

    cell: str
    function: str
    line: int
    code: str


@dataclass(frozen=True)
class ErrorInfo:
    """An exception raised by submission code, as text: class name, class names of its MRO, message, traceback."""

    type: str
    message: str
    traceback: str = ""
    mro: tuple[str, ...] = ()
    frames: tuple[Frame, ...] = ()  # the submission's frames, outermost first

    def is_a(self, name: str) -> bool:
        """True when the exception is (a subclass of) the builtin class called ``name``."""
        return name in self.mro

    @property
    def origin(self) -> Frame | None:
        """The innermost frame of the submission's code (where the error was raised or passed through last)."""
        return self.frames[-1] if self.frames else None

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


@dataclass
class _Ran:
    """How running submission code ended: ``status`` ("ok", "error", "timeout", ...), what it raised, details."""

    status: str
    error: ErrorInfo | None = None
    detail: str = ""
    seconds: float = 0.0
    watched: tuple[str, ...] = ()  # operators matching the probe's ``watch`` that it ran (any status)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class CellResult(_Ran):
    grade_id: str = field(kw_only=True)


@dataclass
class ProbeResult(_Ran):
    id: str = field(kw_only=True)
    value: Any = field(default=None, kw_only=True)

    def raised(self, name: str) -> bool:
        """True when the submission raised ``name`` (or a subclass of it)."""
        return self.status == "error" and self.error is not None and self.error.is_a(name)


@dataclass
class RunResult:
    cells: list[CellResult]
    probes: dict[str, ProbeResult]
    isolation: str
    enforced: list[str]
    weaker: list[str]
    stdout: str
    stderr: str
    output_truncated: bool
    startup_seconds: float
    seconds: float
    restarts: int
    stops: list[str] = field(default_factory=list)

    def __getitem__(self, probe_id: str) -> ProbeResult:
        return self.probes[probe_id]

    def cell(self, grade_id: str) -> CellResult:
        """The first cell with this grade_id."""
        for c in self.cells:
            if c.grade_id == grade_id:
                return c
        raise KeyError(f"no cell with grade_id {grade_id!r}")


class Sandbox:
    """Factory for sandboxed sessions.

    ``isolation``: "bwrap" (required: raises when it does not work here), "auto" (bwrap when it works, else
    per-process limits only, said in every result) or "rlimits" (per-process limits only). Grading
    submissions should use "bwrap"; the weaker modes are explicit choices.
    """

    def __init__(self, limits: Limits | None = None, isolation: str = "bwrap", preload: tuple[str, ...] = ()):
        if isolation not in ("auto", "bwrap", "rlimits"):
            raise ValueError(f"isolation must be 'auto', 'bwrap' or 'rlimits', got {isolation!r}")
        self.limits = limits or Limits()
        self.requested = isolation
        self.mode, self.fallback_reason = self._choose(isolation)
        self.seccomp = filter_program() if self.mode == "bwrap" else None
        self.group_problem = cgroup_problem()
        self._group: Cgroup | None = None
        self.preload = tuple(preload)  # modules the launcher imports for every session (library names only)
        # Sessions' workers are forked by one launcher per sandbox where each can still get its own uid and
        # cgroup (bwrap, run as root, cgroups usable); otherwise each starts in a sandbox of its own.
        self.launches = self.mode == "bwrap" and os.geteuid() == 0 and self.group_problem is None
        self._launcher: Launcher | None = None
        self.launch_problem = ""
        self._inputs = tempfile.mkdtemp(prefix="course-sandbox-") if self.launches else None
        if self._inputs:
            os.chmod(self._inputs, 0o755)
            weakref.finalize(self, shutil.rmtree, self._inputs, True)

    def group(self) -> Cgroup | None:
        """The cgroup all this sandbox's sessions share (their memory, processes and CPU quota, together)."""
        if self._group is None and self.group_problem is None:
            lim = self.limits
            try:
                self._group = Cgroup.create(lim.memory_bytes, lim.pids, lim.cpus)
            except OSError as e:
                self.group_problem = f"cgroup could not be created: {e}"
                return None
            weakref.finalize(self, self._group.remove)
        return self._group

    def close(self) -> None:
        """Stop the launcher, remove the inputs folder and the shared cgroup (its sessions must be closed first)."""
        if self._launcher is not None:
            self._launcher.close()
            self._launcher = None
        if self._inputs:
            shutil.rmtree(self._inputs, ignore_errors=True)
            self._inputs = None
        if self._group is not None:
            self._group.remove()
            self._group = None

    def launcher(self, deadline: float) -> Launcher | None:
        """The launcher that forks this sandbox's workers (started with the first one), or None when workers start
        on their own: where ``launches`` is false, or the launcher could not start (``launch_problem``)."""
        if not self.launches or self.launch_problem:
            return None
        if self._launcher is not None and self._launcher.alive:
            return self._launcher
        if self._launcher is not None:  # it died (it runs no submission code, but memory pressure can end it)
            self._launcher.close()
            self._launcher = None
        lim, parent = self.limits, self.group()
        try:
            group = Cgroup.create(lim.memory_bytes, lim.pids, lim.cpus, parent=parent) if parent else None
        except OSError as e:
            group, self.launch_problem = None, f"its cgroup could not be created: {e}"
        if group is None:
            self.launch_problem = self.launch_problem or "no cgroup"
            return None
        cmd, fds = self.bwrap_command(self._inputs)
        cfg = {"inputs": SANDBOX_INPUTS, "lib": SANDBOX_LIB, "preload": list(self.preload)}
        cfg["limits"] = {k: getattr(lim, k) for k in _WORKER_LIMITS}
        env = self.environment(SANDBOX_SCRATCH, "/tmp", SANDBOX_LIB)
        mode = self.mode  # not ``self`` in the closure: the launcher would keep this sandbox alive in a cycle
        words = lambda rc: exit_reason(rc, mode, lim)  # noqa: E731
        try:
            self._launcher = Launcher(
                cmd, env, cfg, (Capture(4096), Capture(4096)), words, group, fds, lim.startup_seconds, deadline
            )
        finally:
            for fd in fds:
                os.close(fd)
        weakref.finalize(self, self._launcher.close)  # a sandbox nobody closed stops its launcher when it goes
        if not self._launcher.alive:
            self.launch_problem = self._launcher.problem or "it stopped"
            self._launcher.close()
            self._launcher = None
        return self._launcher

    def bwrap_command(self, inputs: str) -> tuple[list[str], tuple[int, ...]]:
        """bwrap's command line for a worker or launcher, and the fds it must inherit (the seccomp program)."""
        extra_fds: tuple[int, ...] = ()
        seccomp_fd = None
        if self.seccomp is not None:
            seccomp_fd, w = os.pipe()  # bwrap reads the filter program from this fd
            os.write(w, self.seccomp)
            os.close(w)
            extra_fds = (seccomp_fd,)
        cmd = bwrap_args(course_dir(), inputs, self.limits.tmpfs_bytes, seccomp_fd)
        return cmd + ["--", sys.executable, *WORKER], extra_fds

    @staticmethod
    def _choose(isolation: str) -> tuple[str, str]:
        if isolation == "rlimits":
            return "rlimits-only", "rlimits-only was requested"
        reason = bwrap_problem()
        if reason is None:
            return "bwrap", ""
        if isolation == "bwrap":
            raise RuntimeError(f"bwrap isolation is required but {reason}; {WEAK_ISOLATION_HINT}")
        return "rlimits-only", reason

    def session(
        self, cells: list[tuple[str, str]], files: dict[str, Any] | None = None, deadline: float | None = None
    ) -> Session:
        """A session over ``cells``; ``deadline`` (``time.monotonic()``) shortens its ``Limits.run_seconds``."""
        return Session(self, cells, files, deadline)

    def run(self, cells: list[tuple[str, str]], probes: list[dict], files: dict[str, Any] | None = None) -> RunResult:
        """Run ``cells`` in one worker, then ``probes`` in order; after a worker stop the rest are ``skipped``."""
        ids = [p.get("id") for p in probes]
        if None in ids or len(set(ids)) != len(ids):
            raise ValueError("every probe passed to run() needs a unique 'id'")
        with self.session(cells, files) as s:
            for p in probes:
                s.probe(p)
        return s.result()

    def environment(self, home: str, tmp: str, lib: str) -> dict[str, str]:
        """The worker's whole environment (an allow-list; nothing is inherited)."""
        return worker_env(home, tmp, lib, self.limits.threads)


class Session:
    """One submission's worker: cells run on ``start``/``advance``; ``probe`` asks questions; ``close`` cleans up."""

    def __init__(
        self,
        sandbox: Sandbox,
        cells: list[tuple[str, str]],
        files: dict[str, Any] | None = None,
        deadline: float | None = None,
    ):
        for cell in cells:
            if not (isinstance(cell, tuple | list) and len(cell) == 2 and all(isinstance(c, str) for c in cell)):
                raise TypeError("cells must be (grade_id, source) string pairs")
        self.sandbox, self.limits = sandbox, sandbox.limits
        self.cell_specs = [(g, s) for g, s in cells]
        self.cells: list[CellResult] = []
        self.probes: dict[str, ProbeResult] = {}
        self.stops: list[str] = []
        self.restarts = 0  # in all
        self._task_restarts = 0  # since the last new_task()
        self.startup_seconds = 0.0
        self._group: Cgroup | None = None
        self._group_state = sandbox.group_problem or "not started"
        self._worker_notes: tuple[list[str], list[str]] = ([], [])
        self.worker_info: dict = {}
        self._worker: WorkerProcess | None = None
        self.launched = False  # the worker was forked by the sandbox's launcher
        self._stdout, self._stderr = Capture(self.limits.output_bytes), Capture(self.limits.output_bytes)
        self._killers: set[int] = set()
        self._n = 0
        self._probe_n = 0
        self.watch = ""  # a regex of operator names every probe watches for (see the module docstring)
        self._t0 = time.monotonic()
        self._deadline = min(self._t0 + self.limits.run_seconds, deadline or float("inf"))
        self._dirs = [tempfile.mkdtemp(prefix="course-sandbox-", dir=sandbox._inputs)]
        self.inputs = Path(self._dirs[0])
        os.chmod(self.inputs, 0o755)
        for name, array in (files or {}).items():
            self.put(name, array)

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Session:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._worker is not None and self._worker.alive

    @property
    def group(self) -> Cgroup | None:
        """The cgroup holding this session's processes (None where cgroups cannot be used)."""
        return self._group

    @property
    def enforced(self) -> list[str]:
        return self._report()[0]

    @property
    def weaker(self) -> list[str]:
        return self._report()[1]

    def _report(self) -> tuple[list[str], list[str]]:
        sb = self.sandbox
        group = self._group.version if self._group is not None else self._group_state
        enforced, weaker = report(sb.mode, sb.fallback_reason, self.limits, group, sb.seccomp is not None)
        if self.launched:
            enforced.append(
                "sessions: one sandbox per notebook; each session's worker is forked from its launcher (libraries "
                "imported once, no submission code) and has its own uid, cgroup, folders and inputs"
            )
        return enforced + self._worker_notes[0], weaker + self._worker_notes[1]

    def start(self, upto: int | None = None) -> list[CellResult]:
        """Start the worker and run the first ``upto`` cells (all of them by default)."""
        if self._worker is None and not self._respawn(replay_until=0):
            why = f"not run: {self._why()}"
            self.cells = [CellResult("skipped", detail=why, grade_id=g) for g, _ in self.cell_specs]
            return self.cells
        return self.advance(len(self.cell_specs) if upto is None else upto)

    def advance(self, upto: int) -> list[CellResult]:
        """Run the cells before index ``upto`` that have not run yet, in order; a cell that kills the worker is
        recorded and the next one runs on a fresh worker (within the restart budget)."""
        upto = min(upto, len(self.cell_specs))
        i = len(self.cells)
        while i < upto:
            if not self.alive and not self._respawn(replay_until=i):
                why = f"not run: the worker stopped ({self._why()}) and no restart is left"
                self.cells += [CellResult("skipped", detail=why, grade_id=g) for g, _ in self.cell_specs[i:upto]]
                break
            grade_id, source = self.cell_specs[i]
            msg = {"op": "exec", "cell": _safe_id(grade_id), "source": source}
            status, reply, detail, secs = self._exchange(msg, self.limits.cell_seconds, f"cell {grade_id}")
            if status in ("timeout", "crashed"):
                self._killers.add(i)
            error = None
            if status == "ok" and reply.get("status") == "error":
                error = _error(reply.get("error"))
                status, detail = "error", _explain(error, self.limits)
            elif status == "ok" and reply.get("status") != "ok":
                status, detail = "invalid", "reply is not valid protocol (unknown status)"
            self.cells.append(CellResult(status, error, detail, secs, grade_id=grade_id))
            i += 1
        return self.cells

    def new_task(self) -> None:
        """The grader moves on to another task: it gets its own ``Limits.max_restarts`` restarts."""
        self._task_restarts = 0

    def restart(self) -> bool:
        """A fresh worker with the cells run so far replayed (stored ``$refs`` are lost); False when no restart
        is left."""
        self._kill("restarted by the grader" if self.alive else None)
        if self._respawn(replay_until=len(self.cells)):
            return True
        if not self.stops or not self.stops[-1].endswith("no restart is left"):
            self.stops.append(f"{self._why()}; no restart is left")
        return False

    def close(self) -> None:
        if self.alive:
            self._kill(None)
        if self._group is not None:
            self._group.remove()
            self._group = None
        for d in self._dirs:
            shutil.rmtree(d, ignore_errors=True)
        self._dirs = []

    def result(self) -> RunResult:
        """Everything so far: cells, probes, output, isolation report."""
        if self.alive:
            self._worker.drain()
        enforced, weaker = self._report()
        return RunResult(
            cells=list(self.cells),
            probes=dict(self.probes),
            isolation=self.sandbox.mode,
            enforced=enforced,
            weaker=weaker,
            stdout=self._stdout.text(),
            stderr=self._stderr.text(),
            output_truncated=self._stdout.truncated or self._stderr.truncated,
            startup_seconds=self.startup_seconds,
            seconds=round(time.monotonic() - self._t0, 3),
            restarts=self.restarts,
            stops=list(self.stops),
        )

    # --- probes ------------------------------------------------------------------------------
    def put(self, name: str, array) -> Npy:
        """Write a big input array once (``name.npy`` in the read-only inputs folder); pass the ``Npy`` as an arg."""
        fname = name if name.endswith(".npy") else f"{name}.npy"
        if not valid_npy_name(fname):
            raise ValueError(f"input names are 1-64 of [A-Za-z0-9_-], got {name!r}")
        kind = "ndarray" if type(array) is np.ndarray else "tensor"
        arr = array if type(array) is np.ndarray else array.detach().cpu().contiguous().numpy()
        np.save(self.inputs / fname, np.ascontiguousarray(arr), allow_pickle=False)
        os.chmod(self.inputs / fname, 0o644)
        return Npy(fname, kind)

    def probe(self, spec: dict) -> ProbeResult:
        """Send one probe (see the module docstring) and return its validated result; never raises for worker faults."""
        spec = dict(spec)
        self._probe_n += 1
        pid = str(spec.pop("id", f"p{self._probe_n}"))
        timeout = float(spec.pop("timeout", self.limits.probe_seconds))
        msg = self._check(spec)
        if not self.alive:
            res = ProbeResult("skipped", detail=f"not run: {self._why()}", id=pid)
        else:
            if self.watch and "watch" not in msg:
                msg["watch"] = self.watch
            status, reply, detail, secs = self._exchange(msg, timeout, f"probe {pid}")
            res = ProbeResult(status, detail=detail, seconds=secs, id=pid)
            if status == "ok":
                res = self._read_reply(pid, reply, secs)
        self.probes[pid] = res
        return res

    def call(self, target: str, *args, **kwargs) -> ProbeResult:
        return self.probe({"op": "call", "target": target, "args": list(args), "kwargs": kwargs})

    def store(self, name: str, target: str, *args, **kwargs) -> ProbeResult:
        """``$name = target(*args, **kwargs)`` in the worker; the value is ``Ref("$name", type)``."""
        return self.probe({"op": "call", "target": target, "args": list(args), "kwargs": kwargs, "store": name})

    def get(self, target: str) -> ProbeResult:
        return self.probe({"op": "get", "target": target})

    def helper(self, name: str, *args, **kwargs) -> ProbeResult:
        return self.probe({"op": "helper", "name": name, "args": list(args), "kwargs": kwargs})

    def _check(self, spec: dict) -> dict:
        op = spec.get("op")
        if op not in OPS:
            raise ValueError(f"probe op must be one of {OPS}, got {op!r}")
        allowed = {"op", "target", "args", "kwargs", "name", "value", "store", "discard", "seed", "no_grad", "watch"}
        if set(spec) - allowed:
            raise ValueError(f"unknown probe fields {sorted(set(spec) - allowed)}")
        if op != "helper" and not _PATH.match(str(spec.get("target", ""))):
            raise ValueError(f"probe target must be 'name', '$ref' or a dotted path, got {spec.get('target')!r}")
        if op == "helper":
            from course.grading.probelib import HELPER_NAMES

            if spec.get("name") not in HELPER_NAMES:
                raise ValueError(f"unknown helper {spec.get('name')!r}; helpers: {sorted(HELPER_NAMES)}")
        if "store" in spec and not _IDENT.match(str(spec["store"])):
            raise ValueError(f"store names are identifiers, got {spec['store']!r}")
        if "seed" in spec and type(spec["seed"]) is not int:
            raise ValueError(f"seed must be an int, got {spec['seed']!r}")
        if "watch" in spec:
            _regex(spec["watch"])
        msg = dict(spec)
        msg["args"] = [self._enc(a) for a in spec.get("args", [])]
        msg["kwargs"] = {str(k): self._enc(v) for k, v in spec.get("kwargs", {}).items()}
        if "value" in spec:
            msg["value"] = self._enc(spec["value"])
        return msg

    def _enc(self, value):
        def spill(arr: np.ndarray, kind: str) -> Npy:
            self._n += 1
            npy = self.put(f"spill{self._n}", arr)
            return Npy(npy.name, kind)

        return encode(value, spill=spill, spill_bytes=self.limits.spill_bytes)

    def _read_reply(self, pid: str, reply: dict, secs: float) -> ProbeResult:
        try:
            status = reply.get("status")
            watched = reply.get("watched", [])
            if not (isinstance(watched, list) and len(watched) <= 20 and all(isinstance(w, str) for w in watched)):
                raise ProtocolError("'watched' should be a list of at most 20 operator names")
            watched = tuple(_text(w, 100) for w in watched)
            if status == "ok":
                value = decode(reply.get("value"), Budget(array_bytes=self.limits.reply_bytes))
                return ProbeResult("ok", seconds=secs, watched=watched, id=pid, value=value)
            if status == "error":
                error = _error(reply.get("error"))
                detail = _explain(error, self.limits)
                return ProbeResult("error", error, detail, secs, watched, id=pid)
            if status == "invalid":
                return ProbeResult("invalid", detail=_text(reply.get("detail"), 300), seconds=secs, id=pid)
            raise ProtocolError(f"unknown reply status {str(status)[:40]!r}")
        except (ProtocolError, TypeError, ValueError, AttributeError, RecursionError, OverflowError) as e:
            return ProbeResult("invalid", detail=f"invalid reply from the worker: {e}"[:300], seconds=secs, id=pid)

    # --- the worker process ------------------------------------------------------------------
    def _respawn(self, replay_until: int) -> bool:
        if self._worker is not None:
            if self._task_restarts >= self.limits.max_restarts:
                return False
            self.restarts += 1
            self._task_restarts += 1
        if time.monotonic() >= self._deadline:
            self.stops.append(f"run time limit ({self.limits.run_seconds:g} s) reached")
            return False
        if not self._spawn():
            return False
        for i, (grade_id, source) in enumerate(self.cell_specs[:replay_until]):
            if i in self._killers:
                continue
            status, *_ = self._exchange(
                {"op": "exec", "cell": _safe_id(grade_id), "source": source},
                self.limits.cell_seconds,
                f"cell {grade_id} (replay)",
            )
            if status in ("timeout", "crashed"):
                self._killers.add(i)
                return False
        return True

    def _cgroup(self) -> Cgroup | None:
        """The session's cgroup, inside the sandbox's (made at the first start, emptied at each restart), or None
        (see ``weaker``)."""
        parent = self.sandbox.group()
        if self._group is None and parent is not None:
            lim = self.limits
            try:
                self._group = Cgroup.create(lim.memory_bytes, lim.pids, lim.cpus, parent=parent)
            except OSError as e:
                self._group_state = f"cgroup could not be created: {e}"
        elif parent is None:
            self._group_state = self.sandbox.group_problem or self._group_state
        return self._group

    def _spawn(self) -> bool:
        sb, lim = self.sandbox, self.limits
        extra_fds: tuple[int, ...] = ()
        launcher = sb.launcher(self._deadline)
        if launcher is not None:
            return self._fork(launcher)
        if sb.mode == "bwrap":
            cmd, extra_fds = sb.bwrap_command(str(self.inputs))
            env = sb.environment(SANDBOX_SCRATCH, "/tmp", SANDBOX_LIB)
            cfg, cwd = {"inputs": SANDBOX_INPUTS, "lib": SANDBOX_LIB}, None
            if os.geteuid() == 0:
                cfg["uid"] = cfg["gid"] = _run_uid()
        else:
            lib, scratch = (tempfile.mkdtemp(prefix=f"course-sandbox-{p}-") for p in ("lib", "scratch"))
            self._dirs += [lib, scratch]
            os.symlink(course_dir(), os.path.join(lib, "course"))  # PYTHONPATH gets the package, not the repo
            cmd, env = [sys.executable, *WORKER], sb.environment(scratch, scratch, lib)
            cfg, cwd = {"inputs": str(self.inputs), "lib": lib}, scratch
        cfg["limits"] = {k: getattr(lim, k) for k in _WORKER_LIMITS}
        t0 = time.monotonic()
        try:
            self._worker = WorkerProcess(
                cmd, env, cfg, cwd, (self._stdout, self._stderr), lim.reply_bytes,
                lambda rc: exit_reason(rc, sb.mode, lim), self._cgroup(), extra_fds, lim.session_reply_bytes,
            )  # fmt: skip
        finally:
            for fd in extra_fds:
                os.close(fd)
        return self._hello(t0)

    def _fork(self, launcher: Launcher) -> bool:
        """This session's worker, forked by the sandbox's launcher into this session's own cgroup."""
        lim, t0 = self.limits, time.monotonic()
        uid = _run_uid()
        worker = {"inputs": f"{SANDBOX_INPUTS}/{self.inputs.name}", "uid": uid, "gid": uid}
        group = self._cgroup()
        if group is None:
            self._kill(f"worker did not start: {self._group_state}")
            return False
        try:
            self._worker = launcher.spawn(
                worker, (self._stdout, self._stderr), lim.reply_bytes, lambda rc: exit_reason(rc, "forked", lim),
                group, lim.session_reply_bytes, lim.startup_seconds,
            )  # fmt: skip
        except OSError as e:
            self._kill(f"worker did not start: {e}")
            return False
        self.launched = True
        return self._hello(t0)

    def _hello(self, t0: float) -> bool:
        lim = self.limits
        status, hello, detail, _ = self._worker.exchange(None, lim.startup_seconds, self._deadline)
        if status != "ok":
            tail = self._stderr.text()[-300:].strip()
            self._kill(f"worker did not start: {detail}" + (f" ({tail})" if tail else ""))
            return False
        self.startup_seconds = round(time.monotonic() - t0, 3)
        self.worker_info = {k: hello.get(k) for k in ("uid", "pidns", "versions", "startup_seconds")}
        self._worker_notes = (
            [_text(n, 200) for n in hello.get("enforced", [])][:20],
            [_text(n, 200) for n in hello.get("weaker", [])][:20],
        )
        return True

    def _exchange(self, msg: dict, timeout: float, what: str) -> tuple[str, dict, str, float]:
        self._n += 1
        status, reply, detail, secs = self._worker.exchange(
            {**msg, "id": f"m{self._n}"}, timeout, self._deadline, cpu_time=True
        )
        if status == "timeout" and detail == "run time limit reached":
            detail = f"run time limit ({self.limits.run_seconds:g} s) reached"
        if status in ("timeout", "crashed"):
            self.stops.append(f"{detail} in {what}")
        return status, reply, detail, secs

    def _kill(self, reason: str | None) -> None:
        if reason:
            self.stops.append(reason)
        if self._worker is not None:
            self._worker.kill()

    def _why(self) -> str:
        """Why the worker is not running: the last stop that was not the grader's own restart."""
        real = [s for s in self.stops if s != "restarted by the grader"]
        return real[-1] if real else "the worker is not running"


def _run_uid() -> int:
    """A fresh unprivileged uid for one worker (when the grader is root): nothing on the host belongs to it."""
    return 2_000_000_000 + secrets.randbelow(100_000_000)


def _safe_id(grade_id: str) -> str:
    """The cell's name inside the worker (``<cell NAME>`` in tracebacks, ``source`` replies)."""
    return re.sub(r"[^\w.-]", "_", grade_id)[:100]


def _text(value, cap: int) -> str:
    return value[:cap] if isinstance(value, str) else ""


def _error(raw) -> ErrorInfo:
    if not isinstance(raw, dict):
        return ErrorInfo("UnknownError", "the worker sent no error details")
    mro = raw.get("mro")
    mro = tuple(_text(m, 100) for m in mro[:12]) if isinstance(mro, list) else ()
    frames = raw.get("frames") if isinstance(raw.get("frames"), list) else []
    frames = tuple(
        Frame(_text(f.get("cell"), 100), _text(f.get("function"), 100), f["line"], _text(f.get("code"), 200))
        for f in frames[-8:]
        if isinstance(f, dict) and type(f.get("line")) is int
    )
    return ErrorInfo(
        _text(raw.get("type"), 100), _text(raw.get("message"), 4000), _text(raw.get("traceback"), 4000), mro, frames
    )


def _explain(error: ErrorInfo | None, limits: Limits) -> str:
    if error is None:
        return ""
    if error.is_a("MemoryError"):
        memory, space = _gib(limits.memory_bytes), _gib(limits.address_space_bytes)
        return f"{error.type}: memory limit ({memory} data, {space} address space)"
    return f"{error.type}: {error.message}"[:300]


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 1 << 30 else f"{math.ceil(n / 2**20)} MiB"


def _regex(pattern) -> None:
    """Raise ValueError unless ``pattern`` is a valid regular expression (a string)."""
    if not isinstance(pattern, str):
        raise ValueError(f"watch must be a regex string, got {pattern!r}")
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"watch {pattern!r} is not a valid regex: {e}") from None
