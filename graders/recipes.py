"""What a training cell trains, read from its text (training cells are never executed by the graders).

The cell's top-level statements are evaluated symbolically, in order: literals and arithmetic on them are
computed, names are looked up among earlier assignments (``lr = 0.01; learn.fit_one_cycle(epochs, lr)``), and
calls are kept as :class:`Call` values with their evaluated arguments, so ``sched = OneCycleScheduler(0.1)``
followed by ``learn.fit(5, cbs=sched)`` reads as a fit with that scheduler. Statements inside ``with``, ``if``
and ``for`` blocks are read too, in order. Nothing is ever run.
"""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass, field
from typing import Any

from .rules import parse

__all__ = ["Call", "Recipe", "Unknown", "read_recipe"]

TRAINING_METHODS = ("fit", "fit_one_cycle", "fine_tune", "fit_flat_cos", "fit_sgdr")
LEARNER_PARAMS = ("dls", "model", "loss_func", "opt_func", "lr", "splitter", "cbs", "metrics")
FIT_PARAMS = {
    "fit": ("n_epoch", "lr", "wd", "cbs"),
    "fit_one_cycle": ("n_epoch", "lr_max", "div", "div_final", "pct_start", "wd", "moms", "cbs"),
}


@dataclass(frozen=True)
class Unknown:
    """A value the reader cannot know (a name from elsewhere, or an expression it does not evaluate)."""

    text: str


@dataclass(frozen=True)
class Call:
    """A call in the cell: the callee's dotted name and its evaluated arguments."""

    name: str
    args: tuple = ()
    kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def short(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    def arg(self, params: tuple[str, ...], name: str, default: Any = None) -> Any:
        """An argument by name, or by its position in ``params``; ``default`` when absent or given as None."""
        kw = dict(self.kwargs)
        i = params.index(name)
        value = kw[name] if name in kw else self.args[i] if i < len(self.args) else None
        return default if value is None else value


@dataclass
class Recipe:
    """The cell's ``learn = Learner(...)`` and the training calls made on ``learn``, in order."""

    learner: Any = None
    fits: list[Call] = field(default_factory=list)
    names: dict[str, Any] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    problem: str = ""

    def first(self, short: str) -> int | None:
        """Position of the first call to ``short`` (e.g. "set_seed") among all calls, in evaluation order."""
        return next((i for i, c in enumerate(self.calls) if c.short == short), None)


_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_BIN |= {ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow, ast.Mod: operator.mod}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


class _Reader:
    def __init__(self):
        self.env: dict[str, Any] = {}
        self.fits: list[Call] = []
        self.calls: list[Call] = []  # every call evaluated, in the order Python evaluates them

    def value(self, node: ast.AST, depth: int = 0) -> Any:
        if depth > 50:
            return Unknown("...")
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.env.get(node.id, Unknown(node.id))
        if isinstance(node, ast.Attribute):
            return Unknown(_dotted(node))
        if isinstance(node, ast.Tuple | ast.List):
            return tuple(self.value(e, depth + 1) for e in node.elts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = self.value(node.operand, depth + 1)
            if _number(v):
                return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            a, b = self.value(node.left, depth + 1), self.value(node.right, depth + 1)
            if _number(a) and _number(b):
                try:
                    out = _BIN[type(node.op)](a, b)
                except (ArithmeticError, ValueError):
                    return Unknown("arithmetic")
                return out if not isinstance(out, complex) and abs(out) < 1e12 else Unknown("arithmetic")
        if isinstance(node, ast.Call):
            args = tuple(self.value(a, depth + 1) for a in node.args if not isinstance(a, ast.Starred))
            kwargs = tuple((k.arg, self.value(k.value, depth + 1)) for k in node.keywords if k.arg)
            call = Call(_dotted(node.func), args, kwargs)
            self.calls.append(call)
            return call
        if isinstance(node, ast.Lambda):
            return Unknown(ast.unparse(node)[:80])
        return Unknown(type(node).__name__)

    def run(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Assign):
                value = self.value(stmt.value)
                for target in stmt.targets:
                    self.assign(target, value)
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                self.assign(stmt.target, self.value(stmt.value))
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
                self.call(stmt.value)
            elif isinstance(stmt, ast.With | ast.If | ast.For | ast.While | ast.Try):
                for part in ("body", "orelse", "finalbody"):
                    self.run(getattr(stmt, part, []))
                for handler in getattr(stmt, "handlers", []):
                    self.run(handler.body)

    def assign(self, target: ast.AST, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.env[target.id] = value
        elif isinstance(target, ast.Tuple | ast.List):
            values = value if isinstance(value, tuple) and len(value) == len(target.elts) else None
            for i, t in enumerate(target.elts):
                self.assign(t, values[i] if values else Unknown("unpacked"))

    def call(self, node: ast.Call) -> None:
        func = node.func
        value = self.value(node)
        if isinstance(func, ast.Attribute) and func.attr in TRAINING_METHODS and _dotted(func.value) == "learn":
            self.fits.append(value)


def read_recipe(source: str) -> Recipe:
    """The cell's recipe; ``problem`` is set when the cell is not valid Python."""
    tree = parse(source)
    if tree is None:
        return Recipe(problem="the cell is not valid Python")
    reader = _Reader()
    reader.run(tree.body)
    return Recipe(reader.env.get("learn"), reader.fits, reader.env, reader.calls)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def number(v: Any) -> float | None:
    """``v`` as a float when it is a known finite number, else None."""
    return float(v) if _number(v) else None


def mentions(v: Any, *words: str) -> bool:
    """True when a value (a Call, Unknown name or literal, or a tuple of them) mentions one of ``words``."""
    if isinstance(v, tuple):
        return any(mentions(x, *words) for x in v)
    if isinstance(v, Call):
        return (
            any(w in v.name for w in words)
            or mentions(v.args, *words)
            or mentions(tuple(x for _, x in v.kwargs), *words)
        )
    if isinstance(v, Unknown):
        return any(w in v.text for w in words)
    return False
