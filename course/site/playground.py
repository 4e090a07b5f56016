"""The playground page's inputs and its oracle.

:func:`payload` picks what the page works on: four MNIST digits (the chapter's "3" first) and a small
crop of the colour photo, as 0..255 integers. :func:`marker_html` puts them inline in the page (a data
attribute: the page must work from ``file://``, where nothing can be fetched). :func:`cases` computes,
with ``F.conv2d``, what the widget must show for a set of settings; the build writes them to
``CASES_URI`` and the browser test drives the widget through each one.
"""

from __future__ import annotations

import html
import json
from itertools import product

import numpy as np

from course.site import figures

__all__ = ["CASES_URI", "PHOTO_BOX", "PHOTO_SIZE", "cases", "cases_json", "marker_html", "payload"]

#: Where the build puts the test cases (not linked from any page; the browser test reads it).
CASES_URI = "assets/playground-cases.json"
#: The crop of the 1024×768 photo that holds the bear (left, top, right, bottom), 4:3 like the photo.
PHOTO_BOX = (128, 192, 896, 768)
#: (W, H) of the crop on the page: small enough to read every pixel's value.
PHOTO_SIZE = (32, 24)
#: Seed of the test cases' kernels and biases.
CASE_SEED = 13


def payload(src: figures.Sources) -> dict:
    """The digits and the photo crop the page works on, as JSON-ready lists of 0..255 integers."""
    m = src.mnist()
    picks = [figures.DIGIT_THREE] + [int(np.flatnonzero(m.y_train == d)[0]) for d in (7, 0, 4)]
    digits = [{"label": int(m.y_train[i]), "index": i, "pixels": m.x_train[i].astype(int).tolist()} for i in picks]
    return {"digits": digits, "photo": {"box": list(PHOTO_BOX), "channels": _photo_channels().tolist()}}


def _photo_channels() -> np.ndarray:
    """The photo crop as a (3, H, W) int array, channels first as PyTorch keeps them."""
    from PIL import Image

    from course.data import bear_path

    with Image.open(bear_path()) as im:
        crop = im.convert("RGB").crop(PHOTO_BOX).resize(PHOTO_SIZE, Image.LANCZOS)
    return np.asarray(crop, dtype=int).transpose(2, 0, 1)  # (3, H, W)


def marker_html(src: figures.Sources) -> str:
    """What replaces ``<!-- playground-data -->``: the data inline, or a note naming what is missing."""
    if src.digest("mnist") is None:
        return f'!!! note figure-missing "No digits to play with"\n\n    {src.why("mnist")}\n'
    data = html.escape(json.dumps(payload(src), separators=(",", ":")), quote=True)
    # a data attribute, not a <script>: instant navigation does not carry JSON script elements over
    return f'<div id="playground-data" hidden data-playground="{data}"></div>\n'


# ---------------------------------------------------------------------------------------------- the oracle


def torch_conv2d(channels: np.ndarray, kernels: np.ndarray, bias: float, stride: int, padding: int) -> np.ndarray:
    """One output channel of ``F.conv2d`` (float64): (C_in, H, W) input, (C_in, ks, ks) kernels."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.asarray(channels, dtype=np.float64))[None]  # (1, C_in, H, W)
    w = torch.as_tensor(np.asarray(kernels, dtype=np.float64))[None]  # (1, C_in, ks, ks)
    b = torch.tensor([float(bias)], dtype=torch.float64)  # (C_out,) = (1,)
    return F.conv2d(x, w, b, stride=stride, padding=padding)[0, 0].numpy()  # (H_out, W_out)


def cases(data: dict) -> list[dict]:
    """Every kernel size, stride and padding, on the "3" and on the photo, with F.conv2d's answer.

    Kernels have two decimals (what a person types); the pixel scale alternates between 0..255 and 0..1.
    """
    rng = np.random.default_rng(CASE_SEED)
    sources = {"digit0": np.asarray(data["digits"][0]["pixels"])[None], "photo": np.asarray(data["photo"]["channels"])}
    out = []
    for k, (source, ks, stride, padding) in enumerate(product(sources, (3, 5), (1, 2), (0, 1))):
        pixels = sources[source]  # (C_in, H, W), 0..255
        scale = 255 if k % 2 == 0 else 1
        kernels = np.round(rng.uniform(-1, 1, size=(pixels.shape[0], ks, ks)), 2)
        bias = round(float(rng.uniform(-1, 1)), 2) if k % 3 else 0.0
        expected = torch_conv2d(pixels / (255 / scale), kernels, bias, stride, padding)
        out.append(
            {
                "source": source,
                "ks": ks,
                "stride": stride,
                "padding": padding,
                "scale": scale,
                "bias": bias,
                "kernels": kernels.tolist(),
                "expected": expected.tolist(),
            }
        )
    return out


def cases_json(src: figures.Sources) -> str:
    """The test cases as the JSON file the build writes to ``CASES_URI`` (no cases without MNIST)."""
    found = src.digest("mnist") is not None
    return json.dumps({"oracle": "torch.nn.functional.conv2d (float64)", "cases": cases(payload(src)) if found else []})
