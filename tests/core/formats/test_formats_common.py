from __future__ import annotations

from pathlib import Path

import pytest

from app.core.formats.common import atomic_path, place_file, safe_relative, unique_file_names


def test_unique_file_names_flatten_only_what_collides():
    paths = ["a/x.jpg", "b/x.jpg", "X.png", "y.jpg", "/abs/dir/z.jpg", "../up/z.png", "C:/w/q.jpg"]
    names = unique_file_names(paths)
    assert names == ["a__x.jpg", "b__x.jpg", "X.png", "y.jpg", "abs__dir__z.jpg", "up__z.png",
                     "q.jpg"]
    stems = [Path(n).stem.casefold() for n in names]
    assert len(set(stems)) == len(stems)
    assert unique_file_names(["a__x.jpg", "a/x.jpg", "b/x.jpg"]) == [
        "a__x.jpg", "a__x_2.jpg", "b__x.jpg"]


def test_safe_relative():
    assert safe_relative("a/b.jpg")
    assert not safe_relative("../b.jpg")
    assert not safe_relative("/abs/b.jpg")
    assert not safe_relative("C:/b.jpg")


def test_atomic_path_keeps_nothing_on_error(tmp_path: Path):
    target = tmp_path / "sub" / "f.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list((tmp_path / "sub").iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["f.json"]


def test_place_file_modes(tmp_path: Path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"abc")
    for mode in ("copy", "hardlink", "symlink"):
        dst = place_file(src, tmp_path / mode / "dst.bin", mode)
        assert dst.read_bytes() == b"abc"
    assert (tmp_path / "symlink" / "dst.bin").is_symlink()
    assert (tmp_path / "hardlink" / "dst.bin").stat().st_ino == src.stat().st_ino
