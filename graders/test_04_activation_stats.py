"""Hidden checks for ex4 (04_activation_stats): statistics of one tensor, the ActivationStats hooks, the two plots.

Oracles: fastai's ``ActivationStats.hook`` (mean, unbiased std, fraction <= 0.05, ``histc(40, 0, 10)``) applied in
the trusted process to the same layer outputs, fastai's ``ActivationStats.hist`` / ``layer_stats`` for the plots,
and the reference baseline network (``graders/reference/weights/r4_one_cycle.pt``) for realistic activations.

Models are built in the worker from ``torch.nn`` layers with weights sent in, so the trusted side can recompute
every watched layer's output. ``ActivationStats`` records what the student's ``activation_stats`` computes; when
that function is wrong, the checks of 4.2 run again with a correct one (``standins.py``), so a mistake in 4.1
costs only 4.1's point.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from course.grading import Ref

from .checks import assert_close, fail, numbers, pair, rule_checks, scalar
from .rules import learner_shadows
from .strategies import rand, settings_for_graders, settings_for_slow_graders

pytestmark = pytest.mark.ex4

WEIGHTS = Path(__file__).resolve().parent / "reference" / "weights"
KEYS = ("mean", "std", "near_zero")
HOOK_KINDS = ("forward", "forward_pre", "backward")


def no_hooks_left(res, what: str, hint: str) -> None:
    """``res``: count_hooks' reply, or run_in_context's (with ``hooks_after``); fail when any hook is left."""
    hooks = res.get("hooks_after") if isinstance(res, dict) and "hooks_after" in res else res
    if not isinstance(hooks, dict) or not all(type(hooks.get(k)) is int for k in HOOK_KINDS):
        fail(f"{what}: the number of hooks left on the model could not be read")
    if any(hooks[k] for k in HOOK_KINDS):
        left = ", ".join(f"{hooks[k]} {k}" for k in HOOK_KINDS if hooks[k])
        fail(f"{what}: hooks are still registered on the model afterwards ({left}); {hint}")


def n_entries(worker, st: Ref, what: str) -> int:
    stats = worker.get(f"{st.path}.stats", what=f"{what}: .stats")
    if not isinstance(stats, list | tuple):
        fail(f"{what}: .stats should be a list (one entry per batch), got {type(stats).__name__}")
    return len(stats)


# --- trusted oracles ---------------------------------------------------------------------------------------------
def fastai_hook(t: torch.Tensor, with_hist: bool = True) -> dict:
    from fastai.callback.hook import ActivationStats

    return ActivationStats(with_hist=with_hist).hook(None, None, t)


# --- models: specs built identically here and in the worker ------------------------------------------------------
# a spec is ["Sequential", [children]] or [layer name in torch.nn, *args, {kwargs}]
BLOCKS = {
    "nested cnn": [
        "Sequential",
        [
            ["Sequential", [["Conv2d", 1, 4, 3, {"stride": 2, "padding": 1}], ["ReLU"]]],
            ["Sequential", [["Conv2d", 4, 8, 3, {"stride": 2, "padding": 1}], ["BatchNorm2d", 8], ["ReLU"]]],
            ["AdaptiveAvgPool2d", 1],
            ["Flatten"],
            ["Linear", 8, 5],
        ],
    ],
    "flat mlp": ["Sequential", [["Flatten"], ["Linear", 36, 12], ["ReLU"], ["Identity"], ["Linear", 12, 6], ["Tanh"]]],
    "deep nest": [
        "Sequential",
        [
            ["Conv2d", 1, 3, 3, {"padding": 1}],
            ["Sequential", [["ReLU"], ["Sequential", [["Conv2d", 3, 6, 3, {"stride": 2}], ["GroupNorm", 2, 6]]]]],
            ["Sequential", [["ReLU"], ["Flatten"]]],
        ],
    ],
}
INPUT = {"nested cnn": (1, 12, 12), "flat mlp": (1, 6, 6), "deep nest": (1, 7, 7)}


def build_local(spec) -> nn.Module:
    head, *rest = spec
    if head == "Sequential":
        return nn.Sequential(*[build_local(c) for c in rest[0]])
    kwargs = rest.pop() if rest and isinstance(rest[-1], dict) else {}
    return getattr(nn, head)(*rest, **kwargs)


def build_remote(worker, spec, name: str) -> Ref:
    """The same module tree in the worker; every module is stored as ``$name_i_j...`` (for ``modules=[...]``)."""
    head, *rest = spec
    if head == "Sequential":
        children = [build_remote(worker, c, f"{name}_{i}") for i, c in enumerate(rest[0])]
        return worker.store(name, "nn.Sequential", *children, what="building the grader's model")
    kwargs = rest[-1] if rest and isinstance(rest[-1], dict) else {}
    args = rest[:-1] if kwargs else rest
    return worker.store(name, f"nn.{head}", *args, what="building the grader's model", **kwargs)


def make_model(worker, spec, name: str, seed: int, state: dict | None = None) -> tuple[nn.Module, Ref]:
    """A seeded model here, its twin (same weights) in the worker."""
    torch.manual_seed(seed)
    local = build_local(spec)
    if state is not None:
        local.load_state_dict(state)
    remote = build_remote(worker, spec, name)
    worker.probe(
        {"op": "call", "target": f"{remote.path}.load_state_dict", "args": [dict(local.state_dict())], "discard": True},
        "loading the grader's weights",
    )
    return local, remote


def submodule(model: nn.Module, path: str) -> nn.Module:
    """``model[i][j]...`` for the path "i_j..." (the worker's stored name is ``$net_i_j...``)."""
    for i in path.split("_"):
        model = model[int(i)]
    return model


def watched(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if next(m.children(), None) is None and next(m.parameters(), None) is not None]


def layer_outputs(model: nn.Module, batches: list[torch.Tensor], modules: list[nn.Module]) -> list[list[torch.Tensor]]:
    """Per forward call, the output of each watched module (single-threaded, as in the worker)."""
    rows, current = [], [None] * len(modules)
    handles = [
        m.register_forward_hook(lambda mod, i, o, k=k: current.__setitem__(k, o.detach().clone()))
        for k, m in enumerate(modules)
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for xb in batches:
            model(xb)
            rows.append(list(current))
    finally:
        torch.set_num_threads(threads)
        for h in handles:
            h.remove()
    return rows


# --- comparing recorded entries ----------------------------------------------------------------------------------
def entry_matches(got, want: dict, numel: int) -> str | None:
    """None when the recorded dict matches ``want``; else a description of the first difference."""
    try:
        return _entry_problem(got, want, numel)
    except Exception as exc:  # noqa: BLE001 - values of an unexpected kind from the worker (or a warning about them)
        return f"the recorded values could not be read ({type(exc).__name__})"


def _entry_problem(got, want: dict, numel: int) -> str | None:
    if not isinstance(got, dict):
        return f"expected a dict, got {type(got).__name__}"
    if set(got) != set(want):
        return f"expected the keys {sorted(want)}, got {sorted(map(str, got))}"
    for k in KEYS:
        g = scalar(got[k])
        if g is None:
            return f"'{k}' should be a number, got {type(got[k]).__name__}"
        tol = 1.5 / numel if k == "near_zero" else 1e-5 * abs(want[k]) + 1e-6
        if not (abs(g - want[k]) <= tol or (math.isnan(g) and math.isnan(want[k]))):
            expected, have = pair(want[k], g)
            return f"'{k}': expected {expected}, got {have}"
    if "hist" in want:
        g = got["hist"]
        if not isinstance(g, torch.Tensor | np.ndarray) or tuple(np.shape(g)) != (40,):
            return f"'hist' should be a (40,) tensor, got {type(g).__name__} of shape {tuple(np.shape(g))}"
        diff = np.abs(np.asarray(g, dtype=np.float64) - np.asarray(want["hist"], dtype=np.float64))
        if not (diff <= 1).all():  # one count of slack: a value on a bin edge may fall either way across processes
            b = int(diff.argmax())
            return f"'hist' bin {b}: expected {float(want['hist'][b]):g}, got {float(np.asarray(g)[b]):g}"
    return None


def check_entries(stats, outputs, with_hist: bool, what: str, names: list[str]) -> None:
    """``stats`` (from the worker) against fastai's numbers for ``outputs``."""
    if not isinstance(stats, list):
        fail(f"{what}: .stats should be a list (one entry per batch), got {type(stats).__name__}")
    if len(stats) != len(outputs):
        fail(f"{what}: expected {len(outputs)} entries in .stats (one per batch), got {len(stats)}")
    for b, (row, outs) in enumerate(zip(stats, outputs, strict=True)):
        if not isinstance(row, list | tuple) or len(row) != len(outs):
            n = len(row) if isinstance(row, list | tuple) else type(row).__name__
            fail(
                f"{what}: batch {b} should hold one dict per watched module ({len(outs)}: {', '.join(names)}), got {n}"
            )
        for k, (got, out) in enumerate(zip(row, outs, strict=True)):
            problem = entry_matches(got, fastai_hook(out, with_hist), out.numel())
            if problem:
                fail(
                    f"{what}: batch {b}, watched module {k} ({names[k]}, output {tuple(out.shape)}): {problem} "
                    f"(oracle: fastai's ActivationStats.hook on that module's output, with_hist={with_hist})"
                )


def check_summaries(worker, st: Ref, stats: list, what: str) -> None:
    """layer_stats(idx) and hist(idx) agree with the recorded entries (fastai's definitions)."""
    n_layers = len(stats[0])
    for idx in sorted({0, n_layers - 1, -1, -n_layers}):
        got = worker.call(f"{st.path}.layer_stats", idx, what=f"{what}: layer_stats({idx})")
        if not isinstance(got, list | tuple) or len(got) != 3:
            fail(f"{what}: layer_stats({idx}) should return (means, stds, near_zeros), got {type(got).__name__}")
        for k, key in enumerate(KEYS):
            want = [scalar(row[idx][key]) for row in stats]
            assert_close(
                numbers(got[k], f"{what}: layer_stats({idx})[{k}]"),
                torch.tensor(want, dtype=torch.float64),
                f"{what}: layer_stats({idx})[{k}] (the {key} of watched module {idx}, one per batch)",
                rtol=1e-6,
                atol=1e-9,
                oracle="the recorded entries",
            )
        if "hist" in stats[0][0]:
            want = torch.stack([torch.as_tensor(np.asarray(row[idx]["hist"])) for row in stats]).t().float().log1p()
            assert_close(
                worker.call(f"{st.path}.hist", idx, what=f"{what}: hist({idx})"),
                want,
                f"{what}: hist({idx}), log1p of the counts, (40, n_batches)",
                rtol=1e-6,
                atol=1e-6,
                oracle="fastai's ActivationStats.hist of the recorded entries",
            )


def run_with_block(
    worker, spec_name, seed, n_batches, with_hist, raise_at=None, state=None, batches=None, modules=None
):
    """``with ActivationStats(model, ...) as st`` over some batches in the worker; returns what to compare."""
    local, net = make_model(worker, BLOCKS[spec_name] if state is None else BASELINE, "net", seed, state)
    if batches is None:
        shape = INPUT[spec_name]
        batches = [rand(1 + (seed + i) % 4, *shape, seed=seed + i) * 2 + 0.5 for i in range(n_batches)]
    kwargs = {"with_hist": with_hist} if with_hist else {}
    if modules is not None:
        kwargs["modules"] = [Ref(f"$net_{path}") for path in modules]
    st = worker.store("st", "ActivationStats", net, what="ActivationStats(model, ...)", **kwargs)
    res = worker.helper(
        "run_in_context",
        st,
        net,
        batches,
        raise_at,
        what=f"with ActivationStats(model, with_hist={with_hist}) as st: model(xb) for each batch",
    )
    mods = watched(local) if modules is None else [submodule(local, path) for path in modules]
    done = len(batches) if raise_at is None else raise_at + 1
    outputs = layer_outputs(local, batches[:done], mods)
    return local, net, st, res, outputs, mods


# --- ex4_layer_stats -------------------------------------------------------------------------------------------
@pytest.mark.task("ex4_layer_stats")
def test_layer_stats_hand_case(worker):
    values = [0.0, 0.05, 0.06, -0.2, 0.25, 9.99, 10.0, 12.0]
    t = torch.tensor(values).view(2, 4)
    mean = sum(values) / 8
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 7)  # unbiased
    hist = torch.zeros(40)
    hist[0], hist[1], hist[39] = 3, 1, 2  # 0, 0.05, 0.06 | 0.25 (a bin edge) | 9.99 and 10.0 (the top edge counts)
    got = worker.call("activation_stats", t, what="activation_stats of a (2, 4) tensor")
    what = "activation_stats of the (2, 4) tensor [[0, 0.05, 0.06, -0.2], [0.25, 9.99, 10, 12]]"
    if not isinstance(got, dict) or set(got) != {"mean", "std", "near_zero", "hist"}:
        fail(
            f"{what}: expected a dict with keys ['hist', 'mean', 'near_zero', 'std'] (with_hist defaults to True), "
            f"got {sorted(got) if isinstance(got, dict) else type(got).__name__}"
        )
    for k, want in (("mean", mean), ("std", std), ("near_zero", 0.375)):
        if not isinstance(got[k], float):
            fail(f"{what}: '{k}' should be a Python float, got {type(got[k]).__name__}")
        if not math.isclose(got[k], want, rel_tol=1e-6):
            fail(
                f"{what}: '{k}' expected {want:.7g}, got {got[k]:.7g} (rtol 1e-6, hand computation: unbiased std, "
                "near zero = values <= 0.05, negatives included)"
            )
    assert_close(
        got["hist"],
        hist,
        f"{what}: 'hist'",
        rtol=0,
        atol=0,
        oracle="hand computation of histc(40, 0, 10): -0.2 and 12 lie outside",
    )
    got = worker.call("activation_stats", t, with_hist=False, what="activation_stats(t, with_hist=False)")
    if not isinstance(got, dict) or set(got) != {"mean", "std", "near_zero"}:
        fail(
            f"activation_stats(t, with_hist=False): expected exactly the keys ['mean', 'near_zero', 'std'], "
            f"got {sorted(got) if isinstance(got, dict) else type(got).__name__}"
        )


DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "int64": torch.int64,
    "uint8": torch.uint8,
}


@pytest.mark.task("ex4_layer_stats")
@settings_for_graders(15)
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).filter(lambda s: math.prod(s) > 1),
    dtype=st.sampled_from(sorted(DTYPES)),
    scale=st.floats(0.01, 6.0),
    shift=st.floats(-1.0, 6.0),
    relu=st.booleans(),
    with_hist=st.booleans(),
    seed=st.integers(0, 9999),
)
def test_layer_stats_matches_fastai(worker, shape, dtype, scale, shift, relu, with_hist, seed):
    x = rand(*shape, seed=seed) * scale + shift
    if relu:
        x = x.clamp(min=0)  # many exact zeros, as after a ReLU
    if DTYPES[dtype] in (torch.int64, torch.uint8):
        x = (x * 20).round().clamp(0 if dtype == "uint8" else -50, 255)
    x = x.to(DTYPES[dtype])
    got = worker.call("activation_stats", x, with_hist=with_hist)
    want = fastai_hook(x, with_hist)
    problem = entry_matches(got, want, x.numel())
    if problem:
        fail(
            f"activation_stats of a {tuple(x.shape)} {dtype} tensor, with_hist={with_hist}: {problem} "
            "(oracle: fastai's ActivationStats.hook)"
        )


@pytest.mark.task("ex4_layer_stats")
def test_layer_stats_large_activation(worker):
    x = (rand(32, 16, 14, 14, seed=3) * 2.5 + 0.3).relu()  # a conv layer's output after ReLU: (N, C, H, W)
    got = worker.call("activation_stats", x)
    problem = entry_matches(got, fastai_hook(x, True), x.numel())
    if problem:
        fail(f"activation_stats of a (32, 16, 14, 14) activation: {problem} (oracle: fastai's ActivationStats.hook)")


# --- ex4_activation_stats ----------------------------------------------------------------------------------------
def module_names(mods) -> list[str]:
    return [type(m).__name__ for m in mods]


@pytest.mark.task("ex4_activation_stats")
@settings_for_slow_graders(6)
@given(
    spec_name=st.sampled_from(sorted(BLOCKS)),
    n_batches=st.integers(1, 3),
    with_hist=st.booleans(),
    seed=st.integers(0, 999),
)
def test_with_block_records_each_forward_call(worker, spec_name, n_batches, with_hist, seed):
    local, net, st_ref, res, outputs, mods = run_with_block(worker, spec_name, seed, n_batches, with_hist)
    what = f"with ActivationStats(model, with_hist={with_hist}) on a {spec_name} model, {n_batches} forward calls"
    no_hooks_left(res, what, "remove every hook in __exit__")
    stats = worker.get(f"{st_ref.path}.stats", what=f"{what}: st.stats")
    check_entries(stats, outputs, with_hist, what, module_names(mods))
    check_summaries(worker, st_ref, stats, what)
    worker.call(net.path, rand(1, *INPUT[spec_name], seed=1), what="a forward call after the with block")
    after = n_entries(worker, st_ref, f"{what}, then one more forward call")
    if after != len(outputs):
        fail(f"{what}: a forward call after the with block was recorded ({after} entries instead of {len(outputs)})")


@pytest.mark.task("ex4_activation_stats")
def test_with_block_removes_hooks_after_an_exception(worker):
    local, net, st_ref, res, outputs, mods = run_with_block(worker, "nested cnn", 7, 4, True, raise_at=1)
    what = "an exception raised inside `with ActivationStats(model) as st:` after 2 of 4 forward calls"
    if not isinstance(res, dict) or not res.get("raised"):
        fail(f"{what}: the exception was swallowed; __exit__ must return a false value so that it propagates")
    no_hooks_left(res, what, "remove them in __exit__, which runs also when the block raises")
    stats = worker.get(f"{st_ref.path}.stats", what=f"{what}: st.stats")
    check_entries(stats, outputs, True, what, module_names(mods))


@pytest.mark.task("ex4_activation_stats")
def test_with_block_watches_the_given_modules(worker):
    """modules=[...] watches exactly those modules, in the order given (a block, a ReLU, a conv)."""
    modules = ["1", "0_1", "0_0"]  # model[1], model[0][1], model[0][0]
    _, net, st_ref, res, outputs, mods = run_with_block(worker, "nested cnn", 11, 2, False, modules=modules)
    what = "with ActivationStats(model, modules=[a block, a ReLU, a Conv2d]) as st, 2 forward calls"
    stats = worker.get(f"{st_ref.path}.stats", what=f"{what}: st.stats")
    check_entries(stats, outputs, False, what, ["Sequential", "ReLU", "Conv2d"])
    no_hooks_left(res, what, "remove every hook in __exit__")


BASELINE = [
    "Sequential",
    [
        ["Sequential", [["Conv2d", ni, nf, ks, {"stride": 2, "padding": ks // 2}]] + ([["ReLU"]] if act else [])]
        for ni, nf, ks, act in [
            (1, 8, 5, True),
            (8, 16, 3, True),
            (16, 32, 3, True),
            (32, 64, 3, True),
            (64, 10, 3, False),
        ]
    ]
    + [["Flatten"]],
]


@functools.cache
def mnist_test_images(n: int) -> torch.Tensor:
    """The first ``n`` MNIST test images, normalized as ``mnist_dls`` does (training set mean and std)."""
    from course.data import load_mnist

    m = load_mnist()
    x_train = torch.from_numpy(m.x_train).float() / 255
    x = torch.from_numpy(m.x_test[:n]).float().unsqueeze(1) / 255
    return (x - x_train.mean()) / x_train.std()


@pytest.mark.task("ex4_activation_stats")
def test_with_block_on_the_trained_baseline(worker, manifest):
    """The chapter's baseline with the reference run's weights (r4_one_cycle), on test images: realistic activations."""
    path = WEIGHTS / "r4_one_cycle.pt"
    if "r4_one_cycle" not in manifest.get("runs", {}) or not path.is_file():
        pytest.fail(f"{path} is missing: run `course reference train`")
    state = torch.load(path, weights_only=True, map_location="cpu")
    x = mnist_test_images(96)
    batches = [x[:64], x[64:]]
    local, net, st_ref, res, outputs, mods = run_with_block(
        worker, "baseline", 0, 2, True, state=state, batches=batches
    )
    what = "with ActivationStats(model, with_hist=True) on the trained baseline CNN, 2 batches of test images"
    stats = worker.get(f"{st_ref.path}.stats", what=f"{what}: st.stats")
    check_entries(stats, outputs, True, what, module_names(mods))
    check_summaries(worker, st_ref, stats, what)


FIT_MODEL = [
    "Sequential",
    [
        ["Sequential", [["Conv2d", 1, 4, 3, {"stride": 2, "padding": 1}], ["ReLU"]]],
        ["Sequential", [["Conv2d", 4, 8, 3, {"stride": 2, "padding": 1}], ["BatchNorm2d", 8], ["ReLU"]]],
        ["Conv2d", 8, 10, 3, {"stride": 2, "padding": 1}],
        ["AdaptiveAvgPool2d", 1],
        ["Flatten"],
    ],
]


@functools.cache
def train_subset(n: int):
    from course.data import load_mnist

    x, y = load_mnist().tensors("train")
    return x[:n].clone(), y[:n].clone()


def trusted_training_outputs(state: dict, x, y, epochs: int, bs: int, n_valid: int) -> list[list[torch.Tensor]]:
    """Replay the worker's fit here and keep each watched module's output for every training batch."""
    import warnings

    from fastai.callback.core import Callback

    from course import training

    torch.manual_seed(0)
    model = build_local(FIT_MODEL)
    model.load_state_dict(state)
    mods = watched(model)

    class Capture(Callback):
        order = -20

        def before_fit(self):
            self.rows, self.current = [], [None] * len(mods)
            self.handles = [
                m.register_forward_hook(lambda mod, i, o, k=k: self.current.__setitem__(k, o.detach().clone()))
                for k, m in enumerate(mods)
            ]

        def after_batch(self):
            if self.training:
                self.rows.append(list(self.current))

        def after_fit(self):
            for h in self.handles:
                h.remove()

    cap = Capture()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            training.fit(model, x, y, epochs=epochs, lr=0.01, bs=bs, schedule="fit", cbs=[cap], n_valid=n_valid)
    finally:
        torch.set_num_threads(threads)
    return cap.rows


@pytest.mark.task("ex4_activation_stats")
def test_callback_records_training_batches(worker):
    """As a fastai callback: one entry per training batch (not validation), hooks gone after fit, fresh per fit."""
    x, y = train_subset(160)
    local, net = make_model(worker, FIT_MODEL, "fitnet", 5)
    state = {k: v.clone() for k, v in local.state_dict().items()}
    cb = worker.store("cb", "ActivationStats", with_hist=True, what="ActivationStats(with_hist=True)")
    what = (
        "Learner(..., cbs=[ActivationStats(with_hist=True)]).fit(2, 0.01), 5 training and 1 validation batch per epoch"
    )
    worker.helper("fit", net, x, y, epochs=2, lr=0.01, bs=32, schedule="fit", cbs=[cb], n_valid=64, what=what)
    outputs = trusted_training_outputs(state, x, y, epochs=2, bs=32, n_valid=64)
    no_hooks_left(
        worker.helper("count_hooks", net, what="counting the hooks left after fit"), what, "remove them in after_fit"
    )
    stats = worker.get(f"{cb.path}.stats", what=f"{what}: .stats")
    check_entries(stats, outputs, True, what, module_names(watched(local)))
    check_summaries(worker, cb, stats, what)
    # the same callback in a second fit starts a new record
    worker.helper(
        "fit",
        net,
        x,
        y,
        epochs=1,
        lr=0.01,
        bs=32,
        schedule="fit",
        cbs=[cb],
        n_valid=64,
        what="a second fit with the same ActivationStats",
    )
    n = n_entries(worker, cb, "a second fit with the same ActivationStats")
    if n != 5:
        fail(
            f"a second fit (1 epoch of 5 training batches) with the same ActivationStats: expected 5 entries in "
            f".stats (before_fit starts a fresh record, as fastai's does), got {n}"
        )


# --- ex4_plots ---------------------------------------------------------------------------------------------------
def fake_stats(worker, n_batches: int, n_layers: int, seed: int):
    """fastai's own ActivationStats (trusted methods) holding made-up entries; returns its ref and the entries."""
    g = torch.Generator().manual_seed(seed)
    rows = [
        [
            {
                "mean": float(torch.randn(1, generator=g)),
                "std": float(torch.rand(1, generator=g) * 3),
                "near_zero": float(torch.rand(1, generator=g)),
                "hist": torch.randint(0, 5000, (40,), generator=g).float(),
            }
            for _ in range(n_layers)
        ]
        for _ in range(n_batches)
    ]
    obj = worker.store("fake", "FastaiActivationStats", with_hist=True, what="fastai's ActivationStats")
    lcls = worker.store("Lcls", "FastaiActivationStats.layer_stats.__globals__.get", "L", what="fastcore's L")
    coll = worker.store("rows", lcls.path, rows, what="a list of made-up statistics")
    worker.probe({"op": "set", "target": f"{obj.path}.stats", "value": coll}, "setting the made-up statistics")
    return obj, rows


def _position(a: dict) -> bool:
    pos = a.get("position")
    return isinstance(pos, list) and len(pos) == 4 and all(isinstance(v, float) for v in pos)


def summary(worker, ref: Ref, what: str) -> dict:
    """figure_summary of a Figure or Axes, checked for form (it comes from the worker)."""
    s = worker.helper("figure_summary", ref, what=f"{what} (reading the figure)")

    def ok_axes(a):
        return (
            isinstance(a, dict)
            and isinstance(a.get("title"), str)
            and isinstance(a.get("axis_on"), bool)
            and isinstance(a.get("lines"), list)
            and isinstance(a.get("xlines"), list)
            and len(a["xlines"]) == len(a["lines"])
            and isinstance(a.get("images"), list)
            and all(isinstance(line, np.ndarray) for line in a["lines"] + a["xlines"])
            and all(isinstance(i, dict) and isinstance(i.get("array"), np.ndarray) for i in a["images"])
        )

    fs = s.get("figsize") if isinstance(s, dict) else None
    if not (
        isinstance(s, dict)
        and isinstance(s.get("axes"), list)
        and all(ok_axes(a) for a in s["axes"])
        and isinstance(fs, list)
        and len(fs) == 2
        and all(isinstance(v, float) for v in fs)
    ):
        fail(f"{what}: the figure could not be read")
    return s


@pytest.mark.task("ex4_plots")
@pytest.mark.parametrize("idx", [1, -1])
def test_plot_layer_stats(worker, idx):
    obj, rows = fake_stats(worker, 9, 3, seed=40 + idx)
    what = f"plot_layer_stats(stats, {idx}) for 9 batches of 3 layers"
    fig = worker.store("fig", "plot_layer_stats", obj, idx, what=what)
    s = summary(worker, fig, what)
    if s.get("type") != "Figure":
        fail(f"{what}: return the Figure, got {fig.type or s.get('type')}")
    axes = s.get("axes", [])
    if tuple(round(v, 3) for v in s["figsize"]) != (12.0, 3.0):
        fail(f"{what}: use plt.subplots(1, 3, figsize=(12, 3)); the figure's size is {tuple(s['figsize'])}")
    bottoms = {round(float(a["position"][1]), 3) for a in axes if _position(a)}
    if len(bottoms) != 1 or not all(_position(a) for a in axes):
        fail(f"{what}: the three axes should sit side by side in one row (plt.subplots(1, 3, ...))")
    if [a.get("title") for a in axes] != ["mean", "std", "% near zero"]:
        fail(f"{what}: expected 3 axes titled ['mean', 'std', '% near zero'], got {[a.get('title') for a in axes]}")
    for ax, key in zip(axes, KEYS, strict=True):
        if len(ax.get("lines", [])) != 1:
            fail(f"{what}: the '{ax['title']}' axes should hold one line, got {len(ax.get('lines', []))}")
        assert_close(
            ax["xlines"][0],
            torch.arange(len(rows), dtype=torch.float64),
            f"{what}: the x values of the '{ax['title']}' line (the batch numbers 0, 1, 2, ...)",
            rtol=0,
            atol=0,
        )
        assert_close(
            ax["lines"][0],
            torch.tensor([row[idx][key] for row in rows], dtype=torch.float64),
            f"{what}: the '{ax['title']}' line",
            rtol=1e-6,
            atol=1e-9,
            oracle="stats.layer_stats(idx) (fastai's ActivationStats)",
        )


@pytest.mark.task("ex4_plots")
def test_color_dim_default_figure(worker):
    obj, rows = fake_stats(worker, 12, 4, seed=7)
    for idx in (2, -4):
        what = f"color_dim(stats, {idx}) for 12 batches of 4 layers"
        ax = worker.store("ax", "color_dim", obj, idx, what=what)
        s = summary(worker, ax, what)
        check_color_dim(s, rows, idx, what, (10.0, 5.0))
    what = "color_dim(stats, 0, figsize=(6, 3))"
    s = summary(worker, worker.store("ax", "color_dim", obj, 0, figsize=(6, 3), what=what), what)
    check_color_dim(s, rows, 0, what, (6.0, 3.0))


def check_color_dim(s: dict, rows, idx: int, what: str, figsize) -> None:
    if s.get("type") != "Axes" or len(s.get("axes", [])) != 1:
        fail(f"{what}: return the Axes, got a {s.get('type')}")
    ax = s["axes"][0]
    if len(ax.get("images", [])) != 1:
        fail(f"{what}: expected one image (imshow), got {len(ax.get('images', []))}")
    img = ax["images"][0]
    want = torch.stack([row[idx]["hist"] for row in rows]).t().float().log1p()
    assert_close(
        img["array"],
        want,
        f"{what}: the image (40 bins x {len(rows)} batches)",
        rtol=1e-6,
        atol=1e-6,
        oracle="fastai's ActivationStats.hist(idx)",
    )
    if img.get("origin") != "lower":
        fail(
            f"{what}: imshow needs origin='lower' (the bin of the smallest values at the bottom), got "
            f"origin={img.get('origin')!r}"
        )
    if ax.get("axis_on"):
        fail(f"{what}: hide the axes with ax.axis('off')")
    if tuple(round(v, 3) for v in s.get("figsize", ())) != figsize:
        fail(f"{what}: expected a figure of size {figsize}, got {tuple(s.get('figsize', ()))}")


@pytest.mark.task("ex4_plots")
def test_color_dim_on_a_given_axes(worker):
    obj, rows = fake_stats(worker, 5, 2, seed=3)
    fig_axes = worker.store("figax", "plt.subplots", 1, 2, figsize=(7, 2), what="plt.subplots(1, 2)")
    axs = worker.store("axs", f"{fig_axes.path}.__getitem__", 1, what="the axes of plt.subplots(1, 2)")
    given_ax = worker.store("given", f"{axs.path}.__getitem__", 1, what="the second axes")
    what = "color_dim(stats, 1, ax=ax) on the second axes of plt.subplots(1, 2, figsize=(7, 2))"
    ret = worker.store("ret", "color_dim", obj, 1, ax=given_ax, what=what)
    returned = summary(worker, ret, f"{what}: the returned Axes")
    s = summary(worker, worker.store("fig2", f"{fig_axes.path}.__getitem__", 0, what="the figure"), what)
    if returned.get("type") != "Axes" or tuple(returned["figsize"]) != tuple(s["figsize"]):
        fail(f"{what}: draw on the given ax and return it, got a {ret.type or returned.get('type')}")
    if [len(a.get("images", [])) for a in s.get("axes", [])] != [0, 1]:
        fail(
            f"{what}: the image should be on the given (second) axes only, got images per axes "
            f"{[len(a.get('images', [])) for a in s.get('axes', [])]}"
        )
    check_color_dim({"type": "Axes", "axes": [s["axes"][1]], "figsize": s["figsize"]}, rows, 1, what, (7.0, 2.0))


# --- all tasks: the student's own code -----------------------------------------------------------------------------
OWN_CODE = "No fastai ActivationStats in the answer (the checks' oracle); read from the answer cells."
test_answer_is_own_code = rule_checks("ex4_layer_stats", "ex4_activation_stats", "ex4_plots", doc=OWN_CODE)


@pytest.mark.task("ex4_activation_stats")
def test_activation_stats_keeps_the_learners_attributes(submission):
    """The notebook: inside fastai events, do not assign attributes the learner has (such as model or modules)."""
    found = learner_shadows(submission.cells["ex4_activation_stats"], "ActivationStats")
    if found:
        fail(f"ActivationStats assigns {found[0]}, a name the learner has; fastai warns that this hides the "
             "learner's (use other names, or self.learn.<name> to read it)")  # fmt: skip


@pytest.mark.task("ex4_activation_stats")
def test_activation_stats_is_a_fastai_callback(worker):
    cls = worker.describe(Ref("ActivationStats"), "your ActivationStats class")
    if "Callback" not in cls["mro"]:
        fail(f"ActivationStats should be a subclass of fastai's Callback, so that a Learner can use it; its classes "
             f"are {cls['mro']}")  # fmt: skip
