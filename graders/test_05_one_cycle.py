"""Hidden checks for ex5 (05_one_cycle): cosine annealing, two phases, the 1cycle schedule and its callback.

Oracles: fastai's ``sched_cos`` / ``combined_cos``, fastai's ``fit_one_cycle`` run in the trusted process (the
learning rates and momentums its optimizer had at each training batch), and the reference run's per-step trace
(``graders/reference/traces.npz``, run ``r4_one_cycle``: 117 steps at batch size 512, lr_max 0.06).

The tasks build on each other (``combined_cos`` on ``sched_cos``, ``one_cycle_schedule`` on ``combined_cos``, the
callback on ``one_cycle_schedule``). A later task is graded on its own job: it passes when it matches the oracle,
or when it matches what the student's own earlier function gives (so one mistake costs one task's points).
"""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from course.grading import Ref

from .checks import CheckFailed, assert_close, borrowed, fail
from .strategies import settings_for_graders, settings_for_slow_graders

pytestmark = pytest.mark.ex5

TRACES = Path(__file__).resolve().parent / "reference" / "traces.npz"
LINEAR = [["Flatten"], ["Linear", 28 * 28, 10]]  # a model the fits below train; its weights are seeded
TOL_LR = {"rtol": 1e-6, "atol": 1e-6}  # times lr_max: fastai computes positions in float32
TOL_MOM = {"rtol": 1e-6, "atol": 1e-7}


# --- trusted side: oracles and data ----------------------------------------------------------------------------
def fastai_sched_cos(start, end, pos):
    from fastai.callback.schedule import sched_cos

    return sched_cos(start, end, pos)


def fastai_combined_cos(pct, start, middle, end):
    from fastai.callback.schedule import combined_cos

    return combined_cos(pct, start, middle, end)


def fastai_one_cycle(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    """fastai's 1cycle values at the positions i / n_steps its ParamScheduler uses."""
    f_lr = fastai_combined_cos(pct_start, lr_max / div, lr_max, lr_max / div_final)
    f_mom = fastai_combined_cos(pct_start, *moms)
    pos = [i / n_steps for i in range(n_steps)]
    return [f_lr(p) for p in pos], [f_mom(p) for p in pos]


@functools.cache
def mnist_subset(n_train: int, n_test: int):
    """The first training images and labels (inputs of a fit) and a few test images (no labels)."""
    from course.data import load_mnist

    m = load_mnist()
    x, y = m.tensors("train")
    x_test, _ = m.tensors("test")
    return x[:n_train].clone(), y[:n_train].clone(), x_test[:n_test].clone()


def trusted_fit(schedule: str, plan=None, **kwargs) -> dict:
    """probelib's ``fit`` in this process: fastai's own ``fit_one_cycle``, or a fixed per-batch plan of hypers."""
    from fastai.callback.core import Callback

    from course.grading import probelib

    cbs = []
    if plan is not None:

        class Plan(Callback):
            order, run_valid = 60, False

            def before_batch(self):
                self.opt.set_hyper("lr", plan[0][self.train_iter])
                self.opt.set_hyper("mom", plan[1][self.train_iter])

        cbs.append(Plan())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the worker: same summation order, same numbers
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fastai's attribute-shadowing notes, tensor-to-float notes
            return probelib.fit(probelib.sequential(LINEAR, seed=0), schedule=schedule, cbs=cbs, **kwargs)
    finally:
        torch.set_num_threads(threads)


def reference_trace() -> tuple[np.ndarray, np.ndarray]:
    if not TRACES.is_file():
        pytest.fail(f"{TRACES} is missing: run `course reference train`")
    with np.load(TRACES, allow_pickle=False) as z:
        return z["r4_one_cycle.lr"].astype(np.float64), z["r4_one_cycle.mom"].astype(np.float64)


# --- the answer must be the student's own code, not the oracle imported for the visible tests ----------------------
def check_own_code(worker, task: str, names: frozenset, attrs: frozenset = frozenset(), modules: tuple = ()):
    used = borrowed(worker.submission.cells.get(task, ""), names, attrs, modules)
    if used:
        fail(
            f"the answer cell '{task}' uses {', '.join(used)}: that is the library implementation the checks "
            "compare with; write your own"
        )


# --- comparing with the oracle, or with the student's own earlier function ----------------------------------------
def scalar(v):
    """A number from a worker reply: int, float, or a one-element tensor/array; None for anything else."""
    if (isinstance(v, np.ndarray) and v.size == 1) or (isinstance(v, torch.Tensor) and v.numel() == 1):
        try:
            v = v.item()
        except (TypeError, ValueError, RuntimeError):
            return None
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def floats(got, what: str, n: int | None = None) -> list[float]:
    """A worker reply that should be a sequence of numbers, as floats."""
    if isinstance(got, torch.Tensor | np.ndarray) and got.ndim == 1:
        got = list(got)
    vals = [scalar(v) for v in got] if isinstance(got, list | tuple) else [None]
    if None in vals:
        fail(f"{what}: expected a list of numbers, got {type(got).__name__}")
    if n is not None and len(vals) != n:
        fail(f"{what}: expected {n} values, got {len(vals)}")
    return vals


def values_of(res) -> list[float] | None:
    """An apply_each probe result -> floats, or None when a call failed or returned something else."""
    if not res.ok or not isinstance(res.value, list) or not res.value:
        return None
    vals = [scalar(r.get("value")) if isinstance(r, dict) else None for r in res.value]
    return None if None in vals else vals


def close_to_either(got, expected, what: str, tol: dict, oracle: str, own=None, own_name: str = "") -> None:
    """Pass when ``got`` matches the oracle, or (when given) what the student's own earlier function gives."""
    try:
        assert_close(
            torch.tensor(got, dtype=torch.float64),
            torch.tensor(expected, dtype=torch.float64),
            what,
            oracle=oracle,
            **tol,
        )
    except CheckFailed as first:
        if own is None or len(own) != len(got):
            raise
        try:
            assert_close(torch.tensor(got, dtype=torch.float64), torch.tensor(own, dtype=torch.float64), what, **tol)
        except CheckFailed:
            raise CheckFailed(f"{first} (it does not match what your {own_name} gives either)") from None


def call_each(worker, target, arg_lists: list, what: str) -> list:
    """``target(*args)`` for each args, in one probe; a failing call fails the check naming its arguments."""
    results = worker.helper("apply_each", Ref(target), arg_lists, what=what)
    if not isinstance(results, list) or len(results) != len(arg_lists):
        fail(f"{what}: the calls did not come back")
    out = []
    for args, r in zip(arg_lists, results, strict=True):
        if isinstance(r, dict) and "error" in r:
            err = r["error"] if isinstance(r["error"], dict) else {}
            kind = "is not answered yet" if err.get("type") == "NotImplementedError" else f"raised {err.get('type')}"
            fail(
                f"{what}: the call with arguments {tuple(round(a, 6) if isinstance(a, float) else a for a in args)} "
                f"{kind}" + (f": {err.get('message')}" if err.get("message") else "")
            )
        out.append(r.get("value") if isinstance(r, dict) else None)
    return out


def own_sched_cos_phases(worker, pct, start, middle, end, positions) -> list[float] | None:
    """What the student's sched_cos gives for the two phases at ``positions`` (None if it fails)."""
    args = [[start, middle, p / pct] if p < pct else [middle, end, (p - pct) / (1 - pct)] for p in positions]
    return values_of(worker.session.helper("apply_each", Ref("sched_cos"), args))


def own_one_cycle(worker, n_steps, lr_max, div, div_final, pct_start, moms):
    """What the student's combined_cos gives at i / n_steps for the lr and the momentum (None if it fails)."""
    out = []
    for name, args in (
        ("own_lr", [pct_start, lr_max / div, lr_max, lr_max / div_final]),
        ("own_mom", [pct_start, *moms]),
    ):
        res = worker.session.probe({"op": "call", "target": "combined_cos", "args": args, "store": name})
        if not res.ok:
            return None
        vals = values_of(worker.session.helper("apply_each", Ref(f"${name}"), [[i / n_steps] for i in range(n_steps)]))
        if vals is None:
            return None
        out.append(vals)
    return out


def own_schedule(worker, n_steps, lr_max, div, div_final, pct_start, moms):
    """The student's one_cycle_schedule for these arguments (None if it fails)."""
    res = worker.session.call("one_cycle_schedule", n_steps, lr_max, div, div_final, pct_start, list(moms))
    if not res.ok or not isinstance(res.value, list | tuple) or len(res.value) != 2:
        return None
    pair = [[scalar(v) for v in part] if isinstance(part, list | tuple) else [None] for part in res.value]
    return None if None in pair[0] or None in pair[1] else pair


def schedule_pair(got, n_steps: int, what: str) -> tuple[list[float], list[float]]:
    if not isinstance(got, list | tuple) or len(got) != 2:
        fail(f"{what}: expected a pair (lrs, moms), got {type(got).__name__}")
    return floats(got[0], f"{what}: lrs", n_steps), floats(got[1], f"{what}: moms", n_steps)


# --- ex5_sched_cos ---------------------------------------------------------------------------------------------
@pytest.mark.task("ex5_sched_cos")
def test_sched_cos_hand_values(worker):
    cases = [
        ((0.0, 1.0, 0.0), 0.0),
        ((0.0, 1.0, 1.0), 1.0),
        ((3.0, -1.0, 0.5), 1.0),
        ((1.0, 4.0, 1 / 3), 1.75),
        ((2.0, 2.0, 0.7), 2.0),
        ((-1.0, 1.0, 0.25), -math.sqrt(0.5)),
    ]
    got = call_each(worker, "sched_cos", [list(a) for a, _ in cases], "sched_cos")
    for (args, want), value in zip(cases, got, strict=True):
        if not isinstance(value, float):
            fail(f"sched_cos{args}: expected a Python float, got {type(value).__name__}")
        if not math.isclose(value, want, rel_tol=1e-12, abs_tol=1e-12):
            fail(
                f"sched_cos(start={args[0]}, end={args[1]}, pos={args[2]:.4g}): expected {want:.12g}, got {value!r} "
                "(hand computation: start + (1 + cos(pi * (1 - pos))) * (end - start) / 2)"
            )


@pytest.mark.task("ex5_sched_cos")
@settings_for_graders(20)
@given(cases=st.lists(st.tuples(st.floats(-10, 10), st.floats(-10, 10), st.floats(0, 1)), min_size=4, max_size=12))
def test_sched_cos_matches_fastai(worker, cases):
    got = call_each(worker, "sched_cos", [list(c) for c in cases], "sched_cos")
    for (start, end, pos), value in zip(cases, got, strict=True):
        want = fastai_sched_cos(start, end, pos)
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isclose(value, want, rel_tol=1e-10, abs_tol=1e-10)
        ):
            fail(
                f"sched_cos(start={start:.4g}, end={end:.4g}, pos={pos:.4g}): expected {want:.12g}, got {value!r} "
                "(rtol 1e-10, atol 1e-10, oracle: fastai's sched_cos)"
            )


# --- ex5_combined_cos ------------------------------------------------------------------------------------------
def check_combined_cos(worker, pct, start, middle, end, positions, what):
    f = worker.store("f", "combined_cos", pct, start, middle, end)
    got = call_each(worker, f.path, [[p] for p in positions], what)
    got = floats(got, what)
    ref = fastai_combined_cos(pct, start, middle, end)
    scale = max(abs(start), abs(middle), abs(end), 1e-12)
    own = own_sched_cos_phases(worker, pct, start, middle, end, positions)
    close_to_either(
        got,
        [ref(p) for p in positions],
        f"{what} at {len(positions)} positions in [0, 1]",
        {"rtol": 1e-6, "atol": 1e-6 * scale},
        "fastai's combined_cos",
        own,
        "sched_cos",
    )


@pytest.mark.task("ex5_combined_cos")
def test_combined_cos_hand_values(worker):
    f = worker.store("f_hand", "combined_cos", 0.4, 2.0, 6.0, 1.0)
    positions = [0.0, 0.2, 0.4, 0.7, 1.0]
    got = floats(
        call_each(worker, f.path, [[p] for p in positions], "combined_cos(0.4, 2.0, 6.0, 1.0)"),
        "combined_cos(0.4, 2.0, 6.0, 1.0)",
    )
    own = own_sched_cos_phases(worker, 0.4, 2.0, 6.0, 1.0, positions)
    close_to_either(
        got,
        [2.0, 4.0, 6.0, 3.5, 1.0],
        "combined_cos(pct=0.4, 2.0, 6.0, 1.0) at pos 0, 0.2, 0.4, 0.7, 1",
        {"rtol": 1e-9, "atol": 1e-9},
        "hand computation: start, phase midpoints, middle, end",
        own,
        "sched_cos",
    )


@pytest.mark.task("ex5_combined_cos")
@settings_for_graders(12)
@given(pct=st.floats(0.05, 0.95), vals=st.tuples(*[st.floats(-5, 5)] * 3), n=st.integers(3, 25))
def test_combined_cos_matches_fastai(worker, pct, vals, n):
    positions = sorted({i / n for i in range(n + 1)} | {pct, max(0.0, pct - 1e-9), min(1.0, pct + 1e-9)})
    check_combined_cos(
        worker, pct, *vals, positions, f"combined_cos(pct={pct:.4g}, {vals[0]:.4g}, {vals[1]:.4g}, {vals[2]:.4g})"
    )


@pytest.mark.task("ex5_combined_cos")
def test_combined_cos_schedules_are_independent(worker):
    """Two schedules made one after the other keep their own parameters (no shared or global state)."""
    a = worker.store("f_a", "combined_cos", 0.3, 0.0024, 0.06, 6e-7)
    b = worker.store("f_b", "combined_cos", 0.6, 0.95, 0.85, 0.95)
    positions = [i / 10 for i in range(11)]
    for ref, args, name in ((a, (0.3, 0.0024, 0.06, 6e-7), "first"), (b, (0.6, 0.95, 0.85, 0.95), "second")):
        what = f"the {name} of two schedules made in a row, combined_cos{args}"
        got = floats(call_each(worker, ref.path, [[p] for p in positions], what), what)
        own = own_sched_cos_phases(worker, *args, positions)
        f = fastai_combined_cos(*args)
        close_to_either(
            got,
            [f(p) for p in positions],
            what,
            {"rtol": 1e-6, "atol": 1e-6 * max(args[1:])},
            "fastai's combined_cos",
            own,
            "sched_cos",
        )


# --- ex5_one_cycle ---------------------------------------------------------------------------------------------
def check_one_cycle(worker, n_steps, lr_max, div, div_final, pct_start, moms, expected=None, oracle=""):
    what = (
        f"one_cycle_schedule(n_steps={n_steps}, lr_max={lr_max:.4g}, div={div:.4g}, div_final={div_final:.4g}, "
        f"pct_start={pct_start:.4g}, moms={tuple(round(m, 4) for m in moms)})"
    )
    got = worker.call(
        "one_cycle_schedule",
        n_steps,
        lr_max,
        div=div,
        div_final=div_final,
        pct_start=pct_start,
        moms=tuple(moms),
        what=what,
    )
    lrs, mms = schedule_pair(got, n_steps, what)
    if expected is None:
        expected, oracle = fastai_one_cycle(n_steps, lr_max, div, div_final, pct_start, moms), "fastai's combined_cos"
    own = own_one_cycle(worker, n_steps, lr_max, div, div_final, pct_start, moms)
    close_to_either(
        lrs,
        expected[0],
        f"{what}: learning rates",
        {"rtol": TOL_LR["rtol"], "atol": 1e-6 * lr_max},
        oracle,
        own and own[0],
        "combined_cos",
    )
    close_to_either(mms, expected[1], f"{what}: momentums", TOL_MOM, oracle, own and own[1], "combined_cos")


@pytest.mark.task("ex5_one_cycle")
def test_one_cycle_small_hand_case(worker):
    # positions 0, 1/4, 1/2, 3/4 with pct_start 1/2: start, midpoint of phase 1, peak, midpoint of phase 2
    expected = ([0.25, 0.625, 1.0, 0.5625], [0.9, 0.85, 0.8, 0.85])
    check_one_cycle(worker, 4, 1.0, 4.0, 8.0, 0.5, (0.9, 0.8, 0.9), expected, "hand computation")


@pytest.mark.task("ex5_one_cycle")
def test_one_cycle_reproduces_the_reference_trace(worker, manifest):
    lr, mom = reference_trace()
    steps = manifest["runs"]["r4_one_cycle"]["steps"]
    if len(lr) != steps:
        pytest.fail(f"the reference trace has {len(lr)} steps, the manifest says {steps}")
    check_one_cycle(
        worker,
        len(lr),
        0.06,
        25.0,
        1e5,
        0.25,
        (0.95, 0.85, 0.95),
        (lr.tolist(), mom.tolist()),
        "the reference run's per-step trace (1cycle, bs 512, 1 epoch)",
    )


@pytest.mark.task("ex5_one_cycle")
@settings_for_graders(10)
@given(
    n_steps=st.integers(1, 300),
    lr_max=st.floats(1e-4, 1.0),
    div=st.floats(2.0, 100.0),
    div_final=st.floats(10.0, 1e6),
    pct_start=st.floats(0.05, 0.95),
    moms=st.tuples(st.floats(0.8, 0.99), st.floats(0.5, 0.9), st.floats(0.8, 0.99)),
)
def test_one_cycle_matches_fastai(worker, n_steps, lr_max, div, div_final, pct_start, moms):
    check_one_cycle(worker, n_steps, lr_max, div, div_final, pct_start, moms)


@functools.cache
def fit_one_cycle_hps(epochs: int, lr_max: float, n_train: int, bs: int) -> tuple[list[float], list[float]]:
    x, y, _ = mnist_subset(n_train, 1)
    res = trusted_fit("fit_one_cycle", x_train=x, y_train=y, epochs=epochs, lr=lr_max, bs=bs)
    return res["lrs"], res["moms"]


@pytest.mark.task("ex5_one_cycle")
def test_one_cycle_matches_fit_one_cycle(worker):
    lrs, moms = fit_one_cycle_hps(3, 0.02, 640, 64)  # 3 epochs x 10 batches
    check_one_cycle(
        worker,
        len(lrs),
        0.02,
        25.0,
        1e5,
        0.25,
        (0.95, 0.85, 0.95),
        (lrs, moms),
        "the hyper-parameters fastai's fit_one_cycle gave the optimizer, batch by batch",
    )


# --- ex5_scheduler ---------------------------------------------------------------------------------------------
def worker_fit(worker, sched: Ref, epochs: int, lr_max: float, n_train: int, bs: int, n_test: int = 0, name="net"):
    """Train a seeded linear model in the worker with ``learn.fit(epochs, cbs=[the student's scheduler])``."""
    x, y, x_test = mnist_subset(n_train, max(n_test, 1))
    net = worker.probe(
        {"op": "helper", "name": "sequential", "args": [LINEAR], "kwargs": {"seed": 0}, "store": name},
        "building the grader's model",
    )
    what = f"learn.fit({epochs}, cbs=[your OneCycleScheduler])"
    res = worker.helper(
        "fit", net, x, y, x_test if n_test else None, epochs=epochs, lr=lr_max, bs=bs, schedule="fit", cbs=[sched],
        what=what,
    )  # fmt: skip
    if not isinstance(res, dict):
        fail(f"{what}: the training run's record could not be read")
    return res


def check_hypers(worker, res: dict, sched: Ref, n_steps: int, args: dict, expected, oracle: str, what: str):
    """The optimizer's per-batch lr/mom (from the fit) and the callback's own record against the expectation."""
    opt_lrs = floats(res.get("lrs"), f"{what}: the optimizer's learning rates", None)
    if len(opt_lrs) != n_steps:
        fail(f"{what}: {len(opt_lrs)} training batches were seen, expected {n_steps}")
    opt_moms = floats(res.get("moms"), f"{what}: the optimizer's momentums", n_steps)
    own = own_schedule(worker, n_steps, args["lr_max"], args["div"], args["div_final"], args["pct_start"], args["moms"])
    lr_tol = {"rtol": TOL_LR["rtol"], "atol": 1e-6 * args["lr_max"]}
    close_to_either(
        opt_lrs,
        expected[0],
        f"{what}: the optimizer's lr at each training batch",
        lr_tol,
        oracle,
        own and own[0],
        "one_cycle_schedule",
    )
    close_to_either(
        opt_moms,
        expected[1],
        f"{what}: the optimizer's mom at each training batch",
        TOL_MOM,
        oracle,
        own and own[1],
        "one_cycle_schedule",
    )
    rec_lrs = floats(worker.get(f"{sched.path}.lrs", what="your scheduler's lrs"), f"{what}: self.lrs")
    rec_moms = floats(worker.get(f"{sched.path}.moms", what="your scheduler's moms"), f"{what}: self.moms")
    if len(rec_lrs) != n_steps or len(rec_moms) != n_steps:
        fail(
            f"{what}: self.lrs / self.moms hold {len(rec_lrs)} / {len(rec_moms)} values, expected one per training "
            f"batch of this fit ({n_steps}); validation batches are not scheduled"
        )
    assert_close(
        torch.tensor(rec_lrs),
        torch.tensor(opt_lrs),
        f"{what}: self.lrs against the lr the optimizer had",
        rtol=1e-6,
        atol=1e-12,
    )
    assert_close(
        torch.tensor(rec_moms),
        torch.tensor(opt_moms),
        f"{what}: self.moms against the optimizer's mom",
        rtol=1e-6,
        atol=1e-12,
    )
    return opt_lrs, opt_moms


DEFAULTS = {"div": 25.0, "div_final": 1e5, "pct_start": 0.25, "moms": (0.95, 0.85, 0.95)}


@pytest.mark.task("ex5_scheduler")
def test_scheduler_trains_like_fit_one_cycle(worker):
    """fit(3, cbs=OneCycleScheduler(0.05)) sets fit_one_cycle's hypers before every batch and trains the same model."""
    epochs, lr_max, n_train, bs = 3, 0.05, 640, 64
    sched = worker.store("sched", "OneCycleScheduler", lr_max)
    res = worker_fit(worker, sched, epochs, lr_max, n_train, bs, n_test=200)
    x, y, x_test = mnist_subset(n_train, 200)
    ref = trusted_fit("fit_one_cycle", x_train=x, y_train=y, x_test=x_test, epochs=epochs, lr=lr_max, bs=bs)
    what = f"learn.fit({epochs}, cbs=OneCycleScheduler({lr_max})) on {n_train // bs} batches per epoch"
    args = {"lr_max": lr_max, **DEFAULTS}
    lrs, moms = check_hypers(
        worker, res, sched, epochs * n_train // bs, args, (ref["lrs"], ref["moms"]), "fastai's fit_one_cycle", what
    )
    if not (np.allclose(lrs, ref["lrs"], rtol=1e-6, atol=1e-6 * lr_max) and np.allclose(moms, ref["moms"], 1e-6, 1e-7)):
        ref = trusted_fit("fit", plan=(lrs, moms), x_train=x, y_train=y, x_test=x_test, epochs=epochs, lr=lr_max, bs=bs)
    assert_close(
        res.get("logits"),
        ref["logits"],
        f"{what}: the trained model's outputs on {len(x_test)} test images",
        rtol=1e-3,
        atol=1e-4,
        oracle="the same model trained with fit_one_cycle",
    )


@pytest.mark.task("ex5_scheduler")
@settings_for_slow_graders(3)
@given(
    epochs=st.integers(1, 3),
    lr_max=st.floats(1e-3, 0.2),
    div=st.floats(5.0, 50.0),
    div_final=st.floats(100.0, 1e6),
    pct_start=st.floats(0.1, 0.6),
    moms=st.tuples(st.floats(0.9, 0.99), st.floats(0.7, 0.89), st.floats(0.9, 0.99)),
)
def test_scheduler_other_arguments(worker, epochs, lr_max, div, div_final, pct_start, moms):
    args = {"lr_max": lr_max, "div": div, "div_final": div_final, "pct_start": pct_start, "moms": moms}
    sched = worker.store(
        "sched_args", "OneCycleScheduler", lr_max, div=div, div_final=div_final, pct_start=pct_start, moms=tuple(moms)
    )
    n_train, bs = 320, 32
    res = worker_fit(worker, sched, epochs, lr_max, n_train, bs)
    n_steps = epochs * n_train // bs
    what = (
        f"learn.fit({epochs}, cbs=OneCycleScheduler({lr_max:.4g}, div={div:.4g}, div_final={div_final:.4g}, "
        f"pct_start={pct_start:.3g}, moms={tuple(round(m, 3) for m in moms)}))"
    )
    check_hypers(
        worker,
        res,
        sched,
        n_steps,
        args,
        fastai_one_cycle(n_steps, lr_max, div, div_final, pct_start, moms),
        "fastai's combined_cos at i / n_steps",
        what,
    )


@pytest.mark.task("ex5_scheduler")
def test_scheduler_reproduces_the_reference_trace(worker):
    """117 training batches and OneCycleScheduler(0.06): the optimizer gets the reference run's lr and mom."""
    lr, mom = reference_trace()
    n = len(lr)
    sched = worker.store("sched_ref", "OneCycleScheduler", 0.06)
    res = worker_fit(worker, sched, 1, 0.06, n * 8, 8)  # 117 batches of 8 (and 256 validation items)
    check_hypers(
        worker,
        res,
        sched,
        n,
        {"lr_max": 0.06, **DEFAULTS},
        (lr.tolist(), mom.tolist()),
        "the reference run's per-step trace",
        f"learn.fit(1, cbs=OneCycleScheduler(0.06)) over {n} batches",
    )


@pytest.mark.task("ex5_scheduler")
def test_scheduler_fresh_cycle_each_fit(worker):
    """The same callback used for a second fit of another length plans a new cycle and keeps a new record."""
    sched = worker.store("sched_twice", "OneCycleScheduler", 0.03, pct_start=0.3)
    args = {"lr_max": 0.03, **DEFAULTS, "pct_start": 0.3}
    worker_fit(worker, sched, 2, 0.03, 320, 32)
    res = worker_fit(worker, sched, 1, 0.03, 480, 32, name="net2")  # 15 batches, 1 epoch
    check_hypers(
        worker,
        res,
        sched,
        15,
        args,
        fastai_one_cycle(15, 0.03, 25.0, 1e5, 0.3, DEFAULTS["moms"]),
        "fastai's combined_cos at i / n_steps",
        "a second fit (1 epoch x 15 batches) with the same scheduler",
    )


# --- all tasks: the student's own code -----------------------------------------------------------------------------
FASTAI_SCHEDULES = frozenset({"fastai_sched_cos", "fastai_combined_cos", "combine_scheds", "ParamScheduler"})


@pytest.mark.parametrize(
    "task",
    [
        pytest.param(t, marks=pytest.mark.task(t))
        for t in ("ex5_sched_cos", "ex5_combined_cos", "ex5_one_cycle", "ex5_scheduler")
    ],
)
def test_answer_is_own_code(worker, task):
    """No fastai scheduling code in the answer (the checks' oracle), and the answer works at all."""
    check_own_code(worker, task, FASTAI_SCHEDULES, modules=("fastai.callback.schedule",))
    if task == "ex5_sched_cos":
        worker.call("sched_cos", 0.0, 1.0, 0.5)
    elif task == "ex5_combined_cos":
        worker.call(worker.store("f_new", "combined_cos", 0.5, 0.0, 1.0, 0.0).path, 0.5, what="combined_cos(...)(0.5)")
    elif task == "ex5_one_cycle":
        worker.call("one_cycle_schedule", 4, 0.1)
    else:
        worker.store("sched_new", "OneCycleScheduler", 0.1)
