"""Cases for ex2 (02_strides_padding): output size, zero padding, conv2d, the convolution matrix, receptive fields."""

from . import Case

PEERS: dict[str, list[Case]] = {
    "ex2_output_size": [
        Case(
            "checks_in_a_loop",
            '''\
def conv_output_size(n: int, ks: int, stride: int = 1, padding: int = 0) -> int:
    """Size of a convolution's output along one axis of length n."""
    for name, value, lowest in (("ks", ks, 1), ("stride", stride, 1), ("padding", padding, 0)):
        if value < lowest:
            raise ValueError(f"{name}={value} is invalid: it must be at least {lowest}")
    padded = n + 2 * padding
    if ks > padded:
        raise ValueError(f"ks={ks} does not fit in the padded input of length {padded}")
    return (padded - ks) // stride + 1
''',
            "the three range checks in one loop over (name, value, lowest), other message wording",
        ),
        Case(
            "truncating_division",
            '''\
def conv_output_size(n, ks, stride=1, padding=0):
    """Size of a convolution's output along one axis of length n."""
    if ks < 1:
        raise ValueError(f"invalid kernel size ks: {ks} (must be positive)")
    if stride < 1:
        raise ValueError(f"invalid stride: {stride} (must be positive)")
    if padding < 0:
        raise ValueError(f"invalid padding: {padding} (must not be negative)")
    if n + 2 * padding < ks:
        raise ValueError(f"invalid kernel size ks: {ks} is larger than n + 2*padding = {n + 2 * padding}")
    return int((n + 2 * padding - ks) / stride) + 1  # the numerator is >= 0 here, so int() floors
''',
            "int() of a true division: it truncates, which floors because the numerator is never negative",
        ),
        Case(
            "self_documenting_fstrings",
            '''\
def conv_output_size(n, ks, stride=1, padding=0):
    """Size of a convolution's output along one axis of length n."""
    if ks < 1:
        raise ValueError(f"need ks >= 1, got {ks=}")
    if stride < 1:
        raise ValueError(f"need stride >= 1, got {stride=}")
    if padding < 0:
        raise ValueError(f"need padding >= 0, got {padding=}")
    if ks > n + 2 * padding:
        raise ValueError(f"the kernel is larger than the padded input: {ks=}, {n=}, {padding=}")
    return (n + 2 * padding - ks) // stride + 1
''',
            "f'{ks=}' messages name the parameter and its value",
        ),
        Case(
            "count_the_starts",
            '''\
def check(name, value, lowest):
    """Raise ValueError unless value >= lowest."""
    if value < lowest:
        raise ValueError(f"{name} must be >= {lowest} but is {value}")


def conv_output_size(n, ks, stride=1, padding=0):
    """Number of positions where the kernel starts: 0, stride, 2*stride, ... up to n + 2*padding - ks."""
    check("ks", ks, 1)
    check("stride", stride, 1)
    check("padding", padding, 0)
    last_start = n + 2 * padding - ks
    if last_start < 0:
        raise ValueError(f"kernel size ks={ks} exceeds the padded length n + 2*padding = {n + 2 * padding}")
    return len(range(0, last_start + 1, stride))
''',
            "a helper for the checks and the size counted as len(range(...)) of the kernel's start positions",
        ),
        Case(
            "numpy_floor",
            '''\
def conv_output_size(n, ks, stride=1, padding=0):
    """Size of a convolution's output along one axis of length n."""
    values = {"ks": ks, "stride": stride, "padding": padding}
    smallest = {"ks": 1, "stride": 1, "padding": 0}
    for name, value in values.items():
        if value < smallest[name]:
            raise ValueError(f"bad {name}: {value} (the smallest allowed is {smallest[name]})")
    if ks > n + 2 * padding:
        raise ValueError(f"ks={ks} > n + 2 * padding = {n + 2 * padding}")
    return int(np.floor((n + 2 * padding - ks) / stride)) + 1
''',
            "dicts of values and lower bounds; np.floor of a true division converted back to int",
        ),
        Case(
            "divmod",
            '''\
def conv_output_size(n: int, ks: int, stride: int = 1, padding: int = 0) -> int:
    """Size of a convolution's output along one axis of length n."""
    if min(ks, stride) < 1 or padding < 0:
        bad = "ks" if ks < 1 else "stride" if stride < 1 else "padding"
        value = {"ks": ks, "stride": stride, "padding": padding}[bad]
        raise ValueError(f"{bad} cannot be {value}")
    room = n + 2 * padding - ks
    if room < 0:
        raise ValueError(f"ks={ks} is more than the {n + 2 * padding} pixels of the padded input")
    steps, _ = divmod(room, stride)
    return steps + 1
''',
            "one combined range check that then finds the offending parameter, divmod for the floor",
        ),
    ],
    "ex2_zero_pad": [
        Case(
            "torch_zeros_dtype",
            '''\
def zero_pad(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Add `padding` zeros on all four sides of the last two axes of a (..., H, W) tensor."""
    H, W = x.shape[-2:]
    out = torch.zeros(*x.shape[:-2], H + 2 * padding, W + 2 * padding, dtype=x.dtype, device=x.device)
    out[..., padding : padding + H, padding : padding + W] = x
    return out
''',
            "torch.zeros with the input's dtype and device",
        ),
        Case(
            "concatenate_borders",
            '''\
def zero_pad(x, padding):
    """Add `padding` zeros on all four sides of the last two axes of a (..., H, W) tensor."""
    rows = x.new_zeros(*x.shape[:-2], padding, x.shape[-1])
    x = torch.cat([rows, x, rows], dim=-2)  # zeros above and below
    cols = x.new_zeros(*x.shape[:-1], padding)
    return torch.cat([cols, x, cols], dim=-1)  # zeros left and right
''',
            "zero blocks made with new_zeros and concatenated around x (a new tensor, x untouched)",
        ),
        Case(
            "narrow_copy",
            '''\
def zero_pad(x, padding):
    """Add `padding` zeros on all four sides of the last two axes of a (..., H, W) tensor."""
    *lead, H, W = x.shape
    out = torch.zeros((*lead, H + 2 * padding, W + 2 * padding), dtype=x.dtype)
    out.narrow(-2, padding, H).narrow(-1, padding, W).copy_(x)
    return out
''',
            "the middle selected with narrow and filled with copy_",
        ),
        Case(
            "slice_objects",
            '''\
def zero_pad(x, padding):
    """Add `padding` zeros on all four sides of the last two axes of a (..., H, W) tensor."""
    p = padding
    H, W = x.shape[-2], x.shape[-1]
    out = x.new_full((*x.shape[:-2], H + 2 * p, W + 2 * p), 0)
    middle = (Ellipsis, slice(p, p + H), slice(p, p + W))
    out[middle] = x
    return out
''',
            "new_full(..., 0) and a tuple of slice objects for the middle",
        ),
        Case(
            "shape_list",
            '''\
def zero_pad(x, padding):
    """Add `padding` zeros on all four sides of the last two axes of a (..., H, W) tensor."""
    shape = list(x.shape)
    shape[-2] += 2 * padding
    shape[-1] += 2 * padding
    out = x.new_zeros(shape)
    out[..., padding : shape[-2] - padding, padding : shape[-1] - padding] = x
    return out
''',
            "the padded shape built as a list; the middle ends at size - padding (fine for padding 0)",
        ),
        Case(
            "flatten_leading_axes",
            '''\
def zero_pad(x, padding):
    """Add `padding` zeros on all four sides of the last two axes of a (..., H, W) tensor."""
    *lead, H, W = x.shape
    flat = x.reshape(-1, H, W)  # (B, H, W) for any number of leading axes
    out = torch.zeros(flat.shape[0], H + 2 * padding, W + 2 * padding, dtype=x.dtype)
    out[:, padding : padding + H, padding : padding + W] = flat
    return out.reshape(*lead, H + 2 * padding, W + 2 * padding)
''',
            "the leading axes flattened into one batch axis and restored at the end",
        ),
    ],
    "ex2_conv2d": [
        Case(
            "einsum",
            '''\
def conv2d(x, weight, bias=None, stride=1, padding=0):
    """F.conv2d as patches times a matrix: (N, C_in, H, W), (C_out, C_in, ks, ks) -> (N, C_out, H_out, W_out)."""
    N, _, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    patches = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # (N, C_in*kh*kw, L)
    out = torch.einsum("ok,nkl->nol", weight.reshape(C_out, -1), patches)
    if bias is not None:
        out = out + bias[None, :, None]
    return out.reshape(N, C_out, conv_output_size(H, kh, stride, padding), conv_output_size(W, kw, stride, padding))
''',
            "einsum for the product of the flattened filters and the patches",
        ),
        Case(
            "tensor_unfold_zero_pad",
            '''\
def conv2d(x, weight, bias=None, stride=1, padding=0):
    """F.conv2d from zero_pad, Tensor.unfold windows and one matrix product."""
    N, C_in, _, _ = x.shape
    C_out, _, kh, kw = weight.shape
    windows = zero_pad(x, padding).unfold(2, kh, stride).unfold(3, kw, stride)  # (N, C_in, H_out, W_out, kh, kw)
    H_out, W_out = windows.shape[2:4]
    rows = windows.permute(0, 2, 3, 1, 4, 5).reshape(N, H_out * W_out, C_in * kh * kw)
    out = rows @ weight.reshape(C_out, -1).T  # (N, H_out*W_out, C_out)
    if bias is not None:
        out = out + bias
    return out.permute(0, 2, 1).reshape(N, C_out, H_out, W_out)
''',
            "padding with the student's own zero_pad, windows with Tensor.unfold, patches as rows times W.T",
        ),
        Case(
            "loop_over_offsets",
            '''\
def conv2d(x, weight, bias=None, stride=1, padding=0):
    """F.conv2d as a sum over kernel offsets of (C_out, C_in) matrices times shifted, strided inputs."""
    N, C_in, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    H_out, W_out = conv_output_size(H, kh, stride, padding), conv_output_size(W, kw, stride, padding)
    xp = zero_pad(x, padding)
    out = x.new_zeros(N, C_out, H_out * W_out)
    for i in range(kh):
        for j in range(kw):
            xs = xp[:, :, i : i + stride * (H_out - 1) + 1 : stride, j : j + stride * (W_out - 1) + 1 : stride]
            out = out + weight[:, :, i, j] @ xs.reshape(N, C_in, -1)  # (C_out, C_in) @ (N, C_in, L)
    if bias is not None:
        out = out + bias.view(-1, 1)
    return out.view(N, C_out, H_out, W_out)
''',
            "no patch tensor: one matrix product per kernel offset on a strided slice of the padded input",
        ),
        Case(
            "subsample_stride_one",
            '''\
def conv2d(x, weight, bias=None, stride=1, padding=0):
    """F.conv2d: the stride-1 convolution from patches, then every stride-th row and column."""
    N, _, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    H1, W1 = H + 2 * padding - kh + 1, W + 2 * padding - kw + 1  # stride-1 output size
    patches = F.unfold(x, (kh, kw), padding=padding)
    full = (weight.view(C_out, -1) @ patches).view(N, C_out, H1, W1)
    out = full[:, :, ::stride, ::stride]
    return out if bias is None else out + bias.view(1, -1, 1, 1)
''',
            "computes every stride-1 position and keeps every stride-th one: same values and gradients",
        ),
        Case(
            "batched_transpose",
            '''\
def conv2d(x: torch.Tensor, weight: torch.Tensor, bias=None, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """F.conv2d as patches times a matrix."""
    n, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    h_out, w_out = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    cols = F.unfold(x, kernel_size=(kh, kw), stride=stride, padding=padding).transpose(1, 2)  # (n, L, c_in*kh*kw)
    res = torch.matmul(cols, weight.view(c_out, -1).t()).transpose(1, 2)  # (n, c_out, L)
    res = res.reshape(n, c_out, h_out, w_out)
    if bias is not None:
        res = res + bias.reshape(1, -1, 1, 1)
    return res
''',
            "patches as rows (transpose), torch.matmul with the transposed filters, bias after the reshape",
        ),
        Case(
            "tensordot",
            '''\
def conv2d(x, weight, bias=None, stride=1, padding=0):
    """F.conv2d as patches times a matrix."""
    N, _, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    patches = F.unfold(x, (kh, kw), padding=padding, stride=stride)
    out = torch.tensordot(weight.flatten(1), patches, dims=([1], [1])).permute(1, 0, 2)  # (N, C_out, L)
    H_out = (H + 2 * padding - kh) // stride + 1
    W_out = (W + 2 * padding - kw) // stride + 1
    if bias is not None:
        out = out + bias[:, None]
    return out.reshape(N, C_out, H_out, W_out)
''',
            "tensordot, then the axes put back in order; the output size written out inline",
        ),
        Case(
            "per_image",
            '''\
def conv2d(x, weight, bias=None, stride=1, padding=0):
    """F.conv2d as patches times a matrix, one image at a time."""
    C_out, _, kh, kw = weight.shape
    H_out = conv_output_size(x.shape[2], kh, stride, padding)
    W_out = conv_output_size(x.shape[3], kw, stride, padding)
    w2d = weight.reshape(C_out, -1)
    maps = []
    for image in x:
        cols = F.unfold(image[None], (kh, kw), padding=padding, stride=stride)[0]  # (C_in*kh*kw, L)
        y = w2d @ cols
        if bias is not None:
            y = y + bias[:, None]
        maps.append(y.view(C_out, H_out, W_out))
    return torch.stack(maps)
''',
            "a loop over the images of the batch, stacked at the end",
        ),
    ],
    "ex2_conv_matrix": [
        Case(
            "one_hot_images",
            '''\
def conv_matrix(kernel, h, w):
    """The (H_out*W_out, h*w) matrix that maps a flattened (h, w) image to its valid convolution."""
    basis = torch.eye(h * w, dtype=kernel.dtype).view(h * w, 1, h, w)  # one image per input pixel
    columns = F.conv2d(basis, kernel[None, None])  # (h*w, 1, H_out, W_out): column j of M for pixel j
    return columns.reshape(h * w, -1).T.contiguous()
''',
            "column j of M is the convolution of the one-hot image of pixel j (F.conv2d is not forbidden here)",
        ),
        Case(
            "vectorised_index",
            '''\
def conv_matrix(kernel, h, w):
    """The (H_out*W_out, h*w) matrix that maps a flattened (h, w) image to its valid convolution."""
    kh, kw = kernel.shape
    H_out, W_out = h - kh + 1, w - kw + 1
    r, c = torch.meshgrid(torch.arange(H_out), torch.arange(W_out), indexing="ij")
    out_idx = (r * W_out + c).flatten()
    M = torch.zeros(H_out * W_out, h * w, dtype=kernel.dtype)
    for i in range(kh):
        for j in range(kw):
            M[out_idx, ((r + i) * w + (c + j)).flatten()] = kernel[i, j]  # weight (i, j) in every row at once
    return M
''',
            "one advanced-indexing assignment per kernel weight, all rows at once",
        ),
        Case(
            "rolled_rows",
            '''\
def conv_matrix(kernel, h, w):
    """The (H_out*W_out, h*w) matrix that maps a flattened (h, w) image to its valid convolution."""
    kh, kw = kernel.shape
    first = kernel.new_zeros(h, w)
    first[:kh, :kw] = kernel
    first = first.flatten()  # the row of output position (0, 0)
    rows = [torch.roll(first, r * w + c) for r in range(h - kh + 1) for c in range(w - kw + 1)]
    return torch.stack(rows)
''',
            "each row is the first row shifted by r*w + c (never wraps around)",
        ),
        Case(
            "four_d_view",
            '''\
def conv_matrix(kernel: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The (H_out*W_out, h*w) matrix that maps a flattened (h, w) image to its valid convolution."""
    kh, kw = kernel.shape
    H_out, W_out = h - kh + 1, w - kw + 1
    M = kernel.new_zeros(H_out, W_out, h, w)
    for r in range(H_out):
        for c in range(W_out):
            M[r, c, r : r + kh, c : c + kw] = kernel
    return M.reshape(H_out * W_out, h * w)
''',
            "filled as a (H_out, W_out, h, w) tensor, reshaped at the end",
        ),
        Case(
            "numpy_built",
            '''\
def conv_matrix(kernel, h, w):
    """The (H_out*W_out, h*w) matrix that maps a flattened (h, w) image to its valid convolution."""
    k = kernel.numpy()
    kh, kw = k.shape
    H_out, W_out = h - kh + 1, w - kw + 1
    M = np.zeros((H_out * W_out, h * w), dtype=k.dtype)
    for pos in range(H_out * W_out):
        r, c = divmod(pos, W_out)
        for i in range(kh):
            M[pos, (r + i) * w + c : (r + i) * w + c + kw] = k[i]  # one kernel row at a time
    return torch.from_numpy(M)
''',
            "built in numpy with the kernel's dtype, one kernel row per slice assignment",
        ),
        Case(
            "stacked_grids",
            '''\
def conv_matrix(kernel, h, w):
    """The (H_out*W_out, h*w) matrix that maps a flattened (h, w) image to its valid convolution."""
    kh, kw = kernel.shape

    def placed(r, c):
        grid = torch.zeros(h, w, dtype=kernel.dtype)
        grid[r : r + kh, c : c + kw] = kernel
        return grid.flatten()

    return torch.stack([placed(r, c) for r in range(h - kh + 1) for c in range(w - kw + 1)])
''',
            "a nested helper builds one row; the rows are stacked",
        ),
    ],
    "ex2_receptive_field": [
        Case(
            "backwards",
            '''\
def receptive_field(layers):
    """Side of the input square that one activation of the last of `layers` [(ks, stride), ...] sees."""
    size = 1
    for ks, stride in reversed(layers):  # from the last layer back to the input
        size = (size - 1) * stride + ks
    return size
''',
            "the recurrence run backwards from the last layer: size = (size - 1) * stride + ks",
        ),
        Case(
            "reduce",
            '''\
from functools import reduce


def receptive_field(layers):
    """Side of the input square that one activation of the last of `layers` [(ks, stride), ...] sees."""

    def step(state, layer):
        size, jump = state
        ks, stride = layer
        return size + (ks - 1) * jump, jump * stride

    return reduce(step, layers, (1, 1))[0]
''',
            "functools.reduce over (size, jump) states",
        ),
        Case(
            "math_prod",
            '''\
import math


def receptive_field(layers):
    """Side of the input square that one activation of the last of `layers` [(ks, stride), ...] sees."""
    strides = [s for _, s in layers]
    return 1 + sum((ks - 1) * math.prod(strides[:i]) for i, (ks, _) in enumerate(layers))
''',
            "closed form: 1 + sum of (ks_l - 1) times the product of the strides before layer l",
        ),
        Case(
            "recursive",
            '''\
def receptive_field(layers):
    """Side of the input square that one activation of the last of `layers` [(ks, stride), ...] sees."""
    if not layers:
        return 1
    (ks, stride), *rest = layers
    return ks + (receptive_field(rest) - 1) * stride
''',
            "recursion on the first layer and the rest",
        ),
        Case(
            "numpy_cumprod",
            '''\
def receptive_field(layers):
    """Side of the input square that one activation of the last of `layers` [(ks, stride), ...] sees."""
    if len(layers) == 0:
        return 1
    ks, strides = np.array(layers).T
    jumps = np.concatenate([[1], np.cumprod(strides)[:-1]])
    return int(1 + ((ks - 1) * jumps).sum())
''',
            "numpy cumulative product for the jumps, converted to a Python int",
        ),
    ],
}

WRONG: dict[str, list[Case]] = {
    "ex2_output_size": [
        Case(
            "assert_not_valueerror",
            '''\
def conv_output_size(n: int, ks: int, stride: int = 1, padding: int = 0) -> int:
    """Size of a convolution's output along one axis of length n."""
    assert ks >= 1 and stride >= 1 and padding >= 0, "bad parameters"
    assert ks <= n + 2 * padding, "the kernel does not fit"
    return (n + 2 * padding - ks) // stride + 1
''',
            "bad parameters rejected with assert (AssertionError) instead of ValueError; fails test2",
        ),
        Case(
            "no_stride_check",
            '''\
def conv_output_size(n, ks, stride=1, padding=0):
    """Size of a convolution's output along one axis of length n."""
    if ks < 1:
        raise ValueError(f"ks must be at least 1, got ks={ks}")
    if padding < 0:
        raise ValueError(f"padding must be 0 or more, got padding={padding}")
    if ks > n + 2 * padding:
        raise ValueError(f"ks={ks} is larger than n + 2*padding = {n + 2 * padding}")
    return (n + 2 * padding - ks) // stride + 1
''',
            "forgets the stride < 1 case: stride=0 raises ZeroDivisionError, not ValueError; fails test2",
        ),
        Case(
            "no_padding_check",
            '''\
def conv_output_size(n, ks, stride=1, padding=0):
    """Size of a convolution's output along one axis of length n."""
    if ks < 1:
        raise ValueError(f"ks must be at least 1, got ks={ks}")
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got stride={stride}")
    if ks > n + 2 * padding:
        raise ValueError(f"ks={ks} is larger than n + 2*padding = {n + 2 * padding}")
    return (n + 2 * padding - ks) // stride + 1
''',
            "forgets the padding < 0 case: padding=-1 returns a size; fails test2",
        ),
        Case(
            "fit_off_by_one",
            '''\
def conv_output_size(n, ks, stride=1, padding=0):
    """Size of a convolution's output along one axis of length n."""
    if ks < 1:
        raise ValueError(f"ks must be at least 1, got ks={ks}")
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got stride={stride}")
    if padding < 0:
        raise ValueError(f"padding must be 0 or more, got padding={padding}")
    if ks >= n + 2 * padding:
        raise ValueError(f"ks={ks} does not fit in n + 2*padding = {n + 2 * padding}")
    return (n + 2 * padding - ks) // stride + 1
''',
            ">= instead of >: a kernel exactly as large as the padded input is rejected; fails both tests",
        ),
        Case(
            "true_division",
            '''\
def conv_output_size(n, ks, stride=1, padding=0):
    """Size of a convolution's output along one axis of length n."""
    if ks < 1:
        raise ValueError(f"ks must be at least 1, got ks={ks}")
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got stride={stride}")
    if padding < 0:
        raise ValueError(f"padding must be 0 or more, got padding={padding}")
    if ks > n + 2 * padding:
        raise ValueError(f"ks={ks} is larger than n + 2*padding = {n + 2 * padding}")
    return (n + 2 * padding - ks) / stride + 1
''',
            "/ instead of //: a float, and a fractional one for strides that do not divide; fails the visible test",
        ),
        Case(
            "message_without_name",
            '''\
def conv_output_size(n, ks, stride=1, padding=0):
    """Size of a convolution's output along one axis of length n."""
    if ks < 1:
        raise ValueError(f"ks must be at least 1, got ks={ks}")
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got stride={stride}")
    if padding < 0:
        raise ValueError(f"padding must be 0 or more, got padding={padding}")
    if ks > n + 2 * padding:
        raise ValueError(f"too large: {ks} > {n + 2 * padding}")
    return (n + 2 * padding - ks) // stride + 1
''',
            "states: the message names the parameter and its value; 'too large: 7 > 6' names no parameter, "
            "and the visible test only looks for the number",
        ),
    ],
    "ex2_zero_pad": [
        Case(
            "top_left_only",
            '''\
def zero_pad(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Add `padding` zeros on all four sides of the last two axes of a (..., H, W) tensor."""
    *lead, H, W = x.shape
    out = x.new_zeros(*lead, H + padding, W + padding)
    out[..., padding:, padding:] = x
    return out
''',
            "zeros only above and to the left of the image; fails the visible test",
        ),
        Case(
            "default_dtype",
            '''\
def zero_pad(x, padding):
    """Add `padding` zeros on all four sides of the last two axes of a (..., H, W) tensor."""
    *lead, H, W = x.shape
    out = torch.zeros(*lead, H + 2 * padding, W + 2 * padding)  # float32, whatever x is
    out[..., padding : padding + H, padding : padding + W] = x
    return out
''',
            "torch.zeros without dtype: an int64 input comes back as float32; fails the visible test",
        ),
        Case(
            "float32_for_floats",
            '''\
def zero_pad(x, padding):
    """Add `padding` zeros on all four sides of the last two axes of a (..., H, W) tensor."""
    *lead, H, W = x.shape
    out = torch.zeros(*lead, H + 2 * padding, W + 2 * padding)
    out[..., padding : padding + H, padding : padding + W] = x
    return out if x.is_floating_point() else out.to(x.dtype)  # keep integer images integer
''',
            "states: keep the dtype; integer dtypes are restored, but float64 (or float16) comes back as float32, "
            "and the visible tests only check int64",
        ),
        Case(
            "library_pad",
            '''\
def zero_pad(x, padding):
    """Add `padding` zeros on all four sides of the last two axes of a (..., H, W) tensor."""
    return F.pad(x, (padding,) * 4)
''',
            "states: build it yourself, the tests compare with F.pad; right values, so the visible tests pass",
        ),
        Case(
            "aliases_input_at_zero",
            '''\
def zero_pad(x, padding):
    """Add `padding` zeros on all four sides of the last two axes of a (..., H, W) tensor."""
    if padding == 0:
        return x  # nothing to add
    *lead, H, W = x.shape
    out = x.new_zeros(*lead, H + 2 * padding, W + 2 * padding)
    out[..., padding : padding + H, padding : padding + W] = x
    return out
''',
            "states: return a new tensor; with padding 0 it returns x itself, so writing into the result changes x "
            "(the visible test compares values only)",
        ),
        Case(
            "four_d_only",
            '''\
def zero_pad(x, padding):
    """Add `padding` zeros on all four sides of an (N, C, H, W) tensor."""
    N, C, H, W = x.shape
    out = x.new_zeros(N, C, H + 2 * padding, W + 2 * padding)
    out[:, :, padding : padding + H, padding : padding + W] = x
    return out
''',
            "assumes a rank-4 input; (H, W) and (C, H, W) tensors fail to unpack; fails the visible test",
        ),
    ],
    "ex2_conv2d": [
        Case(
            "bias_result_dropped",
            '''\
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
            "the bias is added but the sum is thrown away; fails the visible test",
        ),
        Case(
            "library_conv",
            '''\
def conv2d(x, weight, bias=None, stride=1, padding=0):
    """F.conv2d as patches times a matrix."""
    return F.conv2d(x, weight, bias, stride=stride, padding=padding)
''',
            "states: you must not call F.conv2d; the visible tests compare with it, so they pass",
        ),
        Case(
            "size_without_padding",
            '''\
def conv2d(x, weight, bias=None, stride=1, padding=0):
    """F.conv2d as patches times a matrix."""
    N, C_in, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    H_out, W_out = conv_output_size(H, kh, stride), conv_output_size(W, kw, stride)  # padding forgotten
    patches = F.unfold(x, (kh, kw), padding=padding, stride=stride)
    out = weight.reshape(C_out, -1) @ patches
    if bias is not None:
        out = out + bias.view(1, C_out, 1)
    return out.view(N, C_out, H_out, W_out)
''',
            "the output size ignores the padding, so the final view fails whenever padding > 0; fails the tests",
        ),
        Case(
            "height_width_swapped",
            '''\
def conv2d(x, weight, bias=None, stride=1, padding=0):
    """F.conv2d as patches times a matrix."""
    N, C_in, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    H_out = conv_output_size(H, kh, stride, padding)
    W_out = conv_output_size(W, kw, stride, padding)
    patches = F.unfold(x, (kh, kw), padding=padding, stride=stride)
    out = weight.reshape(C_out, -1) @ patches
    if bias is not None:
        out = out + bias.view(1, C_out, 1)
    return out.view(N, C_out, W_out, H_out)
''',
            "the positions reshaped as (W_out, H_out): right for square outputs only; fails test2",
        ),
        Case(
            "channels_last_flatten",
            '''\
def conv2d(x, weight, bias=None, stride=1, padding=0):
    """F.conv2d as patches times a matrix."""
    N, C_in, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    H_out = conv_output_size(H, kh, stride, padding)
    W_out = conv_output_size(W, kw, stride, padding)
    patches = F.unfold(x, (kh, kw), padding=padding, stride=stride)
    filters = weight.permute(0, 2, 3, 1).reshape(C_out, -1)  # (kh, kw, C_in) order, unlike unfold's
    out = filters @ patches
    if bias is not None:
        out = out + bias.view(1, C_out, 1)
    return out.view(N, C_out, H_out, W_out)
''',
            "filters flattened in (kh, kw, C_in) order while unfold uses (C_in, kh, kw): wrong when C_in > 1; "
            "fails test2",
        ),
        Case(
            "through_numpy",
            '''\
def conv2d(x, weight, bias=None, stride=1, padding=0):
    """F.conv2d as patches times a matrix, the product done in numpy."""
    N, C_in, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    H_out = conv_output_size(H, kh, stride, padding)
    W_out = conv_output_size(W, kw, stride, padding)
    patches = F.unfold(x, (kh, kw), padding=padding, stride=stride).numpy()
    out = torch.from_numpy(weight.reshape(C_out, -1).numpy() @ patches)
    if bias is not None:
        out = out + bias.view(1, C_out, 1)
    return out.view(N, C_out, H_out, W_out)
''',
            "the product through numpy: no gradient (and .numpy() refuses tensors that require grad); fails test3",
        ),
    ],
    "ex2_conv_matrix": [
        Case(
            "kernel_flipped",
            '''\
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
            "the kernel flipped in every row (a true convolution, not F.conv2d's cross-correlation); fails the tests",
        ),
        Case(
            "default_dtype",
            '''\
def conv_matrix(kernel, h, w):
    """The (H_out*W_out, h*w) matrix that maps a flattened (h, w) image to its valid convolution."""
    kh, kw = kernel.shape
    H_out, W_out = h - kh + 1, w - kw + 1
    M = torch.zeros(H_out * W_out, h * w)
    for r in range(H_out):
        for c in range(W_out):
            row = torch.zeros(h, w)
            row[r : r + kh, c : c + kw] = kernel
            M[r * W_out + c] = row.flatten()
    return M
''',
            "states: use the kernel's dtype; torch.zeros makes float32, so a float64 kernel gives a float32 matrix, "
            "and the visible tests only use float32 kernels",
        ),
        Case(
            "row_index_uses_height",
            '''\
def conv_matrix(kernel, h, w):
    """The (H_out*W_out, h*w) matrix that maps a flattened (h, w) image to its valid convolution."""
    kh, kw = kernel.shape
    H_out, W_out = h - kh + 1, w - kw + 1
    M = kernel.new_zeros(H_out * W_out, h * w)
    for r in range(H_out):
        for c in range(W_out):
            row = kernel.new_zeros(h, w)
            row[r : r + kh, c : c + kw] = kernel
            M[c * H_out + r] = row.flatten()
    return M
''',
            "output positions numbered column by column (c * H_out + r), not row by row; fails the visible tests",
        ),
        Case(
            "transposed",
            '''\
def conv_matrix(kernel, h, w):
    """The matrix that maps a flattened (h, w) image to its valid convolution."""
    kh, kw = kernel.shape
    rows = []
    for r in range(h - kh + 1):
        for c in range(w - kw + 1):
            grid = kernel.new_zeros(h, w)
            grid[r : r + kh, c : c + kw] = kernel
            rows.append(grid.flatten())
    return torch.stack(rows, dim=1)  # (h*w, H_out*W_out)
''',
            "the rows stacked as columns: the (h*w, H_out*W_out) transpose; fails the visible test",
        ),
    ],
    "ex2_receptive_field": [
        Case(
            "jump_updated_first",
            '''\
def receptive_field(layers: list[tuple[int, int]]) -> int:
    """Side of the input square that one activation of the last of `layers` [(ks, stride), ...] sees."""
    size, jump = 1, 1
    for ks, stride in layers:
        jump *= stride
        size += (ks - 1) * jump
    return size
''',
            "the jump is multiplied by the layer's own stride before that layer uses it; fails the visible tests",
        ),
        Case(
            "strides_ignored",
            '''\
def receptive_field(layers):
    """Side of the input square that one activation of the last of `layers` [(ks, stride), ...] sees."""
    return 1 + sum(ks - 1 for ks, _ in layers)
''',
            "the strides are ignored (every layer adds ks - 1); fails the visible tests",
        ),
        Case(
            "numpy_integer",
            '''\
def receptive_field(layers):
    """Side of the input square that one activation of the last of `layers` [(ks, stride), ...] sees."""
    ks = np.array([k for k, _ in layers], dtype=np.int64)
    strides = np.array([s for _, s in layers], dtype=np.int64)
    jumps = np.cumprod(np.concatenate([[1], strides[:-1]])) if len(layers) else np.ones(0, dtype=np.int64)
    return 1 + np.sum((ks - 1) * jumps)
''',
            "the right number as a numpy.int64, not an int; fails the visible test",
        ),
        Case(
            "starts_at_first_layer",
            '''\
def receptive_field(layers):
    """Side of the input square that one activation of the last of `layers` [(ks, stride), ...] sees."""
    size, jump = layers[0]
    for ks, stride in layers[1:]:
        size += (ks - 1) * jump
        jump *= stride
    return size
''',
            "starts from the first layer instead of the input: an empty list raises IndexError; fails the test",
        ),
    ],
}
