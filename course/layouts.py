"""MNIST as the folder layouts fastai users know, written once into the cache.

- ``mnist_png`` (``URLs.MNIST``): ``training/0..9/*.png``, ``testing/0..9/*.png``
- ``mnist_sample`` (``URLs.MNIST_SAMPLE``): ``train/3``, ``train/7``, ``valid/3``, ``valid/7``, ``labels.csv``

With these, the book's ``DataBlock(..., get_items=get_image_files, splitter=GrandparentSplitter(...))``
code runs unchanged. A layout is built in a ``*.partial-<pid>`` folder and renamed into place when
complete, so an interrupted run never leaves a half-written layout behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from course.data import (
    PNG_FOLDERS,
    DataIntegrityError,
    Mnist,
    bear_path,
    cache_dir,
    load_mnist,
    load_mnist_sample,
    read_mnist_png,
)
from course.files import atomic_dir

__all__ = ["LAYOUTS", "data_summary", "layout_path", "mnist_png_path", "mnist_sample_path", "verify_layout"]

LAYOUTS = ("mnist_png", "mnist_sample")
_MARKER = ".complete.json"


def _png_items(m: Mnist) -> Iterable[tuple[str, np.ndarray]]:
    for split, folder in PNG_FOLDERS.items():
        x, y = m._split(split)
        for i in range(len(y)):
            yield f"{folder}/{y[i]}/{i}.png", x[i]


def _sample_items(m: Mnist) -> Iterable[tuple[str, np.ndarray]]:
    s = load_mnist_sample(m.source)
    for split in ("train", "valid"):
        x, y, idx = getattr(s, f"x_{split}"), getattr(s, f"y_{split}"), getattr(s, f"idx_{split}")
        for img, label, i in zip(x, y, idx, strict=True):
            yield f"{split}/{s.vocab[label]}/{i}.png", img


def layout_path(
    name: str, dest: str | os.PathLike | None = None, progress: bool = True, source: str | os.PathLike | None = None
) -> Path:
    """Return the folder of layout ``name``, writing it first if it is not complete yet."""
    if name not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {name!r}")
    root = Path(dest).expanduser() if dest is not None else cache_dir() / name
    if (root / _MARKER).is_file():
        return root
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(
            f"{root} exists but was not written completely by `course data prepare`; "
            "delete it and run the command again."
        )
    m = load_mnist(source)
    items = list((_png_items if name == "mnist_png" else _sample_items)(m))
    with atomic_dir(root) as tmp:  # root is absent or empty here (checked above)
        _write_pngs(tmp, items, progress, desc=f"writing {name}")
        if name == "mnist_sample":
            rows = ["name,label"] + [f"{rel},{int(rel.split('/')[1] == '7')}" for rel, _ in items]
            (tmp / "labels.csv").write_text("\n".join(rows) + "\n")
        (tmp / _MARKER).write_text(json.dumps({"images": len(items), "source": m.source}, indent=1))
    return root


def _write_pngs(root: Path, items: list[tuple[str, np.ndarray]], progress: bool, desc: str) -> None:
    from tqdm.auto import tqdm

    for folder in sorted({rel.rsplit("/", 1)[0] for rel, _ in items}):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for rel, img in tqdm(items, desc=desc, unit="png", disable=not progress, mininterval=0.5):
        Image.fromarray(img, mode="L").save(root / rel, optimize=False)


def mnist_png_path(dest=None, progress: bool = True) -> Path:
    """fastai's ``mnist_png`` layout, as ``untar_data(URLs.MNIST)`` would give it."""
    return layout_path("mnist_png", dest, progress)


def mnist_sample_path(dest=None, progress: bool = True) -> Path:
    """fastai's ``mnist_sample`` layout, as ``untar_data(URLs.MNIST_SAMPLE)`` would give it."""
    return layout_path("mnist_sample", dest, progress)


def data_summary(verify_layouts: bool = False) -> dict:
    """Load and verify MNIST, MNIST_SAMPLE and the photo; describe them (and optionally check the PNG layouts)."""
    m = load_mnist()
    s = load_mnist_sample()
    with Image.open(bear_path()) as im:
        bear = f"{bear_path()} ({im.mode} {im.width}x{im.height})"
    out = {
        "MNIST source": m.source,
        "MNIST": f"{len(m.y_train):,} train / {len(m.y_test):,} test, digit counts verified",
        "MNIST_SAMPLE": f"{len(s.y_train):,} train / {len(s.y_valid):,} valid (3s and 7s)",
        "train pixel mean/std": "{:.4f} / {:.4f}".format(*(f(m.x_train / 255) for f in (np.mean, np.std))),
        "colour photo": bear,
        "cache": str(cache_dir()),
    }
    for name in LAYOUTS:
        root = cache_dir() / name
        done = (root / ".complete.json").is_file()
        out[f"layout {name}"] = f"{root} ({'ready' if done else 'not written yet: run `course data prepare`'})"
        if verify_layouts and done:
            verify_layout(name, layout_path(name), m)
            out[f"layout {name}"] = f"{root} (every PNG decodes pixel-identical to the arrays)"
    return out


def verify_layout(name: str, root: Path, m: Mnist) -> None:
    """Raise DataIntegrityError unless every PNG of layout ``name`` at ``root`` decodes to the arrays of ``m``."""
    if name == "mnist_png":
        arrays = read_mnist_png(root)
        pairs = [(arrays["x_train"], m.x_train), (arrays["x_test"], m.x_test)]
    else:
        s = load_mnist_sample()
        pairs = []
        for split in ("train", "valid"):
            files = [
                root / split / s.vocab[lab] / f"{i}.png"
                for lab, i in zip(getattr(s, f"y_{split}"), getattr(s, f"idx_{split}"), strict=True)
            ]
            got = np.stack([np.asarray(Image.open(f)) for f in files])
            pairs.append((got, getattr(s, f"x_{split}")))
    for got, want in pairs:
        if got.shape != want.shape or not np.array_equal(got, want):
            raise DataIntegrityError(f"{root} does not match the MNIST arrays; delete it and run `course data prepare`")
