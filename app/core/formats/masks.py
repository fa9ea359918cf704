"""PNG masks: per image an instance-id PNG and a semantic (class index) PNG.

::

    out/instances/NAME.png   pixel = instance number (1..N in instance order, 0 = none);
                             uint8, or uint16 when an image has more than 255 instances
    out/semantic/NAME.png    pixel = class index (0 background, label i -> i + 1), a palette
                             PNG coloured with the label colours
    out/classes.txt          one class per line, line k = class index k ("_background_" first)
    out/classes.json         [{"index", "name", "colour"}]
    out/index.json           per image: its relative path, size and the two PNG names

Later instances are drawn over earlier ones. ``index.json`` is written last, so an export that
was cancelled has none. Import reads an export like this back (instance PNG for the shapes, the
semantic PNG for each instance's class, by majority of its pixels).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from app.core.errors import FormatError
from app.core.formats.checks import (
    RecordProblem,
    SizeLookup,
    field,
    image_record_size,
    integer,
    json_type,
    show,
)
from app.core.formats.common import (
    Dataset,
    ExportItem,
    ExportReport,
    Written,
    encode_image,
    hex_to_rgb,
    ordered_labels,
    report_progress,
    unique_file_names,
    write_bytes_atomic,
    write_text_atomic,
)
from app.core.formats.placement import exact_geometry
from app.core.geometry import geometry_to_mask
from app.core.images import sniff_format
from app.core.jobs import CancelToken, Progress, check
from app.core.types import ImageRecord, Instance, Label

BACKGROUND = "_background_"


def render_masks(record: ImageRecord, instances: Sequence[Instance],
                 class_index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(instance-id image, class-index image) of one image, later instances on top."""
    dtype = np.uint16 if len(instances) > 255 else np.uint8
    ids = np.zeros((record.height, record.width), dtype=dtype)
    classes = np.zeros((record.height, record.width), dtype=np.uint8)
    for number, inst in enumerate(instances, start=1):
        mask = geometry_to_mask(inst.geometry, record.height, record.width)
        ids[mask] = number
        classes[mask] = class_index[inst.label]
    return ids, classes


def _palette_png(classes: np.ndarray, labels: Sequence[Label]) -> bytes:
    image = Image.fromarray(classes)  # "L"; putpalette makes it "P"
    palette = [0, 0, 0]
    for label in labels:
        palette += list(hex_to_rgb(label.colour))
    image.putpalette(palette + [0] * (768 - len(palette)))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def export_masks(
    items: Iterable[ExportItem],
    labels: Sequence[Label],
    out_dir: Path,
    *,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> ExportReport:
    """Write instance and semantic PNG masks of ``items`` into ``out_dir``."""
    items = list(items)
    out_dir = Path(out_dir)
    all_labels = ordered_labels(labels, items)
    if len(all_labels) > 255:
        raise FormatError(f"{out_dir}: semantic PNGs hold at most 255 classes, "
                          f"the project has {len(all_labels)}")
    class_index = {label.name: i for i, label in enumerate(all_labels, start=1)}
    report = ExportReport()
    names = unique_file_names(record.path for record, _ in items)
    entries: list[dict[str, Any]] = []
    total = len(items)
    for index, ((record, instances), name) in enumerate(zip(items, names, strict=True)):
        check(cancel)
        report_progress(progress, index, total, record.path)
        ids, classes = render_masks(record, instances, class_index)
        png = Path(name).stem + ".png"
        inst_path = out_dir / "instances" / png
        report.files.append(write_bytes_atomic(inst_path, encode_image(inst_path, ids,
                                                                       rgb=False)))
        report.written.append(Written(int(record.id or 0), inst_path,
                                      instances=list(range(len(instances)))))
        sem_path = out_dir / "semantic" / png
        report.files.append(write_bytes_atomic(sem_path, _palette_png(classes, all_labels)))
        entries.append({"file_name": record.path, "width": record.width,
                        "height": record.height, "instances": f"instances/{png}",
                        "semantic": f"semantic/{png}", "count": len(instances)})
        report.images += 1
        report.instances += len(instances)
    check(cancel)
    lines = [BACKGROUND] + [label.name for label in all_labels]
    report.files.append(write_text_atomic(out_dir / "classes.txt", "\n".join(lines) + "\n"))
    classes_json = [{"index": 0, "name": BACKGROUND, "colour": "#000000"}] + [
        {"index": i, "name": label.name, "colour": label.colour}
        for i, label in enumerate(all_labels, start=1)]
    report.files.append(write_text_atomic(out_dir / "classes.json",
                                          json.dumps(classes_json, indent=2)))
    report.files.append(write_text_atomic(out_dir / "index.json",
                                          json.dumps({"images": entries}, indent=2)))
    report_progress(progress, total, total, "done")
    return report


# ---------------------------------------------------------------------------------------------
# Import


def _read_png(path: Path) -> np.ndarray:
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    if sniff_format(data[:16].tobytes()) != "PNG":  # OpenCV decodes any format it knows
        raise FormatError(f"{path}: not a PNG")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FormatError(f"{path}: not a readable PNG")
    return image if image.ndim == 2 else image[..., 0]


def _read_semantic(path: Path) -> np.ndarray:
    try:
        with Image.open(path, formats=["PNG"]) as image:  # palette indices, not colours
            return np.asarray(image if image.mode in ("P", "L", "I;16", "I") else
                              image.convert("L"))
    except OSError as exc:
        raise FormatError(f"{path}: not a readable PNG ({exc})") from exc


def _read_classes(src: Path) -> list[tuple[str, str | None]]:
    if (src / "classes.json").is_file():
        path = src / "classes.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, list):
                raise RecordProblem(f"expected a list of classes, got {json_type(data)}")
            by_index: dict[int, tuple[str, str | None]] = {}
            for i, entry in enumerate(data):
                index = integer(field(entry, "index", f"[{i}]"), f"[{i}].index")
                colour = entry.get("colour")
                by_index[index] = (str(field(entry, "name", f"[{i}]")),
                                   colour if isinstance(colour, str) else None)
        except (OSError, ValueError) as exc:  # RecordProblem is a ValueError
            raise FormatError(f"{path}: not a readable class list ({exc})") from exc
        last = max(by_index, default=0)
        return [by_index.get(i, (f"class_{i}", None)) for i in range(last + 1)]
    if (src / "classes.txt").is_file():
        try:
            lines = (src / "classes.txt").read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError) as exc:
            raise FormatError(f"{src / 'classes.txt'}: not a readable class list ({exc})") \
                from exc
        return [(line.strip(), None) for line in lines if line.strip()]
    raise FormatError(f"{src}: no classes.json or classes.txt")


def _entry_png(src: Path, entry: dict[str, Any], key: str, where: str,
               size: tuple[int, int], semantic: bool = False) -> np.ndarray:
    """The PNG an index entry names under ``key``, checked to have the image's size."""
    name = field(entry, key, where)
    if not isinstance(name, str) or not name:
        raise RecordProblem(f"{where}.{key}: expected a file name, got {show(name)}")
    path = src / name
    if not path.is_file():
        raise RecordProblem(f"{where}.{key}: {path} not found")
    try:
        pixels = _read_semantic(path) if semantic else _read_png(path)
    except (FormatError, OSError) as exc:
        raise RecordProblem(f"{where}.{key}: {exc}") from exc
    width, height = size
    if pixels.shape[:2] != (height, width):
        raise RecordProblem(f"{where}.{key}: {path} is {pixels.shape[1]}x{pixels.shape[0]} "
                            f"pixels, the image is {width}x{height}")
    return pixels


def read_masks(src: Path, *, project_size: SizeLookup | None = None) -> Dataset:
    """Read a PNG-mask export (``index.json``, ``classes.json``, instance and semantic PNGs).
    An index entry that cannot be used (a field missing, a PNG missing or of another size than
    the image) is skipped with a warning naming it (``images[2].instances: ...``); an entry
    without a size takes the size of the project image it names (``project_size``)."""
    src = Path(src)
    index_path = src / "index.json"
    try:
        entries = json.loads(index_path.read_text(encoding="utf-8"))["images"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"{index_path}: not a readable mask index ({exc})") from exc
    if not isinstance(entries, list):
        raise FormatError(f"{index_path}: images: expected a list, got {json_type(entries)}")
    classes = _read_classes(src)
    result = Dataset()
    for name, colour in classes[1:]:
        if name not in result.label_names():
            result.ensure_label(name)
            if colour:
                result.labels[-1].colour = colour
    for i, entry in enumerate(entries):
        where = f"images[{i}]"
        try:
            file_name = field(entry, "file_name", where)
            if not isinstance(file_name, str) or not file_name.strip():
                raise RecordProblem(f"{where}.file_name: expected a file name, got "
                                    f"{show(file_name)}")
            size, note = image_record_size(entry, where, ("width", "height"), None,
                                           file_name, project_size)
            ids = _entry_png(src, entry, "instances", where, size)
            semantic = (_entry_png(src, entry, "semantic", where, size, semantic=True)
                        if entry.get("semantic") else None)
        except RecordProblem as exc:
            result.warnings.append(f"{index_path}: {exc}; skipped")
            continue
        if note is not None:
            result.warnings.append(f"{index_path}: {note}")
        image_id = len(result.images) + 1
        record = ImageRecord(path=file_name, width=size[0], height=size[1], content_hash="",
                             id=image_id)
        result.images.append(record)
        result.sources[image_id] = f"{index_path} {where}"
        for number in np.unique(ids):
            if number == 0:
                continue
            mask = ids == number
            label = _majority_class(semantic, mask, classes)
            geom = exact_geometry(mask)
            if geom is None:
                continue
            result.ensure_label(label)
            result.instances.append(Instance(image_id=image_id, label=label, geometry=geom))
    return result


def _majority_class(semantic: np.ndarray | None, mask: np.ndarray,
                    classes: list[tuple[str, str | None]]) -> str:
    if semantic is None or semantic.shape != mask.shape:
        return classes[1][0] if len(classes) > 1 else "object"
    values = semantic[mask].astype(np.int64)
    values = values[values > 0]
    if len(values) == 0:
        return classes[1][0] if len(classes) > 1 else "object"
    index = int(np.bincount(values).argmax())
    return classes[index][0] if index < len(classes) else f"class_{index}"
