"""Run the grading-case corpus through the notebooks' visible test cells and report per case.

Usage, from the repository root (one notebook runs at a time; set COURSE_DATA etc. as for the notebooks)::

    python -m tests.grading_cases.visible [ex1 ...] [--peers | --wrong] [--case NAME ...] [--alone]

A case is judged by its own task only: its answer cell and the task's visible test cells must all run cleanly.
Notebooks are cut after the last visible test cell of the tasks under test.

Peers: run ``i`` of an exercise puts the ``i``-th peer of every task into one copy of the solution notebook. A
peer that fails there is run again alone (everything else as in the solution), and that run decides; a peer that
passes alone but not next to the others is reported as coupled to them. ``--alone`` also runs every peer alone
with the visible tests of all later tasks, and reports later tests that a correct earlier answer breaks.

Wrong cases: run ``i`` puts the ``i``-th wrong case of several tasks into one notebook only when none of those
tasks depends on another (a static data-flow check of the cells' top-level names), so that each task is judged
with the solution's versions of everything it uses.

Exit status 1 when a peer fails or visibly breaks a stated rule (``RULES``), or when a wrong case passes all its
visible tests and its ``why`` does not say ``states:`` (wrong by a requirement the visible tests do not check).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import io
import os
import re
import sys
import tempfile
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `course` and `tests.grading_cases` importable
    sys.path.insert(0, str(ROOT))

from course.exercises import EXERCISES  # noqa: E402
from course.notebooks import execute_notebook, nbgrader_meta, read_notebook  # noqa: E402

ENV_KEYS = ("COURSE_DATA", "COURSE_OFFLINE", "COURSE_CACHE", "COURSE_FULL", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
CELL_TIMEOUT = 600

# Stated rules, as regular expressions over an answer's source (comments removed): task -> [(pattern, rule)].
_LIBRARY_CONV = (r"\b(?:F|functional|torch)\.conv[123]d\b|\bnn\.Conv|\bconvolution\s*\(", "no library convolution")
_NO_ORACLE = (r"FastaiActivationStats|import[^\n]*\bActivationStats\b", "no fastai ActivationStats")
_NO_SCHED = (
    r"fastai_sched_cos|fastai_combined_cos|fastai\.callback\.schedule|\bSched[A-Z]\w*\(|combine_scheds|"
    r"ParamScheduler|fit_one_cycle",
    "no fastai scheduling code",
)
RULES: dict[str, list[tuple[str, str]]] = {
    "ex1_color_conv": [_LIBRARY_CONV, (r"\bedge_features\b", "not via edge_features")],
    "ex2_zero_pad": [(r"\bF\.pad\b|\bpad\s*\(|ZeroPad|ConstantPad|constant_pad_nd", "no library padding")],
    "ex2_conv2d": [_LIBRARY_CONV],
    "ex4_layer_stats": [_NO_ORACLE],
    "ex4_activation_stats": [_NO_ORACLE],
    "ex4_plots": [_NO_ORACLE, (r"\.plot_layer_stats\s*\(|\.color_dim\s*\(", "not the stats object's own plots")],
    "ex5_": [_NO_SCHED],
    "ex6_batchnorm": [
        (
            r"nn\.BatchNorm|batch_norm\s*\(|instance_norm|layer_norm|group_norm|GroupNorm|LayerNorm|InstanceNorm",
            "no library normalization",
        )
    ],
    "": [(r"\bgetattr\s*\(|\bglobals\s*\(|\beval\s*\(|\bexec\s*\(|\bimportlib\b|__import__", "no dynamic lookups")],
}


def _code_only(source: str) -> str:
    """`source` with its comments and the text of its string literals blanked out (docstrings do not count)."""
    lines = source.splitlines(keepends=True)
    skip = {tokenize.COMMENT, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)}
    spans = [t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type in skip]
    for tok in reversed(spans):
        (r0, c0), (r1, c1) = tok.start, tok.end
        if r0 == r1:
            line = lines[r0 - 1]
            lines[r0 - 1] = line[:c0] + " " * (c1 - c0) + line[c1:]
        else:
            lines[r0 - 1] = lines[r0 - 1][:c0] + "\n"
            for r in range(r0, r1 - 1):
                lines[r] = "\n"
            lines[r1 - 1] = " " * c1 + lines[r1 - 1][c1:]
    return "".join(lines)


def rule_breaks(task: str, source: str) -> list[str]:
    """The stated rules that `source`, the answer to `task`, visibly breaks."""
    code = _code_only(source)
    found = [
        rule for key, rules in RULES.items() if task.startswith(key) for pat, rule in rules if re.search(pat, code)
    ]
    if task == "ex1_map_kernel" and any(isinstance(n, ast.For | ast.While) for n in ast.walk(ast.parse(source))):
        found.append("one nested list comprehension, no loop statements")
    return found


@dataclass
class Result:
    """What one case did, and whether that is what it should do."""

    ex: str
    task: str
    kind: str  # "peer" or "wrong"
    name: str
    why: str
    passed: bool | None = None
    failures: list[str] = field(default_factory=list)
    note: str = ""
    rules: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        if self.kind == "peer":
            return bool(self.passed) and not self.rules
        return self.passed is False or "states:" in self.why

    @property
    def verdict(self) -> str:
        if self.kind == "peer":
            return "ok" if self.ok else "BAD"
        if self.passed is False:
            return "ok (fails visible)"
        return "ok (states)" if self.ok else "BAD (passes)"


def load_cases(ex: str):
    """(PEERS, WRONG) of one exercise module."""
    module = importlib.import_module(f"tests.grading_cases.{ex}")
    return module.PEERS, module.WRONG


def check_corpus(ex: str, nb, peers, wrong) -> list[str]:
    """Problems with the corpus itself: unknown tasks, tasks without peers, duplicate names, solution markers."""
    tasks = [str(nbgrader_meta(c)["grade_id"]) for c in nb.cells if nbgrader_meta(c).get("solution")]
    problems = [f"{ex}: {t} has no peers" for t in tasks if not peers.get(t)]
    for kind, cases in (("PEERS", peers), ("WRONG", wrong)):
        for task, items in cases.items():
            if task not in tasks:
                problems.append(f"{ex}: {kind} has unknown task {task}")
            names = [c.name for c in items]
            problems += [f"{ex}: {task}: duplicate name {n}" for n in sorted({n for n in names if names.count(n) > 1})]
            for c in items:
                if "### BEGIN SOLUTION" in c.source or "### END SOLUTION" in c.source:
                    problems.append(f"{ex}: {task}/{c.name}: solution markers in the source")
                try:
                    ast.parse(c.source)
                except SyntaxError as err:
                    problems.append(f"{ex}: {task}/{c.name}: {err}")
    return problems


# ---- notebook structure and static dependencies ---------------------------------------------------------------


def task_cells(nb) -> dict[str, tuple[int, list[int]]]:
    """grade_id of each task -> (index of its answer cell, indices of its visible test cells)."""
    out: dict[str, tuple[int, list[int]]] = {}
    for i, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if meta.get("solution") and "grade_id" in meta:
            out[str(meta["grade_id"])] = (i, [])
    for i, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            gid = str(meta.get("grade_id", ""))
            task = next((t for t in out if re.fullmatch(rf"{re.escape(t)}_test\d*", gid)), None)
            if task is not None:
                out[task][1].append(i)
    return out


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _root(node) -> str | None:
    """The name at the bottom of `a.b[c].d(...)`, if it is a plain name."""
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _names(stmt) -> tuple[set[str], set[str]]:
    """(free names that top-level statement `stmt` reads, names it binds at top level)."""
    loads, local = set(), set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            loads.add(node.id)
        elif isinstance(node, _SCOPES) and node is not stmt or isinstance(node, ast.FunctionDef) and node is stmt:
            for inner in ast.walk(node):  # parameters and names bound inside a function or comprehension
                if isinstance(inner, ast.arg):
                    local.add(inner.arg)
                elif isinstance(inner, ast.Name) and not isinstance(inner.ctx, ast.Load):
                    local.add(inner.id)
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        stores = {stmt.name}
    elif isinstance(stmt, ast.Import | ast.ImportFrom):
        stores = {(a.asname or a.name).split(".")[0] for a in stmt.names}
    else:
        stores = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)} - local
    return loads - local, stores


def _touched(stmt, tainted: set[str]) -> set[str]:
    """Objects that `stmt` may change with tainted values: `obj.attr = ...`, `obj[i] = ...`, `obj.method(tainted)`."""
    out = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Attribute | ast.Subscript) and not isinstance(node.ctx, ast.Load):
            out.add(_root(node.value))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            args = [*node.args, *(k.value for k in node.keywords)]
            if any(isinstance(n, ast.Name) and n.id in tainted for a in args for n in ast.walk(a)):
                out.add(_root(node.func.value))
    return out - {None}


def _statements(source: str):
    try:
        return ast.parse(source).body
    except SyntaxError:
        return None


def _flow(stmts, tainted: set[str], modules: set[str]) -> bool:
    """Propagate `tainted` (names whose values may differ) through `stmts`, in place; whether a statement read one.

    Branches are followed separately and joined, loops may run zero, one or more times.
    """
    hit = False
    for stmt in stmts:
        if isinstance(stmt, ast.For | ast.AsyncFor):
            header = [stmt.iter]
        elif isinstance(stmt, ast.If | ast.While):
            header = [stmt.test]
        elif isinstance(stmt, ast.With | ast.AsyncWith):
            header = [item.context_expr for item in stmt.items]
        elif isinstance(stmt, ast.Try):
            header = []
        else:
            header = None
        reads = set().union(*(_names(ast.Expr(e))[0] for e in header)) if header else set()
        if header is None or "*" in tainted or reads & tainted:  # a simple statement, or a block run on tainted values
            loads, stores = _names(stmt)
            if "*" in tainted or loads & tainted:
                hit = True
                tainted |= stores | (_touched(stmt, tainted) - modules)
            else:
                tainted -= stores
            continue
        targets = [stmt.target] if isinstance(stmt, ast.For | ast.AsyncFor) else []
        targets += [i.optional_vars for i in getattr(stmt, "items", []) if i.optional_vars is not None]
        for target in targets:
            tainted -= _names(ast.Assign([target], ast.Constant(None)))[1]
        if isinstance(stmt, ast.If):
            branches = [set(tainted), set(tainted)]
            hit |= _flow(stmt.body, branches[0], modules) | _flow(stmt.orelse, branches[1], modules)
            tainted |= branches[0] | branches[1]
        elif isinstance(stmt, ast.For | ast.AsyncFor | ast.While):
            looped = set(tainted)
            for _ in range(2):  # values carried from one iteration to the next
                hit |= _flow(stmt.body, looped, modules)
            tainted |= looped
            hit |= _flow(stmt.orelse, tainted, modules)
        elif isinstance(stmt, ast.Try):
            done = set(tainted)
            hit |= _flow(stmt.body, done, modules)
            tainted |= done
            for block in [h.body for h in stmt.handlers] + [stmt.orelse, stmt.finalbody]:
                after = set(tainted)
                hit |= _flow(block, after, modules)
                tainted |= after
        else:
            hit |= _flow(stmt.body, tainted, modules)
    return hit


def affected(versions: list[list[str]], start: int, modules: set[str]) -> set[int]:
    """Indices of the cells after `start` whose behaviour may depend on what cell `start` defines.

    `versions[i]` holds every source cell `i` may have in a run (the solution's, a case's), [] for markdown.
    """
    tainted: set[str] = set()
    for source in versions[start]:
        body = _statements(source)
        tainted |= set().union(*(_names(s)[1] for s in body)) if body is not None else {"*"}
    hit = set()
    for i in range(start + 1, len(versions)):
        joined = set(tainted)
        for source in versions[i]:
            after = set(tainted)
            body = _statements(source)
            if body is None or _flow(body, after, modules):  # not Python (a magic, a syntax error): assume the worst
                hit.add(i)
            joined |= after
        tainted = joined
    return hit


def module_names(nb) -> set[str]:
    """Names bound by import statements anywhere in the notebook (modules and library objects)."""
    out = set()
    for cell in nb.cells:
        for stmt in (_statements(cell.source) or []) if cell.cell_type == "code" else []:
            if isinstance(stmt, ast.Import | ast.ImportFrom):
                out |= _names(stmt)[1]
    return out


def versions(solution, cases: dict[str, str], tasks_at) -> list[list[str]]:
    """Per cell, the sources it may have when some of `cases` replace their answer cells (see `affected`)."""
    out = [[c.source] if c.cell_type == "code" else [] for c in solution.cells]
    for task, source in cases.items():
        out[tasks_at[task][0]].append(source)
    return out


def depends(versions_: list[list[str]], tasks_at, later: str, earlier: str, modules: set[str]) -> bool:
    """Whether task `later`'s answer or test cells may be affected by task `earlier`'s answer cell."""
    answer, tests = tasks_at[later]
    start = tasks_at[earlier][0]
    return start < answer and bool(affected(versions_, start, modules) & {answer, *tests})


# ---- building and running notebooks -----------------------------------------------------------------------------


def build(solution, cases: dict[str, str], tasks_at, judged=None) -> nbformat.NotebookNode:
    """The solution notebook with the answer cells of `cases` replaced, cut after the last test of `judged`.

    `judged` defaults to the tasks of `cases`.
    """
    nb = nbformat.from_dict(solution)
    for task, source in cases.items():
        nb.cells[tasks_at[task][0]].source = source
    last = max(max(tasks_at[t][1], default=tasks_at[t][0]) for t in (judged or cases))
    nb.cells = nb.cells[: last + 1]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def run(ex: str, nb, label: str, verbose: bool) -> dict[int, tuple[str, str]]:
    """Execute `nb` in a fresh kernel in a temporary folder; index -> (status, error) of each code cell."""
    env = {k: os.environ[k] for k in ENV_KEYS if k in os.environ}
    env.setdefault("COURSE_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix=f"grading-cases-{ex}-") as tmp:
        path = Path(tmp) / EXERCISES[ex] / f"{EXERCISES[ex]}.ipynb"
        path.parent.mkdir()
        nbformat.write(nb, str(path))
        t0 = time.perf_counter()
        executed = execute_notebook(path, timeout=CELL_TIMEOUT, env=env)
    if verbose:
        print(
            f"  {ex} {label}: {time.perf_counter() - t0:.1f} s{'  FATAL ' + executed.fatal if executed.fatal else ''}"
        )
    return {
        i: (executed.outcome(i).status, executed.outcome(i).error)
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
    }


def judge(outcomes, nb, tasks_at, task: str) -> tuple[bool, list[str]]:
    """(answer cell and every visible test of `task` ran cleanly, descriptions of those that did not)."""
    answer, tests = tasks_at[task]
    failures = []
    for i in (answer, *tests):
        status, error = outcomes.get(i, ("not run", ""))
        if status != "ok":
            gid = nbgrader_meta(nb.cells[i]).get("grade_id", f"cell {i}")
            failures.append(f"{gid}: {error or status}"[:160])
    return not failures, failures


def check_exercise(ex: str, kinds: set[str], only: set[str], verbose: bool, alone_too: bool = False) -> list[Result]:
    """Run the cases of one exercise (see the module docstring); one Result per case."""
    solution = read_notebook(ROOT / "solutions" / EXERCISES[ex] / f"{EXERCISES[ex]}.ipynb")
    tasks_at = task_cells(solution)
    peers, wrong = load_cases(ex)
    problems = check_corpus(ex, solution, peers, wrong)
    if problems:
        raise SystemExit("\n".join(problems))
    results: list[Result] = []

    def select(cases):
        return {t: [c for c in cs if not only or c.name in only] for t, cs in cases.items()}

    if "peer" in kinds:
        chosen = select(peers)
        for n in range(max((len(cs) for cs in chosen.values()), default=0)):
            batch = {t: cs[n] for t, cs in chosen.items() if len(cs) > n}
            nb = build(solution, {t: c.source for t, c in batch.items()}, tasks_at)
            outcomes = run(ex, nb, f"peers #{n + 1} ({len(batch)} tasks)", verbose)
            for task, case in batch.items():
                res = Result(ex, task, "peer", case.name, case.why, rules=rule_breaks(task, case.source))
                res.passed, res.failures = judge(outcomes, nb, tasks_at, task)
                if not res.passed and len(batch) > 1:  # rerun alone: a peer of an earlier task may be the cause
                    alone = build(solution, {task: case.source}, tasks_at)
                    passed, failures = judge(run(ex, alone, f"{case.name} alone", verbose), alone, tasks_at, task)
                    if passed:
                        others = ", ".join(f"{t}/{c.name}" for t, c in batch.items() if t != task)
                        res.note = f"passes alone; failed next to {others}: {'; '.join(res.failures)}"
                    res.passed, res.failures = passed, failures
                results.append(res)
        if alone_too:  # each peer alone: do the later tasks' visible tests still pass with the solution's code?
            for task, cases in chosen.items():
                later = [t for t in tasks_at if tasks_at[t][0] > tasks_at[task][0]]
                for case in cases:
                    nb = build(solution, {task: case.source}, tasks_at, judged=[task, *later])
                    outcomes = run(ex, nb, f"{case.name} alone, with the later tasks", verbose)
                    broken = [f for t in later for f in judge(outcomes, nb, tasks_at, t)[1]]
                    res = next(r for r in results if r.kind == "peer" and (r.task, r.name) == (task, case.name))
                    if broken:
                        res.note = "; ".join(
                            filter(None, [res.note, f"alone, it breaks later tests: {'; '.join(broken)}"])
                        )

    if "wrong" in kinds:
        chosen = select(wrong)
        modules = module_names(solution)
        order = sorted(tasks_at, key=lambda t: tasks_at[t][0])
        for n in range(max((len(cs) for cs in chosen.values()), default=0)):
            batch = {t: chosen[t][n] for t in order if len(chosen.get(t, [])) > n}
            probe = versions(solution, {t: c.source for t, c in batch.items()}, tasks_at)
            groups: list[list[str]] = []  # latest task first: tasks late in the notebook share the long runs
            for task in reversed(list(batch)):
                for group in groups:
                    if not any(
                        depends(probe, tasks_at, other, task, modules) or depends(probe, tasks_at, task, other, modules)
                        for other in group
                    ):
                        group.append(task)
                        break
                else:
                    groups.append([task])
            for group in groups:
                nb = build(solution, {t: batch[t].source for t in group}, tasks_at)
                outcomes = run(ex, nb, f"wrong #{n + 1} ({', '.join(group)})", verbose)
                for task in group:
                    case = batch[task]
                    res = Result(ex, task, "wrong", case.name, case.why, rules=rule_breaks(task, case.source))
                    res.passed, res.failures = judge(outcomes, nb, tasks_at, task)
                    results.append(res)
    return results


def report(results: list[Result]) -> None:
    """One line per case (with the first failure of a wrong case, to see that it fails for its reason)."""
    width = max((len(f"{r.task}/{r.name}") for r in results), default=10)
    for r in results:
        line = f"{r.ex}  {r.kind:<5}  {f'{r.task}/{r.name}':<{width}}  {r.verdict:<18}"
        if r.rules:
            line += f"  [rules: {', '.join(r.rules)}]"
        if r.kind == "wrong" and r.failures:
            line += f"  {r.failures[0][:100]}"
        print(line.rstrip())
        if r.kind == "peer" and r.failures:
            print(f"        {' | '.join(r.failures)}")
        if r.note:
            print(f"        note: {r.note}")
    tally: dict[tuple[str, str], list[int]] = {}
    for r in results:
        count = tally.setdefault((r.ex, r.kind), [0, 0])
        count[0] += r.ok
        count[1] += 1
    print("\n" + "  ".join(f"{ex} {kind}: {ok}/{n} ok" for (ex, kind), (ok, n) in sorted(tally.items())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exercises", nargs="*", metavar="exN", help=f"some of {', '.join(EXERCISES)} (default: all)")
    parser.add_argument("--peers", action="store_true", help="only the peers")
    parser.add_argument("--wrong", action="store_true", help="only the wrong cases")
    parser.add_argument("--case", action="append", default=[], metavar="NAME", help="only cases with this name")
    parser.add_argument(
        "--alone", action="store_true", help="also run each peer alone and report later tasks' tests it breaks (slow)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no line per notebook run")
    args = parser.parse_args(argv)
    unknown = [ex for ex in args.exercises if ex not in EXERCISES]
    if unknown:
        parser.error(f"unknown exercise {unknown[0]!r}; use {', '.join(EXERCISES)}")
    kinds = {"peer"} if args.peers and not args.wrong else {"wrong"} if args.wrong and not args.peers else None
    t0 = time.perf_counter()
    results = []
    for ex in args.exercises or list(EXERCISES):
        results += check_exercise(ex, kinds or {"peer", "wrong"}, set(args.case), not args.quiet, args.alone)
    report(results)
    print(f"{len(results)} cases in {time.perf_counter() - t0:.0f} s")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
