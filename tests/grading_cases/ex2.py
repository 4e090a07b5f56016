"""Wrong answers for ex2 (02_strides_padding): each must cost exactly its own task."""

WRONG = {
    # the formula is right, but bad parameters are rejected with assert instead of ValueError
    "ex2_output_size": '''\
def conv_output_size(n: int, ks: int, stride: int = 1, padding: int = 0) -> int:
    """Size of a convolution's output along one axis of length n."""
    assert ks >= 1 and stride >= 1 and padding >= 0, "bad parameters"
    assert ks <= n + 2 * padding, "the kernel does not fit"
    return (n + 2 * padding - ks) // stride + 1
''',
    # zeros only above and to the left of the image
    "ex2_zero_pad": '''\
def zero_pad(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Add `padding` zeros on all four sides of the last two axes of a (..., H, W) tensor."""
    *lead, H, W = x.shape
    out = x.new_zeros(*lead, H + padding, W + padding)
    out[..., padding:, padding:] = x
    return out
''',
    # the bias is added, but the sum is thrown away
    "ex2_conv2d": '''\
def conv2d(x: torch.Tensor, weight: torch.Tensor, bias=None, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """F.conv2d as patches times a matrix."""
    N, C_in, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    H_out = conv_output_size(H, kh, stride, padding)
    W_out = conv_output_size(W, kw, stride, padding)
    patches = F.unfold(x, (kh, kw), padding=padding, stride=stride)
    out = weight.reshape(C_out, -1) @ patches
    if bias is not None:
        out + bias.view(1, C_out, 1)
    return out.view(N, C_out, H_out, W_out)
''',
    # the kernel is flipped in every row (a true convolution, not F.conv2d's cross-correlation)
    "ex2_conv_matrix": '''\
def conv_matrix(kernel: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The (H_out*W_out, h*w) matrix that maps a flattened (h, w) image to its valid convolution."""
    kh, kw = kernel.shape
    H_out, W_out = h - kh + 1, w - kw + 1
    M = kernel.new_zeros(H_out * W_out, h * w)
    for r in range(H_out):
        for c in range(W_out):
            row = kernel.new_zeros(h, w)
            row[r : r + kh, c : c + kw] = kernel.flip(0, 1)
            M[r * W_out + c] = row.flatten()
    return M
''',
    # the jump is multiplied by the layer's own stride before that layer uses it
    "ex2_receptive_field": '''\
def receptive_field(layers: list[tuple[int, int]]) -> int:
    """Side of the input square that one activation of the last of `layers` [(ks, stride), ...] sees."""
    size, jump = 1, 1
    for ks, stride in layers:
        jump *= stride
        size += (ks - 1) * jump
    return size
''',
}
