"""Hidden checks for ex6 (06_batchnorm): BatchNorm2d, the batch-normalized CNN, the final model, other norms.

Oracles: ``nn.BatchNorm2d`` (training and evaluation, running statistics over several steps, momentum and eps
variants, gradients), ``nn.GroupNorm`` / ``nn.InstanceNorm2d`` for the other kinds, the final network built from
``torch.nn`` with the reference run's weights (``graders/reference/weights/r6_final.pt``) and the reference
implementation's accuracy after the same short training run (the manifest's ``budgets``).

The final-model task (6.3) trains for minutes on the full data set, so its answer cell is not executed: the
checks read what it trains (its source) and run the same recipe, shortened, with the student's own
``simple_cnn_bn`` in a fresh worker (which has never received reference weights); the trained weights come
back as data and are evaluated here, in a network built from ``torch.nn``. Later tasks use ``BatchNorm2d``
and ``conv_bn``; when their checks fail, they run again with correct ones (``standins.py``).
"""

from __future__ import annotations

import functools
import math
import warnings
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from course.grading import Ref

from .checks import assert_close, fail, follow_rules, load_into
from .recipes import (
    FIT,
    FIT_DEFAULTS,
    FIT_ONE_CYCLE,
    LEARNER,
    ONE_CYCLE_DEFAULTS,
    SCHEDULER_DEFAULTS,
    Call,
    learner_problem,
    number,
    read_recipe,
)
from .strategies import rand, settings_for_graders, settings_for_slow_graders

pytestmark = pytest.mark.ex6

WEIGHTS = Path(__file__).resolve().parent / "reference" / "weights"
WIDTHS = [(1, 8, 5, True), (8, 16, 3, True), (16, 32, 3, True), (32, 64, 3, True), (64, 10, 3, False)]
SHORT_RUN = "ex6_short_run"  # the manifest budget: 2 epochs of 1cycle on 12,288 images, ~97%, +-0.1 across seeds
ACCURACY_TOLERANCE = 0.02  # the short run may fall at most 2 points below the reference (20x the seed spread)


# --- reading worker replies (they are data of any shape a submission can produce) -----------------------------------
def describe(worker, ref: Ref, what: str) -> dict:
    return worker.describe(ref, what)


def conv_attrs(d: dict) -> tuple:
    """(in, out, kernel_size, stride, padding) of a described Conv2d."""
    a = d.get("attrs", {})
    pair = lambda v: tuple(v) if isinstance(v, list | tuple) else v  # noqa: E731
    return (
        a.get("in_channels"),
        a.get("out_channels"),
        pair(a.get("kernel_size")),
        pair(a.get("stride")),
        pair(a.get("padding")),
    )


def reply(res, what: str) -> dict:
    if not isinstance(res, dict):
        fail(f"{what}: the result could not be read")
    return res


# --- data and trusted runs -----------------------------------------------------------------------------------------
@functools.cache
def mnist():
    """Training images and labels, test images (sent to the worker) and test labels (kept here), pixel mean/std."""
    from course.data import load_mnist
    from course.dataloaders import pixel_stats

    m = load_mnist()
    x, y = m.tensors("train")
    x_test, y_test = m.tensors("test")
    return x, y, x_test, y_test, *pixel_stats(x)  # mean/std as mnist_dls normalizes


def single_threaded(fn, *args, **kwargs):
    """Run ``fn`` here as the worker runs it: one thread, fastai's notes silenced."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


def accuracy(logits, labels) -> float:
    if not isinstance(logits, torch.Tensor | np.ndarray) or logits.dtype == object:
        fail(f"the model's outputs for {len(labels)} test images: expected a tensor, got {type(logits).__name__}")
    logits = torch.as_tensor(logits)
    if tuple(logits.shape) != (len(labels), 10):
        fail(
            f"the model's outputs for {len(labels)} test images: expected shape ({len(labels)}, 10), got "
            f"{tuple(logits.shape)}"
        )
    return float((logits.argmax(1) == labels).float().mean())


def reference_state(manifest) -> dict:
    path = WEIGHTS / "r6_final.pt"
    if "r6_final" not in manifest.get("runs", {}) or not path.is_file():
        pytest.fail(f"{path} is missing: run `course reference train`")
    return torch.load(path, weights_only=True, map_location="cpu")


def flat_layers(bn) -> list:
    """The final CNN as one flat layer list for ``course.training.sequential`` (Conv2d, BN, ReLU, ..., Flatten)."""
    layers = []
    for ni, nf, ks, act in WIDTHS:
        layers += [["Conv2d", ni, nf, ks, {"stride": 2, "padding": ks // 2}], [bn, nf]] + ([["ReLU"]] if act else [])
    return layers + [["Flatten"]]


def flat_state(state: dict) -> dict:
    """r6_final's nested keys (block.layer.name) renamed for the flat layer list."""
    index, out = 0, {}
    for block, (*_, act) in enumerate(WIDTHS):
        for layer in (0, 1):
            for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                key = f"{block}.{layer}.{name}"
                if key in state:
                    out[f"{index + layer}.{name}"] = state[key]
        index += 3 if act else 2
    if len(out) != len(state):
        pytest.fail("r6_final.pt does not have the layout of simple_cnn_bn")
    return out


# --- ex6_final -----------------------------------------------------------------------------------------------------
def trusted_cnn_bn() -> nn.Sequential:
    """simple_cnn_bn built from torch.nn (nn.BatchNorm2d), with the state_dict keys of the notebook's network."""
    return nn.Sequential(*[oracle_block(ni, nf, ks, act) for ni, nf, ks, act in WIDTHS], nn.Flatten())


def oracle_block(ni: int, nf: int, ks: int, act: bool) -> nn.Sequential:
    """Conv2d(stride 2, padding ks//2) -> nn.BatchNorm2d -> ReLU (when act): conv_bn built from torch.nn."""
    conv = nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2)
    return nn.Sequential(conv, nn.BatchNorm2d(nf), *([nn.ReLU()] if act else []))


def _schedulers(v) -> list[Call]:
    """OneCycleScheduler(...) calls in a callback argument (one, or a list of them)."""
    items = v if isinstance(v, tuple) else (v,)
    return [c for c in items if isinstance(c, Call) and c.short == "OneCycleScheduler"]


def _is_dls_512(v) -> bool:
    return isinstance(v, Call) and v.short == "mnist_dls" and number(v.arg(("bs", "sample"), "bs", 64)) == 512


def final_problem(source: str) -> str | None:
    """Why the final cell does not train the chapter's final recipe (None when it does), read from its text."""
    recipe = read_recipe(source)
    if recipe.problem:
        return recipe.problem
    problem = learner_problem(recipe, _is_dls_512, "mnist_dls(512)", "simple_cnn_bn", bare=False)
    if problem:
        return problem
    learn = recipe.learner
    seed, dls_made = recipe.first("set_seed"), recipe.first("mnist_dls")
    if seed is None or dls_made is None or seed > dls_made:
        return "it should call set_seed(42, reproducible=True) first, before creating the DataLoaders"
    call = recipe.calls[seed]
    if (
        number(call.arg(("s", "use_cuda", "reproducible"), "s")) != 42
        or call.arg(("s", "use_cuda", "reproducible"), "reproducible") is not True
    ):
        return "it should call set_seed(42, reproducible=True) first, before creating the DataLoaders"
    if not recipe.fits:
        return "it trains nothing (no learn.fit_one_cycle(...) or learn.fit(...))"
    fit = recipe.fits[-1]
    if fit.short == "fit_one_cycle":
        lr_max = fit.arg(FIT_ONE_CYCLE, "lr_max", learn.arg(LEARNER, "lr", 1e-3))  # fastai: the Learner's lr
        epochs, lr_max = number(fit.arg(FIT_ONE_CYCLE, "n_epoch")), number(lr_max)
        changed = fit.changed(FIT_ONE_CYCLE, ONE_CYCLE_DEFAULTS)
        found = f"learn.fit_one_cycle(n_epoch={epochs}, lr_max={lr_max}{''.join(', ' + c for c in changed)})"
    elif fit.short == "fit":
        scheds = _schedulers(fit.arg(FIT, "cbs")) + _schedulers(learn.arg(LEARNER, "cbs"))
        epochs = number(fit.arg(FIT, "n_epoch"))
        lr_max = number(scheds[0].arg(("lr_max",), "lr_max")) if len(scheds) == 1 else None
        changed = fit.changed(FIT, FIT_DEFAULTS) + [
            c for s in scheds[:1] for c in s.changed(("lr_max",), SCHEDULER_DEFAULTS)
        ]
        found = f"learn.fit(n_epoch={epochs}) with {len(scheds)} OneCycleScheduler(lr_max={lr_max})" + "".join(
            f", {c}" for c in changed
        )
    else:
        return f"it trains with learn.{fit.short}(...)"
    if epochs != 5 or lr_max is None or not math.isclose(lr_max, 0.1) or changed:
        return f"its training call is {found}"
    return None


@pytest.mark.task("ex6_final")
def test_final_cell_trains_the_chapter_recipe(submission):
    problem = final_problem(submission.cells["ex6_final"])
    if problem:
        fail(
            "the answer cell should create `learn = Learner(mnist_dls(512), simple_cnn_bn(), "
            "loss_func=F.cross_entropy, ...)` and train it for 5 epochs of 1cycle with lr_max 0.1 "
            f"(`learn.fit_one_cycle(5, 0.1)` or `learn.fit(5, cbs=OneCycleScheduler(0.1))`), but {problem}"
        )


def short_run(manifest) -> dict:
    """The grader budget of the final recipe, with the reference implementation's accuracy at that budget."""
    budget = manifest.get("budgets", {}).get(SHORT_RUN)
    if budget is None:
        pytest.fail(f"graders/reference has no budget {SHORT_RUN!r}: run `course reference train`")
    return budget


@pytest.mark.task("ex6_final")
def test_final_recipe_short_run_reaches_the_reference(worker, manifest):
    """simple_cnn_bn() trained with fit_one_cycle(lr_max 0.1) on a subset in a fresh worker; evaluated here."""
    x, y, x_test, y_test, mean, std = mnist()
    s = short_run(manifest)
    what = (
        f"your simple_cnn_bn() trained with fit_one_cycle({s['epochs']}, {s['lr']}) on {s['n_train']} training "
        f"images (bs {s['bs']}), accuracy on {s['n_test']} test images"
    )
    res = worker.helper(
        "fit",
        Ref(s["factory"]),
        x[: s["n_train"]],
        y[: s["n_train"]],
        epochs=s["epochs"],
        lr=s["lr"],
        bs=s["bs"],
        schedule=s["schedule"],
        mean=mean,
        std=std,
        seed=s["seed"],
        what=what,
    )
    model = load_into(trusted_cnn_bn(), res.get("state") if isinstance(res, dict) else None, what)
    from course import training

    got = accuracy(single_threaded(training.predict, model, x_test[: s["n_test"]], mean=mean, std=std),
                   y_test[: s["n_test"]])  # fmt: skip
    want = float(s["accuracy"])
    if not got >= want - ACCURACY_TOLERANCE:
        fail(
            f"{what}: {got:.2%}, expected at least {want - ACCURACY_TOLERANCE:.2%} (the reference implementation "
            f"reaches {want:.2%} with the same run; tolerance {ACCURACY_TOLERANCE:.0%})"
        )


# --- ex6_batchnorm -------------------------------------------------------------------------------------------------
def bn_state(nf: int, seed: int, fresh: bool) -> dict:
    if fresh:
        return dict(nn.BatchNorm2d(nf).state_dict())
    g = torch.Generator().manual_seed(seed)
    return {
        "weight": torch.randn(nf, generator=g),
        "bias": torch.randn(nf, generator=g),
        "running_mean": torch.randn(nf, generator=g),
        "running_var": torch.rand(nf, generator=g) + 0.5,
        "num_batches_tracked": torch.tensor(int(torch.randint(0, 50, (1,), generator=g))),
    }


def new_bn(worker, nf, eps, momentum, state, name="bn") -> Ref:
    bn = worker.store(name, "BatchNorm2d", nf, eps=eps, momentum=momentum)
    worker.probe(
        {"op": "call", "target": f"{bn.path}.load_state_dict", "args": [state], "discard": True},
        f"BatchNorm2d({nf}).load_state_dict(a state dict with nn.BatchNorm2d's keys)",
    )
    return bn


def check_step(worker, bn: Ref, ref: nn.BatchNorm2d, x, g, train: bool, what: str) -> None:
    """One forward/backward in ``train`` or eval mode: output, grads and buffers against ``ref``."""
    res = reply(worker.helper("forward_backward", bn, [x], grad_output=g, train=train, what=what), what)
    ref.train(train)
    ref.zero_grad(set_to_none=True)
    xr = x.clone().requires_grad_(True)
    y = ref(xr)
    y.backward(g)
    mode = "training" if train else "evaluation"
    oracle = f"nn.BatchNorm2d in {mode} mode"
    assert_close(res.get("output"), y.detach(), f"{what}: output", rtol=1e-4, atol=1e-5, oracle=oracle)
    grads = res.get("input_grads") if isinstance(res.get("input_grads"), list) and res.get("input_grads") else [None]
    if grads[0] is None:
        fail(f"{what}: no gradient reached the input; build the output from differentiable tensor operations")
    assert_close(grads[0], xr.grad, f"{what}: gradient with respect to the input", rtol=1e-4, atol=1e-4, oracle=oracle)
    pgrads = res.get("param_grads") if isinstance(res.get("param_grads"), dict) else {}
    for name in ("weight", "bias"):
        if pgrads.get(name) is None:
            fail(f"{what}: no gradient reached `{name}`; make it an nn.Parameter used in forward")
        assert_close(
            pgrads[name], getattr(ref, name).grad, f"{what}: gradient of `{name}`", rtol=1e-4, atol=1e-4, oracle=oracle
        )
    for name in ("running_mean", "running_var"):
        assert_close(
            worker.get(f"{bn.path}.{name}", what=f"{what}: {name}"),
            getattr(ref, name),
            f"{what}: `{name}` afterwards",
            rtol=1e-5,
            atol=1e-6,
            oracle=oracle,
        )
    for name in ("running_mean", "running_var"):
        if worker.get(f"{bn.path}.{name}.requires_grad", what=f"{what}: {name}.requires_grad") is not False:
            fail(f"{what}: `{name}` is part of the autograd graph afterwards; update it under torch.no_grad()")
    n = worker.get(f"{bn.path}.num_batches_tracked", what=f"{what}: num_batches_tracked")
    if not (isinstance(n, torch.Tensor) and n.numel() == 1 and int(n) == int(ref.num_batches_tracked)):
        fail(f"{what}: num_batches_tracked should be {int(ref.num_batches_tracked)} afterwards, got {n}")


@pytest.mark.task("ex6_batchnorm")
def test_batchnorm_hand_case(worker):
    # channel 0: 1, 3, 5, 7 (mean 4, biased variance 5, unbiased 20/3); channel 1: -2, 0, 0, 2 (0, 2, 8/3)
    x = torch.tensor([[[[1.0, 3.0]], [[-2.0, 0.0]]], [[[5.0, 7.0]], [[0.0, 2.0]]]])  # (N, C, H, W) = (2, 2, 1, 2)
    bn = worker.store("bn_hand", "BatchNorm2d", 2, eps=0.01, momentum=0.5)
    what = "BatchNorm2d(2, eps=0.01, momentum=0.5), one training step on a (2, 2, 1, 2) batch"
    y = worker.call(bn.path, x, what=what)
    mean, var = torch.tensor([4.0, 0.0]), torch.tensor([5.0, 2.0])
    want = (x - mean.view(1, 2, 1, 1)) / torch.sqrt(var.view(1, 2, 1, 1) + 0.01)
    oracle = "hand computation"
    assert_close(y, want, f"{what}: output", rtol=1e-5, atol=1e-6, oracle=oracle)
    rm, rv = torch.tensor([2.0, 0.0]), torch.tensor([0.5 + 0.5 * 20 / 3, 0.5 + 0.5 * 8 / 3])  # unbiased variances
    for stat, want, how in (
        ("running_mean", rm, "0.5 * 0 + 0.5 * batch mean"),
        ("running_var", rv, "0.5 * 1 + 0.5 * the unbiased batch variance"),
    ):
        got = worker.get(f"{bn.path}.{stat}")
        assert_close(got, want, f"{what}: {stat}", rtol=1e-5, atol=1e-6, oracle=f"{oracle} ({how})")
    worker.call(f"{bn.path}.weight.data.copy_", torch.tensor([2.0, 1.0]), what="setting gamma")
    worker.call(f"{bn.path}.bias.data.copy_", torch.tensor([-1.0, 0.5]), what="setting beta")
    worker.call(f"{bn.path}.eval", what="bn.eval()")
    y = worker.call(bn.path, x, what=f"{what}, then eval mode with gamma (2, 1), beta (-1, 0.5)")
    want = torch.tensor([2.0, 1.0]).view(1, 2, 1, 1) * (x - rm.view(1, 2, 1, 1)) / torch.sqrt(
        rv.view(1, 2, 1, 1) + 0.01
    ) + torch.tensor([-1.0, 0.5]).view(1, 2, 1, 1)
    assert_close(
        y,
        want,
        f"{what}, then in eval mode with gamma (2, 1) and beta (-1, 0.5): output",
        rtol=1e-5,
        atol=1e-6,
        oracle=oracle + " with the running statistics",
    )


@pytest.mark.task("ex6_batchnorm")
def test_batchnorm_is_written_by_hand(submission):
    """Not PyTorch's batch norm under another name: read from the answer cell (and what it uses)."""
    follow_rules(submission, "ex6_batchnorm")


@pytest.mark.task("ex6_batchnorm")
@pytest.mark.parametrize("nf", [1, 7])
def test_batchnorm_parameters_and_buffers(worker, nf):
    bn = worker.store("bn_new", "BatchNorm2d", nf, what=f"BatchNorm2d({nf})")
    d = describe(worker, bn, f"BatchNorm2d({nf})")
    ref = nn.BatchNorm2d(nf)
    if "Module" not in d.get("mro", []):
        fail(f"BatchNorm2d({nf}) should be an nn.Module, its classes are {d.get('mro')}")
    if d.get("parameters") != {"weight": [nf], "bias": [nf]}:
        fail(f"BatchNorm2d({nf}): expected the parameters weight ({nf},) and bias ({nf},), got {d.get('parameters')}")
    want_buffers = {
        "running_mean": [[nf], "torch.float32"],
        "running_var": [[nf], "torch.float32"],
        "num_batches_tracked": [[], "torch.int64"],
    }
    if d.get("buffers") != want_buffers:
        fail(f"BatchNorm2d({nf}): expected the buffers {want_buffers} (shape, dtype), got {d.get('buffers')}")
    sd = worker.call(f"{bn.path}.state_dict", what=f"BatchNorm2d({nf}).state_dict()")
    if not isinstance(sd, dict) or sorted(sd) != sorted(ref.state_dict()):
        fail(
            f"BatchNorm2d({nf}).state_dict(): expected the keys {sorted(ref.state_dict())}, got "
            f"{sorted(sd) if isinstance(sd, dict) else type(sd).__name__}"
        )
    for k, v in ref.state_dict().items():
        assert_close(
            sd[k],
            v,
            f"BatchNorm2d({nf}).state_dict()['{k}'] when new",
            rtol=0,
            atol=0,
            oracle="nn.BatchNorm2d's initial values",
        )


@pytest.mark.task("ex6_batchnorm")
@settings_for_slow_graders(10)
@given(
    nf=st.integers(1, 6),
    n=st.integers(1, 5),
    h=st.integers(1, 5),
    w=st.integers(1, 5),
    eps=st.sampled_from([1e-5, 1e-3, 0.1]),
    momentum=st.sampled_from([0.1, 0.01, 0.5, 1.0]),
    steps=st.integers(1, 3),
    fresh=st.booleans(),
    seed=st.integers(0, 9999),
)
def test_batchnorm_training_matches_torch(worker, nf, n, h, w, eps, momentum, steps, fresh, seed):
    if n * h * w < 2:
        n = 2  # batch statistics need at least two values per channel
    state = bn_state(nf, seed, fresh)
    bn = new_bn(worker, nf, eps, momentum, state)
    ref = nn.BatchNorm2d(nf, eps=eps, momentum=momentum)
    ref.load_state_dict(state)
    for step in range(steps):
        x = rand(n, nf, h, w, seed=seed + 10 * step) * (1 + step) + step - 1
        g = rand(n, nf, h, w, seed=seed + 10 * step + 1)
        what = (
            f"BatchNorm2d({nf}, eps={eps}, momentum={momentum}){'' if fresh else ' with a loaded state'}, "
            f"training step {step + 1} of {steps} on a {tuple(x.shape)} batch"
        )
        check_step(worker, bn, ref, x, g, True, what)


@pytest.mark.task("ex6_batchnorm")
@settings_for_slow_graders(5)
@given(
    nf=st.integers(1, 5),
    eps=st.sampled_from([1e-5, 0.01]),
    momentum=st.sampled_from([0.1, 0.3]),
    seed=st.integers(0, 9999),
)
def test_batchnorm_evaluation_matches_torch(worker, nf, eps, momentum, seed):
    state = bn_state(nf, seed, fresh=False)
    bn = new_bn(worker, nf, eps, momentum, state)
    ref = nn.BatchNorm2d(nf, eps=eps, momentum=momentum)
    ref.load_state_dict(state)
    for step in range(2):
        x = rand(8, nf, 4, 3, seed=seed + step) * 2 + 1
        check_step(
            worker,
            bn,
            ref,
            x,
            rand(8, nf, 4, 3, seed=seed + 50 + step),
            True,
            f"BatchNorm2d({nf}, eps={eps}, momentum={momentum}), training step {step + 1} before eval",
        )
    worker.call(f"{bn.path}.eval", what="bn.eval()")
    x = rand(5, nf, 6, 6, seed=seed + 7) * 3
    what = (
        f"BatchNorm2d({nf}, eps={eps}, momentum={momentum}) after 2 training steps, in eval mode, (5, {nf}, 6, 6) batch"
    )
    check_step(worker, bn, ref, x, rand(5, nf, 6, 6, seed=seed + 8), False, what)
    one = worker.call(bn.path, x[:1], what=f"{what}: one image alone")
    assert_close(
        one,
        ref(x[:1]).detach(),
        f"{what}: the output of one image alone (in eval mode it cannot depend on the rest of the batch)",
        rtol=1e-4,
        atol=1e-5,
        oracle="nn.BatchNorm2d in evaluation mode",
    )


@pytest.mark.task("ex6_batchnorm")
def test_batchnorm_in_the_reference_network(worker, manifest):
    """Conv2d + your BatchNorm2d + ReLU with the final model's reference weights predicts like the reference network."""
    from course import training

    state = reference_state(manifest)
    x, y, x_test, y_test, mean, std = mnist()
    xs, ys = x_test[:1000], y_test[:1000]
    model = worker.probe(
        {
            "op": "helper",
            "name": "sequential",
            "args": [flat_layers(Ref("BatchNorm2d"))],
            "kwargs": {"state_dict": flat_state(state)},
            "store": "refnet",
        },
        "the final CNN built from nn.Conv2d, your BatchNorm2d and nn.ReLU, with the reference weights",
    )
    got = worker.helper(
        "predict",
        model,
        xs,
        mean=mean,
        std=std,
        what="the final CNN with your BatchNorm2d, in eval mode, on 1000 test images",
    )
    ref_model = trusted_cnn_bn()  # nn.BatchNorm2d in eval mode: what the reference's BatchNorm2d computes
    ref_model.load_state_dict(state)
    want = single_threaded(training.predict, ref_model, xs, mean=mean, std=std)
    what = (
        f"the final CNN with your BatchNorm2d and the reference weights (eval mode, running statistics) on 1000 "
        f"test images (accuracy {accuracy(got, ys):.2%}, reference {accuracy(want, ys):.2%}): outputs"
    )
    assert_close(got, want, what, rtol=1e-4, atol=1e-4, oracle="the reference final model")


# --- ex6_conv_bn ---------------------------------------------------------------------------------------------------
_BN_KEYS = ("type", "mro", "module", "parameters", "buffers")
_bn_descriptions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # session -> {nf: description}


def student_bn(worker, nf: int) -> dict:
    """The structure of a new ``BatchNorm2d(nf)`` of the student's own class (what "your BatchNorm2d" looks like).

    Blocks are compared with it rather than with nn.BatchNorm2d, so a mistake inside BatchNorm2d (6.1) does not
    also cost the tasks that only have to use it.
    """
    cache = _bn_descriptions.setdefault(worker.session, {})  # per session: a replay's BatchNorm2d is another
    if nf not in cache:
        d = describe(
            worker, worker.store("bn_probe", "BatchNorm2d", nf, what=f"BatchNorm2d({nf})"), f"BatchNorm2d({nf})"
        )
        cache[nf] = {k: d.get(k) for k in (*_BN_KEYS, "n_parameters")}
    return cache[nf]


def is_student_bn(d: dict, worker, nf: int) -> bool:
    want = student_bn(worker, nf)
    return all(d.get(k) == want[k] for k in _BN_KEYS)


def check_block(d: dict, ni, nf, ks, act, worker, what: str) -> None:
    """A described block: Conv2d(ni, nf, ks, stride 2, padding ks//2) -> norm -> ReLU (when act)."""
    kids = [c for _, c in d.get("children", [])]
    types = [c.get("type") for c in kids]
    want_types = ["Conv2d", "BatchNorm2d"] + (["ReLU"] if act else [])
    if "Sequential" not in d.get("mro", []) or types != want_types:
        fail(f"{what}: expected an nn.Sequential of {want_types}, got a {d.get('type')} of {types}")
    got = conv_attrs(kids[0])
    want = (ni, nf, (ks, ks), (2, 2), (ks // 2, ks // 2))
    if got != want:
        fail(f"{what}: the Conv2d should have (in, out, kernel_size, stride, padding) = {want}, got {got}")
    if kids[0].get("parameters", {}).get("bias") != [nf]:
        fail(f"{what}: the Conv2d keeps its bias (as in the chapter)")
    if not is_student_bn(kids[1], worker, nf):
        fail(
            f"{what}: the second layer should be your BatchNorm2d({nf}), got a {kids[1].get('type')} with parameters "
            f"{kids[1].get('parameters')} and buffers {kids[1].get('buffers')}"
        )


def random_block_state(ni: int, nf: int, ks: int, act: bool, seed: int) -> tuple[nn.Sequential, dict]:
    """The oracle block with random weights and running statistics (in eval mode), and its state_dict."""
    torch.manual_seed(seed)
    block = oracle_block(ni, nf, ks, act)
    bn = block[1]
    with torch.no_grad():
        bn.weight.normal_()
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    return block.eval(), {k: v.clone() for k, v in block.state_dict().items()}


@pytest.mark.task("ex6_conv_bn")
@settings_for_slow_graders(10)
@given(ni=st.integers(1, 16), nf=st.integers(1, 24), ks=st.sampled_from([1, 3, 5, 7]), act=st.booleans())
def test_conv_bn_blocks(worker, ni, nf, ks, act):
    what = f"conv_bn({ni}, {nf}, ks={ks}, act={act})"
    block = worker.store("block", "conv_bn", ni, nf, ks=ks, act=act, what=what)
    check_block(describe(worker, block, what), ni, nf, ks, act, worker, what)
    # what it computes, in eval mode with random weights and running statistics
    oracle, state = random_block_state(ni, nf, ks, act, seed=ni * 100 + nf)
    worker.load_state(block, state, f"{what} with random weights")
    worker.probe({"op": "call", "target": f"{block.path}.eval", "discard": True}, f"{what}.eval()")
    x = rand(2, ni, 9, 9, seed=ni * 100 + nf)
    assert_close(
        worker.call(block.path, x, what=f"{what} on a (2, {ni}, 9, 9) batch"),
        oracle(x).detach(),
        f"{what} in eval mode, with random weights and running statistics, on a (2, {ni}, 9, 9) batch",
        rtol=1e-4,
        atol=1e-5,
        oracle="nn.Conv2d(stride 2, padding ks//2) -> nn.BatchNorm2d" + (" -> nn.ReLU" if act else ""),
    )


@pytest.mark.task("ex6_conv_bn")
def test_simple_cnn_bn_structure(worker):
    what = "simple_cnn_bn()"
    model = worker.store("cnn", "simple_cnn_bn", what=what)
    d = describe(worker, model, what)
    n_bn = sum(student_bn(worker, nf)["n_parameters"] or 0 for _, nf, _, _ in WIDTHS)
    if d.get("n_parameters") != 30_282 + n_bn:  # the convolutions' weights and biases, then the 5 batch norms
        fail(
            f"{what}: expected {30_282 + n_bn:,} parameters (30,282 in the convolutions, {n_bn} in your five "
            f"BatchNorm2d layers), got {d.get('n_parameters')}"
        )
    kids = [c for _, c in d.get("children", [])]
    if len(kids) != 6 or kids[-1].get("type") != "Flatten":
        fail(f"{what}: expected 5 conv_bn blocks and a Flatten, got {[c.get('type') for c in kids]}")
    for i, (block, (ni, nf, ks, act)) in enumerate(zip(kids[:5], WIDTHS, strict=True)):
        check_block(block, ni, nf, ks, act, worker, f"{what}, block {i}")
    out = worker.call(model.path, rand(3, 1, 28, 28, seed=0), what=f"{what} on a (3, 1, 28, 28) batch")
    if tuple(np.shape(out)) != (3, 10):
        fail(f"{what} on a (3, 1, 28, 28) batch: expected an output of shape (3, 10), got {tuple(np.shape(out))}")


@pytest.mark.task("ex6_conv_bn")
def test_simple_cnn_bn_with_reference_weights(worker, manifest):
    """Your simple_cnn_bn with the final model's weights computes what the chapter's network computes."""
    state = reference_state(manifest)
    x, y, x_test, y_test, mean, std = mnist()
    xs = x_test[1000:2000]
    model = worker.store("cnn_ref", "simple_cnn_bn", what="simple_cnn_bn()")
    worker.load_state(model, state, "simple_cnn_bn() with the final model's weights")
    what = "simple_cnn_bn() loaded with the final model's weights, in eval mode, on 1000 test images"
    got = worker.helper("predict", model, xs, mean=mean, std=std, what=what)
    from course import training

    oracle = trusted_cnn_bn()
    oracle.load_state_dict(state)
    want = single_threaded(training.predict, oracle, xs, mean=mean, std=std)
    assert_close(got, want, f"{what}: outputs", rtol=1e-4, atol=1e-4,
                 oracle="the chapter's network built from torch.nn with the same weights")  # fmt: skip


# --- ex6_norm_variants ---------------------------------------------------------------------------------------------
def largest_group(nf: int) -> int:
    return next(g for g in (8, 4, 2, 1) if nf % g == 0)


def check_norm(d: dict, kind: str, nf: int, worker, what: str) -> None:
    attrs, params = d.get("attrs", {}), d.get("parameters", {})
    if kind == "batch":
        if not is_student_bn(d, worker, nf):
            fail(f"{what}: expected your BatchNorm2d({nf}), got a {d.get('type')} with parameters {params}")
        return
    if kind in ("layer", "group"):
        groups = 1 if kind == "layer" else largest_group(nf)
        got = (d.get("type"), attrs.get("num_groups"), attrs.get("num_channels"), attrs.get("affine"))
        if got != ("GroupNorm", groups, nf, True):
            fail(
                f"{what}: expected nn.GroupNorm({groups}, {nf}) (type, num_groups, num_channels, affine = "
                f"{('GroupNorm', groups, nf, True)}), got {got}"
            )
    else:
        got = (d.get("type"), attrs.get("num_features"), attrs.get("affine"))
        if got != ("InstanceNorm2d", nf, True):
            fail(
                f"{what}: expected nn.InstanceNorm2d({nf}, affine=True) (type, num_features, affine = "
                f"{('InstanceNorm2d', nf, True)}), got {got}"
            )


@pytest.mark.task("ex6_norm_variants")
@settings_for_graders(12)
@given(kind=st.sampled_from(["batch", "layer", "group", "instance"]), nf=st.integers(1, 72))
def test_make_norm_layers(worker, kind, nf):
    what = f"make_norm({kind!r}, {nf})"
    norm = worker.store("norm", "make_norm", kind, nf, what=what)
    check_norm(describe(worker, norm, what), kind, nf, worker, what)


@pytest.mark.task("ex6_norm_variants")
@pytest.mark.parametrize("nf", [2, 12, 24, 7])
def test_group_counts(worker, nf):
    what = f"make_norm('group', {nf})"
    d = describe(worker, worker.store("norm", "make_norm", "group", nf, what=what), what)
    check_norm(d, "group", nf, worker, what)


@pytest.mark.task("ex6_norm_variants")
@settings_for_slow_graders(6)
@given(
    kind=st.sampled_from(["layer", "group", "instance"]),
    nf=st.sampled_from([2, 6, 8, 12, 16]),
    n=st.integers(1, 4),
    hw=st.integers(2, 5),
    seed=st.integers(0, 9999),
)
def test_make_norm_normalizes_like_torch(worker, kind, nf, n, hw, seed):
    """Output and gradients in training and in evaluation mode, against nn.GroupNorm / nn.InstanceNorm2d."""
    what = f"make_norm({kind!r}, {nf}) on a ({n}, {nf}, {hw}, {hw}) batch"
    ref = {
        "layer": lambda: nn.GroupNorm(1, nf),
        "group": lambda: nn.GroupNorm(largest_group(nf), nf),
        "instance": lambda: nn.InstanceNorm2d(nf, affine=True),
    }[kind]()
    g = torch.Generator().manual_seed(seed)
    state = {"weight": torch.randn(nf, generator=g), "bias": torch.randn(nf, generator=g)}
    ref.load_state_dict(state)
    norm = worker.store("norm", "make_norm", kind, nf, what=what)
    worker.probe(
        {"op": "call", "target": f"{norm.path}.load_state_dict", "args": [state], "discard": True},
        f"{what}: loading random gamma and beta",
    )
    x = rand(n, nf, hw, hw, seed=seed) * 3 + 1
    grad = rand(n, nf, hw, hw, seed=seed + 1)
    xr = x.clone().requires_grad_(True)
    y = ref(xr)
    y.backward(grad)
    oracle = type(ref).__name__
    for train in (True, False):
        mode = "training" if train else "evaluation"
        res = reply(worker.helper("forward_backward", norm, [x], grad_output=grad, train=train, what=what), what)
        assert_close(res.get("output"), y.detach(), f"{what}, {mode} mode: output", rtol=1e-4, atol=1e-4, oracle=oracle)
        grads = (
            res.get("input_grads") if isinstance(res.get("input_grads"), list) and res.get("input_grads") else [None]
        )
        if grads[0] is None:
            fail(f"{what}, {mode} mode: no gradient reached the input")
        assert_close(
            grads[0],
            xr.grad,
            f"{what}, {mode} mode: gradient with respect to the input",
            rtol=1e-3,
            atol=1e-4,
            oracle=oracle,
        )


@pytest.mark.task("ex6_norm_variants")
def test_make_norm_rejects_unknown_kinds(worker):
    for kind in ("spectral", "weight_norm"):
        message = worker.expect_raises("ValueError", "make_norm", kind, 16)
        if kind not in message:
            fail(f"make_norm({kind!r}, 16) raised ValueError, but its message should name the kind: {message[:200]!r}")


@pytest.mark.task("ex6_norm_variants")
@settings_for_slow_graders(12)
@given(
    kind=st.sampled_from(["batch", "layer", "group", "instance"]),
    ni=st.integers(1, 8),
    nf=st.integers(1, 40),
    ks=st.sampled_from([1, 3, 5]),
    act=st.booleans(),
    act_first=st.booleans(),
)
def test_conv_norm_blocks(worker, kind, ni, nf, ks, act, act_first):
    what = f"conv_norm({ni}, {nf}, ks={ks}, act={act}, kind={kind!r}, act_first={act_first})"
    block = worker.store("cblock", "conv_norm", ni, nf, ks=ks, act=act, kind=kind, act_first=act_first, what=what)
    d = describe(worker, block, what)
    kids = [c for _, c in d.get("children", [])]
    norm_type = {"batch": "BatchNorm2d", "layer": "GroupNorm", "group": "GroupNorm", "instance": "InstanceNorm2d"}[kind]
    order = ["Conv2d"] + ((["ReLU", norm_type] if act_first else [norm_type, "ReLU"]) if act else [norm_type])
    if "Sequential" not in d.get("mro", []) or [c.get("type") for c in kids] != order:
        fail(f"{what}: expected an nn.Sequential of {order}, got a {d.get('type')} of {[c.get('type') for c in kids]}")
    got = conv_attrs(kids[0])
    if got != (ni, nf, (ks, ks), (2, 2), (ks // 2, ks // 2)):
        fail(
            f"{what}: the Conv2d should have (in, out, kernel_size, stride, padding) = "
            f"{(ni, nf, (ks, ks), (2, 2), (ks // 2, ks // 2))}, got {got}"
        )
    check_norm(kids[order.index(norm_type)], kind, nf, worker, f"{what}: its norm layer")
    # what it computes, in eval mode, with random weights (and running statistics for batch norm)
    norm = {
        "batch": lambda: nn.BatchNorm2d(nf),
        "layer": lambda: nn.GroupNorm(1, nf),
        "group": lambda: nn.GroupNorm(largest_group(nf), nf),
        "instance": lambda: nn.InstanceNorm2d(nf, affine=True),
    }[kind]()
    layers = {"Conv2d": nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2), "ReLU": nn.ReLU(), norm_type: norm}
    torch.manual_seed(ni * 1000 + nf * 10 + ks)
    oracle = nn.Sequential(*[layers[t] for t in order])
    with torch.no_grad():
        for value in oracle.parameters():
            if value.ndim == 1:  # the norm's gamma and beta, and the conv's bias
                value.normal_()
        for name, value in oracle.named_buffers():
            if name.endswith("running_mean"):
                value.normal_()
            elif name.endswith("running_var"):
                value.uniform_(0.5, 2.0)
    oracle.eval()
    worker.computes_like(block, oracle, rand(2, ni, 8, 8, seed=nf), what, " -> ".join(f"nn.{t}" for t in order), 1e-4)
