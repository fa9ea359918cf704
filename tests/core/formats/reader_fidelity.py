"""Export -> reader fidelity on GrabCut (issue 10; the README's "Export formats" table).

Two datasets, both put into the project as an import of COCO RLE would put them:

- **GrabCut-50**: the 50 ground-truth masks of ``data/grabcut`` (object = 255), one instance
  per image;
- **small instances**: each of those masks cut into 20 pieces of about equal size (3 cuts
  across its rows at the object's row quantiles, then 4 cuts across each band at its column
  quantiles), 1,000 instances in 3 classes, neighbours touching but never overlapping.

Each format is exported and read back by the reader a user trains with (pycocotools,
Ultralytics' ``polygon2mask`` and labelme's ``shape_to_mask`` as written out in
``app.core.formats.readers``, cv2, and supervision where it is installed), and compared with
the ground truth; then imported back. Print the table with::

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/core/formats/reader_fidelity.py
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from app.core import rle  # noqa: E402
from app.core.formats import read_dataset  # noqa: E402
from app.core.formats.coco import export_coco_dataset, read_coco  # noqa: E402
from app.core.formats.common import ExportItem, ExportReport  # noqa: E402
from app.core.formats.fidelity import READERS, ReadBack  # noqa: E402
from app.core.formats.labelme import export_labelme  # noqa: E402
from app.core.formats.masks import export_masks  # noqa: E402
from app.core.formats.yolo import export_yolo  # noqa: E402
from app.core.geometry import geometry_to_mask  # noqa: E402
from app.core.types import Label  # noqa: E402

GRABCUT = ROOT / "data" / "grabcut"
CLASSES = ("a", "b", "c")
FORMATS = ("coco", "yolo", "labelme", "masks")
HOLE_KEPT = 0.9  # a hole is kept when this share of its pixels is empty after reading


def grabcut_masks(names: list[str] | None = None) -> list[tuple[str, np.ndarray]]:
    """(image file name, ground-truth mask) of the GrabCut images (all, or ``names``)."""
    images = {p.stem: p.name for p in (GRABCUT / "images").iterdir()}
    found = []
    for path in sorted((GRABCUT / "masks").glob("*.png")):
        if names is None or images[path.stem] in names:
            found.append((images[path.stem], cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) == 255))
    return found


def pieces(mask: np.ndarray, rows: int = 4, cols: int = 5) -> list[np.ndarray]:
    """``mask`` cut into rows x cols pieces of about equal pixel count (see the docstring)."""
    ys, xs = np.nonzero(mask)
    row_cuts = np.quantile(ys, np.linspace(0, 1, rows + 1)[1:-1]).round().astype(int)
    found = []
    for r0, r1 in zip([0, *row_cuts], [*row_cuts, mask.shape[0]], strict=True):
        band = (ys >= r0) & (ys < r1)
        col_cuts = np.quantile(xs[band], np.linspace(0, 1, cols + 1)[1:-1]).round().astype(int)
        for c0, c1 in zip([0, *col_cuts], [*col_cuts, mask.shape[1]], strict=True):
            piece = np.zeros_like(mask)
            piece[r0:r1, c0:c1] = mask[r0:r1, c0:c1]
            if piece.any():
                found.append(piece)
    return found


def holes(mask: np.ndarray) -> list[np.ndarray]:
    """The holes of a mask: background components (4-connected) that touch no image edge."""
    count, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    edge = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
    return [labels == k for k in range(1, count) if k not in edge]


@dataclass
class Truth:
    """A dataset: per image its file name and the ground truth (label, mask) of each
    instance; ``items`` is what the project holds after importing it as COCO RLE."""

    names: list[str]
    truth: list[list[tuple[str, np.ndarray]]]
    items: list[ExportItem] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)


def as_project(names: list[str], truth: list[list[tuple[str, np.ndarray]]],
               folder: Path) -> Truth:
    """The instances as MaskLoop's COCO import reads them from RLE annotations."""
    images, anns = [], []
    cats = {name: i for i, name in enumerate(sorted({lab for t in truth for lab, _ in t}), 1)}
    for image_id, (name, instances) in enumerate(zip(names, truth, strict=True), start=1):
        h, w = instances[0][1].shape
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for label, mask in instances:
            rle_ = rle.encode(mask)
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cats[label],
                         "iscrowd": 0, "segmentation": {"size": [h, w],
                                                        "counts": rle_["counts"].decode()}})
    path = folder / "truth.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": i, "name": n} for n, i in cats.items()]}))
    data = read_coco(path)
    items = [(record, [i for i in data.instances if i.image_id == record.id])
             for record in data.images]
    return Truth(names, truth, items, data.labels)


def grabcut50(folder: Path, names: list[str] | None = None) -> Truth:
    found = grabcut_masks(names)
    return as_project([n for n, _ in found], [[("object", m)] for _, m in found], folder)


def small_instances(folder: Path, names: list[str] | None = None) -> Truth:
    found = grabcut_masks(names)
    truth = [[(CLASSES[k % 3], p) for k, p in enumerate(pieces(m))] for _, m in found]
    return as_project([n for n, _ in found], truth, folder)


# --- measuring ----------------------------------------------------------------------------------


EXPORTERS: dict[str, Callable[..., ExportReport]] = {
    "coco": export_coco_dataset, "yolo": export_yolo, "labelme": export_labelme,
    "masks": export_masks}


def export(fmt: str, data: Truth, out: Path) -> ExportReport:
    options: dict[str, Any] = {} if fmt == "masks" else {"image_root": GRABCUT / "images"}
    if fmt == "coco":
        options["copy_images"] = "copy"
    return EXPORTERS[fmt](data.items, data.labels, out, **options)


@dataclass
class Scores:
    """IoU of every instance and image against the ground truth, holes, overlap."""

    reader: str
    instances: list[float] = field(default_factory=list)
    images: list[float] = field(default_factory=list)
    holes: int = 0
    holes_kept: int = 0
    covered: int = 0
    overlap: int = 0
    round_trip: list[float] = field(default_factory=list)

    def row(self) -> dict[str, float]:
        inst = np.asarray(self.instances)
        return {"min": float(inst.min()), "mean": float(inst.mean()),
                "below_095": int((inst < 0.95).sum()),
                "image_min": float(min(self.images)),
                "images_below_099": int((np.asarray(self.images) < 0.99).sum()),
                "holes": self.holes, "holes_kept": self.holes_kept,
                "overlap": self.overlap / self.covered if self.covered else 0.0,
                "overlap_px": self.overlap,
                "round_trip_min": float(min(self.round_trip)) if self.round_trip else np.nan}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


def score(reader: str, data: Truth, read: list[list[np.ndarray]]) -> Scores:
    """Compare what a reader read (per image, the masks in instance order) with the truth."""
    result = Scores(reader)
    for truth, masks in zip(data.truth, read, strict=True):
        assert len(masks) == len(truth), (reader, len(masks), len(truth))
        count = np.zeros(truth[0][1].shape, dtype=np.uint16)
        for (_, t), m in zip(truth, masks, strict=True):
            result.instances.append(iou(t, m))
            count += m
        union = np.logical_or.reduce([t for _, t in truth])
        result.images.append(iou(union, count > 0))
        result.covered += int(np.count_nonzero(count))
        result.overlap += int(np.count_nonzero(count > 1))
        for hole in holes(union):
            result.holes += 1
            result.holes_kept += int(np.count_nonzero(hole & (count > 0))
                                     <= (1 - HOLE_KEPT) * np.count_nonzero(hole))
    return result


def read_with_reference(fmt: str, data: Truth, report: ExportReport) -> list[list[np.ndarray]]:
    files = ReadBack()
    by_image = {w.image_id: w for w in report.written}
    read = []
    for record, instances in data.items:
        written = by_image[int(record.id or 0)]
        found = files.read(fmt, written, record)
        assert written.instances == list(range(len(instances)))
        read.append([m for _, m in found])
    return read


def round_trip(fmt: str, data: Truth, out: Path) -> list[float]:
    """IoU of each instance imported back from the export (matched by image and order)."""
    back = read_dataset(fmt, out)
    by_stem = {Path(r.path).stem: r for r in back.images}
    ious = []
    for name, truth in zip(data.names, data.truth, strict=True):
        record = by_stem[Path(name).stem]
        found = [i for i in back.instances if i.image_id == record.id]
        assert len(found) == len(truth)
        for (label, t), inst in zip(truth, found, strict=True):
            same = fmt == "masks" or inst.label == label
            ious.append(iou(t, geometry_to_mask(inst.geometry, *t.shape)) if same else 0.0)
    return ious


def supervision_reads(fmt: str, data: Truth, out: Path) -> list[list[np.ndarray]] | None:
    """What supervision's DetectionDataset reads from a COCO or YOLO export (None when
    supervision is not installed)."""
    try:
        import supervision as sv
    except ImportError:
        return None
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if fmt == "coco":
            ds = sv.DetectionDataset.from_coco(
                images_directory_path=str(out / "images" / "train"),
                annotations_path=str(out / "annotations" / "instances_train.json"),
                force_masks=True)
        else:
            ds = sv.DetectionDataset.from_yolo(
                images_directory_path=str(out / "images" / "train"),
                annotations_directory_path=str(out / "labels" / "train"),
                data_yaml_path=str(out / "data.yaml"), force_masks=True)
        by_stem = {Path(path).stem: det for path, _, det in ds}
    return [list(by_stem[Path(name).stem].mask) for name in data.names]


def resample_segments(segments: list[np.ndarray], n: int = 1000) -> list[np.ndarray]:
    """Ultralytics' ``resample_segments`` (``ultralytics/utils/ops.py``, 8.3): points inserted
    along the edges up to ``n`` points, every original point kept."""
    out = []
    for s in segments:
        if len(s) == n:
            out.append(s)
            continue
        s = np.concatenate((s, s[0:1, :]), axis=0)
        x = np.linspace(0, len(s) - 1, n - len(s) if len(s) < n else n)
        xp = np.arange(len(s))
        x = np.insert(x, np.searchsorted(x, xp), xp) if len(s) < n else x
        out.append(np.concatenate([np.interp(x, xp, s[:, i]) for i in range(2)],
                                  dtype=np.float32).reshape(2, -1).T)
    return out


def ultralytics_training_reads(data: Truth, report: ExportReport) -> list[list[np.ndarray]]:
    """What Ultralytics' training draws (at full resolution): each image's segments resampled
    to 1000 points (more when one has more, ``YOLODataset.update_labels_info``), then
    ``polygon2mask``."""
    by_image = {w.image_id: w for w in report.written}
    read = []
    for record, _ in data.items:
        text = by_image[int(record.id or 0)].file.read_text(encoding="utf-8")
        segments = [np.array(line.split()[1:], dtype=np.float32).reshape(-1, 2)
                     for line in text.strip().splitlines()]
        longest = max(len(s) for s in segments)
        masks = []
        for segment in resample_segments(segments, longest + 1 if longest > 1000 else 1000):
            points = segment * np.array([record.width, record.height], dtype=np.float32)
            mask = np.zeros((record.height, record.width), dtype=np.uint8)
            cv2.fillPoly(mask, [np.asarray(points, dtype=np.int32)], color=(1,))
            masks.append(mask.astype(bool))
        read.append(masks)
    return read


def measure(data: Truth, folder: Path, formats: tuple[str, ...] = FORMATS,
            with_supervision: bool = True) -> Iterator[tuple[str, Scores]]:
    """(format, scores) for every format's reader, and supervision's for COCO and YOLO."""
    for fmt in formats:
        out = folder / fmt
        report = export(fmt, data, out)
        scores = score(READERS[fmt], data, read_with_reference(fmt, data, report))
        scores.round_trip = round_trip(fmt, data, out)
        yield fmt, scores
        if fmt == "yolo":
            training = score("Ultralytics training", data, ultralytics_training_reads(data, report))
            training.round_trip = []
            yield "yolo (training)", training
        if with_supervision and fmt in ("coco", "yolo"):
            read = supervision_reads(fmt, data, out)
            if read is not None:
                supervised = score("supervision DetectionDataset", data, read)
                supervised.round_trip = []
                yield f"{fmt} (supervision)", supervised


def _trip(row: dict[str, float]) -> str:
    return "-" if np.isnan(row["round_trip_min"]) else f"{row['round_trip_min']:.4f}"


def table(rows: list[tuple[str, dict[str, float]]], small: bool) -> str:
    if not small:
        lines = ["| export -> reader | min / mean IoU | images < 0.99 | holes kept | "
                 "round trip min |", "|---|---|---|---|---|"]
        for name, r in rows:
            lines.append(f"| {name} | {r['min']:.4f} / {r['mean']:.4f} | "
                         f"{r['images_below_099']} | {r['holes_kept']} of {r['holes']} | "
                         f"{_trip(r)} |")
        return "\n".join(lines)
    lines = ["| export -> reader | instance min / mean IoU | instances < 0.95 | image min IoU | "
             "overlap of neighbours | round trip min |", "|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['min']:.4f} / {r['mean']:.4f} | {r['below_095']} | "
                     f"{r['image_min']:.4f} | {100 * r['overlap']:.3f}% ({r['overlap_px']} px) | "
                     f"{_trip(r)} |")
    return "\n".join(lines)


NAMES = {"coco": "COCO -> pycocotools `annToMask`",
         "coco (supervision)": "COCO -> supervision `from_coco`",
         "yolo": "YOLO-seg -> Ultralytics `polygon2mask`",
         "yolo (training)": "YOLO-seg -> Ultralytics training (`resample_segments`, then "
                            "`polygon2mask`)",
         "yolo (supervision)": "YOLO-seg -> supervision `from_yolo`",
         "labelme": "labelme -> labelme `shape_to_mask`",
         "masks": "PNG masks -> cv2"}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for small, build in ((False, grabcut50), (True, small_instances)):
            folder = Path(tmp) / ("small" if small else "grabcut")
            folder.mkdir()
            data = build(folder)
            count = sum(len(t) for t in data.truth)
            print(f"\n{'Small instances' if small else 'GrabCut-50'}: {len(data.names)} "
                  f"images, {count} instances\n")
            rows = [(NAMES[name], s.row()) for name, s in measure(data, folder)]
            print(table(rows, small))


if __name__ == "__main__":
    main()
