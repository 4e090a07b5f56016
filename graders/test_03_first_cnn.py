"""Hidden checks for ex3 (03_first_cnn): Flatten, the conv block and simple_cnn, parameter and multiplication
counts, and the training setup (the student's simple_cnn trained at the chapter's budget)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from course.grading import Ref

from .checks import assert_close, fail, load_into
from .recipes import (
    FIT_ONE_CYCLE,
    LEARNER,
    ONE_CYCLE_DEFAULTS,
    Call,
    Unknown,
    learner_problem,
    number,
    read_recipe,
)
from .strategies import rand, settings_for_graders

pytestmark = pytest.mark.ex3

REFERENCE = Path(__file__).resolve().parent / "reference"
CHANNELS = (1, 4, 8, 16, 32, 2)
#: the trained model may fall this far (absolute accuracy) below the reference run at the same budget
TRAIN_TOLERANCE = 0.01


@pytest.fixture(scope="module")
def sample():
    """MNIST_SAMPLE as uint8 tensors: training images/labels and validation images/labels (labels stay here)."""
    from course.data import load_mnist_sample

    data = load_mnist_sample()
    return (*data.tensors("train"), *data.tensors("valid"))


def _oracle_cnn(state_dict: dict | None = None) -> nn.Sequential:
    """simple_cnn built from torch.nn alone (same state_dict keys): the oracle for the student's network."""
    blocks = []
    for i, (ni, nf) in enumerate(zip(CHANNELS[:-1], CHANNELS[1:], strict=True)):
        layers = [nn.Conv2d(ni, nf, 3, stride=2, padding=1)] + ([nn.ReLU()] if i < 4 else [])
        blocks.append(nn.Sequential(*layers))
    model = nn.Sequential(*blocks, nn.Flatten())
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model.eval()


def _reference_run(manifest: dict) -> dict:
    """The manifest entry of the chapter's MNIST_SAMPLE run (r1_sample) and its weights file must both exist."""
    run = manifest.get("runs", {}).get("r1_sample")
    if run is None or not (REFERENCE / "weights" / "r1_sample.pt").is_file():
        pytest.fail("graders/reference has no r1_sample run: run `course reference train`")
    return run


# --- ex3_flatten --------------------------------------------------------------------------------------------------


def _flatten(worker, x: torch.Tensor):
    worker.store("flat", "Flatten", what="Flatten()")
    return worker.call("$flat", x, what=f"Flatten()(x) for x of shape {tuple(x.shape)}")


@pytest.mark.task("ex3_flatten")
def test_flatten_small_hand_cases(worker):
    x = torch.arange(24.0).view(2, 3, 4)
    assert_close(
        _flatten(worker, x),
        torch.arange(24.0).view(2, 12),
        "Flatten of a (2, 3, 4) ramp",
        rtol=0,
        atol=0,
        oracle="hand computation: row n holds image n's 12 values in order",
    )
    for shape, want in [((1, 2, 1, 1), (1, 2)), ((1, 5), (1, 5)), ((3,), (3, 1)), ((1,), (1, 1))]:
        got = _flatten(worker, torch.ones(shape))
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != want:
            fail(
                f"Flatten of a {shape} tensor should have shape {want} (the batch axis stays), got "
                + (str(tuple(got.shape)) if isinstance(got, torch.Tensor) else type(got).__name__)
            )


@pytest.mark.task("ex3_flatten")
@settings_for_graders(20)
@given(n=st.integers(1, 5), rest=st.lists(st.integers(1, 4), max_size=4), seed=st.integers(0, 9999))
def test_flatten_equals_reshape(worker, n, rest, seed):
    x = rand(n, *rest, seed=seed)
    assert_close(
        _flatten(worker, x),
        x.reshape(n, -1),
        f"Flatten of a {tuple(x.shape)} tensor",
        rtol=0,
        atol=0,
        oracle="x.reshape(N, -1) (fastai's Flatten)",
    )


@pytest.mark.task("ex3_flatten")
def test_flatten_is_a_parameter_free_module_in_a_network(worker):
    info = worker.describe(worker.store("flat", "Flatten", what="Flatten()"), "Flatten()")
    if "Module" not in info.get("mro", []):
        fail(f"Flatten() should be an nn.Module, got a {info.get('type')}")
    if info.get("n_parameters") != 0:
        fail(f"Flatten() should have no parameters, found {info.get('n_parameters')}")
    x = rand(3, 2, 4, 4, seed=3)
    res = worker.helper(
        "forward_backward",
        Ref("$flat"),
        [x],
        grad_output=torch.arange(96.0).view(3, 32),
        what="backward through Flatten",
    )
    grads = res.get("input_grads") if isinstance(res, dict) else None
    if not isinstance(grads, list) or not grads or not isinstance(grads[0], torch.Tensor):
        fail("Flatten: no gradient reached its input; reshape the tensor instead of copying its values")
    assert_close(
        grads[0],
        torch.arange(96.0).view(3, 2, 4, 4),
        "the gradient of Flatten with respect to its (3, 2, 4, 4) input",
        rtol=0,
        atol=0,
        oracle="autograd through x.reshape(N, -1)",
    )
    # as the last layer of a small network (the model an optimizer sees)
    model = worker.probe(
        {
            "op": "helper",
            "name": "sequential",
            "store": "net",
            "args": [[["Conv2d", 1, 2, 3, {"stride": 2}], [Ref("Flatten")]]],
            "kwargs": {"seed": 0},
        },
        "nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), Flatten())",
    )
    torch.manual_seed(0)
    oracle = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.Flatten())
    xb = rand(4, 1, 7, 7, seed=4)
    assert_close(
        worker.helper("predict", model, xb, what="nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), Flatten())"),
        oracle.eval()(xb).detach(),
        "nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), Flatten()) on a (4, 1, 7, 7) batch",
        rtol=1e-5,
        atol=1e-6,
        oracle="the same network with nn.Flatten",
    )


# --- ex3_simple_cnn -----------------------------------------------------------------------------------------------


def _block_problem(info: dict, ni: int, nf: int, ks: int, act: bool) -> str | None:
    """What is wrong with the describe() of conv(ni, nf, ks, act), or None."""
    if "Sequential" not in info.get("mro", []):
        return f"it should return an nn.Sequential, got a {info.get('type')}"
    kids = [child for _, child in info.get("children", [])]
    want = ["Conv2d", "ReLU"] if act else ["Conv2d"]
    if [k.get("type") for k in kids] != want:
        return f"it should hold {' then '.join(want)}, found {[k.get('type') for k in kids]}"
    attrs, params = kids[0].get("attrs", {}), kids[0].get("parameters", {})
    expected = {
        "in_channels": ni,
        "out_channels": nf,
        "kernel_size": (ks, ks),
        "stride": (2, 2),
        "padding": (ks // 2, ks // 2),
    }
    for key, value in expected.items():
        if attrs.get(key) != value:
            return f"its Conv2d should have {key}={value}, got {attrs.get(key)!r}"
    if params.get("bias") != [nf]:
        return "its Conv2d should keep its bias (bias=True)"
    return None


def _oracle_block(ni: int, nf: int, ks: int, act: bool) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2), *([nn.ReLU()] if act else []))


@pytest.mark.task("ex3_simple_cnn")
@settings_for_graders(20)
@given(
    ni=st.integers(1, 16),
    nf=st.integers(1, 16),
    ks=st.sampled_from([None, 1, 2, 3, 4, 5, 7]),
    act=st.sampled_from([None, True, False]),
    seed=st.integers(0, 9999),
)
def test_conv_block_structure(worker, ni, nf, ks, act, seed):
    kwargs = {k: v for k, v in (("ks", ks), ("act", act)) if v is not None}
    what = "conv(" + ", ".join([str(ni), str(nf)] + [f"{k}={v}" for k, v in kwargs.items()]) + ")"
    block = worker.store("block", "conv", ni, nf, what=what, **kwargs)
    ks, act = 3 if ks is None else ks, True if act is None else act
    problem = _block_problem(worker.describe(block, what), ni, nf, ks, act)
    if problem:
        fail(f"{what}: {problem}")
    # what it computes: the oracle block with the same (random) weights, on a random batch
    torch.manual_seed(seed)
    oracle = _oracle_block(ni, nf, ks, act)
    name = f"nn.Conv2d({ni}, {nf}, {ks}, stride=2, padding={ks // 2})" + (" + nn.ReLU()" if act else "")
    worker.computes_like(block, oracle, rand(2, ni, 9, 7, seed=seed), what, name, atol=1e-5)


@pytest.mark.task("ex3_simple_cnn")
def test_conv_block_small_hand_case(worker):
    x = torch.arange(16.0).view(1, 1, 4, 4)  # 4x4 ramp: x[r, c] = 4r + c
    state = {"0.weight": torch.ones(1, 1, 3, 3), "0.bias": torch.tensor([-20.0])}
    # stride 2, padding 1: 3x3 windows centred at (0, 0), (0, 2), (2, 0), (2, 2) hold 10, 24, 51, 90; minus 20
    for act, want in [(True, [[0.0, 4.0], [31.0, 70.0]]), (False, [[-10.0, 4.0], [31.0, 70.0]])]:
        what = f"conv(1, 1, act={act}) with weight all ones and bias -20 on a 4x4 ramp"
        block = worker.store("block", "conv", 1, 1, act=act, what=f"conv(1, 1, act={act})")
        worker.load_state(block, state, what)
        assert_close(
            worker.call(block.path, x, what=what),
            torch.tensor([[want]]),
            what,
            rtol=0,
            atol=1e-4,
            oracle="hand computation (stride 2, padding 1" + (", ReLU)" if act else ", no ReLU)"),
        )


@pytest.mark.task("ex3_simple_cnn")
def test_simple_cnn_structure(worker):
    info = worker.describe(worker.store("cnn", "simple_cnn", what="simple_cnn()"), "simple_cnn()")
    kids = [child for _, child in info.get("children", [])]
    if "Sequential" not in info.get("mro", []) or len(kids) != 6:
        fail(
            f"simple_cnn() should be an nn.Sequential of five conv blocks and a Flatten, got a {info.get('type')} "
            f"with {len(kids)} children"
        )
    for i, (ni, nf) in enumerate(zip(CHANNELS[:-1], CHANNELS[1:], strict=True)):
        problem = _block_problem(kids[i], ni, nf, 3, i < 4)
        if problem:
            fail(f"simple_cnn() block {i} should be conv({ni}, {nf}{'' if i < 4 else ', act=False'}), but {problem}")
    mine = worker.describe(Ref("Flatten"), "your Flatten class")  # a class: its own name is mro[0]
    last = (kids[5]["mro"][0] if kids[5]["mro"] else "?", kids[5].get("module"))
    if last != (mine["mro"][0] if mine["mro"] else "", mine.get("module")):
        fail(f"simple_cnn()'s last layer should be your Flatten, got {last[0]} from {last[1]}")
    if info.get("n_parameters") != 6722:
        fail(f"simple_cnn() should have 6,722 parameters, got {info.get('n_parameters')}")


@pytest.mark.task("ex3_simple_cnn")
@settings_for_graders(8)
@given(n=st.integers(2, 6), size=st.sampled_from([28, 28, 32, 17]), seed=st.integers(0, 9999))
def test_simple_cnn_equals_a_torch_nn_oracle(worker, n, size, seed):
    torch.manual_seed(seed)
    oracle = _oracle_cnn()
    cnn = worker.store("cnn", "simple_cnn", what="simple_cnn()")
    worker.load_state(cnn, oracle.state_dict(), "simple_cnn() loaded with random weights")
    x = rand(n, 1, size, size, seed=seed + 1)
    want = oracle(x).detach()
    got = worker.helper("predict", cnn, x, what=f"simple_cnn() on a ({n}, 1, {size}, {size}) batch")
    assert_close(
        got,
        want,
        f"simple_cnn() with random weights on a ({n}, 1, {size}, {size}) batch",
        rtol=1e-4,
        atol=1e-5,
        oracle="the same network built from nn.Conv2d, nn.ReLU and nn.Flatten",
    )


@pytest.mark.task("ex3_simple_cnn")
def test_simple_cnn_with_reference_weights_predicts_like_the_reference(worker, manifest, sample):
    _reference_run(manifest)
    state = torch.load(REFERENCE / "weights" / "r1_sample.pt", weights_only=True, map_location="cpu")
    x_valid = sample[2]
    cnn = worker.store("cnn", "simple_cnn", what="simple_cnn()")
    worker.load_state(cnn, state, "simple_cnn() loaded with the reference run's trained weights")
    got = worker.helper("predict", cnn, x_valid, what="simple_cnn() with the reference weights on MNIST_SAMPLE")
    with torch.no_grad():
        want = _oracle_cnn(state)(x_valid.float() / 255)
    what = f"simple_cnn() with the reference run's trained weights on the {len(x_valid)} MNIST_SAMPLE validation images"
    assert_close(got, want, what, rtol=1e-4, atol=1e-4, oracle="the reference network (r1_sample) with those weights")


# --- ex3_counts ---------------------------------------------------------------------------------------------------

LAYER = st.one_of(
    st.tuples(st.just("Conv2d"), st.integers(1, 16), st.integers(1, 16), st.sampled_from([1, 3, 5]), st.booleans()),
    st.tuples(st.just("Linear"), st.integers(1, 64), st.integers(1, 64), st.booleans()),
    st.tuples(st.just("BatchNorm2d"), st.integers(1, 16)),
    st.tuples(st.just("ReLU")),
)


def _layers(spec: list[tuple]) -> tuple[list, nn.Sequential]:
    """The sequential helper's layer list for ``spec`` and the same network built here."""
    wire, mods = [], []
    for kind, *args in spec:
        if kind in ("Conv2d", "Linear"):
            *sizes, bias = args
            wire.append([kind, *sizes, {"bias": bias}])
            mods.append(getattr(nn, kind)(*sizes, bias=bias))
        else:
            wire.append([kind, *args])
            mods.append(getattr(nn, kind)(*args))
    return wire, nn.Sequential(*mods)


def _int_result(got, what: str, want: int) -> None:
    if isinstance(got, bool) or not isinstance(got, int):
        fail(f"{what}: expected the int {want:,}, got a {type(got).__name__} ({got!r})"[:300])
    if got != want:
        fail(f"{what}: expected {want:,}, got {got:,}")


@pytest.mark.task("ex3_counts")
def test_counts_small_hand_cases(worker):
    cases = [
        ([["Linear", 784, 30]], 23_550, "nn.Linear(784, 30)"),
        ([["Linear", 784, 30], ["ReLU"], ["Linear", 30, 1]], 23_581, "the 784-30-1 network"),
        (
            [["Conv2d", 3, 16, 5], ["BatchNorm2d", 16], ["Conv2d", 16, 8, 1, {"bias": False}]],
            1_216 + 32 + 128,
            "Conv2d(3, 16, 5), BatchNorm2d(16), Conv2d(16, 8, 1, bias=False) (running stats are buffers)",
        ),
    ]
    for layers, want, what in cases:
        model = worker.probe({"op": "helper", "name": "sequential", "args": [layers], "store": "m"}, what)
        _int_result(worker.call("count_params", model, what=f"count_params({what})"), f"count_params of {what}", want)
    worker.probe({"op": "call", "target": "$m.requires_grad_", "args": [False], "discard": True}, "freezing it")
    what = f"{what} with every parameter frozen (requires_grad=False: they are still its parameters)"
    _int_result(worker.call("count_params", model, what=f"count_params({what})"), f"count_params of {what}", want)
    block = worker.probe(
        {
            "op": "helper",
            "name": "sequential",
            "store": "blk",
            "args": [[["Conv2d", 8, 16, 3, {"stride": 2, "padding": 1}], ["ReLU"]]],
        },
        "a conv block",
    )
    what = "conv_mults(7, 7, Sequential(Conv2d(8, 16, 3, stride=2, padding=1), ReLU())) (the chapter's third layer)"
    _int_result(worker.call("conv_mults", 7, 7, block, what=what), what, 56_448)
    conv = worker.store("c", "nn.Conv2d", 4, 8, 3, what="nn.Conv2d(4, 8, 3)")
    what = "conv_mults(14, 14, nn.Conv2d(4, 8, 3)) (the chapter's second layer)"
    _int_result(worker.call("conv_mults", 14, 14, conv, what=what), what, 56_448)


@pytest.mark.task("ex3_counts")
@settings_for_graders(15)
@given(spec=st.lists(LAYER, min_size=1, max_size=4))
def test_count_params_equals_the_parameter_sizes(worker, spec):
    wire, model = _layers(spec)
    names = ", ".join(f"{kind}{tuple(args)}" for kind, *args in spec)
    what = f"count_params(nn.Sequential({names}))"
    ref = worker.probe({"op": "helper", "name": "sequential", "args": [wire], "store": "m"}, f"building {what}")
    _int_result(worker.call("count_params", ref, what=what), what, sum(p.numel() for p in model.parameters()))


@pytest.mark.task("ex3_counts")
@settings_for_graders(20)
@given(
    h=st.integers(1, 32),
    w=st.integers(1, 32),
    ni=st.integers(1, 16),
    nf=st.integers(1, 16),
    ks=st.sampled_from([1, 3, 5]),
    bias=st.booleans(),
    wrapped=st.booleans(),
)
def test_conv_mults_counts_weights_times_positions(worker, h, w, ni, nf, ks, bias, wrapped):
    layer = ["Conv2d", ni, nf, ks, {"stride": 2, "padding": ks // 2, "bias": bias}]
    desc = f"Conv2d({ni}, {nf}, {ks}, stride=2, padding={ks // 2}, bias={bias})"
    if wrapped:
        conv = worker.probe(
            {"op": "helper", "name": "sequential", "args": [[layer, ["ReLU"]]], "store": "c"},
            f"building Sequential({desc}, ReLU())",
        )
        desc = f"Sequential({desc}, ReLU())"
    else:
        conv = worker.store("c", "nn.Conv2d", ni, nf, ks, stride=2, padding=ks // 2, bias=bias, what=desc)
    what = f"conv_mults({h}, {w}, {desc})"
    _int_result(
        worker.call("conv_mults", h, w, conv, what=what),
        f"{what} (input positions x weights, bias excluded)",
        h * w * nf * ni * ks * ks,
    )


# --- ex3_train ----------------------------------------------------------------------------------------------------


def _is_sample_dls(v) -> bool:
    """`dls` from the notebook (mnist_dls(64, sample=True)), or the same call written again."""
    if isinstance(v, Unknown):
        return v.text == "dls"
    if isinstance(v, Call) and v.short == "mnist_dls":
        bs, sample = v.arg(("bs", "sample"), "bs", 64), v.arg(("bs", "sample"), "sample", False)
        return number(bs) == 64 and sample is True
    return False


def _training_problem(source: str) -> str | None:
    """Why the training cell does not set up and run the chapter's training (None when it does)."""
    recipe = read_recipe(source)
    if recipe.problem:
        return recipe.problem
    problem = learner_problem(recipe, _is_sample_dls, "`dls`, the mnist_dls(64, sample=True) made above", "simple_cnn")
    if problem:
        return problem
    learn = recipe.learner
    if not recipe.fits:
        return "it should train with learn.fit_one_cycle(2, 0.01); found no training call"
    fit = recipe.fits[-1]
    if fit.short != "fit_one_cycle":
        return f"it should train with learn.fit_one_cycle(2, 0.01); found learn.{fit.short}(...)"
    lr_max = fit.arg(FIT_ONE_CYCLE, "lr_max", learn.arg(LEARNER, "lr", 1e-3))  # fastai: the Learner's lr
    epochs, lr_max = number(fit.arg(FIT_ONE_CYCLE, "n_epoch")), number(lr_max)
    changed = fit.changed(FIT_ONE_CYCLE, ONE_CYCLE_DEFAULTS)
    if epochs != 2 or lr_max is None or not math.isclose(lr_max, 0.01, rel_tol=1e-9) or changed:
        shown = [f"{v:g}" if v is not None else "missing or not a number" for v in (epochs, lr_max)]
        return f"it should call learn.fit_one_cycle(2, 0.01); found n_epoch={shown[0]}, lr_max={shown[1]}" + "".join(
            f", {c}" for c in changed
        )
    return None


@pytest.mark.task("ex3_train")
def test_training_cell_sets_up_the_chapter_run(submission):
    problem = _training_problem(submission.cells["ex3_train"])
    if problem:
        fail(f"the training cell (exercise 3.4): {problem}")


@pytest.mark.task("ex3_train")
def test_simple_cnn_trains_to_the_reference_accuracy(worker, manifest, sample):
    """Your simple_cnn trained in a fresh worker; its weights are evaluated here, in the chapter's network."""
    x_train, y_train, x_valid, y_valid = sample
    run = _reference_run(manifest)
    recipe = f"fit_one_cycle({run['epochs']}, {run['lr']}) on MNIST_SAMPLE (batch size {run['bs']})"
    res = worker.helper(
        "fit",
        Ref("simple_cnn"),
        x_train,
        y_train,
        epochs=run["epochs"],
        lr=run["lr"],
        bs=run["bs"],
        schedule="fit_one_cycle",
        what=f"training your simple_cnn() with {recipe}",
    )
    state = res.get("state") if isinstance(res, dict) else None
    model = load_into(_oracle_cnn(), state, f"your simple_cnn() after training with {recipe}")
    with torch.no_grad():
        acc = (model.eval()(x_valid.float() / 255).argmax(1) == y_valid).float().mean().item()
    ref = float(run["final_accuracy"])
    if not acc >= ref - TRAIN_TOLERANCE:
        fail(
            f"your simple_cnn() trained with {recipe} reaches {acc:.4f} validation accuracy; the reference run "
            f"reaches {ref:.4f} at the same budget (tolerance {TRAIN_TOLERANCE}, oracle: reference run r1_sample)"
        )
