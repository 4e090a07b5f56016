"""Hidden checks for ex5 (05_one_cycle): cosine annealing, two phases, the 1cycle schedule and its callback.

Oracles: fastai's ``sched_cos`` / ``combined_cos``, fastai's ``fit_one_cycle`` run in the trusted process (the
learning rates and momentums its optimizer had at each training batch, and the weights it trained), and the
reference run's per-step trace (``graders/reference/traces.npz``, run ``r4_one_cycle``: 117 steps at batch size
512, lr_max 0.06).

The tasks build on each other (``combined_cos`` on ``sched_cos``, ``one_cycle_schedule`` on ``combined_cos``, the
callback on ``one_cycle_schedule``). When a later task's check fails, it runs again with correct earlier functions
(``standins.py``), so one mistake costs one task. A scheduler is judged by what it made the optimizer do: the
weights a short training run ends with are compared with the same run replayed here with the expected schedule.
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

from .checks import assert_close, fail, numbers, rule_checks, scalar
from .rules import learner_shadows
from .strategies import settings_for_graders, settings_for_slow_graders

pytestmark = pytest.mark.ex5

TRACES = Path(__file__).resolve().parent / "reference" / "traces.npz"
LINEAR = [["Flatten"], ["Linear", 28 * 28, 10]]  # a model the fits below train; its weights are seeded


def sched_tol(scale: float, pct: float = 0.25) -> dict:
    """Tolerances for a schedule spanning ``scale`` with its phases split at ``pct``.

    fastai computes positions in float32 (an error of about 1.2e-7 / min(pct, 1 - pct) in a phase's position,
    so up to about 2e-7 / min(pct, 1 - pct) of the span in its value); the notebook's tests allow rtol 1e-6 and
    atol 1e-8 on a span of 0.06 (1.7e-7 of the span) and 1e-7 on momentums, which this never undercuts (the
    fit-level checks of the notebook compare lrs up to 0.06 with atol 6e-8 but positions only at 0.25).
    """
    return {"rtol": 1e-6, "atol": max(1e-7, 2e-7 * scale / min(pct, 1 - pct))}


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
def mnist_subset(n_train: int):
    """The first training images and labels (inputs of a fit)."""
    from course.data import load_mnist

    x, y = load_mnist().tensors("train")
    return x[:n_train].clone(), y[:n_train].clone()


def trusted_fit(schedule: str, plan=None, **kwargs) -> dict:
    """``course.training.fit`` in this process: fastai's own ``fit_one_cycle``, or a fixed per-batch plan of hypers."""
    from fastai.callback.core import Callback

    from course import training

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
            return training.fit(training.sequential(LINEAR, seed=0), schedule=schedule, cbs=cbs, **kwargs)
    finally:
        torch.set_num_threads(threads)


def reference_trace() -> tuple[np.ndarray, np.ndarray]:
    if not TRACES.is_file():
        pytest.fail(f"{TRACES} is missing: run `course reference train`")
    with np.load(TRACES, allow_pickle=False) as z:
        return z["r4_one_cycle.lr"].astype(np.float64), z["r4_one_cycle.mom"].astype(np.float64)


def call_each(worker, target, arg_lists: list, what: str) -> list:
    """``target(*args)`` for each args, in one probe; a failing call fails the check naming its arguments."""
    results = worker.helper("apply_each", Ref(target), arg_lists, what=what)
    if not isinstance(results, list) or len(results) != len(arg_lists):
        fail(f"{what}: the calls did not come back")
    out = []
    for args, r in zip(arg_lists, results, strict=True):
        if not isinstance(r, dict):
            fail(f"{what}: the calls did not come back")
        if "error" in r:
            err = r["error"] if isinstance(r["error"], dict) else {}
            shown = tuple(round(a, 6) if isinstance(a, float) else a for a in args)
            fail(f"{what} with arguments {shown} raised {err.get('type')}: {err.get('message')}"[:1000])
        out.append(r.get("value"))
    return out


def schedule_pair(got, n_steps: int, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(got, list | tuple) or len(got) != 2:
        fail(f"{what}: expected a pair (lrs, moms), got {type(got).__name__}")
    for part, name in zip(got, ("lrs", "moms"), strict=True):
        if not isinstance(part, list):
            fail(f"{what}: {name} should be a list (the notebook asks for two lists), got {type(part).__name__}")
    return numbers(got[0], f"{what}: lrs", n_steps), numbers(got[1], f"{what}: moms", n_steps)


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
                f"sched_cos(start={args[0]}, end={args[1]}, pos={args[2]:.4g}): expected {want!r}, got {value!r} "
                "(hand computation: start + (1 + cos(pi * (1 - pos))) * (end - start) / 2)"
            )


@pytest.mark.task("ex5_sched_cos")
@settings_for_graders(20)
@given(cases=st.lists(st.tuples(st.floats(-10, 10), st.floats(-10, 10), st.floats(0, 1)), min_size=4, max_size=12))
def test_sched_cos_matches_fastai(worker, cases):
    got = call_each(worker, "sched_cos", [list(c) for c in cases], "sched_cos")
    for (start, end, pos), value in zip(cases, got, strict=True):
        want = fastai_sched_cos(start, end, pos)
        v = scalar(value)
        if v is None or not math.isclose(v, want, rel_tol=1e-10, abs_tol=1e-10):
            fail(
                f"sched_cos(start={start!r}, end={end!r}, pos={pos!r}): expected {want!r}, got {value!r} "
                "(rtol 1e-10, atol 1e-10, oracle: fastai's sched_cos)"
            )


# --- ex5_combined_cos ------------------------------------------------------------------------------------------
def check_combined_cos(worker, pct, start, middle, end, positions, what, expected=None, oracle="fastai's combined_cos"):
    made = f"combined_cos({pct}, {start}, {middle}, {end})"
    f = worker.store("f", "combined_cos", pct, start, middle, end, what=made)
    got = numbers(call_each(worker, f.path, [[p] for p in positions], what), what)
    if expected is None:
        ref = fastai_combined_cos(pct, start, middle, end)
        expected = [ref(p) for p in positions]
    scale = max(abs(start), abs(middle), abs(end), 1e-12)
    assert_close(
        got,
        torch.tensor(expected, dtype=torch.float64),
        f"{what} at {len(positions)} positions in [0, 1]",
        oracle=oracle,
        **sched_tol(scale, pct),
    )


@pytest.mark.task("ex5_combined_cos")
def test_combined_cos_hand_values(worker):
    check_combined_cos(
        worker,
        0.4,
        2.0,
        6.0,
        1.0,
        [0.0, 0.2, 0.4, 0.7, 1.0],
        "combined_cos(pct=0.4, 2.0, 6.0, 1.0) at pos 0, 0.2, 0.4, 0.7, 1",
        [2.0, 4.0, 6.0, 3.5, 1.0],
        "hand computation: start, phase midpoints, middle, end",
    )


@pytest.mark.task("ex5_combined_cos")
@settings_for_graders(12)
@given(pct=st.floats(0.05, 0.95), vals=st.tuples(*[st.floats(-5, 5)] * 3), n=st.integers(3, 25))
def test_combined_cos_matches_fastai(worker, pct, vals, n):
    positions = sorted({i / n for i in range(n + 1)} | {pct, max(0.0, pct - 1e-9), min(1.0, pct + 1e-9)})
    what = f"combined_cos(pct={pct!r}, {vals[0]!r}, {vals[1]!r}, {vals[2]!r})"
    check_combined_cos(worker, pct, *vals, positions, what)


@pytest.mark.task("ex5_combined_cos")
def test_combined_cos_schedules_are_independent(worker):
    """Two schedules made one after the other keep their own parameters (no shared or global state)."""
    a = worker.store("f_a", "combined_cos", 0.3, 0.0024, 0.06, 6e-7)
    b = worker.store("f_b", "combined_cos", 0.6, 0.95, 0.85, 0.95)
    positions = [i / 10 for i in range(11)]
    for ref, args, name in ((a, (0.3, 0.0024, 0.06, 6e-7), "first"), (b, (0.6, 0.95, 0.85, 0.95), "second")):
        what = f"the {name} of two schedules made in a row, combined_cos{args}"
        got = numbers(call_each(worker, ref.path, [[p] for p in positions], what), what)
        f = fastai_combined_cos(*args)
        assert_close(
            got,
            torch.tensor([f(p) for p in positions], dtype=torch.float64),
            what,
            oracle="fastai's combined_cos",
            **sched_tol(max(args[1:]), args[0]),
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
    lr_tol, mom_tol = sched_tol(lr_max, pct_start), sched_tol(max(moms), pct_start)
    assert_close(lrs, torch.tensor(expected[0]), f"{what}: learning rates", oracle=oracle, **lr_tol)
    assert_close(mms, torch.tensor(expected[1]), f"{what}: momentums", oracle=oracle, **mom_tol)


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
    x, y = mnist_subset(n_train)
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
DEFAULTS = {"div": 25.0, "div_final": 1e5, "pct_start": 0.25, "moms": (0.95, 0.85, 0.95)}


def check_scheduler(worker, sched: Ref, epochs: int, args: dict, n_train: int, bs: int, expected, oracle, what):
    """Train a seeded linear model in the worker with ``learn.fit(epochs, cbs=[the scheduler])``; check the
    trained weights against the same run replayed here with the expected schedule, then the recorded values."""
    x, y = mnist_subset(n_train)
    lr_max = args["lr_max"]
    net = worker.probe(
        {"op": "helper", "name": "sequential", "args": [LINEAR], "kwargs": {"seed": 0}, "store": "net"},
        "building the grader's model",
    )
    res = worker.helper(
        "fit", net, x, y, epochs=epochs, lr=lr_max, bs=bs, schedule="fit", cbs=[sched], what=what,
    )  # fmt: skip
    if not isinstance(res, dict):
        fail(f"{what}: the training run's record could not be read")
    n_steps = epochs * (n_train // bs)
    # what the optimizer was given, as the fit helper saw it (data to explain a mismatch, not a verdict)
    opt_lrs = numbers(res.get("lrs"), f"{what}: the optimizer's learning rates")
    if len(opt_lrs) != n_steps:
        fail(f"{what}: {len(opt_lrs)} training batches were seen, expected {n_steps}")
    opt_moms = numbers(res.get("moms"), f"{what}: the optimizer's momentums", n_steps)
    lr_tol, mom_tol = sched_tol(lr_max, args["pct_start"]), sched_tol(max(args["moms"]), args["pct_start"])
    assert_close(opt_lrs, torch.tensor(expected[0]), f"{what}: the optimizer's lr at each training batch",
                 oracle=oracle, **lr_tol)  # fmt: skip
    assert_close(opt_moms, torch.tensor(expected[1]), f"{what}: the optimizer's mom at each training batch",
                 oracle=oracle, **mom_tol)  # fmt: skip
    # what the optimizer did: the trained weights, against the expected schedule replayed here
    replay = trusted_fit("fit", plan=expected, x_train=x, y_train=y, epochs=epochs, lr=lr_max, bs=bs)
    state = res.get("state") if isinstance(res, dict) else None
    if not isinstance(state, dict) or set(state) != set(replay["state"]):
        fail(f"{what}: the trained model's weights could not be read")
    for name, want in replay["state"].items():
        assert_close(state[name], want, f"{what}: the trained model's {name}", rtol=1e-3, atol=1e-5,
                     oracle=f"the same training replayed with {oracle}")  # fmt: skip
    # what the scheduler recorded
    rec_lrs = numbers(worker.get(f"{sched.path}.lrs", what="your scheduler's lrs"), f"{what}: self.lrs")
    rec_moms = numbers(worker.get(f"{sched.path}.moms", what="your scheduler's moms"), f"{what}: self.moms")
    if len(rec_lrs) != n_steps or len(rec_moms) != n_steps:
        fail(
            f"{what}: self.lrs / self.moms hold {len(rec_lrs)} / {len(rec_moms)} values, expected one per training "
            f"batch of this fit ({n_steps}); validation batches are not scheduled"
        )
    assert_close(rec_lrs, torch.tensor(expected[0]), f"{what}: self.lrs", oracle=oracle, **lr_tol)
    assert_close(rec_moms, torch.tensor(expected[1]), f"{what}: self.moms", oracle=oracle, **mom_tol)


@pytest.mark.task("ex5_scheduler")
def test_scheduler_trains_like_fit_one_cycle(worker):
    """fit(3, cbs=OneCycleScheduler(0.05)) sets fit_one_cycle's hypers before every batch and trains the same model."""
    epochs, lr_max, n_train, bs = 3, 0.05, 640, 64
    sched = worker.store("sched", "OneCycleScheduler", lr_max)
    x, y = mnist_subset(n_train)
    ref = trusted_fit("fit_one_cycle", x_train=x, y_train=y, epochs=epochs, lr=lr_max, bs=bs)
    what = f"learn.fit({epochs}, cbs=OneCycleScheduler({lr_max})) on {n_train // bs} batches per epoch"
    check_scheduler(
        worker, sched, epochs, {"lr_max": lr_max, **DEFAULTS}, n_train, bs, (ref["lrs"], ref["moms"]),
        "fastai's fit_one_cycle", what,
    )  # fmt: skip


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
    n_steps = epochs * n_train // bs
    what = (
        f"learn.fit({epochs}, cbs=OneCycleScheduler({lr_max:.4g}, div={div:.4g}, div_final={div_final:.4g}, "
        f"pct_start={pct_start:.3g}, moms={tuple(round(m, 3) for m in moms)}))"
    )
    expected = fastai_one_cycle(n_steps, lr_max, div, div_final, pct_start, moms)
    check_scheduler(worker, sched, epochs, args, n_train, bs, expected, "fastai's combined_cos at i / n_steps", what)


@pytest.mark.task("ex5_scheduler")
def test_scheduler_reproduces_the_reference_trace(worker):
    """117 training batches and OneCycleScheduler(0.06): the optimizer gets the reference run's lr and mom."""
    lr, mom = reference_trace()
    n = len(lr)
    sched = worker.store("sched_ref", "OneCycleScheduler", 0.06)
    check_scheduler(
        worker, sched, 1, {"lr_max": 0.06, **DEFAULTS}, n * 8, 8, (lr.tolist(), mom.tolist()),
        "the reference run's per-step trace", f"learn.fit(1, cbs=OneCycleScheduler(0.06)) over {n} batches",
    )  # fmt: skip


@pytest.mark.task("ex5_scheduler")
def test_scheduler_fresh_cycle_each_fit(worker):
    """The same callback used for a second fit of another length plans a new cycle and keeps a new record."""
    sched = worker.store("sched_twice", "OneCycleScheduler", 0.03, pct_start=0.3)
    args = {"lr_max": 0.03, **DEFAULTS, "pct_start": 0.3}
    first = fastai_one_cycle(20, 0.03, 25.0, 1e5, 0.3, DEFAULTS["moms"])
    check_scheduler(worker, sched, 2, args, 320, 32, first, "fastai's combined_cos at i / n_steps", "a first fit "
                    "(2 epochs x 10 batches)")  # fmt: skip
    second = fastai_one_cycle(15, 0.03, 25.0, 1e5, 0.3, DEFAULTS["moms"])
    check_scheduler(worker, sched, 1, args, 480, 32, second, "fastai's combined_cos at i / n_steps",
                    "a second fit (1 epoch x 15 batches) with the same scheduler")  # fmt: skip


# --- all tasks: the student's own code -----------------------------------------------------------------------------
OWN_CODE = "No fastai scheduling code in the answer (the checks' oracle); read from the answer cells."
test_answer_is_own_code = rule_checks(
    "ex5_sched_cos", "ex5_combined_cos", "ex5_one_cycle", "ex5_scheduler", doc=OWN_CODE
)


@pytest.mark.task("ex5_scheduler")
def test_scheduler_keeps_the_learners_attributes(submission):
    """The notebook: inside fastai events, do not assign attributes the learner has (such as moms or lr)."""
    found = learner_shadows(submission.cells["ex5_scheduler"], "OneCycleScheduler")
    if found:
        fail(
            f"OneCycleScheduler assigns {found[0]}, a name the learner has; fastai warns that this hides the "
            "learner's. Assign self.lrs and self.moms once in __init__ and fill them in place"
        )
