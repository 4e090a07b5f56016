"""course.files: a file is either its old self or completely new, never half-written."""

from __future__ import annotations

import hashlib
import os
import stat

import numpy as np
import pytest

from course.files import atomic_dir, atomic_path, atomic_write, file_sha256, files_sha256


def test_atomic_write_replaces_the_whole_file(tmp_path):
    target = tmp_path / "deep" / "grades.csv"
    atomic_write(target, "old\n")
    atomic_write(target, "new\n")
    atomic_write(tmp_path / "raw.bin", b"\x00\x01")
    assert target.read_text() == "new\n" and (tmp_path / "raw.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "grades.csv", "raw.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("complete")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_the_temporary_keeps_the_suffix_and_private_files_stay_private(tmp_path):
    with atomic_path(tmp_path / "arrays.npz") as tmp:
        assert tmp.suffix == ".npz" and ".partial-" in tmp.name
        np.savez_compressed(tmp, x=np.arange(3))  # would append ".npz" to any other suffix
    assert list(np.load(tmp_path / "arrays.npz")["x"]) == [0, 1, 2]
    atomic_write(tmp_path / "token.json", "{}", mode=0o600)
    assert stat.S_IMODE(os.stat(tmp_path / "token.json").st_mode) == 0o600


def test_digests_change_with_any_byte_name_or_missing_file(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_bytes(b"x = 1\n")
    b.write_bytes(b"y = 2\n")
    assert file_sha256(a) == hashlib.sha256(b"x = 1\n").hexdigest()
    first = files_sha256([a, b])
    assert files_sha256([a, b]) == first
    b.write_bytes(b"y = 3\n")
    edited = files_sha256([a, b])
    b.rename(tmp_path / "c.py")
    renamed = files_sha256([a, tmp_path / "c.py"])
    missing = files_sha256([a, b])
    by_path = files_sha256([a, tmp_path / "c.py"], label=lambda f: f"sub/{f.name}")
    assert len({first, edited, renamed, missing, by_path}) == 5


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "reference"
    with atomic_dir(target) as tmp:
        (tmp / "weights").mkdir()
        (tmp / "weights" / "a.pt").write_text("old")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_dir(target) as tmp:
        (tmp / "half.pt").write_text("half")
        raise RuntimeError("interrupted")
    assert [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*"))] == [
        "reference", "reference/weights", "reference/weights/a.pt"
    ]  # fmt: skip
    with atomic_dir(target) as tmp:
        (tmp / "new.pt").write_text("new")
    assert [p.name for p in tmp_path.rglob("*")] == ["reference", "new.pt"]
