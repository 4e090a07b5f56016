"""Grading harness: run submission code in a sandboxed worker and read back plain data (see ``sandbox``)."""

from course.grading.protocol import Npy, Opaque, ProtocolError, Ref
from course.grading.sandbox import CellResult, ErrorInfo, Limits, ProbeResult, RunResult, Sandbox, Session

__all__ = [
    "CellResult",
    "ErrorInfo",
    "Limits",
    "Npy",
    "Opaque",
    "ProbeResult",
    "ProtocolError",
    "Ref",
    "RunResult",
    "Sandbox",
    "Session",
]
