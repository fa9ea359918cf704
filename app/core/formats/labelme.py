"""labelme JSON: one file per image, beside a copy of (or a reference to) the image.

Points are placed for labelme's own reading (``labelme.utils.shape_to_mask``: PIL fills the
polygon and draws its outline on integer pixels, see ``app.core.formats.readers``), so that it
draws exactly the project's mask: they are the centres of the mask's boundary pixels along its
contours, as integer pixel indices (``app.core.formats.placement``). labelme has no holes, so:

- an instance whose mask has no hole becomes one ``"polygon"`` shape per part; the parts of one
  instance share a ``group_id`` (labelme's own way to group shapes into one object, as in its
  ``labelme2coco`` example);
- an instance whose mask has a hole becomes one ``"mask"`` shape (labelme >= 5.3): ``"mask"``
  is a base64 PNG (uint8 0/1) of the mask cropped to its box and ``"points"`` is that box as
  ``[[x1, y1], [x2, y2]]``, inclusive pixel indices, exactly as labelme writes it.

Import reads ``polygon``, ``mask``, ``rectangle`` and ``circle`` shapes (others are skipped with
a warning) as labelme draws them, and takes those pixels exactly (``placement.EXACT_TOLERANCE``);
shapes with the same label and a non-null ``group_id`` form one instance. As labelme
does, an image whose file is missing is taken from the JSON's ``imageData``: the import writes
it beside the JSON (under ``imagePath``'s file name, else the JSON's name) without ever
replacing an existing file, and says so in a warning. A file without ``imageWidth`` /
``imageHeight`` takes the size from its image file.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image
from shapely.errors import ShapelyError
from shapely.ops import unary_union

from app.core.errors import FormatError
from app.core.formats.checks import RecordProblem, SizeLookup, field, image_record_size, show
from app.core.formats.common import (
    COPY_MODES,
    Dataset,
    ExportItem,
    ExportReport,
    Written,
    image_copy_mode,
    image_file,
    place_file,
    posix,
    report_progress,
    unique_file_names,
    write_text_atomic,
)
from app.core.formats.placement import exact_geometry, instance_mask, labelme_polygons
from app.core.formats.readers import b64_png_to_array, labelme_shape_to_mask
from app.core.geometry import make_valid_polygonal
from app.core.images import IMAGE_EXTENSIONS, IMAGE_FORMATS
from app.core.jobs import CancelToken, Progress, check
from app.core.types import Geometry, ImageRecord, Instance, Label

LABELME_VERSION = "5.5.0"
IMAGE_MODES = ("reference", *COPY_MODES)


def _mask_to_b64(mask: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _base_shape(label: str, points: list[list[float]], shape_type: str,
                group_id: int | None) -> dict[str, Any]:
    return {"label": label, "points": points, "group_id": group_id, "description": "",
            "shape_type": shape_type, "flags": {}, "mask": None}


def instance_shapes(inst: Instance, width: int, height: int,
                    group_id: int) -> list[dict[str, Any]]:
    """The labelme shapes of one instance (see the module docstring)."""
    polygons = labelme_polygons(inst.geometry, height, width)
    if polygons is None:
        crop, x0, y0 = instance_mask(inst.geometry, height, width)
        rows, cols = np.nonzero(crop)
        y1, y2 = y0 + int(rows.min()), y0 + int(rows.max())
        x1, x2 = x0 + int(cols.min()), x0 + int(cols.max())
        shape = _base_shape(inst.label, [[float(x1), float(y1)], [float(x2), float(y2)]],
                            "mask", None)
        shape["mask"] = _mask_to_b64(crop[y1 - y0:y2 - y0 + 1, x1 - x0:x2 - x0 + 1])
        return [shape]
    shapes = [_base_shape(inst.label, [[float(x), float(y)] for x, y in points.tolist()],
                          "polygon", None) for points in polygons]
    if len(shapes) > 1:
        for shape in shapes:
            shape["group_id"] = group_id
    return shapes


def export_labelme(
    items: Iterable[ExportItem],
    labels: Sequence[Label],
    out_dir: Path,
    *,
    image_root: Path,
    images: str = "copy",
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> ExportReport:
    """Write one labelme JSON per image into ``out_dir`` (each written atomically).
    ``images``: "copy" (default), "hardlink" or "symlink" put the image beside its JSON;
    "reference" points ``imagePath`` at the original file (relative to ``out_dir``).
    ``labels`` is taken for a signature like the other exporters' (labelme stores names only)."""
    if images not in IMAGE_MODES:
        raise FormatError(f"unknown images mode {images!r}: use one of {', '.join(IMAGE_MODES)}")
    items = list(items)
    out_dir = Path(out_dir)
    report = ExportReport()
    names = unique_file_names(record.path for record, _ in items)
    total = len(items)
    for index, ((record, instances), name) in enumerate(zip(items, names, strict=True)):
        check(cancel)
        report_progress(progress, index, total, record.path)
        src = image_file(image_root, record)
        if images == "reference":
            try:
                image_path = os.path.relpath(src.resolve(), out_dir.resolve())
            except ValueError:  # another drive (Windows)
                image_path = str(src.resolve())
            if not src.is_file():
                report.warnings.append(f"{src}: image file missing (the JSON refers to it)")
        elif src.is_file():
            report.files.append(place_file(src, out_dir / name, image_copy_mode(record, images)))
            image_path = name
        else:
            report.warnings.append(f"{src}: image file missing; not copied, JSON still written")
            image_path = name
        shapes: list[dict[str, Any]] = []
        json_path = out_dir / (Path(name).stem + ".json")
        written = Written(int(record.id or 0), json_path)
        for number, inst in enumerate(instances, start=1):
            inst_shapes = instance_shapes(inst, record.width, record.height, number)
            if not inst_shapes:
                report.warnings.append(f"{record.path}: an instance of {inst.label!r} covers "
                                       "no pixel; not exported")
                continue
            shapes += inst_shapes
            written.instances.append(number - 1)
            report.instances += 1
        data: dict[str, Any] = {
            "version": LABELME_VERSION,
            "flags": {},
            "shapes": shapes,
            "imagePath": Path(image_path).as_posix(),
            "imageData": None,
            "imageHeight": record.height,
            "imageWidth": record.width,
        }
        report.files.append(write_text_atomic(json_path, json.dumps(data, indent=2,
                                                                    ensure_ascii=False)))
        report.written.append(written)
        report.images += 1
    report_progress(progress, total, total, "done")
    return report


# ---------------------------------------------------------------------------------------------
# Import


def shape_geometry(shape: dict[str, Any], width: int, height: int) -> Geometry | None:
    """The geometry of the pixels labelme draws for one shape (``readers``); ValueError for
    shape types that have no area or points that are not finite numbers."""
    kind = shape.get("shape_type") or "polygon"
    points = np.asarray(shape.get("points") or [], dtype=float).reshape(-1, 2)
    if not np.isfinite(points).all():
        raise ValueError("points: not finite numbers")
    if kind == "mask":
        if not isinstance(shape.get("mask"), str) or len(points) != 2:
            raise ValueError("a mask shape needs 'mask' data and two box points")
        (x1, y1), (x2, y2) = points.astype(int)
        if not (0 <= x1 < width and 0 <= y1 < height):
            raise ValueError(f"mask box corner ({x1}, {y1}) is outside the {width}x{height} image")
        crop = b64_png_to_array(shape["mask"]).astype(bool)
        if crop.ndim != 2:
            raise ValueError("mask: not a one-channel image")
        full = np.zeros((height, width), dtype=bool)
        h = min(crop.shape[0], y2 - y1 + 1, height - y1)
        w = min(crop.shape[1], x2 - x1 + 1, width - x1)
        full[y1:y1 + h, x1:x1 + w] = crop[:h, :w]
        return exact_geometry(full)
    if kind in ("polygon", "rectangle", "circle"):
        return exact_geometry(labelme_shape_to_mask(height, width, points.tolist(), kind))
    raise ValueError(f"shape type {kind!r} has no area")


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _image_record(json_path: Path, data: dict[str, Any], root: Path, image_id: int,
                  project_size: SizeLookup | None,
                  ) -> tuple[ImageRecord, Path | None, str | None]:
    """(record, image file or None, note on where the size came from). RecordProblem when the
    file says no usable size and its image is not found."""
    raw_path = data.get("imagePath")
    image_path = posix(raw_path) if isinstance(raw_path, str) else ""
    file = (json_path.parent / image_path) if image_path else None
    if file is not None and _is_file(file):
        file = file.resolve()
        try:
            rel = file.relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = Path(image_path).name
    else:
        file = None
        rel = Path(image_path).name if image_path else json_path.stem
    (width, height), note = image_record_size(data, "", ("imageWidth", "imageHeight"), file,
                                              rel, project_size)
    record = ImageRecord(path=rel, width=width, height=height, content_hash="", id=image_id)
    return record, file, note


def read_labelme(src: Path, *, project_size: SizeLookup | None = None) -> Dataset:
    """Read every labelme JSON file under ``src`` (a folder, searched recursively, or one file).

    JSON files without ``shapes`` are not labelme files and are passed over; finding none at
    all is an error. An image file that is missing but embedded in its JSON (``imageData``,
    as labelme saves by default) is listed in ``embedded_images``: the import writes it out
    (see ``write_embedded_image``). A file or shape that cannot be read is skipped with a
    warning naming it (``shapes[2].points: ...``). ``project_size`` gives the size of an image
    that the file and its image file lack."""
    src = Path(src)
    files = [src] if src.is_file() else sorted(src.rglob("*.json"))
    root = src.parent if src.is_file() else src
    result = Dataset()
    found = 0
    for json_path in files:
        try:
            data = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            if src.is_file():
                raise FormatError(f"{json_path}: not a readable labelme file ({exc})") from exc
            result.warnings.append(f"{json_path}: not readable JSON ({exc}); skipped")
            continue
        if not isinstance(data, dict) or "shapes" not in data:
            continue  # some other JSON file in the folder
        found += 1
        shapes = data["shapes"]
        if not isinstance(shapes, list):
            result.warnings.append(f"{json_path}: shapes: expected a list, got {show(shapes)}; "
                                   "file skipped")
            continue
        image_id = len(result.images) + 1
        try:
            record, file, note = _image_record(json_path, data, root, image_id, project_size)
        except RecordProblem as exc:
            result.warnings.append(f"{json_path}: {exc}; file skipped")
            continue
        if note is not None:
            result.warnings.append(f"{json_path}: {note}")
        result.images.append(record)
        result.sources[image_id] = str(json_path)
        if file is not None:
            result.image_files[image_id] = file
        elif isinstance(data.get("imageData"), str) and data["imageData"]:
            result.embedded_images[image_id] = json_path
        _read_shapes(result, json_path, shapes, record)
    if not found:
        if src.is_file():
            raise FormatError(f"{src}: not a labelme file (it has no 'shapes')")
        raise FormatError(f"{src}: no labelme file found ({len(files)} JSON file(s), none with "
                          "'shapes')")
    return result


def _read_shapes(result: Dataset, json_path: Path, shapes: list[Any],
                 record: ImageRecord) -> None:
    grouped: dict[tuple[str, tuple[str, Any]], list[Geometry]] = {}
    for i, shape in enumerate(shapes):
        where = f"shapes[{i}]"
        try:
            raw_label = field(shape, "label", where)
            if not isinstance(raw_label, str | int | float) or isinstance(raw_label, bool) \
                    or not str(raw_label).strip():
                raise RecordProblem(f"{where}.label: expected a name, got {show(raw_label)}")
            label = str(raw_label)
            group = shape.get("group_id")
            if group is not None and (isinstance(group, bool)
                                      or not isinstance(group, int | str)):
                raise RecordProblem(f"{where}.group_id: expected an integer, a string or null, "
                                    f"got {show(group)}")
            geom = shape_geometry(shape, record.width, record.height)
        except RecordProblem as exc:
            result.warnings.append(f"{json_path}: {exc}; skipped")
            continue
        except (TypeError, ValueError, OSError, ShapelyError) as exc:
            result.warnings.append(f"{json_path}: {where}: {exc}; skipped")
            continue
        if geom is None or geom.is_empty:
            result.warnings.append(f"{json_path}: {where}: encloses nothing; skipped")
            continue
        result.ensure_label(label)
        key = (label, ("group", group) if group is not None else ("shape", i))
        grouped.setdefault(key, []).append(geom)
    for (label, _), geoms in grouped.items():
        geom = geoms[0] if len(geoms) == 1 else make_valid_polygonal(unary_union(geoms))
        if geom is not None:
            result.instances.append(Instance(image_id=int(record.id or 0), label=label,
                                             geometry=geom))


# An embedded image is written beside its JSON under imagePath's file name, or else under the
# JSON's own name with the image's extension; never over an existing file.
EMBEDDED_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif",
                     "WEBP": ".webp", "GIF": ".gif"}


@dataclass
class EmbeddedImage:
    """The image a labelme file embeds (``imageData``) and where it says the image is."""

    json_path: Path
    image_path: str
    data: bytes
    suffix: str

    def candidates(self) -> list[Path]:
        """Where it may be written, in order of preference (see ``write_embedded_image``)."""
        folder = self.json_path.parent
        name = PurePosixPath(self.image_path).name
        found = []
        if name and PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS:
            found.append(folder / name)
        found.append(folder / (self.json_path.stem + self.suffix))
        return found


def read_embedded_image(json_path: Path) -> EmbeddedImage:
    """The image embedded in a labelme file; FormatError when it is not a readable image."""
    try:
        data = json.loads(Path(json_path).read_text(encoding="utf-8"))
        raw = base64.b64decode(data["imageData"], validate=True)
        with Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS) as image:  # never EPS
            kind = str(image.format)
            image.verify()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"{json_path}: imageData: not a readable image ({exc})") from exc
    image_path = data.get("imagePath")
    return EmbeddedImage(json_path=Path(json_path),
                         image_path=posix(image_path) if isinstance(image_path, str) else "",
                         data=raw, suffix=EMBEDDED_SUFFIXES.get(kind, f".{kind.lower()}"))


def write_embedded_image(image: EmbeddedImage) -> tuple[Path, str]:
    """Put ``image`` in a file beside its JSON so that a project can refer to it: the first of
    ``image.candidates()`` that does not exist is written; one that exists with the very same
    bytes is used as it is; an existing file is never replaced. Returns (file, a warning that
    says what was done); FormatError when every candidate is taken by another file."""
    what = f"{image.json_path}: image {image.image_path or '(no imagePath)'} not found"
    for path in image.candidates():
        if path.exists():
            try:
                same = path.is_file() and path.read_bytes() == image.data
            except OSError:
                same = False
            if same:
                return path, (f"{what}; using {path}, which holds the image embedded in the "
                              "file (imageData)")
            continue
        try:
            with path.open("xb") as f:  # "x": fails rather than replace a file made meanwhile
                f.write(image.data)
        except FileExistsError:
            continue
        except OSError as exc:
            raise FormatError(f"{what} and the image embedded in the file cannot be written "
                              f"to {path} ({exc.strerror or exc})") from exc
        return path, (f"{what}; the image embedded in the file (imageData) was written to "
                      f"{path}")
    taken = ", ".join(str(p) for p in image.candidates())
    raise FormatError(f"{what} and the image embedded in the file was not written: {taken} "
                      "already exist")
