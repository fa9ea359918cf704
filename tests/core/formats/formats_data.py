"""A small dataset for the format tests: synthetic shapes (a blob, a shape with holes, a
two-part object, an island inside a hole) plus real GrabCut images with their ground-truth
objects, and two images with the same file name in different folders."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from shapely.geometry import MultiPolygon, Point, box

from app.core.geometry import geometry_to_mask, mask_to_geometry
from app.core.types import ImageRecord, Instance, Label

GRABCUT = Path(__file__).resolve().parents[3] / "data" / "grabcut"
GRABCUT_NAMES = ("106024.jpg", "teddy.jpg", "fullmoon.png")
LABELS = [Label("blob", "#ff0000"), Label("holey", "#00ff00"), Label("pair", "#0000ff"),
          Label("object", "#ffaa00")]


@dataclass
class Sample:
    image_root: Path
    labels: list[Label]
    items: list[tuple[ImageRecord, list[Instance]]]

    def truth(self, record: ImageRecord) -> list[tuple[str, np.ndarray]]:
        """(label, mask) of each instance of ``record`` (matched by path)."""
        for rec, instances in self.items:
            if rec.path == record.path:
                return [(i.label, geometry_to_mask(i.geometry, rec.height, rec.width))
                        for i in instances]
        raise KeyError(record.path)


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(buf.tobytes())


def synthetic_instances(image_id: int) -> list[Instance]:
    blob = Point(60, 55).buffer(32)
    holey = box(110, 20, 230, 130).difference(box(130, 40, 170, 80)) \
        .difference(Point(200, 105).buffer(12))
    pair = MultiPolygon([Point(45, 145).buffer(22), box(100, 150, 170, 185)])
    return [Instance(image_id, "blob", blob), Instance(image_id, "holey", holey),
            Instance(image_id, "pair", pair)]


def build_sample(root: Path) -> Sample:
    rng = np.random.default_rng(0)
    items: list[tuple[ImageRecord, list[Instance]]] = []
    next_id = 1
    for rel in ("synthetic/a.png", "other/a.png"):
        image = rng.integers(40, 200, size=(200, 260, 3), dtype=np.uint8)
        _write(root / rel, image)
        record = ImageRecord(rel, 260, 200, content_hash="", id=next_id)
        instances = synthetic_instances(next_id)
        if rel.startswith("other"):  # an island inside a hole, and a plain blob
            ring = box(20, 20, 140, 140).difference(box(45, 45, 115, 115))
            instances = [Instance(next_id, "holey", MultiPolygon([ring, box(65, 65, 95, 95)])),
                         Instance(next_id, "blob", Point(200, 100).buffer(40))]
        items.append((record, instances))
        next_id += 1
    for name in GRABCUT_NAMES:
        rel = f"grabcut/{name}"
        (root / "grabcut").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(GRABCUT / "images" / name, root / rel)
        mask = cv2.imread(str(GRABCUT / "masks" / (Path(name).stem + ".png")),
                          cv2.IMREAD_GRAYSCALE) == 255
        geom = mask_to_geometry(mask)
        assert geom is not None
        record = ImageRecord(rel, mask.shape[1], mask.shape[0], content_hash="", id=next_id)
        items.append((record, [Instance(next_id, "object", geom, score=0.9)]))
        next_id += 1
    return Sample(root, list(LABELS), items)


def has_holes(geom: object) -> bool:
    return any(p.interiors for p in getattr(geom, "geoms", [geom]))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def best_ious(truth: list[tuple[str, np.ndarray]],
              found: list[tuple[str, np.ndarray]]) -> list[float]:
    """For each true instance, the IoU of the best found instance with the same label."""
    return [max((iou(mask, m) for lab, m in found if lab == label), default=0.0)
            for label, mask in truth]
