"""Hidden checks for ex2 (02_strides_padding): output sizes, zero padding, conv2d, the conv matrix, receptive fields."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from course.grading import Ref

from .checks import assert_close, fail
from .strategies import conv_case, rand, settings_for_graders

pytestmark = pytest.mark.ex2


@pytest.mark.task("ex2_output_size")
def test_output_size_small_cases(worker):
    for n, ks, stride, padding, want in [(28, 3, 2, 1, 14), (7, 3, 1, 0, 5), (5, 4, 1, 2, 6), (5, 3, 2, 1, 3)]:
        got = worker.call("conv_output_size", n, ks, stride=stride, padding=padding)
        if got != want:
            fail(f"conv_output_size(n={n}, ks={ks}, stride={stride}, padding={padding}): expected {want}, got {got!r}")


@pytest.mark.task("ex2_output_size")
@settings_for_graders(40)
@given(n=st.integers(1, 64), ks=st.integers(1, 9), stride=st.integers(1, 4), padding=st.integers(0, 4))
def test_output_size_matches_the_formula(worker, n, ks, stride, padding):
    args = dict(stride=stride, padding=padding)
    if ks > n + 2 * padding:
        worker.expect_raises("ValueError", "conv_output_size", n, ks, **args)
        return
    want = (n + 2 * padding - ks) // stride + 1
    got = worker.call("conv_output_size", n, ks, **args)
    if got != want or isinstance(got, bool) or not isinstance(got, int):
        fail(
            f"conv_output_size for n={n}, ks={ks}, stride={stride}, padding={padding}: expected the int {want}, "
            f"got {got!r}"
        )


@pytest.mark.task("ex2_output_size")
def test_output_size_rejects_bad_parameters(worker):
    for n, ks, stride, padding in [(8, 0, 1, 0), (8, 3, 0, 0), (8, 3, 1, -1)]:
        worker.expect_raises("ValueError", "conv_output_size", n, ks, stride=stride, padding=padding)


@pytest.mark.task("ex2_zero_pad")
@settings_for_graders(15)
@given(
    lead=st.lists(st.integers(1, 3), max_size=2),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    padding=st.integers(0, 3),
    seed=st.integers(0, 999),
)
def test_zero_pad_equals_f_pad(worker, lead, h, w, padding, seed):
    x = rand(*lead, h, w, seed=seed)
    got = worker.call("zero_pad", x, padding)
    assert_close(
        got,
        F.pad(x, (padding,) * 4),
        f"zero_pad of a {tuple(x.shape)} tensor with padding={padding}",
        rtol=0,
        atol=0,
        oracle="F.pad",
    )


@pytest.mark.task("ex2_conv2d")
def test_conv2d_small_hand_case(worker):
    x = torch.arange(16.0).view(1, 1, 4, 4)
    w = torch.ones(1, 1, 2, 2)
    got = worker.call("conv2d", x, w, stride=2)
    assert_close(
        got,
        torch.tensor([[[[10.0, 18.0], [42.0, 50.0]]]]),
        "conv2d of a 4x4 ramp with a 2x2 box, stride 2",
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
def test_conv2d_gradients_flow(worker):
    x, w = rand(2, 3, 9, 9, seed=5), rand(4, 3, 3, 3, seed=6)
    res = worker.helper("forward_backward", Ref("conv2d"), [x, w], what="backward through conv2d")
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    F.conv2d(xr, wr).backward(torch.ones(2, 4, 7, 7))
    grads = res.get("input_grads") if isinstance(res, dict) else None
    if not grads or grads[0] is None or grads[1] is None:
        fail("conv2d: no gradient reached the input or the weight; build the output from differentiable tensor ops")
    assert_close(
        grads[0],
        xr.grad,
        "gradient of sum(conv2d(x, w)) with respect to x (2, 3, 9, 9)",
        rtol=1e-4,
        atol=1e-4,
        oracle="F.conv2d autograd",
    )
    assert_close(
        grads[1],
        wr.grad,
        "gradient of sum(conv2d(x, w)) with respect to w (4, 3, 3, 3)",
        rtol=1e-4,
        atol=1e-4,
        oracle="F.conv2d autograd",
    )


@pytest.mark.task("ex2_conv_matrix")
@settings_for_graders(15)
@given(ks=st.integers(1, 3), h=st.integers(3, 7), w=st.integers(3, 7), seed=st.integers(0, 999))
def test_conv_matrix_multiplies_like_a_convolution(worker, ks, h, w, seed):
    k = rand(ks, ks, seed=seed)
    img = rand(h, w, seed=seed + 1)
    m = torch.as_tensor(worker.call("conv_matrix", k, h, w))
    h_out, w_out = h - ks + 1, w - ks + 1
    if tuple(m.shape) != (h_out * w_out, h * w):
        fail(
            f"conv_matrix of a {ks}x{ks} kernel for a {h}x{w} image: expected shape {(h_out * w_out, h * w)}, "
            f"got {tuple(m.shape)}"
        )
    want = F.conv2d(img[None, None], k[None, None])[0, 0]
    assert_close(
        (m.double() @ img.double().flatten()).view(h_out, w_out),
        want,
        f"conv_matrix({ks}x{ks} kernel, {h}, {w}) @ image",
        rtol=1e-5,
        atol=1e-5,
        oracle="F.conv2d",
    )
    # fixed zeros and tied weights: every row holds exactly the kernel's values, everything else is zero
    nonzero = (m != 0).sum(1)
    if not bool((nonzero <= ks * ks).all()):
        fail(f"conv_matrix({ks}x{ks} kernel, {h}, {w}): a row has more than {ks * ks} non-zero entries")
    for r in (0, m.shape[0] - 1):
        got = torch.sort(m[r][m[r] != 0]).values
        assert_close(
            got,
            torch.sort(k.flatten()[k.flatten() != 0]).values,
            f"row {r} of conv_matrix should hold the kernel's weights (tied weights)",
            rtol=1e-6,
            atol=1e-6,
        )


@pytest.mark.task("ex2_receptive_field")
@settings_for_graders(30)
@given(layers=st.lists(st.tuples(st.sampled_from([1, 3, 5, 7]), st.integers(1, 3)), min_size=1, max_size=5))
def test_receptive_field(worker, layers):
    size, jump = 1, 1
    for ks, stride in layers:
        size, jump = size + (ks - 1) * jump, jump * stride
    got = worker.call("receptive_field", [list(layer) for layer in layers])
    if got != size:
        fail(
            f"receptive_field for a stack of {len(layers)} layers (ks, stride) = {layers}: expected {size}, got {got!r}"
        )
