"""A seccomp filter for the worker: no new namespaces, no mounts, no tracing, no kernel attack surface it needs.

``bwrap --seccomp FD`` loads a classic BPF program (an array of ``struct sock_filter``) before it starts the
worker; the filter is inherited by every process the submission starts and cannot be removed. What it refuses,
with ``EPERM`` unless noted:

* new namespaces: ``unshare``/``clone`` with any ``CLONE_NEW*`` flag, ``setns`` (``clone3`` answers
  ``ENOSYS``, its flags live in memory a filter cannot read, so C libraries fall back to ``clone``);
* mounts and root changes: ``mount``, ``umount2``, ``pivot_root``, ``chroot`` and the new mount API;
* looking into or changing processes: ``ptrace``, ``process_vm_readv``/``writev``, and
  ``prctl(PR_SET_DUMPABLE, 1)`` (the worker makes itself non-dumpable, so its ``/proc/self/mem`` is closed to
  it, and cannot turn that back on);
* memory the per-process limits do not see: SysV shared memory and message queues (``shmget``,
  ``msgget``) and ``memfd_create``;
* kernel interfaces no grading needs: ``bpf``, ``perf_event_open``, ``userfaultfd``, ``io_uring_*``,
  the key ring, file handles (``open_by_handle_at``), modules, ``kexec``, swap, ``reboot``, ``acct``;
* on x86-64, every x32 system call, and any other architecture's calls (the process is killed).

Supported: x86-64 and AArch64 (``None`` elsewhere; the sandbox then reports that no filter was applied).
"""

from __future__ import annotations

import platform
import struct

__all__ = ["CLONE_NEW_FLAGS", "filter_program"]

# linux/audit.h
_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# name: (x86-64 number from asm/unistd_64.h, AArch64 number from asm-generic/unistd.h)
_SYSCALLS = {
    "unshare": (272, 97), "clone": (56, 220), "clone3": (435, 435), "prctl": (157, 167), "setns": (308, 268),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51), "ptrace": (101, 117),
    "process_vm_readv": (310, 270), "process_vm_writev": (311, 271), "shmget": (29, 194), "msgget": (68, 186),
    "memfd_create": (319, 279), "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218), "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264), "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430),
    "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433), "mount_setattr": (442, 442),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294), "init_module": (175, 105), "finit_module": (313, 273),
    "delete_module": (176, 106), "swapon": (167, 224), "swapoff": (168, 225), "reboot": (169, 142),
    "acct": (163, 89), "quotactl": (179, 60), "lookup_dcookie": (212, 18), "vhangup": (153, 58),
}  # fmt: skip
_MACHINES = ("x86_64", "aarch64")
_NR = {m: {name: nrs[i] for name, nrs in _SYSCALLS.items()} for i, m in enumerate(_MACHINES)}
_CHECKED = ("unshare", "clone", "clone3", "prctl")  # decided by their flags, below; every other name above is refused
#: CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET (clone's low byte is the exit signal)
CLONE_NEW_FLAGS = 0x7E020000
_CLONE_NEWTIME = 0x00000080  # unshare only
_PR_SET_DUMPABLE = 4

_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL_PROCESS, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_EPERM, _ENOSYS = 1, 38
_X32_BIT = 0x40000000
# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6] (low half of args[0] at 16)
_OFF_NR, _OFF_ARCH, _OFF_ARG0, _OFF_ARG1 = 0, 4, 16, 24


def filter_program(machine: str | None = None) -> bytes | None:
    """The compiled filter for ``machine`` (default: this one), or None for an unsupported architecture."""
    machine = machine or platform.machine()
    if machine not in _NR:
        return None
    nr = _NR[machine]
    prog: list[tuple] = []  # (code, jt, jf, k); jt/jf are labels (str) or relative offsets (int)

    def emit(code, k=0, jt=0, jf=0):
        prog.append((code, jt, jf, k))

    emit(_LD_W_ABS, _OFF_ARCH)
    emit(_JEQ, _ARCH[machine], jt=1, jf=0)
    emit(_RET, _KILL_PROCESS)
    emit(_LD_W_ABS, _OFF_NR)
    if machine == "x86_64":
        emit(_JGE, _X32_BIT, jt="eperm", jf=0)
    for name, number in nr.items():
        if name not in _CHECKED:
            emit(_JEQ, number, jt="eperm", jf=0)
    emit(_JEQ, nr["clone3"], jt="enosys", jf=0)
    emit(_JEQ, nr["unshare"], jt="unshare", jf=0)
    emit(_JEQ, nr["clone"], jt="clone", jf=0)
    emit(_JEQ, nr["prctl"], jt="prctl", jf=0)
    emit(_RET, _ALLOW)
    labels = {"prctl": len(prog)}
    emit(_LD_W_ABS, _OFF_ARG0)
    emit(_JEQ, _PR_SET_DUMPABLE, jt=0, jf="allow")
    emit(_LD_W_ABS, _OFF_ARG1)  # PR_SET_DUMPABLE: 0 (off) is allowed, turning it back on is not
    emit(_JEQ, 0, jt="allow", jf="eperm")
    labels["allow"] = len(prog)
    emit(_RET, _ALLOW)
    labels["unshare"] = len(prog)
    emit(_LD_W_ABS, _OFF_ARG0)
    emit(_JSET, CLONE_NEW_FLAGS | _CLONE_NEWTIME, jt="eperm", jf=0)
    emit(_RET, _ALLOW)
    labels["clone"] = len(prog)
    emit(_LD_W_ABS, _OFF_ARG0)
    emit(_JSET, CLONE_NEW_FLAGS, jt="eperm", jf=0)
    emit(_RET, _ALLOW)
    labels["eperm"] = len(prog)
    emit(_RET, _ERRNO | _EPERM)
    labels["enosys"] = len(prog)
    emit(_RET, _ERRNO | _ENOSYS)

    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(prog):
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        if not (0 <= jt < 256 and 0 <= jf < 256):
            raise ValueError("seccomp filter too long for 8-bit jumps")  # a programming error, not input
        out += struct.pack("=HBBI", code, jt, jf, k)
    return bytes(out)
