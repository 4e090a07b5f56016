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

__all__ = ["RULES", "Rule", "binds", "code_of", "learner_shadows", "names_used", "parse", "tampering", "violations"]
__all__ += ["watched_ops"]


@dataclass(frozen=True)
class Rule:
    """What an answer must not use: attribute/import names (exact or by pattern), bare names, modules."""

    what: str
    attrs: frozenset[str] = frozenset()
    pattern: str = ""  # a regex for attribute/import names
    names: frozenset[str] = frozenset()
    modules: tuple[str, ...] = ()  # any import from these (prefixes), and `import *` from them
    ops: str = ""  # a regex of the operators (torch's aten names, numpy's) the task's code must not run

    def forbids(self, attr: str) -> bool:
        return attr in self.attrs or bool(self.pattern and re.search(self.pattern, attr))


CONV = Rule(
    "a library convolution (F.conv2d, nn.Conv2d, torch.conv2d, np.convolve, scipy's correlate, ...)",
    pattern=r"(?i)conv(?!ert)|correlat",
    ops=r"conv(?!ert)|correlat",  # aten.convolution, aten._conv_depthwise2d, numpy.convolve, numpy.correlate
)
PAD = Rule(
    "a library padding function (F.pad, nn.ZeroPad2d, np.pad, torch.constant_pad_nd, ...)",
    pattern=r"(?i)pad(\d?d|_?nd)?$",  # pad, ZeroPad2d, constant_pad_nd, _ConstantPadNd, reflection_pad2d
    ops=r"pad",  # aten.constant_pad_nd, aten.reflection_pad2d, numpy.pad
)
NORM = Rule(
    "a library normalization (nn.BatchNorm2d, F.batch_norm, torch.batch_norm, instance/layer/group norm)",
    pattern=r"(?i)(batch|instance|layer|group)_?norm|_normbase",
    ops=r"(batch|instance|layer|group)_norm",  # aten.native_batch_norm, aten._native_batch_norm_legit, ...
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


def watched_ops(task: str) -> str:
    """The regex of operators the task's checks watch for at run time (empty: none), from its rules."""
    return "|".join(f"(?:{r.ops})" for r in RULES.get(task, ()) if r.ops)


_DYNAMIC_CALLS = {"eval", "exec", "compile", "__import__", "globals", "locals", "vars", "breakpoint"}
#: what answer cells may import (top-level packages); anything else, e.g. ``sys``, ``os``, ``inspect`` or ``pydoc``,
#: is one more way to find a name at run time (each notebook lists these)
ALLOWED_IMPORTS = ("torch", "torchvision", "numpy", "fastai", "fastcore", "matplotlib", "course")
ALLOWED_IMPORTS += ("math", "cmath", "numbers", "statistics", "random", "collections", "itertools", "functools")
ALLOWED_IMPORTS += ("operator", "typing", "dataclasses", "copy", "warnings", "contextlib", "enum", "abc", "bisect")
ALLOWED_IMPORTS += ("heapq", "time")
#: modules that reach the system or the interpreter, which the allowed packages also hold as attributes
#: (``torch.sys``, ``from fastcore.imports import os``): as an attribute, an imported name or a bare name
_SYSTEM_MODULES = {"os", "sys", "subprocess", "importlib", "builtins", "inspect", "gc", "ctypes", "pickle", "marshal"}
_SYSTEM_MODULES |= {"signal", "threading", "runpy", "pkgutil", "pydoc", "socket", "shutil", "posix", "tempfile"}
_SYSTEM_MODULES |= {"pathlib", "types", "codeop", "dill", "atexit", "sysconfig", "site", "mmap", "resource", "fcntl"}
_SYSTEM_MODULES |= {"select", "faulthandler", "tracemalloc", "copyreg", "linecache", "unittest", "pty", "shlex"}
#: parts of the allowed packages that compile, load or look up code by name (TorchScript, custom operators, ...)
_DYNAMIC_PARTS = {"jit", "hub", "library", "package", "ops", "fx", "export", "onnx", "cpp_extension", "_dynamo"}
#: callables (of fastcore, operator, typing, numpy, torch) that look a name up or evaluate a string
_DYNAMIC_NAMES = {"attrgetter", "methodcaller", "nested_attr", "getattrs", "attrgot", "exec_local", "eval_type"}
_DYNAMIC_NAMES |= {"get_type_hints", "ForwardRef", "resolve_name", "locate", "safe_eval", "load", "loads"}
_DYNAMIC_ATTRS = {"__dict__", "__getattribute__", "__getattr__", "__globals__", "__builtins__", "__subclasses__"}
_DYNAMIC_ATTRS |= {"__code__", "__closure__", "__func__", "__self__", "__wrapped__", "__reduce__", "__reduce_ex__"}
_DYNAMIC_ATTRS |= {"__base__", "__bases__", "__mro__", "__annotations__", "__defaults__", "__kwdefaults__"}
_DYNAMIC_ATTRS |= {"__loader__", "__spec__", "__objclass__", "__getstate__", "__setstate__", "__import__"}
_DYNAMIC_ATTRS |= {"f_back", "f_globals", "f_locals", "f_builtins", "f_code", "tb_frame", "tb_next", "gi_frame"}
_DYNAMIC_ATTRS |= {"cr_frame", "ag_frame", "_getframe", "_current_frames"}
_DYNAMIC_ATTRS |= {"__traceback__", "settrace", "setprofile", "gettrace", "addaudithook", "ctypeslib"}
_DYNAMIC_ATTRS |= _DYNAMIC_PARTS | _DYNAMIC_NAMES


#: what the notebooks use from the course package; the rest (grading, site, reference) is not for answers
_COURSE_API = ("course.data", "course.dataloaders", "course.env")


@functools.lru_cache(maxsize=1024)
def parse(source: str) -> ast.Module | None:
    """The cell's syntax tree, or None when it is not valid Python (then it runs as a syntax error and defines
    nothing). ``source`` is a submission's cell as it runs (``submission.runnable``): read and run are one text.

    Cached: every check reads the same few cells again. Callers only read the tree, never change it."""
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None


@dataclass
class _Unit:
    cell: str
    node: ast.stmt
    binds: set[str] = field(default_factory=set)


def binds(stmt: ast.stmt) -> set[str]:
    """Names a top-level statement binds: functions, classes, assignments, imports, loop variables, names a
    function declares ``global``, and ``.attr`` for each attribute it sets on anything but ``self`` (such as
    ``torch.Tensor.method = ...``), which a later ``x.method`` may call."""
    out: set[str] = set()
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        out.add(stmt.name)
    elif isinstance(stmt, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names if a.name != "*"}
    scoped = isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    for node in ast.walk(stmt):
        if isinstance(node, ast.Global):
            out.update(node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and not scoped:
            out.add(node.id)  # (also a name local to a lambda or comprehension in it: one more statement read)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del) and not _on_self(node):
            out.add("." + node.attr)
    return out


def _on_self(node: ast.Attribute) -> bool:
    return isinstance(node.value, ast.Name) and node.value.id == "self"


def _loads(nodes: list[ast.AST]) -> set[str]:
    """Names read (and ``.attr`` for each attribute read) anywhere in ``nodes``."""
    out = set()
    for root in nodes:
        for n in ast.walk(root):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                out.add(n.id)
            elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load):
                out.add("." + n.attr)
    return out


def code_of(cells: list[tuple[str, str]], task: str) -> list[tuple[str, ast.stmt]]:
    """The statements to check for ``task``: its own cell, then the earlier cells' definitions it uses.

    ``cells`` are (grade_id, source) pairs in notebook order, ending with the task's cell.
    """
    units: list[_Unit] = []
    for gid, source in cells:
        tree = parse(source)
        for stmt in tree.body if tree is not None else []:
            units.append(_Unit(gid, stmt, binds(stmt)))
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


def modules_imported(source: str) -> tuple[str, ...]:
    """The modules ``source``'s import statements load (absolute imports only), in order."""
    tree, found = parse(source), []
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append(node.module)
    return tuple(dict.fromkeys(found))


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
    """Run-time name lookups and reaches into the interpreter in the task's answer cell or any answer cell before
    it: ``eval``, ``vars``, frames, a computed ``getattr``, an import from outside ``ALLOWED_IMPORTS`` (``sys``,
    ``inspect``, ``pydoc``...), TorchScript and custom operators, a library's private (``_name``) attribute.

    Such code can change what the graders see of any answer that runs after it, and no rule can be checked
    against it, so a task whose cell, or an earlier one, holds it cannot be graded (the notebooks say so).
    ``cells`` are (grade_id, source) pairs in notebook order, ending with the task's cell.
    """
    found: list[str] = []
    trees = [(cell, tree) for cell, tree in ((c, parse(s)) for c, s in cells) if tree is not None]
    own = set().union(*(_defined(tree) for _, tree in trees))
    for cell, tree in trees:
        called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}

        def hit(cell, node, text: str) -> None:
            where = f"line {getattr(node, 'lineno', 0)}" + ("" if cell == task else f" of the answer cell '{cell}'")
            found.append(f"{text} ({where})")

        for node in ast.walk(tree):
            _dynamic(cell, node, called, own, hit)
    return list(dict.fromkeys(found))


def _defined(tree: ast.Module) -> set[str]:
    """Names the cell's own code defines: functions, classes, variables, arguments, attributes it assigns."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Name | ast.Attribute) and isinstance(node.ctx, ast.Store):
            out.add(node.id if isinstance(node, ast.Name) else node.attr)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
    return out


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


def _private(name: str, own: set[str]) -> bool:
    """A single-underscore name the answers do not define themselves, nor inherit from the classes answers build
    on (a fastai ``HookCallback``'s ``_remove``...): a library's internals."""
    return name.startswith("_") and not name.startswith("__") and name not in own and name not in _inherited()


@functools.cache
def _inherited() -> frozenset[str]:
    """The private names of the classes answers subclass: fastai callbacks and hooks, torch modules."""
    from fastai.callback.core import Callback
    from fastai.callback.hook import Hook, HookCallback, Hooks
    from torch import nn

    return frozenset(n for cls in (Callback, HookCallback, Hook, Hooks, nn.Module) for n in dir(cls))


def _import_problem(node: ast.Import | ast.ImportFrom) -> str:
    """Why answers may not make this import (empty when they may)."""
    allowed = f"answer cells import only from {', '.join(ALLOWED_IMPORTS)}"
    if isinstance(node, ast.ImportFrom) and node.level:
        return f"imports from {'.' * node.level}{node.module or ''}; {allowed}"
    modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
    for module in modules:
        parts = module.split(".")
        if parts[0] not in ALLOWED_IMPORTS:
            return f"imports {module}; {allowed}"
        from_course = isinstance(node, ast.ImportFrom) and module == "course"  # its names are checked below
        if parts[0] == "course" and not (module.startswith(_COURSE_API) or from_course):
            return f"imports {module}, which is not for answers (they use {', '.join(_COURSE_API)})"
        if any(p in _DYNAMIC_PARTS or _private(p, set()) for p in parts[1:]):
            return f"imports {module}, which compiles or looks up code by name, or is a library's internals"
    if isinstance(node, ast.ImportFrom):
        for alias in node.names:
            if alias.name == "*":
                return f"imports * from {node.module}, which hides the names the cell uses; import each one"
            if alias.name in _SYSTEM_MODULES:
                return f"imports the module {alias.name} from {node.module}; {allowed}"
            if node.module == "course" and f"course.{alias.name}" not in _COURSE_API:
                return f"imports {alias.name} from course, which is not for answers"
            if alias.name in _DYNAMIC_ATTRS or alias.name in _DYNAMIC_CALLS:
                return f"imports {alias.name} from {node.module}, which looks names up at run time"
            if _private(alias.name, set()):
                return f"imports {alias.name} from {node.module}, a library's internals (a private name)"
    return ""


def _dynamic(cell: str, node: ast.AST, called: set[int], own: set[str], hit) -> None:
    """Run-time name lookups, which no rule can be checked against (``called``: ids of call targets; ``own``:
    names the answers define themselves)."""
    why = ""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        fn, args = node.func.id, node.args
        if fn in _DYNAMIC_CALLS:
            why = f"{fn}(...)"
        elif fn in ("getattr", "setattr", "delattr", "hasattr") and not (
            len(args) >= 2 and isinstance(args[1], ast.Constant) and isinstance(args[1].value, str)
        ):
            why = f"{fn} with a computed name"
        elif fn in ("getattr", "setattr", "delattr", "hasattr") and (
            args[1].value in _DYNAMIC_ATTRS or _private(args[1].value, own)
        ):
            why = f"{fn}(..., {args[1].value!r})"
    elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        if node.id in ("getattr", "setattr", *_DYNAMIC_CALLS) and id(node) not in called:
            why = f"{node.id} passed around as a value"
        elif node.id == "__builtins__" or (node.id in _DYNAMIC_NAMES | _SYSTEM_MODULES and node.id not in own):
            why = node.id
    elif isinstance(node, ast.Attribute):
        if node.attr in _DYNAMIC_ATTRS or node.attr in _SYSTEM_MODULES:
            why = f".{node.attr}"
        elif isinstance(node.value, ast.Name) and node.value.id == "course" and "course" not in own:
            if f"course.{node.attr}" not in _COURSE_API:
                why = f"course.{node.attr}"
        elif _private(node.attr, own):
            why = f"the private attribute .{node.attr}"
            hit(cell, node, f"uses {why}, a library's internals, which answers do not reach into")
            return
    elif isinstance(node, ast.Import | ast.ImportFrom):
        problem = _import_problem(node)
        if problem:
            hit(cell, node, problem)
            return
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
