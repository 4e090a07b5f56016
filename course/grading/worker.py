"""The sandboxed side: run a submission's cells in one namespace, then answer probes.

Started by ``course.grading.sandbox`` as ``python -P -s -B -u -m course.grading.worker`` with a JSON
config in ``$COURSE_SANDBOX_CONFIG``, or forked by the sandbox's launcher (this module's end). Before any
submission code runs it drops root (when started as root inside bwrap), imports numpy and torch (or has them
from the launcher), pins torch's thread count and sets its own rlimits, then says hello. Requests arrive as
JSON lines on one pipe, replies leave as JSON lines on another, so the submission's ``print`` output (fd 1
and 2) never mixes with the protocol.

Everything here runs in the same process as untrusted code, so nothing it sends is believed: the
trusted side re-validates every reply (``protocol.decode``) and checks data, never verdicts. The
converters and the probe helpers are bound before the submission runs, so replacing ``torch``/``numpy``
functions or ``course.grading.probelib``'s table in a cell cannot make a tensor subclass or a rigged
``__eq__`` cross the wire as anything but plain data or a type name, nor swap a helper.

A probe with ``watch`` (a regex) runs under a torch dispatch mode that records the operators it runs whose
names match, e.g. ``aten.convolution.default`` however the submission reached ``F.conv2d`` (an alias, a layer
taken out of a library model, TorchScript); numpy's ``convolve``, ``correlate`` and ``pad`` are wrapped at start
for the same purpose. The graders' rules read the cells too: this is the run-time half, which a submission
could only dodge by reaching into the interpreter, which the rules refuse.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import functools
import json
import linecache
import os
import random
import re
import resource
import shutil  # at start: the launcher imports nothing after its workers have run
import sys
import time
import traceback
import types
from collections.abc import Sequence

_T0 = time.monotonic()
CONFIG_ENV = "COURSE_SANDBOX_CONFIG"  # same as protocol.CONFIG_ENV (kept import-free)
MAX_TEXT = 4000


def _drop_root(cfg: dict, notes: list[str]) -> None:
    """Inside bwrap started by root: become the per-run uid the trusted side chose (fail closed)."""
    uid = cfg.get("uid")
    if os.getuid() != 0 or uid is None:
        return
    gid = cfg.get("gid", uid)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    with open("/proc/self/status") as f:
        caps = {k: v.strip() for k, _, v in (line.partition(":") for line in f) if k.startswith("Cap")}
    if os.getuid() == 0 or int(caps.get("CapEff", "1"), 16) or int(caps.get("CapPrm", "1"), 16):
        raise SystemExit("worker: could not drop root")
    notes.append("uid: an unprivileged per-run uid, no capabilities")


#: prctl settings made before any submission code runs: (option, arg, note when set, what is weaker when not).
_PROCESS_SETTINGS = (
    # PR_SET_DUMPABLE 0: /proc/self/mem and /proc/self/fd become root's, so the submission cannot rewrite this
    # process's memory through them (the seccomp filter refuses turning it back on)
    (4, 0, "process memory: not dumpable (/proc/self/mem closed to the submission)",
     "process memory: could not make the worker non-dumpable ({e})"),
    # PR_SET_CHILD_SUBREAPER: whatever a cell or check starts stays this worker's descendant (double forks
    # included), so ``_stop_children`` can stop it when the request ends: processes left running cannot spend
    # the CPU budget of the cells and checks that come after (one mistake costs one task)
    (36, 1, "processes: those a cell or check leaves running are killed when it ends",
     "processes: could not adopt orphans ({e}); only direct children are stopped after a cell"),
)  # fmt: skip


def _process_settings(notes: list[str], weaker: list[str]) -> None:
    """Make each of ``_PROCESS_SETTINGS`` (Linux prctl), noting what holds and what does not."""
    import ctypes

    for option, arg, note, failed in _PROCESS_SETTINGS:
        try:
            if ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl")
        except (OSError, AttributeError) as e:
            weaker.append(failed.format(e=e))
        else:
            notes.append(note)


def _stop_children(kill=os.kill, waitpid=os.waitpid, listdir=os.listdir, read=open) -> int:
    """SIGKILL every child (and, through the subreaper, every orphaned descendant) and reap it; how many."""
    stopped = 0
    for _ in range(1000):  # each round kills the children; their children are ours in the next round
        kids = []
        for tid in listdir("/proc/self/task"):
            with contextlib.suppress(OSError), read(f"/proc/self/task/{tid}/children") as f:
                kids += [int(p) for p in f.read().split()]
        if not kids:
            break
        for pid in kids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, 9)
        for pid in kids:
            with contextlib.suppress(ChildProcessError):
                waitpid(pid, 0)
        stopped += len(kids)
    return stopped


def _own_tasks() -> int:
    """Tasks (threads) of this real uid that /proc shows: RLIMIT_NPROC counts them all."""
    uid, n = str(os.getuid()), 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if fields.get("Uid", "").split()[:1] == [uid]:
            n += int(fields.get("Threads", "1"))
    return n


def _set_limits(lim: dict, notes: list[str], weaker: list[str]) -> None:
    """rlimits, hard and soft, so the submission cannot raise them again."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = int(used.ru_utime + used.ru_stime) + 1 + lim["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    notes.append(f"cpu time: {lim['cpu_seconds']} s (SIGXCPU)")
    resource.setrlimit(resource.RLIMIT_DATA, (lim["memory_bytes"], lim["memory_bytes"]))
    notes.append(f"memory (data): {lim['memory_bytes'] / 2**30:.1f} GiB")
    resource.setrlimit(resource.RLIMIT_AS, (lim["address_space_bytes"], lim["address_space_bytes"]))
    notes.append(f"address space: {lim['address_space_bytes'] / 2**30:.1f} GiB")
    resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_bytes"], lim["file_bytes"]))
    notes.append(f"file size: {lim['file_bytes'] >> 20} MiB")
    resource.setrlimit(resource.RLIMIT_NOFILE, (lim["open_files"], lim["open_files"]))
    notes.append(f"open files: {lim['open_files']}")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if os.getuid() == 0:
        weaker.append("processes: not limited (the worker runs as root, which RLIMIT_NPROC ignores)")
    else:
        n = _own_tasks() + lim["processes"]
        resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
        notes.append(f"processes/threads: {lim['processes']} more than at start")


def _write_all(fd: int, data: bytes, _write=os.write) -> None:
    view = memoryview(data)
    while view:
        view = view[_write(fd, view) :]


class Encoder:
    """Worker object -> wire value, with references captured before any submission code ran."""

    def __init__(self, np, torch, max_bytes: int):
        self.np, self.max_bytes = np, max_bytes
        self.ndarray, self.generic, self.tensor = np.ndarray, np.generic, torch.Tensor
        self.np_array, self.tobytes, self.item = np.array, np.ndarray.tobytes, np.generic.item
        self.to_numpy, self.to_float, self.bf16 = torch.Tensor.numpy, torch.Tensor.float, torch.bfloat16
        self.no_tf = torch._C.DisableTorchFunctionSubclass
        self.as_subclass = torch._C.TensorBase.as_subclass
        self.b64 = base64.b64encode
        self.dtypes = {"bool", "uint8", "int8", "int16", "int32", "int64"}
        self.dtypes |= {"float16", "float32", "float64", "complex64", "complex128"}
        self.sequence = Sequence

    def __call__(self, x):
        self.left = self.max_bytes
        return self.enc(x, 0)

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise OverflowError(f"result larger than {self.max_bytes >> 20} MiB")

    def enc(self, x, depth: int):
        if depth > 32:
            raise OverflowError("result nested deeper than 32")
        t = type(x)
        if x is None or t is bool:
            return x
        if issubclass(t, int):
            return int.__int__(x)
        if issubclass(t, float):
            return float.__float__(x)
        if issubclass(t, str):
            s = str.__str__(x)
            self.spend(len(s))
            return s
        if issubclass(t, complex):
            return self.array(self.np_array(complex.__complex__(x)), "ndarray")
        if issubclass(t, self.generic):  # a numpy scalar stays one (np.int64 is not an int)
            return self.array(self.np_array(x), "scalar")
        if issubclass(t, self.tensor):
            with self.no_tf():
                plain = self.as_subclass(x, self.tensor)
                if plain.dtype == self.bf16:
                    plain = self.to_float(plain)
                return self.array(self.to_numpy(plain, force=True), "tensor")
        if issubclass(t, self.ndarray):
            return self.array(x, "ndarray")
        if issubclass(t, (list, tuple)):
            base = list if issubclass(t, list) else tuple
            items = [self.enc(base.__getitem__(x, i), depth + 1) for i in range(base.__len__(x))]
            self.spend(8 * len(items))
            return items if base is list else {"__tuple__": items}
        if issubclass(t, dict):
            pairs = [(k, self.enc(v, depth + 1)) for k, v in dict.items(x)]
            self.spend(8 * len(pairs))
            if all(type(k) is str and not (k.startswith("__") and k.endswith("__")) for k, _ in pairs):
                return dict(pairs)
            return {"__dict__": [[self.enc(k, depth + 1), v] for k, v in pairs]}
        if isinstance(x, self.sequence) and not isinstance(x, str | bytes | bytearray):
            items = []  # other sequences (fastcore's L, range, ...) travel as lists
            for item in x:
                self.spend(8)
                items.append(self.enc(item, depth + 1))
            return items
        return {"__object__": type_name(x)}

    def array(self, x, kind: str) -> dict:
        arr = self.np_array(x, copy=True, subok=False)
        if type(arr) is not self.ndarray or str(arr.dtype) not in self.dtypes:
            raise TypeError(f"arrays of dtype {arr.dtype} cannot be sent")
        raw = self.tobytes(arr, order="C")
        self.spend(len(raw) * 4 // 3 + 100)
        return {
            "__array__": self.b64(raw).decode("ascii"),
            "dtype": str(arr.dtype),
            "shape": list(arr.shape),
            "kind": kind,
        }


_QUALNAME = type.__dict__["__qualname__"]
_MRO = type.__dict__["__mro__"]


def type_name(x) -> str:
    """The qualified name of ``type(x)``, read through ``type``'s own descriptor (no metaclass can intervene)."""
    return class_name(type(x))


def class_name(cls: type) -> str:
    try:
        return str.__str__(_QUALNAME.__get__(cls))[:200]
    except Exception:  # noqa: BLE001
        return "?"


def safe_str(e: BaseException) -> str:
    """``str(e)`` for an exception whose ``__str__`` the submission may have written."""
    try:
        return str.__str__(str(e))
    except BaseException:  # noqa: BLE001
        return "<unprintable>"


class Worker:
    def __init__(self, cfg: dict, np, torch):
        self.cfg, self.np, self.torch = cfg, np, torch
        self.req = os.fdopen(cfg["request_fd"], "rb", buffering=1 << 16)
        self.reply_fd = cfg["reply_fd"]
        self.inputs = cfg["inputs"]
        self.encode = Encoder(np, torch, cfg["limits"]["reply_bytes"])
        from course.grading import probelib

        self.helpers = dict(probelib.HELPERS)  # bound now: a cell that edits probelib's table changes nothing here
        self.refs: dict[str, object] = {}
        self.module = types.ModuleType("__main__")
        self.module.__dict__["__builtins__"] = builtins
        self.ns = self.module.__dict__
        self.seeders = (random.seed, np.random.seed, torch.manual_seed)
        self.from_numpy, self.np_load, self.frombuffer = torch.from_numpy, np.load, np.frombuffer
        self.dumps, self.loads = json.dumps, json.loads
        self.watching: tuple[re.Pattern, list[str]] | None = None  # (pattern, operators seen) during a probe
        self.watch_mode = _watch_mode(torch, self)
        _wrap_numpy(np, self)
        self.stop_children = functools.partial(_stop_children, os.kill, os.waitpid, os.listdir, open)  # bound now
        self.paths = sorted({sys.prefix, sys.base_prefix, cfg.get("lib", "")} - {""}, key=len, reverse=True)

    def send(self, msg: dict) -> None:
        _write_all(self.reply_fd, self.dumps(msg).encode() + b"\n")

    def serve(self) -> None:
        sys.modules["__main__"] = self.module
        while True:
            line = self.req.readline()
            if not line:
                return
            req = self.loads(line)
            start = time.monotonic()
            reply = self.exec_cell(req) if req.get("op") == "exec" else self.probe(req)
            self.stop_children()
            reply.update(id=req["id"], nonce=req["nonce"], seconds=round(time.monotonic() - start, 6))
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):  # the submission may have replaced or closed them
                    stream.flush()
            try:
                self.send(reply)
            except (TypeError, ValueError) as e:
                self.send({"id": req["id"], "nonce": req["nonce"], "status": "invalid", "detail": str(e)[:200]})

    # --- cells -------------------------------------------------------------------------------
    def exec_cell(self, req: dict) -> dict:
        cell, source = req["cell"], req["source"]
        filename = f"<cell {cell}>"
        try:  # exactly the text the graders read (submission.runnable): nothing is rewritten here
            code = compile(source, filename, "exec", dont_inherit=True)
        except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
            return {"status": "error", "error": self.error_info(e)}
        lines = source.splitlines(keepends=True)
        linecache.cache[filename] = (len(source), None, lines, filename)
        try:
            exec(code, self.ns)
        except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt from a cell are its errors
            return {"status": "error", "error": self.error_info(e)}
        return {"status": "ok"}

    # --- probes ------------------------------------------------------------------------------
    def probe(self, req: dict) -> dict:
        op = req.get("op")
        seen: list[str] = []
        try:
            if req.get("seed") is not None:
                for seed in self.seeders:
                    seed(int(req["seed"]))
            args = [self.value_in(a) for a in req.get("args", [])]
            kwargs = {k: self.value_in(v) for k, v in req.get("kwargs", {}).items()}
            grad = self.torch.no_grad() if req.get("no_grad") else self.torch.enable_grad()
            with grad, self.watch(req.get("watch"), seen):
                value = self.run_op(op, req, args, kwargs)
        except BaseException as e:  # noqa: BLE001
            return {"status": "error", "error": self.error_info(e), "watched": seen[:20]}
        if seen:
            return {"status": "ok", "value": None, "watched": seen[:20]}  # the check fails: no value needed
        if req.get("store"):
            self.refs[req["store"]] = value
            return {"status": "ok", "value": {"__ref__": "$" + req["store"], "type": type_name(value)}}
        if req.get("discard"):
            return {"status": "ok", "value": None}
        try:
            return {"status": "ok", "value": self.encode(value)}
        except BaseException as e:  # noqa: BLE001
            return {"status": "invalid", "detail": f"the result cannot be sent: {type_name(e)}: {safe_str(e)}"[:300]}

    @contextlib.contextmanager
    def watch(self, pattern: str | None, seen: list[str]):
        """Add to ``seen`` the operators the block runs whose names match ``pattern`` (nothing when it is None)."""
        if not pattern:
            yield
            return
        self.watching = (re.compile(pattern), seen)
        try:
            with self.watch_mode():
                yield
        finally:
            self.watching = None

    def saw(self, name: str) -> None:
        """Called for each operator run while watching: keep it when its name matches."""
        pattern, seen = self.watching
        if name not in seen and pattern.search(name):
            seen.append(name)

    def run_op(self, op: str, req: dict, args: list, kwargs: dict):
        if op == "call":
            return self.resolve(req["target"])(*args, **kwargs)
        if op == "get":
            return self.resolve(req["target"])
        if op == "set":
            owner, _, attr = req["target"].rpartition(".")
            setattr(self.resolve(owner), attr, self.value_in(req["value"]))
            return None
        if op == "helper":
            return self.helpers[req["name"]](*args, **kwargs)
        raise ValueError(f"unknown probe op {op!r}")

    def resolve(self, path: str):
        head, *attrs = path.split(".")
        if head.startswith("$"):
            if head[1:] not in self.refs:
                raise LookupError(f"no stored object {head} (stored objects do not survive a worker restart)")
            obj = self.refs[head[1:]]
        elif head in self.ns:
            obj = self.ns[head]
        else:
            raise NameError(f"name {head!r} is not defined by the submission")
        for attr in attrs:
            obj = getattr(obj, attr)
        return obj

    def value_in(self, v):
        """Wire value from the trusted side -> worker object (arrays become tensors or ndarrays)."""
        if type(v) is list:
            return [self.value_in(x) for x in v]
        if type(v) is not dict:
            return v
        if "__array__" in v:
            raw = base64.b64decode(v["__array__"])
            arr = self.frombuffer(raw, dtype=v["dtype"]).reshape(v["shape"]).copy()
            return self.from_numpy(arr) if v.get("kind") == "tensor" else arr
        if "__npy__" in v:
            name = v["__npy__"]
            if "/" in name or name.startswith("."):
                raise ValueError(f"bad input file name {name!r}")
            arr = self.np_load(os.path.join(self.inputs, name), allow_pickle=False)
            return self.from_numpy(arr) if v.get("kind", "tensor") == "tensor" else arr
        if "__ref__" in v:
            return self.resolve(v["__ref__"])
        if "__tuple__" in v:
            return tuple(self.value_in(x) for x in v["__tuple__"])
        if "__dict__" in v:
            return {self.value_in(k): self.value_in(x) for k, x in v["__dict__"]}
        return {k: self.value_in(x) for k, x in v.items()}

    # --- errors ------------------------------------------------------------------------------
    def error_info(self, e: BaseException) -> dict:
        message = safe_str(e)
        mro = [class_name(cls)[:100] for cls in tuple.__iter__(_MRO.__get__(type(e)))][:12]
        frames = self.frames(e)
        where = [
            {"cell": f.filename[6:-1], "function": f.name, "line": f.lineno, "code": (f.line or "").strip()[:200]}
            for f in frames
            if f.filename.startswith("<cell ")
        ][-8:]
        return {
            "type": mro[0],
            "mro": mro,
            "message": self.clean(message)[:MAX_TEXT],
            "traceback": self.tb(frames),
            "frames": where,
        }

    def frames(self, e: BaseException) -> list:
        try:
            return traceback.extract_tb(e.__traceback__)
        except Exception:  # noqa: BLE001
            return []

    def tb(self, frames: list) -> str:
        """Frames from the cells plus the last library frame, with install paths shortened."""
        here = os.path.dirname(os.path.abspath(__file__))
        keep = [f for f in frames if not f.filename.startswith(here)]
        cell_idx = [i for i, f in enumerate(keep) if f.filename.startswith("<cell ")]
        if cell_idx:
            keep = keep[cell_idx[0] :]
        keep = keep[:3] + keep[-5:] if len(keep) > 8 else keep
        out = [f"  {self.clean(f.filename)}, line {f.lineno}, in {f.name}\n    {(f.line or '').strip()}" for f in keep]
        return "\n".join(out)[-MAX_TEXT:]

    def clean(self, text: str) -> str:
        for path in self.paths:
            text = text.replace(path, "<python>" if path != self.cfg.get("lib") else "<course>")
        return text


def _watch_mode(torch, worker: Worker):
    """A factory of torch dispatch modes that tell ``worker`` each operator they see."""
    from torch.utils._python_dispatch import TorchDispatchMode

    saw = worker.saw

    class Watch(TorchDispatchMode):
        @classmethod
        def _should_skip_dynamo(cls):
            # torch wraps a mode's handler in a "not traced by torch.compile" guard whose first call imports
            # torch._dynamo: ~1 s of CPU at the first watched probe of every session. Nothing compiles here (the
            # rules refuse torch.compile and torch._dynamo), so the guard is left out.
            return False

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            saw(str(func))
            return func(*args, **(kwargs or {}))

    return Watch


def _wrap_numpy(np, worker: Worker) -> None:
    """Replace numpy's convolve, correlate and pad (wherever numpy's modules hold them) with wrappers that tell
    ``worker`` when they run during a watched probe."""
    import functools

    for name in ("convolve", "correlate", "pad"):
        original = getattr(np, name)

        @functools.wraps(original)
        def wrapper(*args, _original=original, _name=f"numpy.{name}", **kwargs):
            if worker.watching is not None:
                worker.saw(_name)
            return _original(*args, **kwargs)

        for module in [m for n, m in list(sys.modules.items()) if n == "numpy" or n.startswith("numpy.")]:
            for attr, value in list(getattr(module, "__dict__", {}).items()):
                if value is original:
                    setattr(module, attr, wrapper)


def _start_torch(cfg: dict):
    import numpy as np
    import torch

    torch.set_num_threads(cfg["limits"]["threads"])
    torch.set_num_interop_threads(1)
    return np, torch


def _serve(cfg: dict, np, torch, notes: list[str], weaker: list[str]) -> None:
    """Limit this process, bind the worker, say hello, answer requests until the trusted side closes the pipe."""
    _set_limits(cfg["limits"], notes, weaker)
    worker = Worker(cfg, np, torch)
    _process_settings(notes, weaker)
    worker.send(
        {
            "op": "hello",
            "uid": os.getuid(),
            "pidns": os.readlink("/proc/self/ns/pid"),
            "enforced": notes,
            "weaker": weaker,
            "startup_seconds": round(time.monotonic() - _T0, 3),
            "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__},
        }
    )
    worker.serve()


def main() -> None:
    cfg = json.loads(os.environ.pop(CONFIG_ENV))
    if "control_fd" in cfg:
        return _launch(cfg)
    notes: list[str] = []
    weaker: list[str] = []
    _drop_root(cfg, notes)
    np, torch = _start_torch(cfg)
    _serve(cfg, np, torch, notes, weaker)


# --- the launcher ------------------------------------------------------------------------------------------------
# In a sandbox that grades one notebook, the first process is a launcher: it imports numpy, torch and the
# libraries the notebook imports once (no submission code runs in it), then forks one worker per session on the
# trusted side's request. A forked worker skips ~2.5 s of interpreter start and imports; before any submission
# code it tells the trusted side its pid (so that it can be moved into its session's cgroup), then drops to its
# own unprivileged uid, gets its own folders, rlimits and prctl settings exactly as a worker started on its own.


def _launch(cfg: dict) -> None:
    import importlib
    import select
    import socket
    import warnings

    np, torch = _start_torch(cfg)
    with warnings.catch_warnings(action="ignore"):  # import-time notes of the libraries, not the submission's
        for name in cfg.get("preload", ()):
            with contextlib.suppress(Exception):  # the session's own import reports what is wrong
                importlib.import_module(name)
    ctl = socket.socket(fileno=cfg["control_fd"])
    threads = len(os.listdir("/proc/self/task"))  # fork copies one thread: nothing may run in another
    hello = {"op": "hello", "threads": threads, "startup_seconds": round(time.monotonic() - _T0, 3)}
    _write_all(cfg["reply_fd"], json.dumps(hello).encode() + b"\n")
    os.close(cfg["request_fd"])
    os.close(cfg["reply_fd"])
    if threads != 1:
        return
    sessions: dict[int, dict] = {}  # pid -> spawn request
    while True:
        if select.select([ctl], [], [], 0.1)[0]:
            msg, fds, _, _ = socket.recv_fds(ctl, 1 << 16, 5)
            if not msg:
                return  # the trusted side is gone: so is this sandbox
            spec = json.loads(msg)
            pid = os.fork()
            if pid == 0:
                ctl.close()
                _session_child(cfg, spec, fds, np, torch)
            for fd in fds:
                os.close(fd)
            sessions[pid] = spec
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            spec = sessions.pop(pid, None)
            if spec is not None:
                _clean_up(spec)
                ctl.send(
                    json.dumps({"op": "exit", "spawn": spec["spawn"], "rc": os.waitstatus_to_exitcode(status)}).encode()
                )


def _session_child(cfg: dict, spec: dict, fds: list[int], np, torch) -> None:
    """In the forked worker: never returns."""
    global _T0
    _T0 = time.monotonic()
    try:
        ident, request_fd, reply_fd, out, err = fds
        os.setpgid(0, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.close(out)
        os.close(err)
        import socket

        with socket.socket(fileno=ident) as s:  # the kernel adds this process's pid, as the trusted side sees it
            s.send(b"pid")
            if s.recv(1) != b"g":  # not moved into the session's cgroup: run nothing
                os._exit(3)
        with open("/proc/self/oom_score_adj", "w") as f:  # under memory pressure a worker goes before the launcher
            f.write("1000")
        wcfg = {**cfg, **spec["worker"], "request_fd": request_fd, "reply_fd": reply_fd}
        notes: list[str] = []
        _drop_root(wcfg, notes)
        for path in spec["own"]:
            os.makedirs(path, mode=0o700)
        home, tmp = spec["own"]
        os.environ.update(HOME=home, TMPDIR=tmp, MPLCONFIGDIR=f"{tmp}/matplotlib", XDG_CACHE_HOME=f"{tmp}/cache")
        os.chdir(home)
        import tempfile

        tempfile.tempdir = None
        _serve(wcfg, np, torch, notes, [])
    except BaseException:  # noqa: BLE001 - never back into the launcher's loop
        os._exit(1)
    os._exit(0)


def _clean_up(spec: dict) -> None:
    """After a worker ended: its uid removes what it left in the sandbox's shared tmpfs folders."""
    uid = spec["worker"]["uid"]
    pid = os.fork()
    if pid == 0:
        try:
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            with contextlib.suppress(OSError):
                os.kill(-1, 9)  # whatever of this uid still runs (this helper excepted)
            for path in spec["own"]:
                shutil.rmtree(path, ignore_errors=True)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
