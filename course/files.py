"""Writing files so that a reader never sees half of one (write next to the target, then rename onto it), and
hashing them."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_dir", "atomic_path", "atomic_write", "file_sha256", "files_sha256"]

_serial = itertools.count()


@contextmanager
def atomic_path(path: str | os.PathLike, mode: int = 0o666) -> Iterator[Path]:
    """A fresh file next to ``path`` to write; renamed onto ``path`` when the block ends, removed if it raises.

    The temporary name keeps ``path``'s suffix (writers such as ``savefig`` or ``np.savez`` choose a format by it)
    and contains ``.partial-``. ``mode`` is the new file's permission bits before the umask (0o600: private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}-{next(_serial)}{path.suffix}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh folder next to ``path`` to fill; when the block ends it replaces ``path`` (and whatever was there),
    and it is removed if the block raises, so ``path`` is always either the old folder or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}-{next(_serial)}")
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write(path: str | os.PathLike, data: str | bytes, mode: int = 0o666) -> None:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically (see ``atomic_path``)."""
    with atomic_path(path, mode) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, in hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def files_sha256(files: Iterable[Path], label: Callable[[Path], str] = lambda f: f.name) -> str:
    """One sha256 over several files, in the order given: each file's ``label`` then its bytes (a missing file
    counts as ``<missing>``), so renaming, removing or editing any of them changes the digest."""
    h = hashlib.sha256()
    for f in files:
        h.update(label(f).encode())
        if f.is_file():
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
        else:
            h.update(b"<missing>")
    return h.hexdigest()
