"""Trusted-side helpers for the hidden checks: ask the worker for data, compare with an oracle, word the feedback.

Every failed check raises ``CheckFailed`` whose message is the student's feedback, in one template: which
check, the input shapes and parameters, expected vs received (first mismatch, with enough digits to see the
difference), tolerance and oracle. Hidden inputs are described (shapes, parameters), never dumped. What the
worker returns is data of any shape a submission can produce, never a verdict: every pass condition here
compares it with something computed on this side.
"""

from __future__ import annotations

import numpy as np
import torch

from course.grading import ErrorInfo, ProbeResult, Ref, Session
from course.grading.submission import Submission

from .rules import RULES, violations, watched_ops

__all__ = [
    "CheckFailed",
    "RuleBroken",
    "SandboxedSubmission",
    "assert_close",
    "describe_args",
    "fail",
    "follow_rules",
    "load_into",
    "matched_state",
    "numbers",
    "pair",
    "rule_checks",
    "same",
    "scalar",
]

STUB = "raise NotImplementedError()"


class CheckFailed(AssertionError):
    """A hidden check failed; ``str(exc)`` is the feedback shown to the student."""


class RuleBroken(CheckFailed):
    """The task's code ran an operator its rules forbid (seen at run time): its own failure, never replayed."""


def fail(message: str):
    raise CheckFailed(message)


def describe_args(*args, **kwargs) -> str:
    """Shapes and small parameters, never tensor values: 'x (2, 3, 8, 8), weight (4, 3, 3, 3), stride=2'."""

    def one(v):
        if isinstance(v, torch.Tensor | np.ndarray):
            return f"a {tuple(v.shape)} tensor"
        if isinstance(v, Ref):
            return f"your {v.type}" if v.type else "an object"
        if isinstance(v, list | tuple) and v and all(isinstance(i, int | float) for i in v) and len(v) <= 8:
            return repr(tuple(v))
        if isinstance(v, list | tuple):
            return f"a list of {len(v)} items"
        return repr(v) if isinstance(v, int | float | str | bool | type(None)) else type(v).__name__

    parts = [one(a) for a in args] + [f"{k}={one(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def pair(expected: float, got: float) -> tuple[str, str]:
    """Two numbers printed with as few significant digits as show that they differ (at least 6)."""
    for digits in range(6, 18):
        e, g = f"{expected:.{digits}g}", f"{got:.{digits}g}"
        if e != g:
            return e, g
    return repr(float(expected)), repr(float(got))


def _as_tensor(x, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray) and x.dtype != object:
        return torch.from_numpy(x)
    if isinstance(x, int | float | bool):
        return torch.tensor(x)
    fail(f"{what}: expected a tensor, got {type(x).__name__}")


def numbers(x, what: str, n: int | None = None) -> torch.Tensor:
    """A reply that should be a flat sequence of numbers (list, tuple, 1-d tensor or array), as float64."""
    if isinstance(x, torch.Tensor | np.ndarray) and x.ndim == 1:
        x = list(x)
    vals = [scalar(v) for v in x] if isinstance(x, list | tuple) else [None]
    if None in vals:
        fail(f"{what}: expected a sequence of numbers, got {type(x).__name__}")
    if n is not None and len(vals) != n:
        fail(f"{what}: expected {n} values, got {len(vals)}")
    return torch.tensor(vals, dtype=torch.float64)


def scalar(v) -> float | None:
    """A number from a reply: int, float, or a one-element real tensor/array; None for anything else."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1 or v.is_complex():
            return None
        v = v.reshape(()).item()
    elif isinstance(v, np.ndarray | np.generic):
        if np.size(v) != 1 or np.asarray(v).dtype.kind not in "biuf":
            return None
        v = np.asarray(v).reshape(()).item()
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


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
    if got_t.is_complex() and not exp_t.is_complex():
        fail(f"{what}: expected real numbers, got a complex tensor")
    g, e = got_t.double(), exp_t.double()
    bad = ~((g - e).abs() <= atol + rtol * e.abs()) | (g.isnan() != e.isnan())
    bad &= ~(g.isnan() & e.isnan())
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0])
        n = int(bad.sum())
        want, have = pair(e[idx].item(), g[idx].item())
        fail(
            f"{what}: {n} of {bad.numel()} values differ; first at index {list(idx)}: expected {want}, got {have} "
            f"(rtol {rtol:g}, atol {atol:g}" + (f", oracle: {oracle})" if oracle else ")")
        )


def same(got, expected, rtol: float, atol: float) -> bool:
    """True when ``assert_close`` would pass."""
    try:
        assert_close(got, expected, "", rtol=rtol, atol=atol)
    except CheckFailed:
        return False
    return True


def follow_rules(submission: Submission, task: str) -> None:
    """Fail when the task's code (its cell and what it uses from earlier cells) breaks a rule of the notebook."""
    cells = submission.cells_before(task) + [(task, submission.cells.get(task, ""))]
    found = violations(cells, task)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        fail(f"the answer cell '{task}' {found[0]}{more}")


def rule_checks(*tasks: str, doc: str):
    """One check per task (parametrized, each marked with its task): its answer cell follows the notebook's rules.
    Assign it to a ``test_...`` name in a grader file; ``doc`` says which rule, for the reader of the checks."""
    import pytest

    @pytest.mark.parametrize("task", [pytest.param(t, marks=pytest.mark.task(t)) for t in tasks])
    def check(submission, task):
        follow_rules(submission, task)

    check.__doc__ = doc
    return check


def explain_error(error: ErrorInfo, what: str, submission: Submission | None = None) -> str:
    """Feedback for an exception the submission raised: not answered yet, or what was raised and where."""
    origin = error.origin
    if error.type == "NotImplementedError" and not error.message and origin is not None and origin.code == STUB:
        where = "it" if f"'{origin.cell}'" in what else f"the answer cell '{origin.cell}'"
        return f"{what} is not answered yet: `{STUB}` is still in {where}"
    text = f"{what} raised {error.type}" + (f": {error.message}" if error.message else "")
    if origin is not None and origin.function not in what:
        where = "at the top level" if origin.function == "<module>" else f"in {origin.function}"
        text += f"\n(raised {where}, line {origin.line} of the answer cell '{origin.cell}': {origin.code})"
    return text


class SandboxedSubmission:
    """The sandboxed submission as one task's checks see it: calls that return plain data or fail the check."""

    def __init__(
        self,
        session: Session,
        submission: Submission,
        task: str,
        stopped: dict[str, str] | None = None,
        cell_errors: dict[str, str] | None = None,
    ):
        self.session, self.submission, self.task = session, submission, task
        self.stopped = {} if stopped is None else stopped  # task -> what stopped the worker in one of its checks
        self.cell_errors = {} if cell_errors is None else cell_errors  # task -> what its cell raised when it ran

    def require(self) -> None:
        """Fail the current check when the task's answer cell is missing or damaged, still the release's stub, or
        did not run at all (timed out, crashed the worker).

        A cell that raised after defining its functions is still graded: here it runs without the data sets
        (experiments a student left in the cell fail), so what it defined is checked, and the note in
        ``cell_errors`` goes with the feedback of any check that fails.
        """
        task = self.task
        if task in self.submission.problems:
            fail(self.submission.problems[task])
        if self.submission.task(task).trains:  # training cells never run; their checks read them
            return
        cell = next((c for c in self.session.cells if c.grade_id == task), None)
        if cell is None:
            fail(f"the answer cell '{task}' was not run")
        if cell.ok:
            return
        if cell.error is None:
            fail(f"the answer cell '{task}' did not run: {cell.detail}")
        text = explain_error(cell.error, f"the answer cell '{task}'", self.submission)
        if "not answered yet" in text:
            fail(text)
        self.cell_errors.setdefault(task, text.replace("\n", " "))

    def _ensure(self) -> None:
        self.session.watch = watched_ops(self.task)
        if self.session.alive:
            return
        if self.task in self.stopped:  # the task has failed already: no restart spent on it again
            fail(f"not run: an earlier check of this task stopped the worker ({self.stopped[self.task]})")
        self.session.restart()

    def _rules_kept(self, res: ProbeResult, what: str) -> None:
        """Fail (for good: no replay) when the probe ran an operator the task's rules forbid."""
        if res.watched:
            rules = "; ".join(r.what for r in RULES.get(self.task, ()) if r.ops)
            raise RuleBroken(
                f"{what} ran {', '.join(res.watched)}, which the notebook does not allow for this exercise ({rules}); "
                "write the computation yourself"
            )

    def _value(self, res: ProbeResult, what: str):
        self._rules_kept(res, what)
        if res.ok:
            return res.value
        if res.status == "error":
            fail(explain_error(res.error, what, self.submission))
        if res.status in ("timeout", "crashed"):
            self.stopped.setdefault(self.task, res.detail or res.status)
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
        res = self.session.probe(spec)
        self._rules_kept(res, f"the probe of {spec.get('target') or spec.get('name')}")
        return res

    def expect_raises(self, exc: str, target: str, *args, **kwargs) -> str:
        """Fail unless ``target(*args)`` raises ``exc`` (or a subclass); return the message."""
        self._ensure()
        what = f"{target}({describe_args(*args, **kwargs)})"
        res = self.session.call(target, *args, **kwargs)
        self._rules_kept(res, what)
        if res.status == "error" and res.raised(exc):
            return res.error.message
        if res.ok:
            fail(f"{what} should raise {exc}, but it returned {_short(res.value)}")
        if res.status == "error":
            fail(f"{what} should raise {exc}, but " + explain_error(res.error, "it", self.submission))
        fail(f"{what} should raise {exc}, but did not finish: {res.detail or res.status}")

    def describe(self, ref: Ref, what: str) -> dict:
        """probelib's ``describe`` of a worker object (type, MRO, children, shapes, attributes), checked for form."""
        d = self.helper("describe", ref, what=what)
        if not _described(d):
            fail(f"{what}: its structure could not be read")
        return d

    def state_dict(self, ref: Ref | str, what: str) -> dict[str, torch.Tensor]:
        """A module's ``state_dict()`` as plain tensors (or a failed check)."""
        target = ref.path if isinstance(ref, Ref) else ref
        sd = self.call(f"{target}.state_dict", what=f"{what}.state_dict()")
        plain = isinstance(sd, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items())
        if not plain:
            fail(f"{what}.state_dict() could not be read as a dict of tensors")
        return sd

    def load_state(self, ref: Ref | str, state: dict, what: str) -> None:
        """Load ``state`` (an oracle's) into a module, matched by layout (``matched_state``), not by key."""
        target = ref.path if isinstance(ref, Ref) else ref
        plain = {k: v.detach().clone() for k, v in matched_state(self.state_dict(ref, what), state, what).items()}
        self.probe(
            {"op": "call", "target": f"{target}.load_state_dict", "args": [plain], "discard": True},
            f"{what}: load_state_dict",
        )

    def computes_like(self, ref: Ref, oracle, x: torch.Tensor, what: str, oracle_name: str, atol: float) -> None:
        """With ``oracle``'s (random) weights loaded into the submission's module ``ref``, its output on the batch
        ``x`` must be the oracle's (rtol 1e-4); an oracle in eval mode puts the module in eval mode too."""
        self.load_state(ref, {k: v.clone() for k, v in oracle.state_dict().items()}, f"{what} with random weights")
        mode = ""
        if not oracle.training:
            self.probe({"op": "call", "target": f"{ref.path}.eval", "discard": True}, f"{what}.eval()")
            mode = " in eval mode"
        batch = f"a {tuple(x.shape)} batch"
        assert_close(
            self.call(ref.path, x, what=f"{what} on {batch}"),
            oracle(x).detach(),
            f"{what}{mode} with random weights, on {batch}",
            rtol=1e-4,
            atol=atol,
            oracle=oracle_name,
        )


def _modules(state: dict) -> list[tuple[str, dict]]:
    """(module prefix, {entry name: tensor}) in order: {"0.conv.weight": w} -> [("0.conv", {"weight": w})]."""
    out: dict[str, dict] = {}
    for key, value in state.items():
        prefix, _, name = key.rpartition(".")
        out.setdefault(prefix, {})[name] = value
    return list(out.items())


def matched_state(target: dict, source: dict, what: str) -> dict:
    """``source``'s tensors under ``target``'s keys: modules matched in order, entries by name and shape.

    A network whose blocks are named (``nn.Sequential(OrderedDict(conv=..., act=...))``) or whose layer
    registers its buffers in another order is laid out like the chapter's when its modules come in the same
    order with the same entries; then the same weights can be compared."""
    mine, theirs = _modules(target), _modules(source)

    def layout(mods):
        return [sorted((n, tuple(v.shape)) for n, v in m.items()) for _, m in mods]

    if layout(mine) != layout(theirs):
        fail(
            f"{what}: its parameters and buffers, module by module, should be {layout(theirs)}, got {layout(mine)}"[
                :800
            ]
        )
    return {
        f"{prefix}.{name}" if prefix else name: theirs[i][1][name]
        for i, (prefix, entries) in enumerate(mine)
        for name in entries
    }


def load_into(model: torch.nn.Module, state: dict, what: str) -> torch.nn.Module:
    """A trusted model with a worker's ``state`` (a state_dict reply) loaded by layout; fails the check if it
    does not fit."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        fail(f"{what}: the trained weights could not be read")
    model.load_state_dict(matched_state(model.state_dict(), state, what))
    return model


def _described(d, depth: int = 0) -> bool:
    kids = d.get("children", []) if isinstance(d, dict) else None
    return (
        isinstance(d, dict)
        and isinstance(d.get("type"), str)
        and isinstance(d.get("mro"), list)
        and all(isinstance(m, str) for m in d["mro"])
        and isinstance(kids, list)
        and isinstance(d.get("parameters", {}), dict)
        and isinstance(d.get("buffers", {}), dict)
        and isinstance(d.get("attrs", {}), dict)
        and depth < 16
        and all(isinstance(c, list) and len(c) == 2 and _described(c[1], depth + 1) for c in kids)
    )


def _short(value) -> str:
    if isinstance(value, torch.Tensor | np.ndarray):
        return f"a {tuple(value.shape)} tensor"
    text = repr(value)
    return text if len(text) <= 60 else type(value).__name__
