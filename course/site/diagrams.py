"""Matplotlib drawings for the chapter pages: grids, kernels, feature maps, the colour photo.

Every function returns a Figure and computes what it shows (sums, output sizes, feature maps) from its
inputs, so a figure can never disagree with the numbers in the text.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "batch_features",
    "bear_channels",
    "color_conv_figure",
    "conv_matmul",
    "digit_grid",
    "digit_windows",
    "edge_maps",
    "kernel_one_location",
    "learned_kernels",
    "padding_stride",
    "receptive_field_figure",
]

BLUE, ORANGE, RED, GREY = "#3949ab", "#e64a19", "#c62828", "#bdbdbd"


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _grid(ax, values, *, fmt="{:g}", colors=None, fontsize=9, edge="#616161"):
    """Draw a table of numbers (rows top to bottom) as square cells with optional per-cell colours."""
    from matplotlib.patches import Rectangle

    values = np.asarray(values, dtype=object)
    h, w = values.shape
    for r in range(h):
        for c in range(w):
            face = colors[r][c] if colors is not None else "white"
            ax.add_patch(Rectangle((c, h - 1 - r), 1, 1, facecolor=face, edgecolor=edge, linewidth=0.8))
            v = values[r, c]
            if v is not None and v != "":
                ax.text(
                    c + 0.5,
                    h - 0.5 - r,
                    fmt.format(v) if not isinstance(v, str) else v,
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                )
    ax.set_xlim(-0.05, w + 0.05)
    ax.set_ylim(-0.05, h + 0.05)
    ax.set_aspect("equal")
    ax.axis("off")


def kernel_one_location():
    """7×7 grid numbered 1..49, kernel 0.1..0.9 on the block around 18, and the resulting sum."""
    from matplotlib.patches import Rectangle

    plt = _plt()
    grid = np.arange(1, 50).reshape(7, 7)
    kernel = np.arange(1, 10).reshape(3, 3) / 10
    r0, c0 = divmod(18 - 1, 7)  # centre cell of the block
    block = grid[r0 - 1 : r0 + 2, c0 - 1 : c0 + 2]
    total = float((block * kernel).sum())
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(10, 3.6), gridspec_kw={"width_ratios": [7, 3, 3]})
    colors = [["#fff3e0" if abs(i - r0) <= 1 and abs(j - c0) <= 1 else "white" for j in range(7)] for i in range(7)]
    _grid(a, grid, fmt="{:d}", colors=colors)
    for i in range(3):
        for j in range(3):
            a.text(
                c0 - 1 + j + 0.92,
                7 - (r0 - 1 + i) - 0.1,
                f"{kernel[i, j]:.1f}",
                ha="right",
                va="top",
                fontsize=7,
                color=RED,
            )
    a.add_patch(Rectangle((c0 - 1, 7 - (r0 + 2)), 3, 3, fill=False, edgecolor=RED, linewidth=2.5))
    a.set_title("input: a 7×7 grid", fontsize=10)
    _grid(b, kernel, fmt="{:.1f}", colors=[["#ffebee"] * 3] * 3)
    b.set_title("kernel", fontsize=10)
    terms = " + ".join(f"{k:.1f}·{v}" for k, v in zip(kernel.ravel(), block.ravel(), strict=True))
    c.axis("off")
    c.text(0.5, 0.62, f"{total:.1f}", ha="center", va="center", fontsize=26, color=RED)
    c.text(0.5, 0.35, "sum of the nine\nkernel × pixel products", ha="center", va="center", fontsize=9)
    fig.text(0.5, 0.02, terms + f" = {total:.1f}", ha="center", fontsize=7.5, color="#424242")
    return fig


def digit_windows(three: np.ndarray, kernel: np.ndarray):
    """The digit with three marked 3×3 windows, each window's pixels and the kernel's response."""
    from matplotlib.patches import Rectangle

    plt = _plt()
    windows = [(0, 0), (4, 6), (7, 17)]  # (top row, left column) of each 3×3 window
    fig = plt.figure(figsize=(11, 3.6))
    gs = fig.add_gridspec(1, 4, width_ratios=[1.3, 1, 1, 1])
    ax = fig.add_subplot(gs[0])
    ax.imshow(three, cmap="Greys", vmin=0, vmax=255)
    ax.set_xticks([0, 10, 20])
    ax.set_yticks([0, 10, 20])
    ax.set_title('the "3" (28×28, values 0–255)', fontsize=10)
    for k, (r, c) in enumerate(windows):
        color = (BLUE, ORANGE, RED)[k]
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 3, 3, fill=False, edgecolor=color, linewidth=2))
        sub = fig.add_subplot(gs[k + 1])
        patch = three[r : r + 3, c : c + 3]
        shade = [["#eeeeee" if v > 127 else "white" for v in row] for row in patch]
        _grid(sub, patch, fmt="{:d}", colors=shade, fontsize=10)
        sub.set_title(f"rows {r}–{r + 2}, columns {c}–{c + 2}", fontsize=9, color=color)
        sub.text(1.5, -0.45, f"top edge → {int((patch * kernel).sum())}", ha="center", fontsize=11, color=color)
    fig.subplots_adjust(bottom=0.15)
    return fig


def edge_maps(three: np.ndarray, kernels: dict, conv2d):
    """The digit and its feature map for each kernel."""
    plt = _plt()
    img = three / 255
    fig, axs = plt.subplots(1, len(kernels) + 1, figsize=(12, 2.9), layout="constrained")
    axs[0].imshow(img, cmap="Greys", vmin=0, vmax=1)
    axs[0].set_title("input 28×28", fontsize=10)
    for ax, (name, k) in zip(axs[1:], kernels.items(), strict=True):
        fmap = conv2d(img, k)
        lim = np.abs(fmap).max() or 1
        ax.imshow(fmap, cmap="gray", vmin=-lim, vmax=lim)
        ax.set_title(f"{name} edge → {fmap.shape[0]}×{fmap.shape[1]}", fontsize=10)
    for ax in axs:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def batch_features(images: tuple[np.ndarray, ...], kernels: dict, conv2d):
    """A grid: one row per image (input first), one column per kernel."""
    plt = _plt()
    n, k = len(images), len(kernels)
    fig, axs = plt.subplots(n, k + 1, figsize=(1.9 * (k + 1), 1.9 * n), layout="constrained")
    for i, img in enumerate(images):
        axs[i, 0].imshow(img, cmap="Greys", vmin=0, vmax=1)
        for j, (name, ker) in enumerate(kernels.items()):
            fmap = conv2d(img, ker)
            lim = np.abs(fmap).max() or 1
            axs[i, j + 1].imshow(fmap, cmap="gray", vmin=-lim, vmax=lim)
            if i == 0:
                axs[i, j + 1].set_title(f"kernel {j}: {name}", fontsize=9)
        if i == 0:
            axs[i, 0].set_title("image", fontsize=9)
    for ax in axs.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"input ({n}, 1, 28, 28), weight ({k}, 1, 3, 3) → output ({n}, {k}, 26, 26)", fontsize=10)
    return fig


def padding_stride():
    """Three panels: (n, ks, stride, padding) → output size, with the windows of the first two outputs."""
    from matplotlib.patches import Rectangle

    plt = _plt()
    configs = [(5, 3, 1, 0), (5, 3, 1, 1), (5, 3, 2, 1)]
    fig, axs = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, (n, ks, stride, pad) in zip(axs, configs, strict=True):
        size = n + 2 * pad
        out = (n + 2 * pad - ks) // stride + 1
        cells = [
            [("#eeeeee" if min(r, c) < pad or max(r, c) >= pad + n else "white") for c in range(size)]
            for r in range(size)
        ]
        vals = [["0" if cells[r][c] == "#eeeeee" else "" for c in range(size)] for r in range(size)]
        _grid(ax, vals, colors=cells, fontsize=8, edge=GREY)
        for k, color in enumerate((BLUE, ORANGE)):
            c = k * stride
            ax.add_patch(
                Rectangle(
                    (c + 0.08, size - ks + 0.08), ks - 0.16, ks - 0.16, fill=False, edgecolor=color, linewidth=2.5
                )
            )
        # output grid, drawn to the right of the input, one cell = one kernel position
        off = size + 1.2
        for r in range(out):
            for c in range(out):
                face = BLUE if (r, c) == (0, 0) else ORANGE if (r, c) == (0, 1) else "#e8eaf6"
                ax.add_patch(
                    Rectangle(
                        (off + c * 0.8, size - (r + 1) * 0.8),
                        0.8,
                        0.8,
                        facecolor=face,
                        edgecolor="#616161",
                        linewidth=0.8,
                    )
                )
        ax.set_xlim(-0.1, off + max(out, 3) * 0.8 + 0.1)
        ax.set_ylim(-1.8, size + 0.1)
        ax.text(
            (off + max(out, 3) * 0.8) / 2,
            -0.9,
            f"n={n}, ks={ks}, stride={stride}, padding={pad}\n({n} + 2·{pad} − {ks}) // {stride} + 1 = {out}",
            ha="center",
            va="center",
            fontsize=9,
        )
    return fig


def conv_matmul():
    """Image A..J, kernel α..δ, outputs P..S, and the 4×9 weight matrix with fixed zeros and tied weights."""
    plt = _plt()
    image = np.array([["A", "B", "C"], ["D", "E", "F"], ["G", "H", "J"]])
    kernel = np.array([["α", "β"], ["γ", "δ"]])
    weight_color = {"α": "#c5cae9", "β": "#ffe0b2", "γ": "#c8e6c9", "δ": "#f8bbd0"}
    rows, names = [], "PQRS"
    for r0 in range(2):
        for c0 in range(2):
            row = [""] * 9
            for i in range(2):
                for j in range(2):
                    row[(r0 + i) * 3 + c0 + j] = kernel[i, j]
            rows.append(row)
    fig = plt.figure(figsize=(12, 3.8))
    gs = fig.add_gridspec(1, 5, width_ratios=[3, 2, 9, 1.2, 1.4])
    a = fig.add_subplot(gs[0])
    _grid(a, image, fontsize=12)
    a.set_title("image", fontsize=10)
    b = fig.add_subplot(gs[1])
    _grid(b, kernel, colors=[[weight_color[v] for v in row] for row in kernel], fontsize=12)
    b.set_title("kernel", fontsize=10)
    m = fig.add_subplot(gs[2])
    colors = [[weight_color.get(v, "#e0e0e0") for v in row] for row in rows]
    _grid(m, [[v or "0" for v in row] for row in rows], colors=colors, fontsize=11)
    m.text(
        4.5,
        -0.7,
        "weight matrix (4×9)\ngrey zeros never train; equal colours are one shared weight",
        ha="center",
        va="center",
        fontsize=10,
    )
    m.set_ylim(-1.3, 4.8)
    for r, name in enumerate(names):
        m.text(-0.4, 3.5 - r, name, ha="right", va="center", fontsize=11, color=BLUE)
    for c, v in enumerate(image.ravel()):
        m.text(c + 0.5, 4.15, v, ha="center", va="bottom", fontsize=9, color="#616161")
    x = fig.add_subplot(gs[3])
    _grid(x, image.reshape(9, 1), fontsize=9)
    x.set_title("image\nflattened", fontsize=9)
    o = fig.add_subplot(gs[4])
    _grid(o, np.array(list(names)).reshape(4, 1), colors=[["#e8eaf6"]] * 4, fontsize=11)
    o.set_title("output\n(+ bias b)", fontsize=9)
    return fig


def receptive_field_figure(three: np.ndarray, kernel: np.ndarray, conv2d):
    """Input → conv1 (stride 2) → conv2 (stride 2) with the area behind one conv2 activation highlighted."""
    from matplotlib.patches import Rectangle

    plt = _plt()
    img = three / 255
    c1 = np.maximum(conv2d(img, kernel, stride=2, padding=1), 0)  # (14, 14)
    c2 = np.maximum(conv2d(c1, kernel, stride=2, padding=1), 0)  # (7, 7)
    r2 = 3  # the conv2 activation at (3, 3)
    r1 = (2 * r2 - 1, 2 * r2 + 1)  # conv1 rows/cols it reads: 5..7
    r0 = (2 * r1[0] - 1, 2 * r1[1] + 1)  # input rows/cols behind those: 9..15
    fig, axs = plt.subplots(1, 3, figsize=(11, 3.9), layout="constrained")
    for ax, data, (lo, hi), title in (
        (axs[0], img, r0, f"input 28×28: {r0[1] - r0[0] + 1}×{r0[1] - r0[0] + 1} area"),
        (axs[1], c1, r1, f"conv1 14×14: {r1[1] - r1[0] + 1}×{r1[1] - r1[0] + 1} area"),
        (axs[2], c2, (r2, r2), "conv2 7×7: one activation"),
    ):
        ax.imshow(data, cmap="Greys")
        ax.add_patch(
            Rectangle((lo - 0.5, lo - 0.5), hi - lo + 1, hi - lo + 1, fill=False, edgecolor=RED, linewidth=2.5)
        )
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def learned_kernels(image: np.ndarray, weight: np.ndarray, bias: np.ndarray, conv2d, stride: int, padding: int):
    """A trained first layer: each kernel (red positive, blue negative) above its output on one image."""
    plt = _plt()
    k = len(weight)
    fig, axs = plt.subplots(2, k + 1, figsize=(1.45 * (k + 1), 3.2), layout="constrained")
    axs[0, 0].imshow(image, cmap="Greys")
    axs[0, 0].set_title("input", fontsize=9)
    axs[1, 0].axis("off")
    lim = np.abs(weight).max()
    for j in range(k):
        axs[0, j + 1].imshow(weight[j], cmap="RdBu_r", vmin=-lim, vmax=lim)
        axs[0, j + 1].set_title(f"kernel {j}", fontsize=9)
        fmap = conv2d(image, weight[j], stride, padding) + bias[j]  # (H_out, W_out)
        m = np.abs(fmap).max() or 1
        axs[1, j + 1].imshow(fmap, cmap="gray", vmin=-m, vmax=m)
        axs[1, j + 1].set_title(f"{fmap.shape[0]}×{fmap.shape[1]}", fontsize=8)
    for ax in axs.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def bear_channels(photo: np.ndarray):
    """The photo, then 255 minus each channel in Reds, Greens, Blues."""
    plt = _plt()
    fig, axs = plt.subplots(1, 4, figsize=(12, 2.6), layout="constrained")
    axs[0].imshow(photo)
    axs[0].set_title(f"photo, tensor (3, {photo.shape[0]}, {photo.shape[1]}) here", fontsize=9)
    for ax, ch, (name, cmap) in zip(
        axs[1:], range(3), (("red", "Reds"), ("green", "Greens"), ("blue", "Blues")), strict=True
    ):
        ax.imshow(255 - photo[..., ch], cmap=cmap)
        ax.set_title(f"channel {ch}: {name}", fontsize=9)
    for ax in axs:
        ax.axis("off")
    return fig


def _busiest_patch(photo: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the size×size patch (on a coarse grid) whose brightness varies most."""
    grey = photo.astype(float).mean(axis=2)
    h, w = grey.shape
    corners = [(r, c) for r in range(0, h - size, size) for c in range(0, w - size, size)]
    return max(corners, key=lambda rc: grey[rc[0] : rc[0] + size, rc[1] : rc[1] + size].std())


def color_conv_figure(photo: np.ndarray, kernels: dict, conv2d):
    """A 6×6 patch per channel, a kernel per channel, the per-channel maps and their sum."""
    plt = _plt()
    r, c = _busiest_patch(photo, 6)
    patch = photo[r : r + 6, c : c + 6].astype(float) / 255  # (6, 6, 3)
    chosen = (kernels["top"], kernels["left"], np.ones((3, 3)) / 9)
    names = ("top edge on red", "left edge on green", "mean on blue")
    maps = [conv2d(patch[..., c], chosen[c]) for c in range(3)]
    bias = 0.1
    total = sum(maps) + bias
    fig, axs = plt.subplots(3, 4, figsize=(12, 7.2), gridspec_kw={"width_ratios": [6, 3, 4, 4]})
    tints = ("#ffcdd2", "#c8e6c9", "#bbdefb")
    for c in range(3):
        _grid(axs[c, 0], np.round(patch[..., c], 2), fmt="{:.2f}", colors=[[tints[c]] * 6] * 6, fontsize=7)
        axs[c, 0].set_title(f"channel {c} patch", fontsize=9)
        _grid(axs[c, 1], np.round(chosen[c], 2), fmt="{:.2g}", fontsize=8)
        axs[c, 1].set_title(names[c], fontsize=9)
        _grid(axs[c, 2], np.round(maps[c], 2), fmt="{:.2f}", fontsize=8)
        axs[c, 2].set_title(f"channel {c} result 4×4", fontsize=9)
        axs[c, 3].axis("off")
    _grid(axs[1, 3], np.round(total, 2), fmt="{:.2f}", colors=[["#fff3e0"] * 4] * 4, fontsize=8)
    axs[1, 3].set_title(f"sum of the three + bias {bias}", fontsize=9)
    fig.tight_layout()
    return fig


def digit_grid(images: np.ndarray, labels: np.ndarray):
    """A 3×3 grid of digits titled with their labels."""
    plt = _plt()
    fig, axs = plt.subplots(3, 3, figsize=(4, 4.3), layout="constrained")
    for ax, img, lab in zip(axs.ravel(), images, labels, strict=True):
        ax.imshow(img, cmap="Greys")
        ax.set_title(str(int(lab)), fontsize=10)
        ax.axis("off")
    return fig
