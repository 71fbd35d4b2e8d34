"""model.io.atomic: a file appears whole under its name, or not at all."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from model.io.atomic import atomic_path


def test_the_file_appears_only_when_the_block_succeeds(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "product.bin"
    with atomic_path(target, mode=0o640) as tmp:
        tmp.write_bytes(b"new")
        assert not target.exists() and tmp.parent == target.parent and tmp.name.startswith(".product.bin.")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["product.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "product.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_path(target, fsync=False) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["product.bin"]
