"""Read an export back the way the tools a user trains with read it, and compare with the
project: what ``maskloop export --verify`` and the app's export dialog report.

Each file an export wrote (``ExportReport.written``) is drawn with the reference reader of its
format (``app.core.formats.readers``: pycocotools for COCO, Ultralytics' ``polygon2mask`` for
YOLO, labelme's ``shape_to_mask`` for labelme, cv2 for PNG masks) and every instance's mask is
compared with the project's mask of that instance (for PNG masks, which hold one instance per
pixel, with what is visible of it, later instances on top). The report gives the IoU of every
instance and of every image (all its instances together), and the share of the covered pixels
that the reader gives to two instances where the project does not (overlap that the export
added).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from app.core.errors import FormatError
from app.core.formats.common import ExportItem, ExportReport, Written, report_progress
from app.core.formats.readers import (
    coco_mask,
    labelme_instances,
    read_png,
    read_yolo_masks,
    ultralytics_duplicates,
)
from app.core.geometry import geometry_to_mask, mask_iou
from app.core.jobs import CancelToken, Progress, check
from app.core.types import ImageRecord, Instance

READERS = {
    "coco": "pycocotools (COCO.annToMask)",
    "yolo": "Ultralytics (polygon2mask)",
    "labelme": "labelme (shape_to_mask)",
    "masks": "cv2.imread",
}
DEFAULT_MIN_IOU = 0.95
"""``--verify`` fails when an instance's IoU is below this (the least the goals allow)."""


@dataclass
class InstanceResult:
    """How one instance came back: its image, its position among the image's instances
    (0-based), its label and its IoU with the project's mask."""

    image: str
    index: int
    label: str
    iou: float


@dataclass
class FidelityReport:
    """What a reader gets back from an export, against the project's masks."""

    fmt: str
    reader: str
    instances: list[InstanceResult] = field(default_factory=list)
    images: list[tuple[str, float]] = field(default_factory=list)
    covered: int = 0  # pixels the reader gives to at least one instance
    added_overlap: int = 0  # of those, the pixels it gives to two where the project does not
    problems: list[str] = field(default_factory=list)

    @property
    def min_iou(self) -> float:
        return min((r.iou for r in self.instances), default=1.0)

    @property
    def mean_iou(self) -> float:
        return float(np.mean([r.iou for r in self.instances])) if self.instances else 1.0

    @property
    def min_image_iou(self) -> float:
        return min((iou for _, iou in self.images), default=1.0)

    @property
    def overlap_share(self) -> float:
        return self.added_overlap / self.covered if self.covered else 0.0

    def worst(self, count: int = 5) -> list[InstanceResult]:
        return sorted(self.instances, key=lambda r: r.iou)[:count]

    def passed(self, min_iou: float = DEFAULT_MIN_IOU) -> bool:
        return not self.problems and self.min_iou >= min_iou

    def summary(self, worst: int = 5) -> list[str]:
        """Lines for the user: per format min / mean IoU, images, overlap, worst instances."""
        lines = [f"{self.fmt} read by {self.reader}: {len(self.instances)} instance(s), IoU "
                 f"min {self.min_iou:.4f} mean {self.mean_iou:.4f}; {len(self.images)} "
                 f"image(s), IoU min {self.min_image_iou:.4f}; overlap added "
                 f"{100 * self.overlap_share:.3f}% of covered pixels"]
        shown = [r for r in self.worst(worst) if r.iou < 1.0]
        if shown:
            lines.append("  worst: " + "; ".join(f"{r.image} #{r.index + 1} {r.label} "
                                                  f"{r.iou:.4f}" for r in shown))
        lines += [f"  problem: {p}" for p in self.problems]
        return lines


class ReadBack:
    """The reference readers of the exported files (each JSON file read once): ``read(fmt,
    written, record)`` gives (label, mask) of each instance in ``written.file``'s order."""

    def __init__(self) -> None:
        self._json: dict[Path, Any] = {}
        self._names: dict[Path, dict[int, str]] = {}

    def _load(self, path: Path) -> Any:
        if path not in self._json:
            self._json[path] = json.loads(path.read_text(encoding="utf-8"))
        return self._json[path]

    def coco(self, written: Written, record: ImageRecord) -> list[tuple[str, np.ndarray]]:
        data = self._load(written.file)
        names = {c["id"]: c["name"] for c in data["categories"]}
        return [(names[a["category_id"]], coco_mask(a["segmentation"], record.height,
                                                    record.width))
                for a in data["annotations"] if a["image_id"] == written.key]

    def yolo(self, written: Written, record: ImageRecord) -> list[tuple[str, np.ndarray]]:
        root = written.file.parent.parent.parent  # labels/<split>/NAME.txt
        if root not in self._names:
            data = yaml.safe_load((root / "data.yaml").read_text(encoding="utf-8"))
            self._names[root] = {int(k): str(v) for k, v in data["names"].items()}
        names = self._names[root]
        return [(names.get(c, f"class {c}"), mask)
                for c, mask in read_yolo_masks(written.file, record.width, record.height)]

    def labelme(self, written: Written, record: ImageRecord) -> list[tuple[str, np.ndarray]]:
        return labelme_instances(json.loads(written.file.read_text(encoding="utf-8")))

    def masks(self, written: Written, record: ImageRecord) -> list[tuple[str, np.ndarray]]:
        ids = read_png(written.file)
        return [("", ids == number + 1) for number in range(len(written.instances))]

    def read(self, fmt: str, written: Written,
             record: ImageRecord) -> list[tuple[str, np.ndarray]]:
        return dict(coco=self.coco, yolo=self.yolo, labelme=self.labelme,
                    masks=self.masks)[fmt](written, record)


def _project_masks(fmt: str, record: ImageRecord,
                   instances: list[Instance]) -> Iterator[np.ndarray]:
    """The project's mask of each instance; for PNG masks what is visible of it."""
    if fmt != "masks":
        for inst in instances:
            yield geometry_to_mask(inst.geometry, record.height, record.width)
        return
    ids = np.zeros((record.height, record.width), dtype=np.int32)
    for number, inst in enumerate(instances, start=1):
        ids[geometry_to_mask(inst.geometry, record.height, record.width)] = number
    for number in range(1, len(instances) + 1):
        yield ids == number


def _compare(result: FidelityReport, record: ImageRecord, instances: list[Instance],
             written: Written, found: list[tuple[str, np.ndarray]]) -> None:
    if len(found) != len(written.instances):
        result.problems.append(f"{written.file}: {len(found)} instance(s) read back, "
                               f"{len(written.instances)} written")
    read_at = {index: k for k, index in enumerate(written.instances)}
    shape = (record.height, record.width)
    truth_count = np.zeros(shape, dtype=np.uint16)
    read_count = np.zeros(shape, dtype=np.uint16)
    truth_union = np.zeros(shape, dtype=bool)
    for index, (inst, truth) in enumerate(zip(instances, _project_masks(result.fmt, record,
                                                                        instances),
                                              strict=True)):
        k = read_at.get(index)
        label, mask = found[k] if k is not None and k < len(found) else ("", None)
        if mask is not None:
            read_count += mask
        truth_count += truth
        truth_union |= truth
        if not truth.any():
            continue  # covers no pixel in the project: not exported, nothing to compare
        iou = 0.0 if mask is None or (label and label != inst.label) else mask_iou(truth, mask)
        result.instances.append(InstanceResult(record.path, index, inst.label, iou))
    result.images.append((record.path, mask_iou(truth_union, read_count > 0)))
    result.covered += int(np.count_nonzero(read_count))
    result.added_overlap += int(np.count_nonzero((read_count > 1) & (truth_count < 2)))


def verify_export(items: list[ExportItem], fmt: str, report: ExportReport, *,
                  progress: Progress | None = None,
                  cancel: CancelToken | None = None) -> FidelityReport:
    """Read back what ``report`` says an export of ``items`` in ``fmt`` wrote (see the module
    docstring). FormatError for a format that has no reader here (overlays)."""
    if fmt not in READERS:
        raise FormatError(f"{fmt} export: nothing to verify (verify reads back "
                          f"{', '.join(READERS)})")
    files = ReadBack()
    by_id = {int(record.id or 0): (record, instances) for record, instances in items}
    result = FidelityReport(fmt, READERS[fmt])
    total = len(report.written)
    for done, written in enumerate(report.written):
        check(cancel)
        record, instances = by_id[written.image_id]
        report_progress(progress, done, total, f"verifying {record.path}")
        try:
            found = files.read(fmt, written, record)
            if fmt == "yolo" and (twins := ultralytics_duplicates(written.file)):
                result.problems.append(f"{written.file}: Ultralytics would drop {twins} "
                                       "line(s) as duplicates (same class and box)")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            result.problems.append(f"{written.file}: cannot be read back ({exc})")
            found = []
        _compare(result, record, instances, written, found)
    report_progress(progress, total, total, "verified")
    return result
