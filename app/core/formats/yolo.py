"""YOLO segmentation in the layout Ultralytics trains on.

::

    out/data.yaml                 train, val, names {id: name}; no path (see YAML_HEADER)
    out/images/train/NAME.jpg     images copied (or hard-linked / symlinked)
    out/images/val/NAME.jpg
    out/labels/train/NAME.txt     one line per object: "class x1 y1 x2 y2 ..."
    out/labels/val/NAME.txt

Coordinates are placed for Ultralytics' reading (``app.core.formats.readers``: value x image
size, cast to int32, ``cv2.fillPoly``), so that it draws exactly the project's mask: the
vertices are the centres of the mask's boundary pixels along its contours
(``app.core.formats.placement``), written as (pixel index + 0.45) / image width or height with
6 decimals, which truncation (Ultralytics) and rounding (supervision) both take back to the
pixel (``placement.YOLO_OFFSET``). Class ids follow the label list. An object with holes or
several parts is still ONE line: its contours are joined with zero-width bridges as
Ultralytics' own converter does (see ``app.core.formats.bridges``). The reader draws the
pixels of a bridge that crosses the background between two separate parts: those are the only
pixels it draws beyond the mask (a far, small part is left out when its bridge would draw
more than it holds). Image names are flattened and made unique (``a/x.jpg`` and
``b/x.jpg`` become ``a__x.jpg`` and ``b__x.jpg``). The train/val split is random but fixed by
``seed``; with ``val_fraction`` 0 every image is in train and ``val`` points to the train
images. ``data.yaml`` is written last, so an export that was cancelled has none.

Import draws each polygon line as Ultralytics does and takes that mask (exactly, see
``placement.EXACT_TOLERANCE``), so a label made by any tool imports as what Ultralytics trains
on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from shapely.geometry import box

from app.core.errors import FormatError, ImageError
from app.core.formats.common import (
    Dataset,
    ExportItem,
    ExportReport,
    Written,
    image_copy_mode,
    image_file,
    ordered_labels,
    place_file,
    report_progress,
    split_indices,
    unique_file_names,
    write_text_atomic,
)
from app.core.formats.placement import exact_geometry, yolo_decimals, yolo_points, yolo_values
from app.core.formats.readers import ultralytics_mask
from app.core.geometry import make_valid_polygonal
from app.core.images import IMAGE_EXTENSIONS, image_size
from app.core.jobs import CancelToken, Progress, check
from app.core.types import Geometry, ImageRecord, Instance, Label

SPLITS = ("train", "val")
# No ``path`` key on purpose: Ultralytics' check_det_dataset then takes the dataset root from
# the YAML file's own folder (``data["yaml_file"]``'s parent), so a copied or moved export trains
# from where it is. An absolute path would keep pointing at the original folder, and "." would be
# read relative to the current directory.
YAML_HEADER = ("# Ultralytics YOLO segmentation dataset exported by MaskLoop. No 'path': the "
               "dataset root\n# is this file's folder, so the export can be copied or moved.\n")


def geometry_to_line(geom: Geometry, class_id: int, width: int, height: int) -> str | None:
    """The YOLO segmentation line of ``geom`` (see the module docstring), or None when its mask
    is empty."""
    points = yolo_points(geom, height, width)
    if len(points) < 3:
        return None
    decimals = yolo_decimals(width, height)
    return f"{class_id} " + " ".join(f"{v:.{decimals}f}"
                                     for v in yolo_values(points, width, height))


def export_yolo(
    items: Iterable[ExportItem],
    labels: Sequence[Label],
    out_dir: Path,
    *,
    image_root: Path,
    val_fraction: float = 0.0,
    seed: int = 0,
    copy_mode: str = "copy",
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> ExportReport:
    """Write ``items`` as an Ultralytics YOLO segmentation dataset under ``out_dir``.
    Images whose file is missing are skipped with a warning naming the file."""
    items = list(items)
    out_dir = Path(out_dir)
    names = [label.name for label in ordered_labels(labels, items)]
    class_id = {name: i for i, name in enumerate(names)}
    report = ExportReport()
    present: list[ExportItem] = []
    for record, instances in items:
        src = image_file(image_root, record)
        if src.is_file():
            present.append((record, instances))
        else:
            report.warnings.append(f"{src}: image file missing; image skipped")
    present.sort(key=lambda item: item[0].path)
    val = split_indices(len(present), val_fraction, seed)
    file_names = unique_file_names(record.path for record, _ in present)
    total = len(present)
    for index, ((record, instances), name) in enumerate(zip(present, file_names, strict=True)):
        check(cancel)
        report_progress(progress, index, total, record.path)
        split = "val" if index in val else "train"
        image_dst = out_dir / "images" / split / name
        report.files.append(place_file(image_file(image_root, record), image_dst,
                                       image_copy_mode(record, copy_mode)))
        lines = []
        label_dst = out_dir / "labels" / split / (Path(name).stem + ".txt")
        written = Written(int(record.id or 0), label_dst)
        for number, inst in enumerate(instances):
            line = geometry_to_line(inst.geometry, class_id[inst.label], record.width,
                                    record.height)
            if line is None:
                report.warnings.append(f"{record.path}: an instance of {inst.label!r} covers "
                                       "no pixel; not exported")
                continue
            lines.append(line)
            written.instances.append(number)
        text = "".join(line + "\n" for line in lines)
        report.files.append(write_text_atomic(label_dst, text))
        report.written.append(written)
        report.images += 1
        report.instances += len(lines)
    check(cancel)
    data = {
        "train": "images/train",
        "val": "images/val" if val else "images/train",
        "names": dict(enumerate(names)),
    }
    yaml_text = YAML_HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    report.files.append(write_text_atomic(out_dir / "data.yaml", yaml_text))
    report_progress(progress, total, total, "done")
    return report


# ---------------------------------------------------------------------------------------------
# Import


# Ultralytics' verify_image_label accepts normalised values in [-0.01, 1.01] and drops the whole
# label file (the image is "corrupt") when one is outside; import does the same, checking every
# value of a line (Ultralytics checks a polygon's box), and clips what it keeps to the image.
TOLERANCE = 0.01
BOX_VALUES = ("x_center", "y_center", "width", "height")


def _line_values(line: str) -> tuple[int, np.ndarray]:
    """Class id and normalised values of one label line; ValueError when malformed."""
    values = line.split()
    class_id = int(values[0])
    coords = np.asarray([float(v) for v in values[1:]], dtype=float)
    if len(coords) != 4 and (len(coords) < 6 or len(coords) % 2):
        raise ValueError(f"{len(coords)} coordinates (need an even number, at least 6)")
    return class_id, coords


def out_of_range(coords: np.ndarray) -> str | None:
    """The first value outside [0, 1] by more than TOLERANCE (NaN included), e.g.
    ``"point 2 x is 1.25"`` or ``"width is nan"``; None when every value is in range."""
    bad = ~((coords >= -TOLERANCE) & (coords <= 1 + TOLERANCE))
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    name = BOX_VALUES[i] if len(coords) == 4 else f"point {i // 2 + 1} {'xy'[i % 2]}"
    return f"{name} is {coords[i]:g}"


def _line_geometry(coords: np.ndarray, width: int, height: int) -> Geometry | None:
    if len(coords) == 4:
        cx, cy, w, h = coords * np.array([width, height, width, height])
        geom: Geometry | None = box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    else:
        geom = exact_geometry(ultralytics_mask(coords, width, height))
    if geom is None or geom.is_empty:
        return None
    x0, y0, x1, y1 = geom.bounds
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:  # within the tolerance: clip
        geom = make_valid_polygonal(geom.intersection(box(0, 0, width, height)))
    return geom


def parse_line(line: str, width: int, height: int) -> tuple[int, Geometry | None]:
    """Class id and geometry (pixels) of one label line: the mask Ultralytics draws of a
    segmentation polygon or, for a 5-value detection line, its box; clipped to the image.
    The values' range is not checked here (see ``out_of_range``)."""
    class_id, coords = _line_values(line)
    return class_id, _line_geometry(coords, width, height)


def _find_yaml(src: Path) -> Path:
    if src.is_file():
        return src
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        if (src / name).is_file():
            return src / name
    raise FormatError(f"{src}: no data.yaml found (a YOLO dataset needs one with its names)")


def _names(data: dict[str, Any], yaml_path: Path) -> list[str]:
    raw = data.get("names")
    try:
        if isinstance(raw, dict):
            ids = sorted(int(k) for k in raw)
            by_id = {int(k): str(v) for k, v in raw.items()}
            return [by_id.get(i, f"class_{i}") for i in range(ids[-1] + 1)] if ids else []
    except (TypeError, ValueError) as exc:
        raise FormatError(f"{yaml_path}: names: the keys must be class numbers ({exc})") from exc
    if isinstance(raw, list):
        return [str(v) for v in raw]
    raise FormatError(f"{yaml_path}: 'names' is missing or not a list / mapping")


def _split_entries(root: Path, entry: Any) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    return [root / item for item in entries if isinstance(item, str)]


def _split_images(where: Path, root: Path) -> list[Path]:
    if where.is_dir():
        return sorted(p for p in where.rglob("*")
                      if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    images: list[Path] = []
    if where.is_file() and where.suffix == ".txt":
        try:
            lines = where.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise FormatError(f"{where}: not a readable image list ({exc})") from exc
        for line in lines:
            if line.strip():
                p = Path(line.strip())
                images.append(p if p.is_absolute() else root / p)
    return images


def _label_file(image: Path) -> Path:
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):  # the last "images" folder, as Ultralytics does
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def read_yolo(src: Path) -> Dataset:
    """Read an Ultralytics YOLO segmentation dataset (its folder or its data.yaml). A label
    file with a value outside [0, 1] (beyond Ultralytics' tolerance) is skipped whole, as
    Ultralytics does; label files without an image are reported; a dataset whose splits hold
    no image is an error."""
    yaml_path = _find_yaml(Path(src))
    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise FormatError(f"{yaml_path}: not a readable YAML file ({exc})") from exc
    if not isinstance(data, dict):
        raise FormatError(f"{yaml_path}: expected a mapping with path, train, val and names")
    names = _names(data, yaml_path)
    root = yaml_path.parent
    if isinstance(data.get("path"), str):
        given = Path(data["path"])
        given = given if given.is_absolute() else yaml_path.parent / given
        if given.is_dir():
            root = given
    result = Dataset()
    for name in names:
        result.ensure_label(name)
    seen: set[Path] = set()
    listed: list[Path] = []
    looked: list[Path] = []
    for split in ("train", "val", "test"):
        for where in _split_entries(root, data.get(split)):
            if where in looked:
                continue
            looked.append(where)
            for image in _split_images(where, root):
                if image.resolve() in seen:
                    continue
                seen.add(image.resolve())
                listed.append(image)
                _read_image_labels(result, root, image, names)
    if not seen:
        places = ", ".join(map(str, looked)) if looked else "data.yaml names no train or val"
        raise FormatError(f"{yaml_path}: no images found (looked in {places})")
    _report_orphan_labels(result, looked, listed)
    return result


def _report_orphan_labels(result: Dataset, image_dirs: list[Path], images: list[Path]) -> None:
    """Warn about label files (under the labels folder of each split folder) that no image has."""
    expected = {_label_file(image).resolve() for image in images}
    done: set[Path] = set()
    for image_dir in image_dirs:
        if not image_dir.is_dir():
            continue
        label_dir = _label_file(image_dir / "x").parent
        if label_dir == image_dir or label_dir in done or not label_dir.is_dir():
            continue
        done.add(label_dir)
        for label in sorted(label_dir.rglob("*.txt")):
            if label.resolve() not in expected:
                guess = image_dir / label.relative_to(label_dir).with_suffix("")
                result.warnings.append(f"{label}: no image for this label file (looked for "
                                       f"{guess}.*); skipped")


def _read_image_labels(result: Dataset, root: Path, image: Path, names: list[str]) -> None:
    try:
        width, height = image_size(image)
    except ImageError as exc:
        result.warnings.append(f"{image}: {exc}; skipped")
        return
    image_id = len(result.images) + 1
    try:
        rel = image.relative_to(root).as_posix()
    except ValueError:
        rel = image.name
    result.images.append(ImageRecord(path=rel, width=width, height=height, content_hash="",
                                     id=image_id))
    result.image_files[image_id] = image
    label_path = _label_file(image)
    if not label_path.is_file():
        return
    result.sources[image_id] = str(label_path)
    try:
        text = label_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        result.warnings.append(f"{label_path}: not a readable label file ({exc}); skipped")
        return
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    parsed: list[tuple[int, int, np.ndarray]] = []
    for number, line in lines:
        try:
            class_id, coords = _line_values(line)
        except ValueError as exc:
            result.warnings.append(f"{label_path}:{number}: malformed line ({exc}); skipped")
            continue
        problem = out_of_range(coords)
        if problem is not None:
            result.warnings.append(
                f"{label_path}:{number}: {problem}, outside [0, 1] by more than Ultralytics' "
                f"{TOLERANCE} tolerance; all {len(lines)} line(s) of this file skipped, as "
                "Ultralytics skips such a file")
            return
        parsed.append((number, class_id, coords))
    for number, class_id, coords in parsed:
        geom = _line_geometry(coords, width, height)
        if geom is None or geom.is_empty:
            result.warnings.append(f"{label_path}:{number}: polygon encloses nothing; skipped")
            continue
        if class_id < 0:
            result.warnings.append(f"{label_path}:{number}: negative class id; skipped")
            continue
        while len(names) <= class_id:  # an id data.yaml does not name: keep it, made-up name
            result.warnings.append(f"{label_path}:{number}: class {len(names)} is not in "
                                   "data.yaml names")
            names.append(f"class_{len(names)}")
            result.ensure_label(names[-1])
        result.instances.append(Instance(image_id=image_id, label=names[class_id],
                                         geometry=geom))
