"""The site's figures, drawn at build time from data and reference artifacts (never pasted images).

Each :class:`FigureSpec` names its inputs (``"mnist"``, ``"bear"``, ``"ref:<file>"`` for a required
reference artifact, ``"opt:<file>"`` for an optional one). :func:`render_all` draws every figure whose
required inputs exist into a :class:`~course.site.cache.FigureCache`, keyed by the code and the
inputs' content hashes, and reports the ones it could not draw with the command that makes their input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from course.files import file_sha256, files_sha256
from course.reference import CHAPTER_RUNS, REFERENCE_COMMAND, reference_dir
from course.site import diagrams, runs
from course.site.cache import FigureCache

__all__ = ["FIGURES", "FigureSpec", "Missing", "Rendered", "Sources", "code_digest", "render_all"]

log = logging.getLogger("mkdocs.hooks.course_site")

#: The MNIST training image the chapter calls "the 3" (MNIST_SAMPLE's train/3/12.png).
DIGIT_THREE = 12
#: The reference run whose first layer the site shows: the final model (batch norm, 5 epochs of 1cycle).
FIRST_LAYER_RUN = "weights/r6_final.pt"

KERNELS = {
    "top": np.array([[-1, -1, -1], [0, 0, 0], [1, 1, 1]], dtype=float),
    "left": np.array([[-1, 1, 0], [-1, 1, 0], [-1, 1, 0]], dtype=float),
    "diag1": np.array([[0, -1, 1], [-1, 1, 0], [1, 0, 0]], dtype=float),
    "diag2": np.array([[1, -1, 0], [0, 1, -1], [0, 0, 1]], dtype=float),
}


def feature_map(img: np.ndarray, kernel: np.ndarray, stride: int = 1, padding: int = 0) -> np.ndarray:
    """A 2-D image's feature map under one square kernel, computed by ``F.conv2d`` (in float64)."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.asarray(img, dtype=np.float64))[None, None]  # (1, 1, H, W)
    w = torch.as_tensor(np.asarray(kernel, dtype=np.float64))[None, None]  # (1, 1, ks, ks)
    return F.conv2d(x, w, stride=stride, padding=padding)[0, 0].numpy()  # (H_out, W_out)


class Sources:
    """Lazy access to the figures' inputs, with a content digest for each (None when missing)."""

    def __init__(self, repo_root: str | Path) -> None:
        self.repo_root = Path(repo_root)
        self.reference = reference_dir(self.repo_root)
        self._digests: dict[str, str | None] = {}
        self._why: dict[str, str] = {}
        self._mnist = None

    def digest(self, need: str) -> str | None:
        """Content digest of an input, or None (and a reason in :meth:`why`) when it is missing."""
        if need not in self._digests:
            self._digests[need] = self._compute_digest(need)
        return self._digests[need]

    def why(self, need: str) -> str:
        """Why an input is missing and what to run."""
        return self._why.get(need, "")

    def _compute_digest(self, need: str) -> str | None:
        kind, _, name = need.partition(":")
        if kind == "mnist":
            from course.data import DataIntegrityError, DataNotFoundError, locate_mnist

            try:
                src = locate_mnist()
            except (DataNotFoundError, DataIntegrityError) as exc:
                self._why[need] = str(exc)
                return None
            return file_sha256(src) if src.is_file() else f"{src}:{src.stat().st_mtime_ns}"
        if kind == "bear":
            from course.data import bear_path

            return file_sha256(bear_path())
        if kind in ("ref", "opt"):
            path = self.reference / name
            if path.is_file():
                return file_sha256(path)
            self._why[need] = f"`{self._rel(path)}` is not in this checkout; `{REFERENCE_COMMAND}` writes it"
            return None if kind == "ref" else "absent"
        raise ValueError(f"unknown figure input {need!r} (use mnist, bear, ref:<file> or opt:<file>)")

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.repo_root).as_posix()
        except ValueError:
            return path.name

    def mnist(self):
        """Full MNIST (uint8 arrays), loaded once."""
        if self._mnist is None:
            from course.data import load_mnist

            self._mnist = load_mnist()
        return self._mnist

    def three(self) -> np.ndarray:
        """The chapter's "3" as a (28, 28) int array of 0..255 pixels."""
        return self.mnist().x_train[DIGIT_THREE].astype(int)

    def bear(self, width: int = 360) -> np.ndarray:
        """The colour photo as an (H, W, 3) uint8 array, shrunk to ``width`` pixels."""
        from PIL import Image

        from course.data import bear_path

        with Image.open(bear_path()) as im:
            im = im.convert("RGB")
            return np.asarray(im.resize((width, round(im.height * width / im.width)), Image.LANCZOS))

    def artifact(self, name: str) -> Path | None:
        path = self.reference / name
        return path if path.is_file() else None


@dataclass(frozen=True)
class FigureSpec:
    """A figure: its name (file ``figures/<name>.svg``), caption, inputs and drawing function."""

    name: str
    caption: str
    draw: Callable[[Sources], object]
    needs: tuple[str, ...] = ()
    fmt: str = "svg"  # "png" for photo-heavy figures, which are smaller as one bitmap

    @property
    def src_uri(self) -> str:
        return f"figures/{self.name}.{self.fmt}"


@dataclass(frozen=True)
class Rendered:
    spec: FigureSpec
    path: Path


@dataclass(frozen=True)
class Missing:
    spec: FigureSpec
    reasons: tuple[str, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------------------------------------- drawings


def _stats_figure(run: str, idx: int, title: str, kind: str = "stats") -> Callable[[Sources], object]:
    def draw(src: Sources):
        stats = runs.load_activation_stats(src.artifact(f"stats/{run}.npz"))
        if kind == "stats":
            return runs.layer_stats_figure(stats, idx, title)
        return runs.color_dim_figure(stats, idx, title)

    return draw


def _learned_kernels(src: Sources):
    """The final reference model's first convolution, applied to the "3" as the model sees it (normalized)."""
    import torch

    state = torch.load(src.artifact(FIRST_LAYER_RUN), map_location="cpu", weights_only=True)
    weight = state["0.0.weight"][:, 0].double().numpy()  # (C_out, ks, ks)
    bias = state["0.0.bias"].double().numpy()  # (C_out,)
    train = src.mnist().x_train / 255
    image = (src.three() / 255 - train.mean()) / train.std()  # mnist_dls's normalization
    ks = weight.shape[-1]
    return diagrams.learned_kernels(image, weight, bias, feature_map, stride=2, padding=ks // 2)


def _schedule(src: Sources):
    path = src.artifact("traces.npz")
    return runs.plot_schedule(117, 0.06, runs.load_schedule(path, "r4_one_cycle") if path else None)


def _stats_spec(name: str, run: str, idx: int, caption: str, kind: str = "stats") -> FigureSpec:
    title = f"{CHAPTER_RUNS[run].label}: {CHAPTER_RUNS[run].setup.replace('`', '')}"
    return FigureSpec(name, caption, _stats_figure(run, idx, title, kind), (f"ref:stats/{run}.npz",))


FIGURES: dict[str, FigureSpec] = {
    f.name: f
    for f in (
        FigureSpec(
            "kernel_one_location",
            "A 3×3 kernel (red weights 0.1 to 0.9) over the 3×3 block centred on cell 18 of a 7×7 grid: "
            "nine products, one sum.",
            lambda s: diagrams.kernel_one_location(),
        ),
        FigureSpec(
            "digit_windows",
            'The chapter\'s "3" (MNIST training image 12) and the top-edge kernel applied to three 3×3 windows.',
            lambda s: diagrams.digit_windows(s.three(), KERNELS["top"]),
            ("mnist",),
        ),
        FigureSpec(
            "edge_maps",
            'The four edge kernels mapped over the "3": each 3×3 kernel turns the 28×28 image into a 26×26 '
            "feature map. Light is a positive response, dark a negative one, mid-grey zero.",
            lambda s: diagrams.edge_maps(s.three(), KERNELS, feature_map),
            ("mnist",),
        ),
        FigureSpec(
            "batch_features",
            "One call, many images and kernels: three validation digits (rows) times the four edge kernels "
            "(columns), the (3, 4, 26, 26) output of a single batched convolution.",
            lambda s: diagrams.batch_features(_sample_valid(s), KERNELS, feature_map),
            ("mnist",),
        ),
        FigureSpec(
            "padding_stride",
            "Output sizes from the formula: a 3×3 kernel on a 5×5 input without padding, with one ring of zero "
            "padding, and with padding and stride 2. The first two output cells and their windows share colours.",
            lambda s: diagrams.padding_stride(),
        ),
        FigureSpec(
            "conv_matmul",
            "A 2×2 kernel over a 3×3 image is a 4×9 matrix times the flattened image: grey cells are zeros "
            "that never train, and the same four weights repeat in every row.",
            lambda s: diagrams.conv_matmul(),
        ),
        FigureSpec(
            "receptive_field",
            'Two stride-2 3×3 convolutions (padding 1) on the "3": one activation of the second layer (right) '
            "reads a 3×3 patch of the first layer (middle), which reads a 7×7 patch of the image (left).",
            lambda s: diagrams.receptive_field_figure(s.three(), KERNELS["top"], feature_map),
            ("mnist",),
        ),
        FigureSpec(
            "learned_kernels",
            "What training made of random kernels: the eight 5×5 kernels of the first layer of the course's "
            "final reference model (all ten digits, batch norm, five epochs of 1cycle), red positive and blue "
            'negative, and below each its 14×14 output for the "3", before batch norm and ReLU (light '
            "positive, dark negative). Several have become edge detectors, each for its own direction.",
            _learned_kernels,
            ("mnist", f"ref:{FIRST_LAYER_RUN}"),
        ),
        FigureSpec(
            "bear_channels",
            "The colour photo and its red, green and blue channels, each in its own colour: light where the "
            "channel is strong, as the snow and the bear are in all three, deep where it is weak.",
            lambda s: diagrams.bear_channels(s.bear()),
            ("bear",),
            fmt="png",
        ),
        FigureSpec(
            "color_conv",
            "One filter over a colour image: each channel of a 6×6 patch of the photo has its own 3×3 kernel; "
            "the three 4×4 results are added (plus one bias) into a single output map.",
            lambda s: diagrams.color_conv_figure(s.bear(width=360), KERNELS, feature_map),
            ("bear",),
        ),
        FigureSpec(
            "mnist_batch",
            "Nine training images of full MNIST with their labels.",
            lambda s: diagrams.digit_grid(s.mnist().x_train[:9], s.mnist().y_train[:9]),
            ("mnist",),
        ),
        FigureSpec(
            "one_cycle_schedule",
            "fastai's 1cycle schedule for one epoch of 117 batches (batch size 512) with `lr_max` 0.06: "
            "the learning rate warms up from 0.0024 along a cosine to 0.06 at a quarter of the batches, then "
            "anneals to 6e-7; momentum moves the other way, 0.95 → 0.85 → 0.95.",
            _schedule,
            ("opt:traces.npz",),
        ),
        _stats_spec(
            "stats_baseline_first",
            "r2_constant_bs64",
            0,
            "Activations of the first convolution in the baseline run (constant learning rate 0.06, batch size 64).",
        ),
        _stats_spec(
            "stats_baseline_penultimate",
            "r2_constant_bs64",
            -2,
            "The penultimate convolution of the same run; in the book's run nearly all its activations end near zero.",
        ),
        _stats_spec(
            "stats_bs512_penultimate",
            "r3_constant_bs512",
            -2,
            "The penultimate convolution at batch size 512, same constant learning rate "
            "(in the book's run it died as at batch size 64).",
        ),
        _stats_spec(
            "stats_one_cycle_penultimate",
            "r4_one_cycle",
            -2,
            "The penultimate convolution with 1cycle (`lr_max` 0.06, batch size 512).",
        ),
        _stats_spec(
            "color_dim_one_cycle",
            "r4_one_cycle",
            -2,
            "The colourful dimension of the 1cycle run (penultimate convolution): one histogram column per batch, "
            "bright where many activations fall. Look for rises and collapses early in training.",
            kind="color_dim",
        ),
        _stats_spec(
            "color_dim_batchnorm",
            "r5_batchnorm",
            -4,
            "The same picture with batch normalization (the fourth hooked layer from the end).",
            kind="color_dim",
        ),
    )
}


def _sample_valid(src: Sources) -> tuple[np.ndarray, ...]:
    """The first three 3s-and-7s of MNIST's test split (MNIST_SAMPLE's validation set)."""
    m = src.mnist()
    idx = np.flatnonzero(np.isin(m.y_test, (3, 7)))[:3]
    return tuple(m.x_test[i].astype(float) / 255 for i in idx)


# ---------------------------------------------------------------------------------------------- rendering


def code_digest() -> str:
    """Digest of the code that draws figures: editing it redraws everything."""
    here = Path(__file__).parent
    code = [here / "figures.py", here / "diagrams.py", here / "runs.py", here.parent / "reference.py"]
    return files_sha256(sorted(code))


def _save(fig, path: Path, fmt: str) -> None:
    import matplotlib.pyplot as plt

    meta = {"Date": None, "Creator": None} if fmt == "svg" else {"Software": None}
    fig.savefig(path, format=fmt, metadata=meta, facecolor="white", dpi=110, bbox_inches="tight", pad_inches=0.08)
    plt.close(fig)


def render_all(sources: Sources, cache: FigureCache, specs=None) -> dict[str, Rendered | Missing]:
    """Draw (or reuse) every figure; a figure whose required inputs are missing becomes a :class:`Missing`."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    matplotlib.rcParams.update({"svg.hashsalt": "course-site", "svg.fonttype": "path", "font.size": 10})
    out: dict[str, Rendered | Missing] = {}
    for spec in (specs or FIGURES).values():
        digests = [(need, sources.digest(need)) for need in spec.needs]
        lacking = tuple(sources.why(need) for need, d in digests if d is None)
        if lacking:
            out[spec.name] = Missing(spec, lacking)
            log.info("figure %s not drawn: %s", spec.name, "; ".join(lacking))
            continue
        path = cache.get_or_make(
            spec.name, [d for _, d in digests], lambda tmp, s=spec: _save(s.draw(sources), tmp, s.fmt), f".{spec.fmt}"
        )
        out[spec.name] = Rendered(spec, path)
    return out
