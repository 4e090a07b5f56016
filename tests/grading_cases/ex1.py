"""Wrong answers for ex1 (01_kernels): each must cost exactly its own task."""

WRONG = {
    # left_edge guessed as the transpose of top_edge (the Sobel-like [-1, 0, 1] columns)
    "ex1_edge_kernels": """\
top_edge = torch.tensor([[-1, -1, -1], [0, 0, 0], [1, 1, 1]]).float()
left_edge = top_edge.T
diag1_edge = torch.tensor([[0, -1, 1], [-1, 1, 0], [1, 0, 0]]).float()
diag2_edge = torch.tensor([[1, -1, 0], [0, 1, -1], [0, 0, 1]]).float()
""",
    # the textbook "true" convolution: the kernel is flipped, unlike F.conv2d (a cross-correlation)
    "ex1_apply_kernel": '''\
def apply_kernel(image: torch.Tensor, row: int, col: int, kernel: torch.Tensor) -> torch.Tensor:
    """Sum of `kernel` times the 3x3 window of the 2-D `image` centred at (row, col), as a 0-d tensor."""
    window = image[row - 1 : row + 2, col - 1 : col + 2]
    return (window * kernel.flip(0, 1)).sum()
''',
    # the right values, but a plain double loop instead of one nested list comprehension
    "ex1_map_kernel": '''\
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
    # the unit axis added in front, (1, K, ks, ks): F.conv2d then expects K input channels
    "ex1_batch_conv": '''\
def edge_features(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Every kernel over every image: (N, 1, H, W) and (K, ks, ks) -> (N, K, H-ks+1, W-ks+1)."""
    return F.conv2d(images, kernels.unsqueeze(0))
''',
    # the channels are averaged instead of summed
    "ex1_color_conv": '''\
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
}
