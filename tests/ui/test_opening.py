"""Which project a folder, a project file or nothing opens; GUI settings persistence."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QColor
from shapely.geometry import Polygon

from app.core.errors import ProjectError
from app.ui.canvas.convert import OVERLAY_MAX_SIDE, geometry_path, mask_overlay
from app.ui.opening import open_target, resolve, samples_dir
from app.ui.settings import GuiSettings


def test_folder_gets_its_named_project_or_its_only_one(tmp_path: Path) -> None:
    folder = tmp_path / "cats"
    folder.mkdir()
    t = resolve(folder)
    assert t.project_path == folder / "cats.maskloop" and t.scan == folder
    (folder / "other.maskloop").write_bytes(b"")
    assert resolve(folder).project_path == folder / "other.maskloop"
    assert resolve(folder / "other.maskloop").scan is None
    with pytest.raises(ProjectError, match="no such folder"):
        resolve(tmp_path / "nope")
    with pytest.raises(ProjectError, match="project file"):
        resolve(_touch(tmp_path / "x.txt"))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root can write to read-only folders")
def test_read_only_folder_keeps_its_project_in_the_user_data_dir(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert str(resolve(folder).project_path).startswith(str(tmp_path / "data"))
    finally:
        folder.chmod(0o755)


def test_the_export_folder_is_not_scanned(tmp_path: Path) -> None:
    from ui_helpers import scene_image, write_png

    folder = tmp_path / "shots"
    (folder / "shots-export" / "masks").mkdir(parents=True)
    write_png(folder / "a.png", scene_image())
    write_png(folder / "shots-export" / "masks" / "a.png", scene_image(seed=1))
    opened = open_target(resolve(folder))
    try:
        assert [r.path for r in opened.project.images()] == ["a.png"]
    finally:
        opened.project.close()


def test_samples_resolve_and_open(tmp_path: Path) -> None:
    t = resolve(None)
    assert t.image_root == samples_dir() and t.project_path.parent.is_relative_to(tmp_path)
    opened = open_target(t)
    try:
        assert len(opened.project.images()) >= 3 and not opened.unreadable
    finally:
        opened.project.close()
    licence = (samples_dir() / "LICENSE.txt").read_text()
    for image in samples_dir().glob("*.jpg"):
        assert image.name in licence
    assert sum(p.stat().st_size for p in samples_dir().iterdir()) < 1_000_000


def test_settings_roundtrip_and_bad_file(tmp_path: Path) -> None:
    s = GuiSettings(model="small", tolerance=2.0)
    s.add_recent(tmp_path / "a.maskloop")
    s.add_recent(tmp_path / "b.maskloop")
    s.add_recent(tmp_path / "a.maskloop")
    s.save()
    loaded = GuiSettings.load()
    assert loaded.model == "small" and loaded.tolerance == 2.0
    assert loaded.recent == [str(tmp_path / "a.maskloop"), str(tmp_path / "b.maskloop")]
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    assert GuiSettings.load(path) == GuiSettings()


def test_mask_overlay_crops_and_subsamples() -> None:
    mask = np.zeros((50, 80), bool)
    mask[10:20, 30:45] = True
    img, x, y, step = mask_overlay(mask, QColor("#ff0000"))
    assert (x, y, step, img.width(), img.height()) == (30, 10, 1, 15, 10)
    assert img.pixelColor(0, 0).alpha() > 0
    assert mask_overlay(np.zeros((5, 5), bool), QColor("#ff0000")) is None
    big = np.zeros((OVERLAY_MAX_SIDE * 3, 10), bool)
    big[100:200] = True
    img, x, y, step = mask_overlay(big, QColor("#00ff00"))
    assert step == 3 and img.height() * step >= 99


def test_geometry_path_shows_holes() -> None:
    poly = Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(3, 3), (6, 3), (6, 6), (3, 6)]])
    path = geometry_path(poly)
    from PySide6.QtCore import QPointF

    assert path.contains(QPointF(1, 1)) and not path.contains(QPointF(4.5, 4.5))


def _touch(path: Path) -> Path:
    path.write_text("x")
    return path
