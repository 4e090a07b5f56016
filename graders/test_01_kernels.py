"""Hidden checks for ex1 (01_kernels): edge kernels, one kernel at one pixel, a kernel mapped over an image
(a nested list comprehension), batches of images and kernels with F.conv2d, and convolution over channels."""

from __future__ import annotations

import ast

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from .checks import STUB, assert_close, fail, follow_rules
from .rules import binds, parse
from .strategies import rand, settings_for_graders

pytestmark = pytest.mark.ex1

KERNELS = {
    "top_edge": [[-1, -1, -1], [0, 0, 0], [1, 1, 1]],
    "left_edge": [[-1, 1, 0], [-1, 1, 0], [-1, 1, 0]],
    "diag1_edge": [[0, -1, 1], [-1, 1, 0], [1, 0, 0]],
    "diag2_edge": [[1, -1, 0], [0, 1, -1], [0, 0, 1]],
}


def _conv(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid cross-correlation of a 2-D image with a 2-D kernel (the oracle): (H-ks+1, W-ks+1)."""
    return F.conv2d(image.double()[None, None], kernel.double()[None, None])[0, 0]


def _edge_kernel(worker, name: str) -> torch.Tensor:
    got = worker.get(name)
    if not isinstance(got, torch.Tensor):
        fail(f"{name} should be a torch.Tensor, got {type(got).__name__}")
    if tuple(got.shape) != (3, 3):
        fail(f"{name} should have shape (3, 3), got {tuple(got.shape)}")
    if not got.is_floating_point():
        fail(f"{name} should be a float tensor (e.g. torch.tensor(...).float()), got dtype {got.dtype}")
    return got


@pytest.mark.task("ex1_edge_kernels")
def test_edge_kernels_have_the_given_entries(worker):
    for name, values in KERNELS.items():
        got = _edge_kernel(worker, name)
        assert_close(
            got,
            torch.tensor(values, dtype=got.dtype),
            f"the entries of {name}",
            rtol=0,
            atol=0,
            oracle="the matrix in the exercise",
        )


@pytest.mark.task("ex1_apply_kernel")
def test_apply_kernel_small_hand_case(worker):
    grid = torch.arange(20.0).view(4, 5)  # 4 rows, 5 columns: grid[r, c] = 5r + c
    corner = torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 0, 0]])  # picks the window's top-left pixel
    # (row, col), kernel, expected value worked out by hand
    left = torch.tensor(KERNELS["left_edge"], dtype=torch.float32)
    cases = [
        ((1, 1), torch.ones(3, 3), 54.0),  # 0+1+2 + 5+6+7 + 10+11+12
        ((1, 3), corner, 2.0),  # window rows 0-2, cols 2-4: top-left pixel grid[0, 2]
        ((2, 3), corner, 7.0),  # window rows 1-3, cols 2-4: grid[1, 2]
        ((2, 2), left, 3.0),  # sum over 3 rows of grid[r, 2] - grid[r, 1]
    ]
    for (row, col), kernel, want in cases:
        got = worker.call("apply_kernel", grid, row, col, kernel)
        what = f"apply_kernel on a 4x5 ramp image (value 5*row + col) at (row, col) = {(row, col)}"
        if not isinstance(got, torch.Tensor) or got.ndim != 0:
            fail(
                f"{what}: expected a 0-d tensor, got {type(got).__name__}"
                + (f" of shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else "")
            )
        assert_close(got, torch.tensor(want), what, rtol=0, atol=1e-5, oracle="hand computation")


@pytest.mark.task("ex1_apply_kernel")
@settings_for_graders(25)
@given(h=st.integers(3, 10), w=st.integers(3, 10), data=st.data(), seed=st.integers(0, 9999))
def test_apply_kernel_equals_f_conv2d(worker, h, w, data, seed):
    row, col = data.draw(st.integers(1, h - 2)), data.draw(st.integers(1, w - 2))
    image, kernel = rand(h, w, seed=seed), rand(3, 3, seed=seed + 1)
    got = worker.call("apply_kernel", image, row, col, kernel)
    if not isinstance(got, torch.Tensor) or got.ndim != 0:
        fail(f"apply_kernel on a {h}x{w} image at ({row}, {col}): expected a 0-d tensor, got {type(got).__name__}")
    assert_close(
        got,
        _conv(image, kernel)[row - 1, col - 1],
        f"apply_kernel on a random {h}x{w} image with a random 3x3 kernel at (row, col) = ({row}, {col})",
        rtol=1e-4,
        atol=1e-4,
        oracle="F.conv2d (no kernel flip) at that position",
    )


def _definition(source: str, name: str):
    """What the cell's last top-level statement that binds ``name`` binds it to: the value of a plain
    ``name = ...``, else that whole statement (a def, or another way of binding it); None when none does."""
    tree = parse(source)
    found = None
    for stmt in tree.body if tree is not None else []:
        if name in binds(stmt):
            plain = isinstance(stmt, ast.Assign) and [getattr(t, "id", None) for t in stmt.targets] == [name]
            found = stmt.value if plain else stmt
    return found


@pytest.mark.task("ex1_apply_kernel")
def test_apply_kernel_uses_tensor_operations(submission):
    """The notebook: 'use tensor operations, no Python loops' (read from the answer cell)."""
    found = _definition(submission.cells["ex1_apply_kernel"], "apply_kernel")
    loops = (ast.For, ast.While, ast.AsyncFor, ast.ListComp, ast.GeneratorExp, ast.SetComp, ast.DictComp)
    loop = next((n for n in ast.walk(found) if isinstance(n, loops)), None) if found is not None else None
    if loop is not None:
        fail(
            f"apply_kernel should use tensor operations, no Python loops, but it loops (line {loop.lineno} of the "
            "cell); multiply the window by the kernel and sum"
        )


def _nested_comprehension_problem(source: str) -> str | None:
    """Why the answer cell's map_kernel is not one nested list comprehension over apply_kernel (None when it is).

    Read from the submitted cell text: the last top-level definition of map_kernel, a def or a lambda.
    """
    if parse(source) is None:
        return "the cell is not valid Python"
    found = _definition(source, "map_kernel")
    if found is None:
        return "the cell does not define it (`def map_kernel(image, kernel):` or `map_kernel = lambda ...`)"
    if isinstance(found, ast.FunctionDef | ast.AsyncFunctionDef) and found.decorator_list:
        return "its definition is decorated, so what it becomes cannot be read from the cell"
    is_def = isinstance(found, ast.FunctionDef | ast.AsyncFunctionDef) and found.name == "map_kernel"
    if not (is_def or isinstance(found, ast.Lambda)):
        return (
            f"the cell's last statement that sets it (line {found.lineno}) does not make it a function definition "
            "(`def map_kernel(...)`) or a lambda (`map_kernel = lambda ...`)"
        )
    if any(isinstance(n, ast.Raise) and n.exc is not None and ast.unparse(n) == STUB for n in ast.walk(found)):
        return "it is not answered yet (it raises NotImplementedError)"
    loops = [n for n in ast.walk(found) if isinstance(n, ast.For | ast.While | ast.AsyncFor)]
    if loops:
        return f"it uses a `{type(loops[0]).__name__.lower()}` loop statement (line {loops[0].lineno} of the cell)"
    for outer in (n for n in ast.walk(found) if isinstance(n, ast.ListComp)):
        for inner in (n for n in ast.walk(outer.elt) if isinstance(n, ast.ListComp)):
            calls = [n for n in ast.walk(inner.elt) if isinstance(n, ast.Call)]
            if any(isinstance(c.func, ast.Name) and c.func.id == "apply_kernel" for c in calls):
                return None
            return "its inner list comprehension does not call apply_kernel"
    return "it has no list comprehension nested inside another one"


@pytest.mark.task("ex1_map_kernel")
def test_map_kernel_is_a_nested_list_comprehension(submission):
    follow_rules(submission, "ex1_map_kernel")
    problem = _nested_comprehension_problem(submission.cells["ex1_map_kernel"])
    if problem:
        fail(
            f"map_kernel should be one nested list comprehension over apply_kernel, "
            f"[[apply_kernel(...) for c in ...] for r in ...], but {problem}"
        )


@pytest.mark.task("ex1_map_kernel")
def test_map_kernel_small_hand_case(worker):
    image = torch.arange(20.0).view(5, 4)  # 5 rows, 4 columns: image[r, c] = 4r + c
    sides = torch.tensor([[0.0, 0, 0], [1, 0, 1], [0, 0, 0]])  # left + right neighbour (same when flipped)
    got = worker.call("map_kernel", image, sides)
    # output (r, c) is centred at (r+1, c+1): image[r+1, c] + image[r+1, c+2] = 2 * (4(r+1) + c + 1)
    want = torch.tensor([[10.0, 12.0], [18.0, 20.0], [26.0, 28.0]])
    assert_close(
        got,
        want,
        "map_kernel of a 5x4 ramp image (value 4*row + col) with the kernel [[0, 0, 0], [1, 0, 1], [0, 0, 0]]",
        rtol=0,
        atol=1e-5,
        oracle="hand computation",
    )
    assert_close(
        worker.call("map_kernel", image, torch.ones(3, 3)),
        _conv(image, torch.ones(3, 3)),
        "map_kernel of a 5x4 ramp image with a 3x3 box of ones",
        rtol=0,
        atol=1e-4,
        oracle="hand computation (3x3 box sums)",
    )


@pytest.mark.task("ex1_map_kernel")
@settings_for_graders(12)
@given(h=st.integers(3, 9), w=st.integers(3, 9), seed=st.integers(0, 9999))
def test_map_kernel_equals_f_conv2d(worker, h, w, seed):
    image, kernel = rand(h, w, seed=seed), rand(3, 3, seed=seed + 1)
    what = f"map_kernel of a random {h}x{w} image with a random 3x3 kernel"
    assert_close(worker.call("map_kernel", image, kernel, what=what), _conv(image, kernel), what, rtol=1e-4,
                 atol=1e-4, oracle="F.conv2d (no kernel flip)")  # fmt: skip


@pytest.mark.task("ex1_batch_conv")
def test_edge_features_small_hand_case(worker):
    images = torch.arange(24.0).view(2, 1, 3, 4)  # image n: 12n + 4r + c
    first = torch.tensor([[1.0, 0], [0, 0]])  # picks the top-left pixel of each 2x2 window
    last = torch.tensor([[0.0, 0], [0, 1]])  # picks the bottom-right pixel
    kernels = torch.stack([first, last, torch.ones(2, 2)])  # (3, 2, 2)
    got = worker.call("edge_features", images, kernels)
    want = torch.stack([images[:, 0, :-1, :-1], images[:, 0, 1:, 1:], F.avg_pool2d(images, 2, 1)[:, 0] * 4], 1)
    assert_close(
        got,
        want,
        "edge_features of two 3x4 ramp images with 2x2 kernels [[1, 0], [0, 0]], [[0, 0], [0, 1]] and a box of ones",
        rtol=0,
        atol=1e-5,
        oracle="hand computation",
    )


@pytest.mark.task("ex1_batch_conv")
@settings_for_graders(20)
@given(
    n=st.integers(1, 4),
    k=st.integers(1, 5),
    ks=st.sampled_from([1, 2, 3, 5]),
    data=st.data(),
    seed=st.integers(0, 9999),
)
def test_edge_features_equals_f_conv2d(worker, n, k, ks, data, seed):
    h, w = data.draw(st.integers(ks, 12)), data.draw(st.integers(ks, 12))
    images, kernels = rand(n, 1, h, w, seed=seed), rand(k, ks, ks, seed=seed + 1)
    got = worker.call("edge_features", images, kernels)
    assert_close(
        got,
        F.conv2d(images, kernels.unsqueeze(1)),
        f"edge_features with images {(n, 1, h, w)} and kernels {(k, ks, ks)}",
        rtol=1e-4,
        atol=1e-4,
        oracle="F.conv2d with a (K, 1, ks, ks) weight",
    )


def _color_oracle(image: torch.Tensor, kernels: torch.Tensor, bias: float) -> torch.Tensor:
    return F.conv2d(image.double()[None], kernels.double()[None], bias=torch.tensor([bias], dtype=torch.float64))[0, 0]


@pytest.mark.task("ex1_color_conv")
def test_color_conv_small_hand_case(worker):
    image = torch.stack([torch.ones(3, 4), torch.arange(12.0).view(3, 4), torch.full((3, 4), 2.0)])  # (3, 3, 4)
    box = torch.ones(2, 2)  # channel 0 (all ones): 4
    top_right = torch.tensor([[0.0, 1], [0, 0]])  # channel 1: the window's top-right pixel, 4r + c + 1
    minus_bottom_left = torch.tensor([[0.0, 0], [-1, 0]])  # channel 2 (all twos): -2
    kernels = torch.stack([box, top_right, minus_bottom_left])  # (3, 2, 2)
    got = worker.call("color_conv", image, kernels, bias=-0.5)
    want = torch.tensor([[2.5, 3.5, 4.5], [6.5, 7.5, 8.5]])  # 4 + (4r + c + 1) - 2 - 0.5
    assert_close(
        got,
        want,
        "color_conv of a (3, 3, 4) image with three 2x2 kernels, bias=-0.5",
        rtol=0,
        atol=1e-5,
        oracle="hand computation",
    )
    assert_close(
        worker.call("color_conv", image, kernels),
        want + 0.5,
        "color_conv of the same image without a bias argument (default 0.0)",
        rtol=0,
        atol=1e-5,
        oracle="hand computation",
    )


@pytest.mark.task("ex1_color_conv")
@settings_for_graders(20)
@given(
    c=st.integers(1, 4),
    ks=st.integers(1, 5),
    data=st.data(),
    seed=st.integers(0, 9999),
    bias=st.one_of(st.none(), st.floats(-3, 3, allow_nan=False, width=32)),
)
def test_color_conv_equals_f_conv2d(worker, c, ks, data, seed, bias):
    h, w = data.draw(st.integers(ks, 10)), data.draw(st.integers(ks, 10))
    image, kernels = rand(c, h, w, seed=seed), rand(c, ks, ks, seed=seed + 1)
    got = (
        worker.call("color_conv", image, kernels)
        if bias is None
        else worker.call("color_conv", image, kernels, bias=bias)
    )
    assert_close(
        got,
        _color_oracle(image, kernels, bias or 0.0),
        f"color_conv with image {(c, h, w)}, kernels "
        f"{(c, ks, ks)}, " + ("no bias argument" if bias is None else f"bias={bias:.4g}"),
        rtol=1e-4,
        atol=1e-4,
        oracle="F.conv2d with a (1, C, ks, ks) weight",
    )


@pytest.mark.task("ex1_color_conv")
def test_color_conv_is_written_without_a_library_convolution(submission):
    follow_rules(submission, "ex1_color_conv")
