"""How an answer is written: the notebooks' "write it yourself" rules, checked on the submitted cell text.

Facts about a student's *code* never come from the worker (which the student's code controls); they come from
the answer cells, parsed here. A rule names what an answer must not use, e.g. a library convolution. The code
checked is the task's answer cell plus every definition from an earlier answer cell that it uses, followed
transitively, so a helper written in another cell is read too. Uses are found as attributes (``F.conv2d``,
``torch.nn.functional.conv2d``), imports (``from torch.nn.functional import conv2d as c``), bare names (the
oracles the notebook's first cell imports for its tests) and ``getattr`` with a written-out name. A name
looked up at run time (``getattr(F, "conv" + "2d")``, ``globals()[...]``, ``eval``, ``importlib``,
``__dict__``) cannot be checked against any rule, and code that reaches into the interpreter (frames,
``gc``, ``ctypes``, threads, signal handlers, the graders' own modules) can change what the graders see of
every answer that runs after it: ``tampering`` finds both, in a task's cell and every cell before it, and
such a task is not graded (each notebook states this rule in its introduction).
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, field

__all__ = ["RULES", "Rule", "code_of", "learner_shadows", "names_used", "parse", "tampering", "violations"]


@dataclass(frozen=True)
class Rule:
    """What an answer must not use: attribute/import names (exact or by pattern), bare names, modules."""

    what: str
    attrs: frozenset[str] = frozenset()
    pattern: str = ""  # a regex for attribute/import names
    names: frozenset[str] = frozenset()
    modules: tuple[str, ...] = ()  # any import from these (prefixes), and `import *` from them

    def forbids(self, attr: str) -> bool:
        return attr in self.attrs or bool(self.pattern and re.search(self.pattern, attr))


CONV = Rule(
    "a library convolution (F.conv2d, nn.Conv2d, torch.conv2d, np.convolve, scipy's correlate, ...)",
    pattern=r"(?i)conv(?!ert)|correlat",
)
PAD = Rule(
    "a library padding function (F.pad, nn.ZeroPad2d, np.pad, torch.constant_pad_nd, ...)",
    pattern=r"(?i)^(\w*_)?pad(\d?d|_nd)?$|pad\d?d$",
)
NORM = Rule(
    "a library normalization (nn.BatchNorm2d, F.batch_norm, torch.batch_norm, instance/layer/group norm)",
    pattern=r"(?i)(batch|instance|layer|group)_?norm|_normbase",
)
FASTAI_STATS = Rule(
    "fastai's ActivationStats (the tests' oracle)",
    attrs=frozenset({"ActivationStats"}),
    names=frozenset({"FastaiActivationStats"}),
    modules=("fastai.callback.all", "fastai.vision.all", "fastai.basics", "fastai.tabular.all", "fastai.text.all"),
)
FASTAI_PLOTS = Rule(
    "the stats object's own plot_layer_stats / color_dim (fastai's, the tests' oracle)",
    attrs=frozenset({"plot_layer_stats", "color_dim"}),
)
_SCHEDULE = {"sched_cos", "sched_lin", "sched_exp", "sched_no", "sched_poly", "combined_cos", "combine_scheds"}
_SCHEDULE |= {"SchedCos", "SchedLin", "SchedExp", "SchedNo", "SchedPoly", "annealer", "ParamScheduler"}
_SCHEDULE |= {"fit_one_cycle", "fit_sgdr", "fit_flat_cos", "fine_tune", "LRFinder", "lr_find"}
FASTAI_SCHEDULE = Rule(
    "fastai's scheduling code (fastai.callback.schedule: sched_cos, combined_cos, ParamScheduler, ...)",
    attrs=frozenset(_SCHEDULE),
    names=frozenset({"fastai_sched_cos", "fastai_combined_cos"}),
    modules=("fastai.callback.schedule", *FASTAI_STATS.modules),
)

#: task -> rules its answer (and what it uses from earlier cells) must follow; each is stated in the notebook
RULES: dict[str, tuple[Rule, ...]] = {
    "ex1_color_conv": (CONV,),
    "ex2_zero_pad": (PAD,),
    "ex2_conv2d": (CONV,),
    "ex4_layer_stats": (FASTAI_STATS,),
    "ex4_activation_stats": (FASTAI_STATS,),
    "ex4_plots": (FASTAI_STATS, FASTAI_PLOTS),
    "ex5_sched_cos": (FASTAI_SCHEDULE,),
    "ex5_combined_cos": (FASTAI_SCHEDULE,),
    "ex5_one_cycle": (FASTAI_SCHEDULE,),
    "ex5_scheduler": (FASTAI_SCHEDULE,),
    "ex6_batchnorm": (NORM,),
}

_DYNAMIC_CALLS = {"eval", "exec", "compile", "__import__", "globals", "breakpoint"}
_DYNAMIC_MODULES = ("importlib", "builtins", "__main__", "inspect", "ctypes", "_ctypes", "gc", "pickle", "marshal")
_DYNAMIC_MODULES += ("dill", "signal", "threading", "_thread", "atexit", "sysconfig", "code", "codeop")
_DYNAMIC_ATTRS = {"__dict__", "__getattribute__", "__getattr__", "__globals__", "__builtins__", "__subclasses__"}
_DYNAMIC_ATTRS |= {"__code__", "__closure__", "__func__", "__self__", "__wrapped__", "__reduce__", "__reduce_ex__"}
_DYNAMIC_ATTRS |= {"f_back", "f_globals", "f_locals", "f_builtins", "f_code", "tb_frame", "tb_next", "gi_frame"}
_DYNAMIC_ATTRS |= {"cr_frame", "ag_frame", "_getframe", "_current_frames", "attrgetter", "methodcaller"}
_DYNAMIC_ATTRS |= {"__traceback__", "settrace", "setprofile", "gettrace", "addaudithook", "ctypeslib"}


#: what the notebooks use from the course package; the rest (grading, site, reference) is not for answers
_COURSE_API = ("course.data", "course.dataloaders", "course.env")


def parse(source: str) -> ast.Module | None:
    """The cell's syntax tree, or None when it is not valid Python (then it runs as a syntax error and defines
    nothing). ``source`` is a submission's cell as it runs (``submission.runnable``): read and run are one text."""
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None


@dataclass
class _Unit:
    cell: str
    node: ast.stmt
    binds: set[str] = field(default_factory=set)


def _binds(stmt: ast.stmt) -> set[str]:
    """Names a top-level statement binds (functions, classes, assignments, imports, loop variables)."""
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {stmt.name}
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names if a.name != "*"}
    out = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            if not isinstance(node, ast.Lambda):
                out.add(node.name)
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
    return out


def _loads(nodes: list[ast.AST]) -> set[str]:
    return {n.id for root in nodes for n in ast.walk(root) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def code_of(cells: list[tuple[str, str]], task: str) -> list[tuple[str, ast.stmt]]:
    """The statements to check for ``task``: its own cell, then the earlier cells' definitions it uses.

    ``cells`` are (grade_id, source) pairs in notebook order, ending with the task's cell.
    """
    units: list[_Unit] = []
    for gid, source in cells:
        tree = parse(source)
        for stmt in tree.body if tree is not None else []:
            units.append(_Unit(gid, stmt, _binds(stmt)))
    own = [u for u in units if u.cell == task]
    chosen = {id(u) for u in own}
    todo = _loads([u.node for u in own])
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for u in units:
            if u.cell != task and name in u.binds and id(u) not in chosen:
                chosen.add(id(u))
                todo |= _loads([u.node]) - seen
    return [(u.cell, u.node) for u in units if id(u) in chosen]


def names_used(source: str) -> set[str]:
    """Every name the cell reads (at any depth), e.g. to see which earlier answers it calls."""
    tree = parse(source)
    return _loads([tree]) if tree is not None else set()


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return f"{_dotted(node.func)}(...)"
    return "..."


def _where(cell: str, task: str, node: ast.AST) -> str:
    line = getattr(node, "lineno", 0)
    return f"line {line}" + ("" if cell == task else f" of the answer cell '{cell}', which it uses")


def violations(cells: list[tuple[str, str]], task: str) -> list[str]:
    """What the task's code uses that its rules forbid (empty when it follows them, or has no rules)."""
    rules = RULES.get(task, ())
    if not rules:
        return []
    found: list[str] = []

    def hit(cell, node, text: str) -> None:
        found.append(f"{text} ({_where(cell, task, node)})")

    for cell, stmt in code_of(cells, task):
        for node in ast.walk(stmt):
            for rule in rules:
                _check(rule, cell, node, hit)
    return list(dict.fromkeys(found))


def tampering(cells: list[tuple[str, str]], task: str) -> list[str]:
    """Run-time name lookups and reaches into the interpreter (frames, ``gc``, ``ctypes``, the graders' modules,
    ``eval``...) in the task's answer cell or any answer cell before it.

    Such code can change what the graders see of any answer that runs after it, and no rule can be checked
    against it, so a task whose cell, or an earlier one, holds it cannot be graded (the notebooks say so).
    ``cells`` are (grade_id, source) pairs in notebook order, ending with the task's cell.
    """
    found: list[str] = []
    for cell, source in cells:
        tree = parse(source)
        if tree is None:
            continue
        called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}

        def hit(cell, node, text: str) -> None:
            where = f"line {getattr(node, 'lineno', 0)}" + ("" if cell == task else f" of the answer cell '{cell}'")
            found.append(f"{text} ({where})")

        for node in ast.walk(tree):
            _dynamic(cell, node, called, hit)
    return list(dict.fromkeys(found))


def _check(rule: Rule, cell: str, node: ast.AST, hit) -> None:
    if isinstance(node, ast.Attribute) and rule.forbids(node.attr):
        hit(cell, node, f"uses {_dotted(node)}, {rule.what}")
    elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in rule.names:
        hit(cell, node, f"uses {node.id}, {rule.what}")
    elif isinstance(node, ast.Import):
        for alias in node.names:
            by_module = bool(rule.modules) and alias.name.startswith(rule.modules)
            if by_module or any(rule.forbids(part) for part in alias.name.split(".")):
                hit(cell, node, f"imports {alias.name}, {rule.what}")
    elif isinstance(node, ast.ImportFrom):
        module = node.module or ""
        for alias in node.names:
            if (rule.modules and module.startswith(rule.modules)) or rule.forbids(alias.name):
                hit(cell, node, f"imports {alias.name} from {module or '.'}, {rule.what}")
            elif alias.name == "*" and module.startswith(("fastai", "torch", "numpy", "scipy")):
                hit(cell, node, f"imports * from {module}, which brings in {rule.what}; import the names you need")
    elif isinstance(node, ast.Call) and _dotted(node.func) in ("getattr", "hasattr", "operator.attrgetter"):
        name = node.args[1] if len(node.args) > 1 else (node.args[0] if node.args else None)
        if isinstance(name, ast.Constant) and isinstance(name.value, str) and rule.forbids(name.value.split(".")[-1]):
            hit(cell, node, f"uses getattr(..., {name.value!r}), {rule.what}")


def _dynamic(cell: str, node: ast.AST, called: set[int], hit) -> None:
    """Run-time name lookups, which no rule can be checked against (``called``: ids of call targets)."""
    why = ""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        fn, args = node.func.id, node.args
        if fn in _DYNAMIC_CALLS:
            why = f"{fn}(...)"
        elif fn in ("getattr", "setattr", "delattr", "hasattr") and not (
            len(args) >= 2 and isinstance(args[1], ast.Constant) and isinstance(args[1].value, str)
        ):
            why = f"{fn} with a computed name"
        elif fn in ("getattr", "setattr", "delattr", "hasattr") and args[1].value in _DYNAMIC_ATTRS:
            why = f"{fn}(..., {args[1].value!r})"
        elif fn == "vars" and not (len(args) == 1 and isinstance(args[0], ast.Name) and args[0].id == "self"):
            why = "vars(...)"
    elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        if node.id in ("getattr", "setattr", "vars", *_DYNAMIC_CALLS) and id(node) not in called:
            why = f"{node.id} passed around as a value"
        elif node.id == "__builtins__":
            why = "__builtins__"
    elif isinstance(node, ast.Attribute):
        if node.attr in _DYNAMIC_ATTRS and not (
            node.attr == "__dict__" and isinstance(node.value, ast.Name) and node.value.id == "self"
        ):
            why = f".{node.attr}"
        elif node.attr == "modules" and _dotted(node.value) == "sys":
            why = "sys.modules"
    elif isinstance(node, ast.Import | ast.ImportFrom):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        bad = [n for n in names if n.split(".")[0] in _DYNAMIC_MODULES]
        bad += [n for n in names if n.split(".")[0] == "course" and not n.startswith(_COURSE_API)]
        if isinstance(node, ast.ImportFrom) and node.module == "course":
            bad += [a.name for a in node.names if f"course.{a.name}" not in _COURSE_API]
        if bad:
            why = f"import {bad[0]}"
    if why:
        hit(cell, node, f"looks names up at run time or reaches into the interpreter ({why})")


@functools.cache
def learner_attributes() -> frozenset[str]:
    """Every name ``hasattr(learn, name)`` is true for during a fit: a fastai callback that assigns one of them
    makes fastai warn that it hides the learner's (``Callback.__setattr__``). Read off a tiny real fit."""
    import warnings

    import fastai.callback.progress  # noqa: F401  (Learner.no_bar)
    from fastai.callback.core import Callback
    from fastai.test_utils import synth_learner

    seen: set[str] = set()

    class Look(Callback):
        def after_batch(self):
            seen.update(dir(self.learn))
            seen.update(n for n in dir(self.learn.model) if not n.startswith("_"))  # a Learner delegates to its model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn = synth_learner(n_trn=2, n_val=1, cbs=Look())
        with learn.no_bar(), learn.no_logging():
            learn.fit(1)
    return frozenset(seen)


def learner_shadows(source: str, class_name: str) -> list[str]:
    """``self.<name> = ...`` in a method of the cell's ``class_name`` (other than ``__init__``, which runs before
    the callback has a learner) where the learner has ``name``."""
    tree = parse(source)
    found = []
    for cls in (n for n in (tree.body if tree else []) if isinstance(n, ast.ClassDef) and n.name == class_name):
        for method in (m for m in cls.body if isinstance(m, ast.FunctionDef) and m.name != "__init__"):
            for node in ast.walk(method):
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                for t in (x for target in targets if isinstance(target, ast.AST) for x in ast.walk(target)):
                    own = isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
                    if own and t.attr in learner_attributes():
                        found.append(f"self.{t.attr} in {method.name} (line {t.lineno})")
    return list(dict.fromkeys(found))
