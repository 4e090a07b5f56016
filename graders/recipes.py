"""What a training cell trains, read from its text (training cells are never executed by the graders).

The cell's top-level statements are evaluated symbolically, in order: literals and arithmetic on them are
computed (``lr *= 10`` too), names are looked up among earlier assignments (``lr = 0.01;
learn.fit_one_cycle(epochs, lr)``), ``*args`` and ``**kwargs`` written as literals are unpacked, and calls are kept
as :class:`Call` values with their evaluated arguments, so ``sched = OneCycleScheduler(0.1)`` followed by
``learn.fit(5, cbs=sched)`` reads as a fit with that scheduler. ``with`` blocks and the body of a ``try`` are read
in order. Nothing is ever run.

What runs must be what is read, so a cell is *unreadable* (``Recipe.problem``) when it sets up or trains inside an
``if``, a loop or an ``except``, or names a training method anywhere but a top-level ``learn.<method>(...)``
statement (in a function, a conditional expression, an alias of ``learn``...).
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .rules import parse

__all__ = ["Call", "Recipe", "Unknown", "is_cross_entropy", "learner_problem", "read_recipe"]

TRAINING_METHODS = ("fit", "fit_one_cycle", "fine_tune", "fit_flat_cos", "fit_sgdr")
#: calls that set up or run training: a cell must make them where they are read (see the module's docstring)
SETUP_CALLS = (*TRAINING_METHODS, "Learner", "set_seed", "mnist_dls", "OneCycleScheduler")
#: positional parameters of fastai's Learner, Learner.fit and Learner.fit_one_cycle
LEARNER = ("dls", "model", "loss_func", "opt_func", "lr", "splitter", "cbs", "metrics", "path", "model_dir")
LEARNER += ("wd", "wd_bn_bias", "train_bn", "moms", "default_cbs")
FIT = ("n_epoch", "lr", "wd", "cbs", "reset_opt", "start_epoch")
FIT_ONE_CYCLE = ("n_epoch", "lr_max", "div", "div_final", "pct_start", "wd", "moms", "cbs", "reset_opt", "start_epoch")
_MOMS = (0.95, 0.85, 0.95)
#: fastai's defaults for the arguments that change how a run trains (a name stands for itself, e.g. Adam)
LEARNER_DEFAULTS = {"opt_func": "Adam", "splitter": "trainable_params", "wd": None, "wd_bn_bias": False}
LEARNER_DEFAULTS |= {"train_bn": True, "moms": _MOMS}
FIT_DEFAULTS = {"wd": None, "reset_opt": False, "start_epoch": 0}
ONE_CYCLE_DEFAULTS = FIT_DEFAULTS | {"div": 25.0, "div_final": 1e5, "pct_start": 0.25, "moms": _MOMS}
SCHEDULER_DEFAULTS = {"div": 25.0, "div_final": 1e5, "pct_start": 0.25, "moms": _MOMS}


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
    rest: Any = None  # an Unknown for `*args` / `**kwargs` that could not be unpacked: absent arguments are unknown

    @property
    def short(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    def arg(self, params: tuple[str, ...], name: str, default: Any = None) -> Any:
        """An argument by name, or by its position in ``params``; ``default`` when absent or given as None."""
        kw = dict(self.kwargs)
        i = params.index(name)
        value = kw[name] if name in kw else self.args[i] if i < len(self.args) else self.rest
        return default if value is None else value

    def changed(self, params: tuple[str, ...], defaults: dict[str, Any]) -> list[str]:
        """The arguments in ``defaults`` given other values than fastai's, as ``name=value`` (None as default)."""
        out = []
        for name, default in defaults.items():
            value = self.arg(params, name) if name in params else dict(self.kwargs).get(name, self.rest)
            if value is self.rest and value is not None:
                out.append(f"{value.text} (which cannot be read)")
            elif value is not None and not _same(value, default):
                out.append(f"{name}={value.text if isinstance(value, Unknown) else value!r}")
        return list(dict.fromkeys(out))


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
        self.read: set[int] = set()  # ids of the training-method nodes read as `learn.<method>(...)` statements
        self.problem = ""

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
            args, kwargs, rest = [], [], None
            for a in node.args:
                v = self.value(a.value if isinstance(a, ast.Starred) else a, depth + 1)
                if not isinstance(a, ast.Starred):
                    args.append(v)
                elif isinstance(v, tuple) and rest is None:
                    args.extend(v)
                else:
                    rest = Unknown(f"*{ast.unparse(a.value)[:40]}")
                    args.append(rest)
            for k in node.keywords:
                if k.arg:
                    kwargs.append((k.arg, self.value(k.value, depth + 1)))
                elif isinstance(k.value, ast.Dict) and all(isinstance(x, ast.Constant) for x in k.value.keys):
                    kwargs += [
                        (x.value, self.value(v, depth + 1)) for x, v in zip(k.value.keys, k.value.values, strict=True)
                    ]
                else:
                    rest = Unknown(f"**{ast.unparse(k.value)[:40]}")
            call = Call(_dotted(node.func), tuple(args), tuple(kwargs), rest)
            self.calls.append(call)
            return call
        if isinstance(node, ast.Lambda):
            return _lambda(node)
        return Unknown(type(node).__name__)

    def run(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Assign):
                value = self.value(stmt.value)
                for target in stmt.targets:
                    self.assign(target, value)
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                self.assign(stmt.target, self.value(stmt.value))
            elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
                as_binop = ast.BinOp(ast.Name(stmt.target.id, ast.Load()), stmt.op, stmt.value)
                self.assign(stmt.target, self.value(as_binop))
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
                self.call(stmt.value)
            elif isinstance(stmt, ast.With | ast.AsyncWith):
                self.run(stmt.body)
            elif isinstance(stmt, ast.Try | ast.TryStar):
                self.run(stmt.body + stmt.orelse + stmt.finalbody)
                self.unread(stmt.handlers, "an `except` block")
            elif isinstance(stmt, ast.If | ast.For | ast.AsyncFor | ast.While):
                self.unread([stmt], f"an `{type(stmt).__name__.lower().replace('async', '')}` block")

    def unread(self, nodes: list[ast.AST], where: str) -> None:
        """``nodes`` are not read: a set-up or training call in them makes the cell unreadable."""
        for node in (n for root in nodes for n in ast.walk(root)):
            if isinstance(node, ast.Call) and _dotted(node.func).rsplit(".", 1)[-1] in SETUP_CALLS:
                self.problem = self.problem or (
                    f"line {node.lineno} calls {_dotted(node.func)}(...) inside {where}; make the set-up and "
                    "training calls at the cell's top level, so that what the graders read is what runs"
                )

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
            self.read.add(id(func))

    def stray_training(self, tree: ast.Module) -> str:
        """A training method named anywhere but in the statements read (empty when there is none)."""
        for node in ast.walk(tree):
            named = node.attr if isinstance(node, ast.Attribute) else getattr(node, "value", None)
            if (
                isinstance(node, ast.Attribute | ast.Constant)
                and named in TRAINING_METHODS
                and id(node) not in self.read
            ):
                return (
                    f"line {node.lineno} names the training method {named} somewhere the graders do not read "
                    "(they read `learn.<method>(...)` statements at the cell's top level, or in a `with` block)"
                )
        return ""


def read_recipe(source: str) -> Recipe:
    """The cell's recipe; ``problem`` is set when the cell is not valid Python."""
    tree = parse(source)
    if tree is None:
        return Recipe(problem="the cell is not valid Python")
    reader = _Reader()
    reader.run(tree.body)
    problem = reader.problem or reader.stray_training(tree)
    if not problem and len(reader.fits) > 1:
        problem = (
            f"it trains {len(reader.fits)} times (learn.{', learn.'.join(f.short for f in reader.fits)}); train once"
        )
    return Recipe(reader.env.get("learn"), reader.fits, reader.env, reader.calls, problem)


def learner_problem(
    recipe: Recipe, dls_ok: Callable[[Any], bool], dls_text: str, model: str, bare: bool = True
) -> str | None:
    """Why ``learn`` is not ``Learner(<dls>, <model>(), loss_func=F.cross_entropy, metrics=accuracy)`` with fastai's
    defaults for everything else (None when it is). ``dls_ok`` judges the data argument, resolved through the cell's
    own assignments; ``dls_text`` says what it should be; ``bare``: the model call takes no arguments."""
    learn = recipe.learner
    if not (isinstance(learn, Call) and learn.short == "Learner"):
        return "it should create the Learner with `learn = Learner(...)`"
    dls, net, loss = (learn.arg(LEARNER, k) for k in ("dls", "model", "loss_func"))
    if isinstance(dls, Unknown) and isinstance(recipe.names.get(dls.text), Call):
        dls = recipe.names[dls.text]
    if not dls_ok(dls):
        return f"the Learner's data should be {dls_text}"
    if not (isinstance(net, Call) and net.short == model and not (bare and (net.args or net.kwargs))):
        return f"the Learner's model should be a fresh {model}()"
    if not is_cross_entropy(loss):
        return "the Learner's loss_func should be F.cross_entropy"
    changed = learn.changed(LEARNER, LEARNER_DEFAULTS)
    if changed:
        return f"the Learner should train with fastai's defaults, but it is given {', '.join(changed)}"
    metrics = learn.arg(LEARNER, "metrics")
    metrics = metrics if isinstance(metrics, tuple) else (metrics,)
    if len(metrics) != 1 or not mentions(metrics, "accuracy"):
        return "the Learner's metrics should be accuracy (one metric: learn.validate() then gives (loss, accuracy))"
    return None


def _lambda(node: ast.Lambda) -> Any:
    """``lambda a, b: f(a, b)`` reads as ``f`` itself; any other lambda stays unknown."""
    params = [a.arg for a in node.args.args]
    body = node.body
    if (
        isinstance(body, ast.Call)
        and not body.keywords
        and not node.args.vararg
        and [getattr(a, "id", None) for a in body.args] == params
    ):
        return Unknown(_dotted(body.func))
    return Unknown(ast.unparse(node)[:80])


def is_cross_entropy(v: Any) -> bool:
    """``F.cross_entropy`` (any module path, or a lambda passing its arguments straight to it),
    ``nn.CrossEntropyLoss()`` or fastai's ``CrossEntropyLossFlat()``."""
    if isinstance(v, Unknown):
        return re.fullmatch(r"([A-Za-z_]\w*\.)*cross_entropy", v.text) is not None
    return isinstance(v, Call) and v.short in ("CrossEntropyLoss", "CrossEntropyLossFlat") and not (v.args or v.kwargs)


def _same(value: Any, default: Any) -> bool:
    if isinstance(default, str):
        return isinstance(value, Unknown) and re.fullmatch(rf"([A-Za-z_]\w*\.)*{default}", value.text) is not None
    if isinstance(default, tuple):
        return isinstance(value, tuple) and len(value) == len(default) and all(map(_same, value, default))
    if isinstance(default, bool) or default is None:
        return value is default
    return _number(value) and math.isclose(value, default, rel_tol=1e-9)


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
