"""Trusted-side helpers for the hidden checks: ask the worker, compare with an oracle, word the feedback.

Every failed check raises ``CheckFailed`` whose message is the student's feedback, in one template:
which check, the input shapes and parameters, expected vs received (first mismatch), tolerance and oracle.
Hidden inputs are described (shapes, parameters), never dumped.
"""

from __future__ import annotations

import ast

import numpy as np
import torch

from course.grading import ProbeResult, Ref, Session
from course.grading.submission import Submission
from course.notebooks import SKIP_SUFFIXES

__all__ = ["CheckFailed", "Worker", "assert_close", "borrowed", "describe_args", "fail"]


class CheckFailed(AssertionError):
    """A hidden check failed; ``str(exc)`` is the feedback shown to the student."""


def fail(message: str):
    raise CheckFailed(message)


def describe_args(*args, **kwargs) -> str:
    """Shapes and small parameters, never tensor values: 'x (2, 3, 8, 8), weight (4, 3, 3, 3), stride=2'."""

    def one(v):
        if isinstance(v, torch.Tensor | np.ndarray):
            return f"a {tuple(v.shape)} tensor"
        if isinstance(v, Ref):
            return f"your {v.type}"
        if isinstance(v, list | tuple) and v and all(isinstance(i, int | float) for i in v) and len(v) <= 8:
            return repr(tuple(v))
        if isinstance(v, list | tuple):
            return f"a list of {len(v)} items"
        return repr(v) if isinstance(v, int | float | str | bool | type(None)) else type(v).__name__

    parts = [one(a) for a in args] + [f"{k}={one(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _as_tensor(x, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray) and x.dtype != object:
        return torch.from_numpy(x)
    if isinstance(x, int | float | bool):
        return torch.tensor(x)
    fail(f"{what}: expected a tensor, got {type(x).__name__}")


def assert_close(
    got, expected, what: str, rtol: float = 1e-4, atol: float = 1e-5, oracle: str = "", check_dtype: bool = False
) -> None:
    """Compare a worker result with the trusted expectation; feedback names the first mismatch."""
    got_t, exp_t = _as_tensor(got, what), _as_tensor(expected, what)
    if tuple(got_t.shape) != tuple(exp_t.shape):
        fail(
            f"{what}: expected shape {tuple(exp_t.shape)}, got {tuple(got_t.shape)}"
            + (f" (oracle: {oracle})" if oracle else "")
        )
    if check_dtype and got_t.dtype != exp_t.dtype:
        fail(f"{what}: expected dtype {exp_t.dtype}, got {got_t.dtype}")
    g, e = got_t.double(), exp_t.double()
    bad = ~((g - e).abs() <= atol + rtol * e.abs()) | (g.isnan() != e.isnan())
    bad &= ~(g.isnan() & e.isnan())
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0])
        n = int(bad.sum())
        fail(
            f"{what}: {n} of {bad.numel()} values differ; first at index {list(idx)}: expected {e[idx].item():.6g}, "
            f"got {g[idx].item():.6g} (rtol {rtol:g}, atol {atol:g}" + (f", oracle: {oracle})" if oracle else ")")
        )


class Worker:
    """The sandboxed submission, as the checks see it: calls that either return plain data or fail a check."""

    def __init__(self, session: Session, submission: Submission):
        self.session, self.submission = session, submission

    def require(self, task: str) -> None:
        """Fail the current check when the task's answer cell is missing, damaged or raised when it ran."""
        if task in self.submission.problems:
            fail(self.submission.problems[task])
        if task.endswith(SKIP_SUFFIXES):  # training cells are not run in the sandbox; their checks read the source
            return
        cell = next((c for c in self.session.cells if c.grade_id == task), None)
        if cell is None:
            fail(f"the answer cell '{task}' was not run")
        if not cell.ok:
            if cell.error is not None and cell.error.type == "NotImplementedError":
                fail(f"the answer cell '{task}' is not answered yet (it raised NotImplementedError)")
            why = str(cell.error) if cell.error else cell.detail
            fail(f"the answer cell '{task}' did not run cleanly: {why}")

    def _ensure(self) -> None:
        if not self.session.alive:
            self.session.restart()

    def _value(self, res: ProbeResult, what: str):
        if res.ok:
            return res.value
        if res.status == "error":
            if res.error.type == "NotImplementedError":
                fail(f"{what} is not answered yet (it raised NotImplementedError)")
            fail(f"{what} raised {res.error.type}" + (f": {res.error.message}" if res.error.message else ""))
        fail(f"{what} did not finish: {res.detail or res.status}")

    def call(self, target: str, *args, what: str | None = None, **kwargs):
        """``target(*args, **kwargs)`` in the worker; its value, or a failed check naming the call."""
        self._ensure()
        what = what or f"{target}({describe_args(*args, **kwargs)})"
        return self._value(self.session.call(target, *args, **kwargs), what)

    def store(self, name: str, target: str, *args, what: str | None = None, **kwargs) -> Ref:
        self._ensure()
        what = what or f"{target}({describe_args(*args, **kwargs)})"
        return self._value(self.session.store(name, target, *args, **kwargs), what)

    def get(self, target: str, what: str | None = None):
        self._ensure()
        return self._value(self.session.get(target), what or target)

    def helper(self, name: str, *args, what: str | None = None, **kwargs):
        self._ensure()
        return self._value(self.session.helper(name, *args, **kwargs), what or name)

    def probe(self, spec: dict, what: str):
        self._ensure()
        return self._value(self.session.probe(spec), what)

    def raw(self, spec: dict) -> ProbeResult:
        """A probe whose failure the check wants to inspect itself (e.g. an expected ValueError)."""
        self._ensure()
        return self.session.probe(spec)

    def expect_raises(self, exc: str, target: str, *args, **kwargs) -> str:
        """Fail unless ``target(*args)`` raises ``exc`` (or a subclass); return the message."""
        self._ensure()
        what = f"{target}({describe_args(*args, **kwargs)})"
        res = self.session.call(target, *args, **kwargs)
        if res.status == "error" and res.raised(exc):
            return res.error.message
        if res.ok:
            fail(f"{what} should raise {exc}, but it returned a value")
        if res.status == "error":
            fail(f"{what} should raise {exc}, but raised {res.error.type}: {res.error.message}")
        fail(f"{what} should raise {exc}, but did not finish: {res.detail or res.status}")

    def source(self, target: str) -> str:
        self._ensure()
        value = self._value(self.session.source(target), f"reading the source of {target}")
        return value["source"] if isinstance(value, dict) else str(value)


def borrowed(source: str, names: frozenset, attrs: frozenset = frozenset(), modules: tuple = ()) -> list[str]:
    """What an answer cell's code takes from elsewhere: ``names`` (as names or attributes), ``attrs`` (as
    attributes, e.g. ``nn.BatchNorm2d``), imports of those or from ``modules``, and star imports from fastai."""
    from course.grading.worker import strip_magics

    try:
        tree = ast.parse(strip_magics(source))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return []  # such a cell did not run at all; its checks say so
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in names:
            found.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in names | attrs:
            found.add(node.attr)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            module = getattr(node, "module", None) or ""
            for alias in node.names:
                full = f"{module}.{alias.name}" if module else alias.name
                star = alias.name == "*" and module.startswith("fastai")
                if alias.name in names | attrs or (modules and full.startswith(modules)) or star:
                    found.add(f"an import of {full}")
    return sorted(found)
