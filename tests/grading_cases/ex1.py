"""Cases for ex1 (01_kernels): edge kernels, apply_kernel, map_kernel, edge_features, color_conv."""

from . import Case

PEERS: dict[str, list[Case]] = {
    "ex1_edge_kernels": [
        Case(
            "explicit_dtype",
            """\
top_edge = torch.tensor([[-1, -1, -1], [0, 0, 0], [1, 1, 1]], dtype=torch.float32)
left_edge = torch.tensor([[-1, 1, 0], [-1, 1, 0], [-1, 1, 0]], dtype=torch.float32)
diag1_edge = torch.tensor([[0, -1, 1], [-1, 1, 0], [1, 0, 0]], dtype=torch.float32)
diag2_edge = torch.tensor([[1, -1, 0], [0, 1, -1], [0, 0, 1]], dtype=torch.float32)
""",
            "float literals through dtype= instead of .float()",
        ),
        Case(
            "built_from_rows",
            """\
# Define top_edge, left_edge, diag1_edge and diag2_edge as 3x3 float tensors.
top_edge = torch.stack([-torch.ones(3), torch.zeros(3), torch.ones(3)])
left_edge = torch.tensor([-1.0, 1.0, 0.0]).repeat(3, 1)  # the same row three times
diag1_edge = torch.tensor([[0.0, -1, 1], [-1, 1, 0], [1, 0, 0]])
diag2_edge = diag1_edge.flip(1)  # the mirror image of diag1_edge
""",
            "rows stacked and repeated, diag2 as diag1 mirrored left-right: the same values",
        ),
        Case(
            "legacy_constructor",
            """\
top_edge = torch.Tensor([[-1, -1, -1], [0, 0, 0], [1, 1, 1]])
left_edge = torch.Tensor([[-1, 1, 0]] * 3)
diag1_edge = torch.Tensor([[0, -1, 1], [-1, 1, 0], [1, 0, 0]])
diag2_edge = torch.Tensor([[1, -1, 0], [0, 1, -1], [0, 0, 1]])
""",
            "torch.Tensor (capital T) makes float32 tensors from int lists",
        ),
        Case(
            "from_numpy",
            """\
rows = {
    "top": [[-1, -1, -1], [0, 0, 0], [1, 1, 1]],
    "left": [[-1, 1, 0], [-1, 1, 0], [-1, 1, 0]],
    "diag1": [[0, -1, 1], [-1, 1, 0], [1, 0, 0]],
    "diag2": [[1, -1, 0], [0, 1, -1], [0, 0, 1]],
}
top_edge, left_edge, diag1_edge, diag2_edge = (torch.from_numpy(np.array(r, dtype=np.float32)) for r in rows.values())
""",
            "a dict of nested lists turned into float32 tensors through numpy",
        ),
    ],
    "ex1_apply_kernel": [
        Case(
            "torch_sum",
            '''\
def apply_kernel(image: torch.Tensor, row: int, col: int, kernel: torch.Tensor) -> torch.Tensor:
    """Sum of `kernel` times the 3x3 window of the 2-D `image` centred at (row, col), as a 0-d tensor."""
    return torch.sum(image[row - 1 : row + 2, col - 1 : col + 2] * kernel)
''',
            "torch.sum of the product, one line",
        ),
        Case(
            "einsum",
            '''\
def apply_kernel(image, row, col, kernel):
    """Sum of `kernel` times the 3x3 window of the 2-D `image` centred at (row, col), as a 0-d tensor."""
    window = image[row - 1 : row + 2, col - 1 : col + 2]
    return torch.einsum("ij,ij->", window, kernel)
''',
            "einsum contracting both axes gives a 0-d tensor",
        ),
        Case(
            "dot_of_flattened",
            '''\
def apply_kernel(image, row, col, kernel):
    """Dot product of the flattened window and the flattened kernel."""
    window = image[row - 1 : row + 2, col - 1 : col + 2]
    return torch.dot(window.reshape(-1), kernel.reshape(-1))
''',
            "a dot product of the flattened window and kernel",
        ),
        Case(
            "narrow",
            '''\
def apply_kernel(image: torch.Tensor, row: int, col: int, kernel: torch.Tensor) -> torch.Tensor:
    """Sum of `kernel` times the 3x3 window of the 2-D `image` centred at (row, col), as a 0-d tensor."""
    window = image.narrow(0, row - 1, 3).narrow(1, col - 1, 3)
    return window.mul(kernel).sum()
''',
            "Tensor.narrow for the window, method-call style arithmetic",
        ),
        Case(
            "any_odd_size",
            '''\
def apply_kernel(image, row, col, kernel):
    """Kernel times the window centred at (row, col), summed; works for any odd kernel size."""
    half = kernel.shape[0] // 2
    window = image[row - half : row + half + 1, col - half : col + half + 1]
    return (window * kernel).sum()
''',
            "the window's half-width taken from the kernel size (1 for 3x3)",
        ),
        Case(
            "tensordot",
            '''\
def apply_kernel(image, row, col, kernel):
    """Sum of `kernel` times the 3x3 window of the 2-D `image` centred at (row, col), as a 0-d tensor."""
    rows, cols = slice(row - 1, row + 2), slice(col - 1, col + 2)
    return torch.tensordot(image[rows, cols], kernel, dims=2)
''',
            "slice objects and tensordot over both axes",
        ),
    ],
    "ex1_map_kernel": [
        Case(
            "lambda",
            """\
map_kernel = lambda image, kernel: torch.tensor(
    [[apply_kernel(image, r, c, kernel) for c in range(1, image.shape[1] - 1)] for r in range(1, image.shape[0] - 1)]
)
""",
            "a lambda holding the one nested list comprehension",
        ),
        Case(
            "item_floats",
            '''\
def map_kernel(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid convolution of a 2-D image with a 3x3 kernel, as an (H-2, W-2) tensor built with apply_kernel."""
    H, W = image.shape
    return torch.tensor([[apply_kernel(image, r, c, kernel).item() for c in range(1, W - 1)] for r in range(1, H - 1)])
''',
            "Python floats (.item()) in the comprehension; torch.tensor makes them float32",
        ),
        Case(
            "named_ranges",
            '''\
def map_kernel(image, kernel):
    """Valid convolution of a 2-D image with a 3x3 kernel, as an (H-2, W-2) tensor built with apply_kernel."""
    rows = range(1, image.shape[0] - 1)  # centres whose window fits
    cols = range(1, image.shape[1] - 1)
    return torch.tensor([[apply_kernel(image, r, c, kernel) for c in cols] for r in rows])
''',
            "the row and column ranges named before the comprehension",
        ),
        Case(
            "size_and_dtype",
            '''\
def map_kernel(image, kernel):
    """Valid convolution of a 2-D image with a 3x3 kernel, as an (H-2, W-2) tensor built with apply_kernel."""
    n_rows, n_cols = image.size()
    return torch.tensor(
        [[apply_kernel(image, i, j, kernel) for j in range(1, n_cols - 1)] for i in range(1, n_rows - 1)],
        dtype=image.dtype,
    )
''',
            "image.size(), other loop names, dtype passed explicitly",
        ),
        Case(
            "len_based",
            '''\
def map_kernel(image, kernel):
    """Valid convolution of a 2-D image with a 3x3 kernel, as an (H-2, W-2) tensor built with apply_kernel."""
    return torch.tensor(
        [[apply_kernel(image, r, c, kernel) for c in range(1, len(image[0]) - 1)] for r in range(1, len(image) - 1)]
    )
''',
            "sizes from len() of the image and of its first row",
        ),
        Case(
            "as_tensor_helper",
            '''\
def centres(n):
    """Rows (or columns) on which a 3x3 window fits inside an axis of length n."""
    return range(1, n - 1)


def map_kernel(image, kernel):
    """Valid convolution of a 2-D image with a 3x3 kernel, as an (H-2, W-2) tensor built with apply_kernel."""
    H, W = image.shape
    return torch.as_tensor([[apply_kernel(image, r, c, kernel) for c in centres(W)] for r in centres(H)])
''',
            "a small helper for the ranges, torch.as_tensor instead of torch.tensor",
        ),
    ],
    "ex1_batch_conv": [
        Case(
            "none_index",
            '''\
def edge_features(images, kernels):
    """Every kernel over every image: (N, 1, H, W) and (K, ks, ks) -> (N, K, H-ks+1, W-ks+1)."""
    return F.conv2d(images, kernels[:, None])
''',
            "the unit channel axis inserted by indexing with None",
        ),
        Case(
            "reshape",
            '''\
def edge_features(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Every kernel over every image: (N, 1, H, W) and (K, ks, ks) -> (N, K, H-ks+1, W-ks+1)."""
    K, kh, kw = kernels.shape
    weight = kernels.reshape(K, 1, kh, kw)  # (C_out, C_in, kh, kw)
    return F.conv2d(images, weight)
''',
            "the weight reshaped from the unpacked kernel shape",
        ),
        Case(
            "keywords",
            '''\
def edge_features(images, kernels):
    """Every kernel over every image: (N, 1, H, W) and (K, ks, ks) -> (N, K, H-ks+1, W-ks+1)."""
    return F.conv2d(input=images, weight=kernels.unsqueeze(dim=1), bias=None, stride=1, padding=0)
''',
            "keyword arguments and F.conv2d's defaults spelled out",
        ),
        Case(
            "one_kernel_at_a_time",
            '''\
def edge_features(images, kernels):
    """Every kernel over every image: (N, 1, H, W) and (K, ks, ks) -> (N, K, H-ks+1, W-ks+1)."""
    return torch.cat([F.conv2d(images, k[None, None]) for k in kernels], dim=1)
''',
            "F.conv2d once per kernel, the (N, 1, ...) maps concatenated along the channel axis",
        ),
        Case(
            "torch_conv2d",
            '''\
def edge_features(images, kernels):
    """Every kernel over every image: (N, 1, H, W) and (K, ks, ks) -> (N, K, H-ks+1, W-ks+1)."""
    return torch.conv2d(images, kernels.unsqueeze(1))
''',
            "torch.conv2d, the function F.conv2d is",
        ),
    ],
    "ex1_color_conv": [
        Case(
            "unfold_einsum",
            '''\
def color_conv(image, kernels, bias=0.0):
    """One filter over a (C, H, W) image: each channel with its own (ks, ks) kernel, summed, plus bias."""
    kh, kw = kernels.shape[1:]
    patches = image.unfold(1, kh, 1).unfold(2, kw, 1)  # (C, H_out, W_out, kh, kw)
    return torch.einsum("chwij,cij->hw", patches, kernels) + bias
''',
            "Tensor.unfold windows and one einsum over channel and kernel offsets",
        ),
        Case(
            "F_unfold_matmul",
            '''\
def color_conv(image: torch.Tensor, kernels: torch.Tensor, bias: float = 0.0) -> torch.Tensor:
    """One filter over a (C, H, W) image: each channel with its own (ks, ks) kernel, summed, plus bias."""
    C, H, W = image.shape
    _, kh, kw = kernels.shape
    cols = F.unfold(image[None], (kh, kw))  # (1, C*kh*kw, H_out*W_out)
    out = kernels.reshape(1, -1) @ cols[0]  # (1, H_out*W_out)
    return out.view(H - kh + 1, W - kw + 1) + bias
''',
            "im2col with F.unfold and a matrix product (patch extraction, not a convolution op)",
        ),
        Case(
            "per_position",
            '''\
def color_conv(image, kernels, bias=0.0):
    """One filter over a (C, H, W) image: each channel with its own (ks, ks) kernel, summed, plus bias."""
    _, H, W = image.shape
    _, kh, kw = kernels.shape
    rows = [
        torch.stack([(image[:, r : r + kh, c : c + kw] * kernels).sum() for c in range(W - kw + 1)])
        for r in range(H - kh + 1)
    ]
    return torch.stack(rows) + bias
''',
            "one (C, kh, kw) product per output position, like map_kernel over all channels",
        ),
        Case(
            "accumulate_loops",
            '''\
def color_conv(image, kernels, bias=0.0):
    """One filter over a (C, H, W) image: each channel with its own (ks, ks) kernel, summed, plus bias."""
    C, H, W = image.shape
    ks = kernels.shape[-1]
    H_out, W_out = H - ks + 1, W - ks + 1
    out = torch.zeros(H_out, W_out, dtype=image.dtype)
    for ch in range(C):
        for i in range(ks):
            for j in range(ks):
                out += kernels[ch, i, j] * image[ch, i : i + H_out, j : j + W_out]
    return out + bias
''',
            "a triple loop over channel and offsets, accumulating in place",
        ),
        Case(
            "generator_sum",
            '''\
def color_conv(image, kernels, bias=0.0):
    """One filter over a (C, H, W) image: each channel with its own (ks, ks) kernel, summed, plus bias."""
    _, H, W = image.shape
    _, kh, kw = kernels.shape
    h, w = H - kh + 1, W - kw + 1
    shifted = (image[:, i : i + h, j : j + w] * kernels[:, i, j].view(-1, 1, 1) for i in range(kh) for j in range(kw))
    return sum(shifted).sum(dim=0) + bias
''',
            "Python's sum over a generator of shifted, weighted images, then the channel sum",
        ),
        Case(
            "tensordot",
            '''\
def color_conv(image, kernels, bias=0.0):
    """One filter over a (C, H, W) image: each channel with its own (ks, ks) kernel, summed, plus bias."""
    kh, kw = kernels.shape[-2:]
    windows = image.unfold(1, kh, 1).unfold(2, kw, 1)  # (C, H_out, W_out, kh, kw)
    return torch.tensordot(windows, kernels, dims=([0, 3, 4], [0, 1, 2])) + bias
''',
            "tensordot contracting channel and both kernel axes",
        ),
        Case(
            "per_channel_helper",
            '''\
def channel_conv(x, k):
    """Valid cross-correlation of one (H, W) channel with one (kh, kw) kernel."""
    kh, kw = k.shape
    return (x.unfold(0, kh, 1).unfold(1, kw, 1) * k).sum(dim=(-2, -1))


def color_conv(image, kernels, bias=0.0):
    """One filter over a (C, H, W) image: each channel with its own (ks, ks) kernel, summed, plus bias."""
    maps = torch.stack([channel_conv(x, k) for x, k in zip(image, kernels)])  # (C, H_out, W_out)
    return maps.sum(0) + bias
''',
            "a helper for one channel, the per-channel maps stacked and summed",
        ),
    ],
}

WRONG: dict[str, list[Case]] = {
    "ex1_edge_kernels": [
        Case(
            "left_is_top_transposed",
            """\
top_edge = torch.tensor([[-1, -1, -1], [0, 0, 0], [1, 1, 1]]).float()
left_edge = top_edge.T
diag1_edge = torch.tensor([[0, -1, 1], [-1, 1, 0], [1, 0, 0]]).float()
diag2_edge = torch.tensor([[1, -1, 0], [0, 1, -1], [0, 0, 1]]).float()
""",
            "left_edge guessed as the transpose of top_edge (Sobel-like [-1, 0, 1] columns); fails the visible test",
        ),
        Case(
            "int_tensors",
            """\
top_edge = torch.tensor([[-1, -1, -1], [0, 0, 0], [1, 1, 1]])
left_edge = torch.tensor([[-1, 1, 0], [-1, 1, 0], [-1, 1, 0]])
diag1_edge = torch.tensor([[0, -1, 1], [-1, 1, 0], [1, 0, 0]])
diag2_edge = torch.tensor([[1, -1, 0], [0, 1, -1], [0, 0, 1]])
""",
            "the right entries as int64 tensors, not float; fails the visible test",
        ),
        Case(
            "diagonals_swapped",
            """\
top_edge = torch.tensor([[-1.0, -1, -1], [0, 0, 0], [1, 1, 1]])
left_edge = torch.tensor([[-1.0, 1, 0], [-1, 1, 0], [-1, 1, 0]])
diag1_edge = torch.tensor([[1.0, -1, 0], [0, 1, -1], [0, 0, 1]])
diag2_edge = torch.tensor([[0.0, -1, 1], [-1, 1, 0], [1, 0, 0]])
""",
            "diag1_edge and diag2_edge swapped; fails the visible test",
        ),
        Case(
            "top_sign_flipped",
            """\
top_edge = torch.tensor([[1.0, 1, 1], [0, 0, 0], [-1, -1, -1]])  # bright above
left_edge = torch.tensor([[-1.0, 1, 0], [-1, 1, 0], [-1, 1, 0]])
diag1_edge = torch.tensor([[0.0, -1, 1], [-1, 1, 0], [1, 0, 0]])
diag2_edge = torch.tensor([[1.0, -1, 0], [0, 1, -1], [0, 0, 1]])
""",
            "top_edge with the signs the other way round (top row +1); fails the visible test",
        ),
    ],
    "ex1_apply_kernel": [
        Case(
            "kernel_flipped",
            '''\
def apply_kernel(image: torch.Tensor, row: int, col: int, kernel: torch.Tensor) -> torch.Tensor:
    """Sum of `kernel` times the 3x3 window of the 2-D `image` centred at (row, col), as a 0-d tensor."""
    window = image[row - 1 : row + 2, col - 1 : col + 2]
    return (window * kernel.flip(0, 1)).sum()
''',
            "the textbook 'true' convolution flips the kernel, unlike F.conv2d; fails the visible test (-762)",
        ),
        Case(
            "python_float",
            '''\
def apply_kernel(image, row, col, kernel):
    """Sum of `kernel` times the 3x3 window centred at (row, col)."""
    return (image[row - 1 : row + 2, col - 1 : col + 2] * kernel).sum().item()
''',
            "returns a Python float instead of a 0-d tensor; fails the visible test",
        ),
        Case(
            "top_left_corner",
            '''\
def apply_kernel(image, row, col, kernel):
    """Sum of `kernel` times the 3x3 window of `image` at (row, col)."""
    return (image[row : row + 3, col : col + 3] * kernel).sum()
''',
            "(row, col) taken as the window's top-left corner, not its centre; fails the visible test",
        ),
        Case(
            "window_too_small",
            '''\
def apply_kernel(image, row, col, kernel):
    """Sum of `kernel` times the 3x3 window of `image` centred at (row, col)."""
    window = image[row - 1 : row + 1, col - 1 : col + 1]
    return (window * kernel).sum()
''',
            "off by one: the slice row-1:row+1 is only 2x2 and cannot multiply the 3x3 kernel; fails the visible test",
        ),
        Case(
            "python_loops",
            '''\
def apply_kernel(image, row, col, kernel):
    """Sum of `kernel` times the 3x3 window of `image` centred at (row, col), as a 0-d tensor."""
    total = torch.tensor(0.0)
    for i in range(3):
        for j in range(3):
            total = total + image[row - 1 + i, col - 1 + j] * kernel[i, j]
    return total
''',
            "states: 'use tensor operations, no Python loops'; the values are right, so the visible tests pass",
        ),
    ],
    "ex1_map_kernel": [
        Case(
            "double_loop",
            '''\
def map_kernel(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid convolution of a 2-D image with a 3x3 kernel, as an (H-2, W-2) tensor."""
    H, W = image.shape
    rows = []
    for r in range(1, H - 1):
        row = []
        for c in range(1, W - 1):
            row.append(apply_kernel(image, r, c, kernel))
        rows.append(row)
    return torch.tensor(rows)
''',
            "states: one nested list comprehension; the values are right, but built with two for-loop statements",
        ),
        Case(
            "centres_from_zero",
            '''\
def map_kernel(image, kernel):
    """Valid convolution of a 2-D image with a 3x3 kernel, as an (H-2, W-2) tensor built with apply_kernel."""
    H, W = image.shape
    return torch.tensor([[apply_kernel(image, r, c, kernel) for c in range(W - 2)] for r in range(H - 2)])
''',
            "centres 0..H-3 instead of 1..H-2: the first window starts at row -1; fails the visible test",
        ),
        Case(
            "height_and_width_swapped",
            '''\
def map_kernel(image, kernel):
    """Valid convolution of a 2-D image with a 3x3 kernel, as an (H-2, W-2) tensor built with apply_kernel."""
    H, W = image.shape
    return torch.tensor([[apply_kernel(image, r, c, kernel) for c in range(1, H - 1)] for r in range(1, W - 1)])
''',
            "rows run over the width and columns over the height: right only for square images; fails the 4x5 test",
        ),
        Case(
            "nested_list",
            '''\
def map_kernel(image, kernel):
    """Valid convolution of a 2-D image with a 3x3 kernel, as an (H-2, W-2) list of lists."""
    H, W = image.shape
    return [[apply_kernel(image, r, c, kernel) for c in range(1, W - 1)] for r in range(1, H - 1)]
''',
            "the comprehension is never turned into a tensor; fails the visible test (no .shape)",
        ),
        Case(
            "one_short",
            '''\
def map_kernel(image, kernel):
    """Valid convolution of a 2-D image with a 3x3 kernel, as an (H-2, W-2) tensor built with apply_kernel."""
    H, W = image.shape
    return torch.tensor([[apply_kernel(image, r, c, kernel) for c in range(1, W - 2)] for r in range(1, H - 2)])
''',
            "ranges stop one centre early: (H-3, W-3); fails the visible test",
        ),
    ],
    "ex1_batch_conv": [
        Case(
            "unit_axis_in_front",
            '''\
def edge_features(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Every kernel over every image: (N, 1, H, W) and (K, ks, ks) -> (N, K, H-ks+1, W-ks+1)."""
    return F.conv2d(images, kernels.unsqueeze(0))
''',
            "(1, K, ks, ks): F.conv2d then expects K input channels and raises; fails the visible test",
        ),
        Case(
            "kernels_transposed",
            '''\
def edge_features(images, kernels):
    """Every kernel over every image: (N, 1, H, W) and (K, ks, ks) -> (N, K, H-ks+1, W-ks+1)."""
    return F.conv2d(images, kernels.transpose(1, 2).unsqueeze(1))
''',
            "each kernel transposed: right for the symmetric box and identity, wrong for edge kernels; fails test2",
        ),
        Case(
            "same_padding",
            '''\
def edge_features(images, kernels):
    """Every kernel over every image: (N, 1, H, W) and (K, ks, ks) -> (N, K, H, W)."""
    return F.conv2d(images, kernels.unsqueeze(1), padding=kernels.shape[-1] // 2)
''',
            "padding added, so the maps keep H x W instead of the valid H-ks+1; fails the visible test",
        ),
        Case(
            "first_kernel_only",
            '''\
def edge_features(images, kernels):
    """Every kernel over every image: (N, 1, H, W) and (K, ks, ks) -> (N, K, H-ks+1, W-ks+1)."""
    return F.conv2d(images, kernels[:1].unsqueeze(1)).expand(-1, len(kernels), -1, -1)
''',
            "only the first kernel is applied and its map repeated K times; fails the visible test",
        ),
    ],
    "ex1_color_conv": [
        Case(
            "channels_averaged",
            '''\
def color_conv(image: torch.Tensor, kernels: torch.Tensor, bias: float = 0.0) -> torch.Tensor:
    """One filter over a (C, H, W) image: each channel with its own (ks, ks) kernel, summed, plus bias."""
    C, H, W = image.shape
    _, kh, kw = kernels.shape
    H_out, W_out = H - kh + 1, W - kw + 1
    out = image.new_zeros(H_out, W_out)
    for i in range(kh):
        for j in range(kw):
            out = out + (image[:, i : i + H_out, j : j + W_out] * kernels[:, i, j, None, None]).mean(0)
    return out + bias
''',
            "the channels are averaged instead of summed; fails the visible test",
        ),
        Case(
            "library_conv2d",
            '''\
def color_conv(image, kernels, bias=0.0):
    """One filter over a (C, H, W) image: each channel with its own (ks, ks) kernel, summed, plus bias."""
    return F.conv2d(image[None], kernels[None], bias=torch.tensor([bias]))[0, 0]
''',
            "states: do not call F.conv2d (the oracle); right values, so the visible tests pass",
        ),
        Case(
            "bias_per_channel",
            '''\
def color_conv(image, kernels, bias=0.0):
    """One filter over a (C, H, W) image: each channel with its own (ks, ks) kernel, summed, plus bias."""
    kh, kw = kernels.shape[1:]
    windows = image.unfold(1, kh, 1).unfold(2, kw, 1)  # (C, H_out, W_out, kh, kw)
    per_channel = (windows * kernels[:, None, None]).sum(dim=(-2, -1)) + bias  # bias on every channel
    return per_channel.sum(0)
''',
            "the bias is added to every channel before the channel sum, so it counts C times; fails the visible test",
        ),
        Case(
            "kernel_flipped",
            '''\
def color_conv(image, kernels, bias=0.0):
    """One filter over a (C, H, W) image: each channel with its own (ks, ks) kernel, summed, plus bias."""
    kernels = kernels.flip(-2, -1)  # a convolution flips its kernel
    kh, kw = kernels.shape[1:]
    windows = image.unfold(1, kh, 1).unfold(2, kw, 1)
    return torch.einsum("chwij,cij->hw", windows, kernels) + bias
''',
            "a true convolution (flipped kernels), not F.conv2d's cross-correlation; fails the visible test",
        ),
        Case(
            "keeps_channel_axis",
            '''\
def color_conv(image, kernels, bias=0.0):
    """One filter over a (C, H, W) image: each channel with its own (ks, ks) kernel, summed, plus bias."""
    kh, kw = kernels.shape[1:]
    windows = image.unfold(1, kh, 1).unfold(2, kw, 1)
    return (windows * kernels[:, None, None]).sum(dim=(0, -2, -1), keepdim=True)[..., 0, 0] + bias
''',
            "the channel sum keeps a unit axis: (1, H_out, W_out) instead of (H_out, W_out); fails the visible test",
        ),
    ],
}
