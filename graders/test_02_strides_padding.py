"""Hidden checks for ex2 (02_strides_padding): output sizes, zero padding, conv2d, the conv matrix, receptive fields."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from course.grading import Ref

from .checks import assert_close, fail, follow_rules
from .strategies import conv_case, rand, settings_for_graders

pytestmark = pytest.mark.ex2


# --- ex2_output_size ---------------------------------------------------------------------------------------------
@pytest.mark.task("ex2_output_size")
def test_output_size_small_cases(worker):
    for n, ks, stride, padding, want in [(28, 3, 2, 1, 14), (7, 3, 1, 0, 5), (5, 4, 1, 2, 6), (5, 3, 2, 1, 3)]:
        got = worker.call("conv_output_size", n, ks, stride, padding)
        if got != want or isinstance(got, bool) or not isinstance(got, int):
            fail(f"conv_output_size({n}, {ks}, {stride}, {padding}): expected the int {want}, got {got!r}")
    got = worker.call("conv_output_size", 10, 3)
    if got != 8:
        fail(f"conv_output_size(10, 3): stride and padding default to 1 and 0, so expected 8, got {got!r}")


@pytest.mark.task("ex2_output_size")
@settings_for_graders(40)
@given(n=st.integers(1, 64), ks=st.integers(1, 9), stride=st.integers(1, 4), padding=st.integers(0, 4))
def test_output_size_matches_the_formula(worker, n, ks, stride, padding):
    args = dict(stride=stride, padding=padding)
    if ks > n + 2 * padding:
        message = worker.expect_raises("ValueError", "conv_output_size", n, ks, **args)
        if str(ks) not in message or "ks" not in message:
            fail(
                f"conv_output_size({n}, {ks}, stride={stride}, padding={padding}) raised ValueError, but its message "
                f"should name the parameter ks and its value {ks}: {message[:200]!r}"
            )
        return
    want = (n + 2 * padding - ks) // stride + 1
    got = worker.call("conv_output_size", n, ks, **args)
    if got != want or isinstance(got, bool) or not isinstance(got, int):
        fail(
            f"conv_output_size for n={n}, ks={ks}, stride={stride}, padding={padding}: expected the int {want}, "
            f"got {got!r}"
        )


@pytest.mark.task("ex2_output_size")
@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"n": 8, "ks": 0}, ["ks", "0"]),
        ({"n": 9, "ks": -2, "padding": 3}, ["ks", "-2"]),
        ({"n": 8, "ks": 3, "stride": 0}, ["stride", "0"]),
        ({"n": 8, "ks": 3, "stride": -1}, ["stride", "-1"]),
        ({"n": 8, "ks": 3, "padding": -1}, ["padding", "-1"]),
        ({"n": 6, "ks": 3, "padding": -2}, ["padding", "-2"]),
    ],
)
def test_output_size_rejects_bad_parameters(worker, kwargs, words):
    message = worker.expect_raises("ValueError", "conv_output_size", **kwargs)
    missing = [w for w in words if w not in message]
    if missing:
        call = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        fail(
            f"conv_output_size({call}) raised ValueError, but its message should name the parameter and its value "
            f"({' and '.join(map(repr, words))}): {message[:200]!r}"
        )


# --- ex2_zero_pad ------------------------------------------------------------------------------------------------
@pytest.mark.task("ex2_zero_pad")
@settings_for_graders(15)
@given(
    lead=st.lists(st.integers(1, 3), max_size=2),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    padding=st.integers(0, 3),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8]),
    seed=st.integers(0, 999),
)
def test_zero_pad_equals_f_pad(worker, lead, h, w, padding, dtype, seed):
    x = (rand(*lead, h, w, seed=seed) * 20).abs().to(dtype)
    what = f"zero_pad of a {tuple(x.shape)} {str(dtype).removeprefix('torch.')} tensor with padding={padding}"
    kept = worker.store("x", "torch.clone", x, what="copying the input")
    got = worker.call("zero_pad", kept, padding, what=what)
    assert_close(got, F.pad(x, (padding,) * 4), what, rtol=0, atol=0, oracle="F.pad", check_dtype=True)
    assert_close(worker.get("$x", what="its input afterwards"), x, f"{what}: the input afterwards (zero_pad must not "
                 "change it)", rtol=0, atol=0)  # fmt: skip
    # a new tensor: writing into the result leaves the input as it was
    out = worker.store("out", "zero_pad", kept, padding, what=what)
    worker.probe({"op": "call", "target": f"{out.path}.fill_", "args": [7], "discard": True}, f"{what}: filling it")
    assert_close(worker.get("$x", what="its input"), x, f"{what}, then the result filled with 7: the input (zero_pad "
                 "returns a new tensor, not x itself or a view of it)", rtol=0, atol=0)  # fmt: skip


@pytest.mark.task("ex2_zero_pad")
def test_zero_pad_is_built_by_hand(submission):
    follow_rules(submission, "ex2_zero_pad")


# --- ex2_conv2d --------------------------------------------------------------------------------------------------
@pytest.mark.task("ex2_conv2d")
def test_conv2d_small_hand_case(worker):
    x = torch.arange(16.0).view(1, 1, 4, 4)
    w = torch.ones(1, 1, 2, 2)
    assert_close(
        worker.call("conv2d", x, w, stride=2),
        torch.tensor([[[[10.0, 18.0], [42.0, 50.0]]]]),
        "conv2d of a 4x4 ramp with a 2x2 box, stride 2",
        oracle="hand computation",
    )
    assert_close(
        worker.call("conv2d", x, w, torch.tensor([1.0]), stride=2),
        torch.tensor([[[[11.0, 19.0], [43.0, 51.0]]]]),
        "conv2d of a 4x4 ramp with a 2x2 box, bias 1, stride 2",
        oracle="hand computation",
    )


@pytest.mark.task("ex2_conv2d")
@settings_for_graders(25)
@given(case=conv_case())
def test_conv2d_equals_f_conv2d(worker, case):
    c = case
    x = rand(c["N"], c["C_in"], c["H"], c["W"], seed=c["seed"])
    w = rand(c["C_out"], c["C_in"], c["ks"], c["ks"], seed=c["seed"] + 1)
    b = rand(c["C_out"], seed=c["seed"] + 2) if c["bias"] else None
    got = worker.call("conv2d", x, w, b, stride=c["stride"], padding=c["padding"])
    want = F.conv2d(x, w, b, stride=c["stride"], padding=c["padding"])
    assert_close(
        got,
        want,
        f"conv2d with x {tuple(x.shape)}, weight {tuple(w.shape)}, bias={c['bias']}, "
        f"stride={c['stride']}, padding={c['padding']}",
        rtol=1e-4,
        atol=1e-4,
        oracle="F.conv2d",
    )


@pytest.mark.task("ex2_conv2d")
@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1), (2, 0)])
def test_conv2d_gradients_flow(worker, stride, padding):
    x, w, b = rand(2, 3, 9, 8, seed=5), rand(4, 3, 3, 3, seed=6), rand(4, seed=7)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    out = F.conv2d(*leaves, stride=stride, padding=padding)
    upstream = rand(*out.shape, seed=8)
    out.backward(upstream)
    res = worker.helper(
        "forward_backward",
        Ref("conv2d"),
        [x, w, b, stride, padding],
        upstream,
        what=f"backward through conv2d(x, weight, bias, stride={stride}, padding={padding})",
    )
    grads = res.get("input_grads") if isinstance(res, dict) else None
    grads = grads if isinstance(grads, list) and len(grads) >= 3 else [None] * 3
    for name, got, leaf in zip(("x", "weight", "bias"), grads, leaves, strict=False):
        if not isinstance(got, torch.Tensor):
            fail(f"conv2d: no gradient reached {name}; build the output from differentiable tensor operations")
        assert_close(
            got,
            leaf.grad,
            f"the gradient of conv2d's output (stride {stride}, padding {padding}) with respect to {name} "
            f"{tuple(leaf.shape)}, for a random upstream gradient",
            rtol=1e-4,
            atol=1e-4,
            oracle="F.conv2d autograd",
        )


@pytest.mark.task("ex2_conv2d")
def test_conv2d_is_written_without_a_library_convolution(submission):
    follow_rules(submission, "ex2_conv2d")


# --- ex2_conv_matrix ---------------------------------------------------------------------------------------------
@pytest.mark.task("ex2_conv_matrix")
@settings_for_graders(15)
@given(
    ks=st.integers(1, 3),
    h=st.integers(3, 7),
    w=st.integers(3, 7),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 999),
)
def test_conv_matrix_multiplies_like_a_convolution(worker, ks, h, w, dtype, seed):
    k = (rand(ks, ks, seed=seed).abs() + 0.5).to(dtype)  # no zero weights: every zero of M is a fixed zero
    img = rand(h, w, seed=seed + 1).to(dtype)
    what = f"conv_matrix of a {ks}x{ks} {str(dtype).removeprefix('torch.')} kernel for a {h}x{w} image"
    m = worker.call("conv_matrix", k, h, w, what=what)
    h_out, w_out = h - ks + 1, w - ks + 1
    if not isinstance(m, torch.Tensor) or tuple(m.shape) != (h_out * w_out, h * w):
        shape = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
        fail(f"{what}: expected a tensor of shape {(h_out * w_out, h * w)}, got {shape}")
    if m.dtype != dtype:
        fail(f"{what}: expected the kernel's dtype {dtype}, got {m.dtype}")
    want = F.conv2d(img[None, None], k[None, None])[0, 0]
    assert_close(
        (m.double() @ img.double().flatten()).view(h_out, w_out),
        want,
        f"{what}: M @ image.flatten()",
        rtol=1e-5,
        atol=1e-5,
        oracle="F.conv2d",
    )
    # fixed zeros and tied weights: every row holds exactly the kernel's weights, everything else is zero
    for r in range(m.shape[0]):
        row = m[r][m[r] != 0]
        if len(row) != ks * ks:
            fail(f"{what}: row {r} has {len(row)} non-zero entries; each row holds the {ks * ks} kernel weights")
        assert_close(
            torch.sort(row).values,
            torch.sort(k.flatten()).values,
            f"{what}: the non-zero entries of row {r} should be the kernel's weights (tied weights)",
            rtol=0,
            atol=0,
        )


# --- ex2_receptive_field -----------------------------------------------------------------------------------------
@pytest.mark.task("ex2_receptive_field")
@settings_for_graders(30)
@given(layers=st.lists(st.tuples(st.sampled_from([1, 2, 3, 5, 7]), st.integers(1, 3)), max_size=5))
def test_receptive_field(worker, layers):
    size, jump = 1, 1
    for ks, stride in layers:
        size, jump = size + (ks - 1) * jump, jump * stride
    got = worker.call("receptive_field", [list(layer) for layer in layers])
    if got != size or isinstance(got, bool) or not isinstance(got, int):
        fail(
            f"receptive_field for a stack of {len(layers)} layers (ks, stride) = {layers}: expected the int {size}, "
            f"got {got!r}"
        )
