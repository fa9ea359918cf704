"""A small real project for autolabel tests: the GrabCut full moon (its ground-truth mask an
accepted instance "moon") and two GrabCut photos with that moon pasted in (masks known)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from app.core.geometry import mask_to_geometry
from app.core.images import load_image
from app.core.project import Project
from app.core.types import Instance

GRABCUT = Path(__file__).resolve().parents[2] / "data" / "grabcut"
# background photo -> where the moon's box goes (top-left corner)
PASTES = {"86016.jpg": (300, 150), "21077.jpg": (200, 100)}


@dataclass
class MoonProject:
    """The project file, its image folder and each composite's true moon mask by path."""

    path: Path
    images: Path
    truth: dict[str, np.ndarray]


def _moon() -> tuple[np.ndarray, np.ndarray]:
    image = load_image(GRABCUT / "images" / "fullmoon.png")
    mask = np.asarray(Image.open(GRABCUT / "masks" / "fullmoon.png")) == 255
    return image, mask


def make_moon_project(folder: Path) -> MoonProject:
    """Write the images under ``folder/images`` and the project ``folder/moons.maskloop``."""
    images = folder / "images"
    images.mkdir(parents=True)
    moon, moon_mask = _moon()
    Image.fromarray(moon).save(images / "fullmoon.png")
    ys, xs = np.nonzero(moon_mask)
    crop = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    obj, obj_mask = moon[crop], moon_mask[crop]
    truth: dict[str, np.ndarray] = {}
    for name, (ox, oy) in PASTES.items():
        photo = load_image(GRABCUT / "images" / name).copy()
        h, w = obj_mask.shape
        photo[oy:oy + h, ox:ox + w][obj_mask] = obj[obj_mask]
        target = f"moon_on_{Path(name).stem}.png"
        Image.fromarray(photo).save(images / target)
        mask = np.zeros(photo.shape[:2], dtype=bool)
        mask[oy:oy + h, ox:ox + w] = obj_mask
        truth[target] = mask
    path = folder / "moons.maskloop"
    with Project.create(path, images) as project:
        project.add_images(images)
        record = project.image_by_path("fullmoon.png")
        assert record is not None and record.id is not None
        geometry = mask_to_geometry(moon_mask)
        assert geometry is not None
        project.add_instance(Instance(record.id, "moon", geometry))
    return MoonProject(path, images, truth)


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a mask's pixels, corners on pixel edges."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))
