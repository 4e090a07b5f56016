"""Where the course's data comes from: MNIST, MNIST_SAMPLE and a colour photo.

Lookup order for MNIST (first hit wins):

1. an explicit ``path`` argument, then the ``COURSE_DATA`` environment variable: an ``mnist.npz``
   file, a folder holding one, or a fastai ``mnist_png`` folder (``training/``, ``testing/``);
2. arrays this package cached earlier (``$COURSE_CACHE/mnist.npz``);
3. fastai's own data folder (``~/.fastai/data/mnist_png`` after ``untar_data(URLs.MNIST)``);
4. fastai's normal download, ``untar_data(URLs.MNIST)``, unless ``COURSE_OFFLINE=1``.

Every source is verified (keys, shapes, dtypes, per-digit label counts) before use, so a
truncated or foreign file fails loudly instead of training on wrong data.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from course.files import atomic_path

__all__ = [
    "ENV_CACHE",
    "ENV_DATA",
    "ENV_OFFLINE",
    "MNIST_TEST_COUNTS",
    "MNIST_TRAIN_COUNTS",
    "PNG_FOLDERS",
    "DataIntegrityError",
    "DataNotFoundError",
    "Mnist",
    "MnistSample",
    "bear_path",
    "cache_dir",
    "load_mnist",
    "load_mnist_sample",
    "locate_mnist",
    "read_mnist_png",
]

ENV_DATA = "COURSE_DATA"
ENV_CACHE = "COURSE_CACHE"
ENV_OFFLINE = "COURSE_OFFLINE"

#: Images per digit 0..9 in MNIST's published train (60,000) and test (10,000) splits.
MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
SAMPLE_DIGITS = (3, 7)
PNG_FOLDERS = {"train": "training", "test": "testing"}  # split -> folder of fastai's mnist_png
_KEYS = ("x_train", "y_train", "x_test", "y_test")
_HOW_TO_FIX = (
    f"set {ENV_DATA}=/path/to/mnist.npz (or a folder holding mnist.npz or fastai's mnist_png), "
    "or go online and run `course data prepare`"
)


class DataNotFoundError(FileNotFoundError):
    """No usable copy of a data set could be found or downloaded."""


class DataIntegrityError(ValueError):
    """A data file exists but is damaged or is not what it claims to be."""


@dataclass(frozen=True)
class Mnist:
    """Full MNIST as uint8 arrays: images (N, 28, 28), labels (N,), in the original order."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def tensors(self, split: str = "train", dtype: str = "uint8"):
        """Images as a torch tensor (N, 1, 28, 28) — uint8, or float in [0, 1] — and int64 labels."""
        return _as_tensors(*self._split(split), dtype)

    def _split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)


@dataclass(frozen=True)
class MnistSample:
    """fastai's MNIST_SAMPLE: every 3 and 7 of MNIST; label 0 is a 3, label 1 is a 7.

    ``idx_*`` are the images' positions in MNIST's train (for ``train``) and test (for ``valid``) splits.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    idx_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    idx_valid: np.ndarray
    vocab: tuple[str, ...] = ("3", "7")

    def tensors(self, split: str = "train", dtype: str = "uint8"):
        """Images as a torch tensor (N, 1, 28, 28) — uint8, or float in [0, 1] — and int64 labels."""
        if split not in ("train", "valid"):
            raise ValueError(f"split must be 'train' or 'valid', got {split!r}")
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_valid, self.y_valid)
        return _as_tensors(x, y, dtype)


def _as_tensors(x: np.ndarray, y: np.ndarray, dtype: str):
    import torch

    if dtype not in ("uint8", "float"):
        raise ValueError(f"dtype must be 'uint8' or 'float', got {dtype!r}")
    xt = torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1)  # (N, 1, 28, 28)
    if dtype == "float":
        xt = xt.float() / 255
    return xt, torch.from_numpy(y.astype(np.int64))


def cache_dir() -> Path:
    """The folder where prepared layouts and decoded arrays are written ($COURSE_CACHE)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deep-dive-convolutions"


def fastai_data_dir() -> Path:
    """fastai's data folder (where `untar_data` extracts), read from fastai's config."""
    from fastai.data.external import fastai_cfg

    return Path(fastai_cfg().path("data"))


def locate_mnist(path: str | os.PathLike | None = None) -> Path:
    """Return the first existing MNIST source (npz file or mnist_png folder), in the documented order."""
    if path is None:
        path = os.environ.get(ENV_DATA) or None
        origin = f"${ENV_DATA}"
    else:
        origin = "the path given"
    if path is not None:
        found = _mnist_in(Path(path).expanduser())
        if found is None:
            raise DataNotFoundError(
                f"{origin} = {str(path)!r} holds no MNIST: expected an mnist.npz file, a folder holding "
                f"mnist.npz, or fastai's mnist_png folder (training/ and testing/). Fix: {_HOW_TO_FIX}."
            )
        return found
    for candidate in (cache_dir() / "mnist.npz", fastai_data_dir() / "mnist_png"):
        if _mnist_in(candidate) is not None:
            return candidate
    return _download_mnist()


def _mnist_in(p: Path) -> Path | None:
    if p.is_file():
        return p
    if (p / "mnist.npz").is_file():
        return p / "mnist.npz"
    for folder in (p, p / "mnist_png"):
        if (folder / "training").is_dir() and (folder / "testing").is_dir():
            return folder
    return None


def _download_mnist() -> Path:
    if os.environ.get(ENV_OFFLINE, "").lower() in ("1", "true", "yes"):
        raise DataNotFoundError(
            f"MNIST not found and {ENV_OFFLINE} is set, so nothing was downloaded. Fix: {_HOW_TO_FIX}."
        )
    from fastai.data.external import URLs, untar_data

    try:
        return Path(untar_data(URLs.MNIST))
    except Exception as exc:  # network errors come in many types (URLError, OSError, HTTPError, ...)
        raise DataNotFoundError(
            f"MNIST not found locally and fastai's download of {URLs.MNIST} failed ({exc}). Fix: {_HOW_TO_FIX}."
        ) from exc


def load_mnist(path: str | os.PathLike | None = None) -> Mnist:
    """Load and verify full MNIST (60,000 train / 10,000 test) from the first source found."""
    src = locate_mnist(path)
    return _load_verified(str(src.resolve()), src.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _load_verified(src: str, _mtime: int) -> Mnist:
    p = Path(src)
    arrays = _read_npz(p) if p.is_file() else _read_png_tree_cached(p)
    verify_mnist_arrays(arrays, src)
    return Mnist(**arrays, source=src)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            missing = [k for k in _KEYS if k not in z.files]
            if missing:
                raise DataIntegrityError(
                    f"{path} is not an MNIST npz: keys {missing} are missing (found {sorted(z.files)}). "
                    f"Fix: {_HOW_TO_FIX}."
                )
            return {k: z[k] for k in _KEYS}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, DataIntegrityError):
            raise
        raise DataIntegrityError(
            f"{path} is damaged or truncated ({type(exc).__name__}: {exc}). Replace it with a good copy; "
            f"fix: {_HOW_TO_FIX}."
        ) from exc


def verify_mnist_arrays(arrays: dict[str, np.ndarray], where: str) -> None:
    """Raise DataIntegrityError unless the arrays are exactly MNIST's shapes, dtypes and label counts."""
    spec = {"train": (60000, MNIST_TRAIN_COUNTS), "test": (10000, MNIST_TEST_COUNTS)}
    for split, (n, counts) in spec.items():
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        problems = []
        if x.shape != (n, 28, 28) or x.dtype != np.uint8:
            problems.append(f"x_{split} is {x.dtype}{list(x.shape)}, expected uint8[{n}, 28, 28]")
        if y.shape != (n,):
            problems.append(f"y_{split} has shape {list(y.shape)}, expected [{n}]")
        elif y.min(initial=0) < 0 or y.max(initial=0) > 9:
            problems.append(f"y_{split} has labels outside 0..9")
        else:
            got = tuple(int(c) for c in np.bincount(y.astype(np.int64), minlength=10))
            if got != counts:
                problems.append(f"y_{split} digit counts {got} differ from MNIST's {counts}")
        if problems:
            raise DataIntegrityError(
                f"{where} is not a complete MNIST: " + "; ".join(problems) + f". Fix: {_HOW_TO_FIX}."
            )


def read_mnist_png(root: str | os.PathLike) -> dict[str, np.ndarray]:
    """Decode a ``mnist_png`` folder into arrays, ordered by the file's number where names are numeric."""
    from PIL import Image

    root = Path(root)
    out = {}
    for split, folder in PNG_FOLDERS.items():
        files = sorted((root / folder).glob("[0-9]/*.png"), key=_png_order)
        if not files:
            raise DataIntegrityError(f"{root / folder} holds no digit folders with PNGs; expected {folder}/0..9/*.png")
        x = np.empty((len(files), 28, 28), np.uint8)
        for i, f in enumerate(files):
            with Image.open(f) as im:
                a = np.asarray(im.convert("L"))
            if a.shape != (28, 28):
                raise DataIntegrityError(f"{f} is {a.shape[1]}x{a.shape[0]} pixels, expected 28x28")
            x[i] = a
        out[f"x_{split}"] = x
        out[f"y_{split}"] = np.array([int(f.parent.name) for f in files], np.uint8)
    return out


def _png_order(f: Path):
    return (0, int(f.stem), "") if f.stem.isdigit() else (1, 0, f"{f.parent.name}/{f.stem}")


def _read_png_tree_cached(root: Path) -> dict[str, np.ndarray]:
    """Decode a fastai mnist_png folder once, then keep the arrays in the cache as mnist.npz."""
    arrays = read_mnist_png(root)
    verify_mnist_arrays(arrays, str(root))
    target = cache_dir() / "mnist.npz"
    if not target.exists():
        with atomic_path(target) as tmp:
            np.savez_compressed(tmp, **arrays)
    return arrays


def load_mnist_sample(path: str | os.PathLike | None = None) -> MnistSample:
    """MNIST_SAMPLE (12,396 train / 2,038 valid), derived from full MNIST exactly as fastai's is."""
    m = load_mnist(path)
    parts = {}
    for split, x, y in (("train", m.x_train, m.y_train), ("valid", m.x_test, m.y_test)):
        idx = np.flatnonzero(np.isin(y, SAMPLE_DIGITS))
        parts[f"x_{split}"] = x[idx]
        parts[f"y_{split}"] = (y[idx] == SAMPLE_DIGITS[1]).astype(np.uint8)
        parts[f"idx_{split}"] = idx
    return MnistSample(**parts)


def bear_path() -> Path:
    """A colour photo (RGB JPEG) for colour-convolution demos: $COURSE_DATA/bear.jpg, else the bundled one."""
    env = os.environ.get(ENV_DATA)
    if env:
        p = Path(env).expanduser()
        candidate = p.parent / "bear.jpg" if p.is_file() else p / "bear.jpg"
        if candidate.is_file():
            return candidate.resolve()
    return Path(__file__).with_name("assets") / "bear.jpg"
