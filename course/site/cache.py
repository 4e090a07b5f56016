"""A content-addressed cache for build-time figures: same code and same inputs, same file, no redraw."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from course.files import atomic_path

__all__ = ["ENV_SITE_CACHE", "FigureCache"]

ENV_SITE_CACHE = "COURSE_SITE_CACHE"


class FigureCache:
    """Files named by the hash of (figure name, code digest, input digests) under one folder."""

    def __init__(self, root: str | os.PathLike, code_digest: str) -> None:
        self.root = Path(root)
        self.code_digest = code_digest
        self.hits = 0
        self.misses = 0

    def key(self, name: str, inputs: Iterable[str]) -> str:
        """The cache key of a figure: changes when its code or any input changes."""
        h = hashlib.sha256(f"{name}\0{self.code_digest}".encode())
        for digest in inputs:
            h.update(b"\0" + digest.encode())
        return h.hexdigest()[:20]

    def get_or_make(self, name: str, inputs: Iterable[str], make: Callable[[Path], None], suffix: str = ".svg") -> Path:
        """Path of the cached file; ``make(tmp_path)`` writes it on a miss (atomically renamed into place)."""
        path = self.root / f"{name}-{self.key(name, inputs)}{suffix}"
        if path.is_file():
            self.hits += 1
            return path
        self.misses += 1
        with atomic_path(path) as tmp:
            make(tmp)
        self._prune(name, keep=path)
        return path

    def _prune(self, name: str, keep: Path) -> None:
        """Drop older versions of the same figure so the cache does not grow without bound."""
        for old in self.root.glob(f"{name}-*"):
            if old != keep and old.stem.rsplit("-", 1)[0] == name and ".partial-" not in old.name:
                old.unlink(missing_ok=True)
