"""Wire format between the trusted grader and the sandboxed worker: JSON lines, never pickle.

A value on the wire is plain JSON (``null``, booleans, numbers, strings, lists, objects with
string keys) or one of these tagged objects:

``{"__array__": <base64>, "dtype": "float32", "shape": [N, C], "kind": "tensor" | "ndarray" | "scalar"}``
    raw C-order bytes of a numeric array (dtypes in ``DTYPES``); the trusted side rebuilds it with
    ``np.frombuffer`` after checking that the byte count matches the shape. ``scalar`` (shape ``[]``, from the
    worker only) is a numpy scalar such as ``np.int64(7)``, which stays one: it is not a Python int.
``{"__npy__": "a1.npy", "kind": "tensor" | "ndarray"}``
    a big input array the trusted side wrote into the read-only inputs folder; the worker reads it
    with ``np.load(allow_pickle=False)``. Only the trusted side sends these.
``{"__ref__": "$bn" | "simple_cnn" | "$bn.running_mean", "type": "BatchNorm2d"}``
    a worker object by name: ``$name`` is an object a probe stored, anything else is looked up in
    the submission's namespace. The worker replies with a ref when a probe asked to ``store``.
``{"__tuple__": [...]}``
    a tuple (``torch.Size``, named tuples and tuple subclasses arrive as plain tuples).
``{"__dict__": [[key, value], ...]}``
    a dict whose keys are not all plain strings (or look like one of these tags).
``{"__object__": "Figure"}``
    a worker object with no plain form; only its type name crosses.

The trusted side decodes replies with ``decode``, which checks every tag, dtype, shape, byte count,
nesting depth and total size, and raises ``ProtocolError`` for anything else: a reply is data, never
code, and never an object whose methods the submission wrote.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DTYPES",
    "MAX_DEPTH",
    "Budget",
    "Npy",
    "Opaque",
    "ProtocolError",
    "Ref",
    "decode",
    "encode",
    "valid_npy_name",
]

PROTOCOL_VERSION = 1
CONFIG_ENV = "COURSE_SANDBOX_CONFIG"  # the worker's start-up config (JSON), removed before any cell runs
DTYPES = frozenset(
    ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64", "complex64", "complex128"]
)
MAX_DEPTH = 32
MAX_NDIM = 8
TAGS = ("__array__", "__npy__", "__ref__", "__tuple__", "__dict__", "__object__")
_REF_PATH = re.compile(r"^\$?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_NPY_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\.npy$")


class ProtocolError(ValueError):
    """A message that is not valid protocol (wrong tag, dtype, size, nesting...)."""


@dataclass(frozen=True)
class Ref:
    """A worker object by path: ``Ref("$bn")`` (stored by a probe) or ``Ref("simple_cnn")`` (namespace)."""

    path: str
    type: str = ""

    def __post_init__(self):
        if not _REF_PATH.match(self.path):
            raise ValueError(f"a ref path is '$name' or 'name' with optional '.attr' parts, got {self.path!r}")

    def attr(self, name: str) -> Ref:
        """The ref of an attribute: ``Ref("$bn").attr("running_mean")``."""
        return Ref(f"{self.path}.{name}")


@dataclass(frozen=True)
class Opaque:
    """A worker object that has no plain form (a module, a figure, a rigged object): only its type name."""

    type: str


@dataclass(frozen=True)
class Npy:
    """An array file in the session's inputs folder (written by the trusted side)."""

    name: str
    kind: str = "tensor"

    def __post_init__(self):
        if self.kind not in ("tensor", "ndarray"):
            raise ValueError(f"kind must be 'tensor' or 'ndarray', got {self.kind!r}")
        if not valid_npy_name(self.name):
            raise ValueError(f"npy names are 1-64 of [A-Za-z0-9_-] plus '.npy', got {self.name!r}")


def valid_npy_name(name: object) -> bool:
    return isinstance(name, str) and bool(_NPY_NAME.match(name))


def encode(value: Any, spill=None, spill_bytes: int = 1 << 20, _depth: int = 0) -> Any:
    """Trusted value -> JSON-able wire value. Arrays over ``spill_bytes`` go through ``spill(array, kind) -> Npy``."""
    if _depth > MAX_DEPTH:
        raise ValueError("value nested too deeply to send")
    if value is None or type(value) in (bool, str):
        return value
    if type(value) is int:
        return value
    if type(value) is float:
        return value  # NaN and infinities travel as JSON's NaN/Infinity extension
    if isinstance(value, np.generic):
        return encode(value.item(), spill, spill_bytes, _depth)
    if isinstance(value, Ref):
        return {"__ref__": value.path}
    if isinstance(value, Npy):
        return {"__npy__": value.name, "kind": value.kind}
    kind = _array_kind(value)
    if kind is not None:
        arr = _to_numpy(value)
        if spill is not None and arr.nbytes > spill_bytes:
            return {"__npy__": spill(arr, kind).name, "kind": kind}
        return {"__array__": _b64(arr), "dtype": str(arr.dtype), "shape": list(arr.shape), "kind": kind}
    if type(value) in (list, tuple):
        items = [encode(v, spill, spill_bytes, _depth + 1) for v in value]
        return items if type(value) is list else {"__tuple__": items}
    if type(value) is dict:
        if all(type(k) is str and k not in TAGS for k in value):
            return {k: encode(v, spill, spill_bytes, _depth + 1) for k, v in value.items()}
        return {
            "__dict__": [
                [encode(k, None, 0, _depth + 1), encode(v, spill, spill_bytes, _depth + 1)] for k, v in value.items()
            ]
        }
    raise TypeError(f"cannot send a {type(value).__name__} to the worker (arrays, tensors, JSON values, Ref, Npy)")


def _array_kind(value) -> str | None:
    if type(value) is np.ndarray:
        return "ndarray"
    torch = _torch()
    if torch is not None and isinstance(value, torch.Tensor):
        return "tensor"
    return None


def _to_numpy(value) -> np.ndarray:
    arr = value if type(value) is np.ndarray else value.detach().cpu().contiguous().numpy()  # a trusted tensor
    if str(arr.dtype) not in DTYPES:
        raise TypeError(f"cannot send arrays of dtype {arr.dtype} (allowed: {sorted(DTYPES)})")
    return np.ascontiguousarray(arr)


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return torch


@dataclass
class Budget:
    """Limits for decoding one reply: total array bytes and total items (strings count their length)."""

    array_bytes: int = 256 << 20
    items: int = 10_000_000

    def spend(self, n_bytes: int = 0, n_items: int = 1) -> None:
        self.array_bytes -= n_bytes
        self.items -= n_items
        if self.array_bytes < 0 or self.items < 0:
            raise ProtocolError("reply too large")


def decode(obj: Any, budget: Budget | None = None, _depth: int = 0) -> Any:
    """Wire value from the worker -> trusted Python value (plain types, tensors, ndarrays, Ref, Opaque)."""
    budget = budget if budget is not None else Budget()
    if _depth > MAX_DEPTH:
        raise ProtocolError(f"value nested deeper than {MAX_DEPTH}")
    t = type(obj)
    if obj is None or t in (bool, int, float):
        budget.spend()
        return obj
    if t is str:
        budget.spend(n_items=1 + len(obj) // 64)
        return obj
    if t is list:
        budget.spend(n_items=1)
        return [decode(v, budget, _depth + 1) for v in obj]
    if t is not dict:
        raise ProtocolError(f"unexpected JSON type {t.__name__}")
    tags = [k for k in obj if k in TAGS]
    if not tags:
        budget.spend(n_items=1)
        return {k: decode(v, budget, _depth + 1) for k, v in obj.items()}
    if len(tags) > 1:
        raise ProtocolError(f"more than one tag in one object: {tags}")
    tag = tags[0]
    if tag == "__array__":
        return _decode_array(obj, budget)
    if tag == "__tuple__":
        _expect_keys(obj, {"__tuple__"})
        if type(obj["__tuple__"]) is not list:
            raise ProtocolError("__tuple__ must hold a list")
        budget.spend(n_items=1)
        return tuple(decode(v, budget, _depth + 1) for v in obj["__tuple__"])
    if tag == "__dict__":
        _expect_keys(obj, {"__dict__"})
        pairs = obj["__dict__"]
        if type(pairs) is not list or not all(type(p) is list and len(p) == 2 for p in pairs):
            raise ProtocolError("__dict__ must hold [key, value] pairs")
        budget.spend(n_items=1)
        out = {}
        for k, v in pairs:
            key = decode(k, budget, _depth + 1)
            if type(key) not in (str, int, float, bool, tuple) and key is not None:
                raise ProtocolError(f"dict key of type {type(key).__name__} is not allowed")
            try:
                out[key] = decode(v, budget, _depth + 1)
            except TypeError as e:  # an unhashable tuple key
                raise ProtocolError(f"bad dict key: {e}") from None
        return out
    if tag == "__ref__":
        _expect_keys(obj, {"__ref__", "type"})
        path, typ = obj["__ref__"], obj.get("type", "")
        if type(path) is not str or not _REF_PATH.match(path) or type(typ) is not str or len(typ) > 200:
            raise ProtocolError("bad __ref__")
        budget.spend()
        return Ref(path, typ)
    if tag == "__object__":
        _expect_keys(obj, {"__object__"})
        typ = obj["__object__"]
        if type(typ) is not str or len(typ) > 200:
            raise ProtocolError("bad __object__")
        budget.spend()
        return Opaque(typ)
    raise ProtocolError(f"tag {tag} is not allowed in a reply")


def _expect_keys(obj: dict, allowed: set) -> None:
    extra = set(obj) - allowed
    if extra:
        raise ProtocolError(f"unexpected keys {sorted(extra)[:5]}")


def _decode_array(obj: dict, budget: Budget):
    _expect_keys(obj, {"__array__", "dtype", "shape", "kind"})
    data, dtype, shape, kind = obj["__array__"], obj.get("dtype"), obj.get("shape"), obj.get("kind", "ndarray")
    if type(dtype) is not str or dtype not in DTYPES:
        raise ProtocolError(f"array dtype {str(dtype)[:40]!r} is not allowed")
    if kind not in ("tensor", "ndarray", "scalar") or (kind == "scalar" and shape != []):
        raise ProtocolError(f"array kind {str(kind)[:40]!r} is not allowed")
    if type(shape) is not list or len(shape) > MAX_NDIM or not all(type(n) is int and 0 <= n < 1 << 40 for n in shape):
        raise ProtocolError("array shape must be a list of at most 8 non-negative ints")
    if type(data) is not str:
        raise ProtocolError("array data must be a base64 string")
    itemsize = np.dtype(dtype).itemsize
    n_bytes = math.prod(shape) * itemsize
    budget.spend(n_bytes=n_bytes, n_items=1)
    if len(data) != 4 * math.ceil(n_bytes / 3):
        raise ProtocolError(f"array data length does not match shape {shape} and dtype {dtype}")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("array data is not valid base64") from None
    if len(raw) != n_bytes:
        raise ProtocolError(f"array holds {len(raw)} bytes, shape {shape} and dtype {dtype} need {n_bytes}")
    arr = np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape).copy()
    if kind == "tensor":
        import torch

        return torch.from_numpy(arr)
    return arr[()] if kind == "scalar" else arr
