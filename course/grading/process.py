"""One worker process seen from the trusted side: JSON lines over two pipes, deadlines, capped output, kill.

Requests go to the worker's request pipe; replies come back on a separate reply pipe, one JSON object
per line, each echoing the request's random ``nonce``. Lines without the nonce are stray writes by the
submission and are skipped; a line that carries the nonce but is not one JSON object, or a line longer
than ``reply_bytes``, makes that exchange ``invalid``. stdout and stderr are drained all the time
(so a chatty submission cannot block) and only their first bytes are kept. Nothing read from the
worker is ever executed or unpickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable

from course.grading.cgroup import Cgroup
from course.grading.isolation import SANDBOX_SCRATCH
from course.grading.protocol import CONFIG_ENV

__all__ = ["Capture", "Launcher", "WorkerProcess", "wall_cap"]

_CGROUP_ENV = "COURSE_SANDBOX_CGROUP"
# a shell joins the cgroup (one cgroup.procs file per hierarchy), forgets the variable, then becomes the command
_JOIN_AND_EXEC = f'for f in ${_CGROUP_ENV}; do echo $$ > "$f" || exit 125; done; unset {_CGROUP_ENV}; exec "$@"'


def wall_cap(cpu_seconds: float) -> float:
    """Wall-clock limit for a step whose limit is counted in CPU time (a worker that sleeps uses none)."""
    return 2 * cpu_seconds + 5


class Capture:
    """The first ``cap`` bytes of a stream, plus how many bytes there were in all."""

    def __init__(self, cap: int):
        self.cap, self.data, self.total = cap, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if len(self.data) < self.cap:
            self.data += chunk[: self.cap - len(self.data)]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.data)

    def text(self) -> str:
        out = self.data.decode("utf-8", errors="replace")
        if self.truncated:
            out += f"\n[... {self.total - len(self.data):,} more bytes not kept]"
        return out


class WorkerProcess:
    """Start a worker (``cmd`` is bwrap's or a plain Python command line) and talk to it."""

    def __init__(
        self,
        cmd: list[str],
        env: dict[str, str],
        cfg: dict,
        cwd: str | None,
        outputs: tuple[Capture, Capture],
        reply_bytes: int,
        exit_words: Callable[[int | None], str],
        cgroup: Cgroup | None = None,
        extra_fds: tuple[int, ...] = (),
        reply_budget: int = 1 << 30,
    ):
        self._setup(reply_bytes, exit_words, cgroup, reply_budget)
        req_r, self._req = os.pipe()
        self._rep, rep_w = os.pipe()
        child_fds = [req_r, rep_w]
        info_r = None
        if cmd[0] == "bwrap":
            info_r, info_w = os.pipe()
            child_fds.append(info_w)
            cmd = [cmd[0], "--info-fd", str(info_w), *cmd[1:]]
        env = {**env, CONFIG_ENV: json.dumps({**cfg, "request_fd": req_r, "reply_fd": rep_w})}
        if cgroup is not None:  # join the sandbox's group before anything else runs: all descendants stay in it
            env[_CGROUP_ENV] = " ".join(cgroup.procs_files)
            cmd = ["/bin/sh", "-c", _JOIN_AND_EXEC, "sh", *cmd]
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                pass_fds=[*child_fds, *extra_fds], start_new_session=True, cwd=cwd,
            )  # fmt: skip
        finally:
            for fd in child_fds:
                os.close(fd)
        self._ready(outputs)
        if info_r is not None:
            self.child_pid = _read_child_pid(info_r)

    @classmethod
    def attach(cls, proc, request_fd: int, reply_fd: int, outputs, reply_bytes, exit_words, cgroup, reply_budget):
        """A worker another process started (``Launcher.spawn``): ``proc`` answers ``poll``/``wait`` like a Popen."""
        self = cls.__new__(cls)
        self._setup(reply_bytes, exit_words, cgroup, reply_budget)
        self.proc, self._req, self._rep = proc, request_fd, reply_fd
        self._ready(outputs)
        return self

    def _setup(self, reply_bytes, exit_words, cgroup, reply_budget) -> None:
        self.reply_bytes, self.exit_words, self.cgroup = reply_bytes, exit_words, cgroup
        self.reply_budget = self._budget0 = reply_budget  # reply bytes the worker may send in all, then it stops
        self.child_pid: int | None = None  # bwrap's sandbox init: killing it ends every process inside

    def _ready(self, outputs) -> None:
        self._outs = dict(zip((self.proc.stdout.fileno(), self.proc.stderr.fileno()), outputs, strict=True))
        self._rbuf, self._discarding = bytearray(), False
        for fd in (self._req, self._rep, *self._outs):
            os.set_blocking(fd, False)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def exchange(
        self, msg: dict | None, timeout: float, deadline: float, cpu_time: bool = False
    ) -> tuple[str, dict, str, float]:
        """Send ``msg`` (None: wait for the hello) and wait -> (status, reply, detail, seconds).

        ``timeout`` counts CPU seconds of the whole sandbox when ``cpu_time`` is true (and the sandbox has a
        cgroup), with ``wall_cap(timeout)`` seconds of wall-clock time as a backstop; else wall-clock seconds.
        ``status`` is ``ok`` (``reply`` is the worker's JSON object, not yet validated), ``invalid``,
        ``timeout`` (the limit, or the run's ``deadline``, passed; the worker is killed) or ``crashed`` (the
        worker ended; ``detail`` says how).
        """
        t0 = time.monotonic()
        cpu = self.cgroup.cpu_seconds if cpu_time and self.cgroup is not None else None
        c0 = cpu() if cpu else 0.0
        wall = wall_cap(timeout) if cpu else timeout
        stop = min(t0 + wall, deadline)
        nonce = secrets.token_hex(8)
        out = b"" if msg is None else json.dumps({**msg, "nonce": nonce}).encode() + b"\n"
        view, exited_at = memoryview(out), None
        while True:
            now = time.monotonic()
            if cpu and cpu() - c0 > timeout:
                self.kill()
                return "timeout", {}, f"timeout after {timeout:g} s of CPU time", round(now - t0, 3)
            if now >= stop:
                self.kill()
                why = "run time limit reached" if stop < t0 + wall else f"timeout after {wall:g} s"
                return "timeout", {}, why, round(now - t0, 3)
            if self.reply_budget < 0:
                self.kill()
                return "crashed", {}, f"the worker sent more than {self.reply_limit_words} of replies", 0.0
            readers = [fd for fd in (self._rep, *self._outs) if fd is not None]
            writers = [self._req] if view and self._req is not None else []
            rr, ww = _poll(readers, writers, min(stop - now, 0.25))
            if ww:
                try:
                    view = view[os.write(self._req, view[: 1 << 16]) :]
                except BlockingIOError:
                    pass
                except OSError:
                    view = memoryview(b"")  # the worker closed its end; its exit is noticed below
            for fd in rr:
                if fd in self._outs:
                    self._drain(fd)
                    continue
                try:
                    chunk = os.read(fd, 1 << 20)
                except BlockingIOError:
                    continue
                if not chunk:
                    self._close_reply()
                    continue
                self.reply_budget -= len(chunk)
                found = self._lines(chunk, nonce, msg is None)
                if found is not None:
                    return (*found, round(time.monotonic() - t0, 3))
            if self.proc.poll() is not None:
                exited_at = exited_at or time.monotonic()
                if self._rep is None or time.monotonic() - exited_at > 0.5:
                    why = self.exit_words(self.proc.returncode)
                    self.kill()
                    return "crashed", {}, why, round(time.monotonic() - t0, 3)

    def _lines(self, chunk: bytes, nonce: str, hello: bool):
        """Feed reply bytes; return (status, reply, detail) once the line for ``nonce`` (or the hello) is in."""
        self._rbuf += chunk
        while True:
            nl = self._rbuf.find(b"\n")
            if nl < 0:
                if len(self._rbuf) > self.reply_bytes:
                    self._rbuf.clear()
                    self._discarding = True
                return None
            line = bytes(self._rbuf[:nl])
            del self._rbuf[: nl + 1]
            if self._discarding:
                self._discarding = False
                return "invalid", {}, f"reply larger than {self.reply_bytes >> 20} MiB"
            try:
                reply = json.loads(line)
            except (ValueError, RecursionError):
                reply = None
            if hello and isinstance(reply, dict) and reply.get("op") == "hello":
                return "ok", reply, ""  # the first line, written before any submission code ran
            if nonce.encode() not in line:
                continue  # a stray line the submission wrote to the reply pipe
            if not isinstance(reply, dict) or reply.get("nonce") != nonce:
                return "invalid", {}, "reply is not valid protocol (not one JSON object)"
            return "ok", reply, ""

    def _drain(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self._outs[fd].add(chunk)
        else:
            del self._outs[fd]

    def drain(self) -> None:
        """Read whatever output is already waiting (the worker flushes before each reply)."""
        while self._outs:
            ready = _poll(list(self._outs), [], 0)[0]
            if not ready:
                return
            for fd in ready:
                self._drain(fd)

    def _close_reply(self) -> None:
        if self._rep is not None:
            os.close(self._rep)
            self._rep = None

    @property
    def reply_limit_words(self) -> str:
        return f"{self._budget0 >> 20} MiB"

    def kill(self) -> None:
        """SIGKILL the sandbox (its init first, so bwrap reaps it; then its whole cgroup), wait, keep the last
        output, close pipes."""
        if self.proc.poll() is None and isinstance(self.proc, subprocess.Popen):  # a forked worker: its cgroup
            if self.child_pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.child_pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=2)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill()  # also what left the process group (double forks, setsid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        end = time.monotonic() + 0.5
        while self._outs and time.monotonic() < end:
            for fd in _poll(list(self._outs), [], 0.05)[0]:
                self._drain(fd)
        self.proc.stdout.close()
        self.proc.stderr.close()
        self._outs = {}
        self._close_reply()
        if self._req is not None:
            os.close(self._req)
            self._req = None


class Launcher:
    """A sandbox whose first process (``course.grading.worker`` with a ``control_fd``) has imported the libraries
    once and forks each session's worker on request (see the worker module): ``spawn`` returns a ``WorkerProcess``
    in a fraction of a second instead of the ~2.5 s of a new interpreter, torch and the notebook's imports.

    Control messages (JSON, one per datagram) and the new worker's pipes travel over a Unix socket pair. The new
    worker says who it is over its own socket pair, whose kernel-added credentials give its pid as this side sees
    it; it is moved into its session's cgroup before it may go on, so that limits, CPU accounting and killing stay
    per session exactly as for a worker in a sandbox of its own.
    """

    def __init__(
        self, cmd, env: dict[str, str], cfg: dict, outputs, exit_words, cgroup: Cgroup, extra_fds, secs, deadline
    ):
        self.ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            cfg = {**cfg, "control_fd": theirs.fileno()}
            self.process = WorkerProcess(
                cmd, env, cfg, None, outputs, 1 << 16, exit_words, cgroup, (*extra_fds, theirs.fileno())
            )
        finally:
            theirs.close()
        self.cgroup = cgroup
        self.exits: dict[int, int] = {}  # spawn number -> exit code
        self._n = 0
        status, hello, detail, _ = self.process.exchange(None, secs, deadline)
        self.problem = (detail or "it did not start") if status != "ok" else ""
        if not self.problem and hello.get("threads") != 1:
            self.problem = f"its libraries started threads ({hello.get('threads')}), so it cannot fork"

    @property
    def alive(self) -> bool:
        return not self.problem and self.process.alive

    def pump(self, timeout: float = 0.0) -> None:
        """Read the launcher's exit reports (waiting up to ``timeout`` for the first)."""
        while _poll([self.ctl.fileno()], [], timeout)[0]:
            timeout = 0.0
            try:
                msg = json.loads(self.ctl.recv(1 << 12) or b"null")
            except (OSError, ValueError):
                msg = None
            if not isinstance(msg, dict):
                self.problem = "the launcher stopped"
                return
            if msg.get("op") == "exit" and type(msg.get("spawn")) is int and type(msg.get("rc")) is int:
                self.exits[msg["spawn"]] = msg["rc"]

    def exit_code(self, spawn: int) -> int | None:
        self.pump()
        if spawn in self.exits:
            return self.exits[spawn]
        return None if self.process.alive else -signal.SIGKILL  # the sandbox ended: so did every worker in it

    def spawn(
        self, worker: dict, outputs, reply_bytes, exit_words, cgroup: Cgroup, reply_budget, secs
    ) -> WorkerProcess:
        """Fork a worker (``worker``: its uid, gid and inputs folder) into ``cgroup``; OSError when it does not come."""
        self._n += 1
        name = f"w{self._n}-{secrets.token_hex(4)}"  # not guessable: no earlier worker can take its place
        own = [f"{SANDBOX_SCRATCH}/{name}", f"/tmp/{name}"]  # its home and temp folders, removed after it
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours, child = [req_w, rep_r, out_r, err_r], [req_r, rep_w, out_w, err_w]
        try:
            mine.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            msg = json.dumps({"spawn": self._n, "worker": worker, "own": own}).encode()
            try:
                socket.send_fds(self.ctl, [msg], [theirs.fileno(), *child])
            finally:
                theirs.close()
                for fd in child:
                    os.close(fd)
            pid = _sender_pid(mine, secs)
            if pid is None:
                raise OSError("the launcher did not fork a worker in time")
            for path in cgroup.procs_files:
                with open(path, "w") as f:
                    f.write(str(pid))
            mine.send(b"g")
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            mine.close()
        proc = _Forked(self, self._n, pid, out_r, err_r)
        return WorkerProcess.attach(proc, req_w, rep_r, outputs, reply_bytes, exit_words, cgroup, reply_budget)

    def close(self) -> None:
        """Kill the sandbox (bwrap's init goes, and with it every process inside); idempotent."""
        if self.ctl.fileno() < 0:
            return
        self.process.kill()
        self.ctl.close()
        if self.cgroup is not None:
            self.cgroup.remove()


class _Forked:
    """A worker forked by a ``Launcher``, through the parts of ``subprocess.Popen`` that ``WorkerProcess`` uses."""

    def __init__(self, launcher: Launcher, spawn: int, pid: int, out_r: int, err_r: int):
        self.launcher, self.spawn, self.pid = launcher, spawn, pid
        self.stdout, self.stderr = os.fdopen(out_r, "rb", buffering=0), os.fdopen(err_r, "rb", buffering=0)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.launcher.exit_code(self.spawn)
        return self.returncode

    def wait(self, timeout: float) -> int:
        end = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() >= end:
                raise subprocess.TimeoutExpired("worker", timeout)
            self.launcher.pump(0.05)
        return self.returncode


def _sender_pid(sock: socket.socket, timeout: float) -> int | None:
    """The pid (in this side's pid namespace) the kernel attached to the first message on ``sock``."""
    if not _poll([sock.fileno()], [], timeout)[0]:
        return None
    try:
        _, ancillary, _, _ = sock.recvmsg(16, socket.CMSG_SPACE(struct.calcsize("3i")))
    except OSError:
        return None
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("3i", data[: struct.calcsize("3i")])[0]
            return pid if pid > 1 else None
    return None


def _read_child_pid(fd: int) -> int | None:
    """bwrap's ``--info-fd`` JSON (written before the sandboxed command starts): the sandbox init's pid."""
    data, end = b"", time.monotonic() + 10
    try:
        while time.monotonic() < end:
            if not _poll([fd], [], end - time.monotonic())[0]:
                break
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                continue
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    try:
        pid = json.loads(data)["child-pid"]
    except (ValueError, KeyError, TypeError):
        return None
    return pid if type(pid) is int and pid > 1 else None


def _poll(readers: list[int], writers: list[int], timeout: float) -> tuple[list[int], list[int]]:
    """Readable and writable fds (hang-ups count as readable), like select() without its fd-number limit."""
    poller = select.poll()
    for fd in readers:
        poller.register(fd, select.POLLIN)
    for fd in writers:
        poller.register(fd, select.POLLOUT)
    rr, ww = [], []
    for fd, ev in poller.poll(max(timeout, 0) * 1000):
        if fd in writers and ev & (select.POLLOUT | select.POLLERR | select.POLLHUP):
            ww.append(fd)
        if fd in readers and ev & (select.POLLIN | select.POLLHUP | select.POLLERR | select.POLLNVAL):
            rr.append(fd)
    return rr, ww
