"""Overlay previews: each image with its masks drawn translucent in the label colour, outlined,
and labelled with the class name (what Segmind's ``overlay_mask`` and fal's ``apply_mask``
return), for review and reports."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from app.core.errors import FormatError, ImageError
from app.core.formats.common import (
    ExportItem,
    ExportReport,
    encode_image,
    hex_to_rgb,
    image_file,
    ordered_labels,
    report_progress,
    unique_file_names,
    write_bytes_atomic,
)
from app.core.geometry import geometry_to_mask, polygons_of
from app.core.images import load_image
from app.core.jobs import CancelToken, Progress, check
from app.core.types import Instance, Label

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_TEXT_BG = (20, 20, 20)
_TEXT_FG = (255, 255, 255)


def _outline(canvas: np.ndarray, inst: Instance, colour: tuple[int, int, int],
             thickness: int) -> None:
    rings = []
    for part in polygons_of(inst.geometry):
        for ring in (part.exterior, *part.interiors):
            # pixel-edge coordinates -> cv2's pixel-centre coordinates, fixed point
            pts = (np.asarray(ring.coords)[:, :2] - 0.5) * (1 << _SHIFT)
            rings.append(np.round(pts).astype(np.int32))
    if rings:
        cv2.polylines(canvas, rings, True, colour, thickness, cv2.LINE_AA, _SHIFT)


def _caption(canvas: np.ndarray, text: str, x: float, y: float, scale: float) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    thickness = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    h, w = canvas.shape[:2]
    pad = max(2, round(3 * scale))
    x0 = int(min(max(x, 0), max(w - tw - 2 * pad, 0)))
    y0 = int(min(max(y - th - base - 2 * pad, 0), max(h - th - base - 2 * pad, 0)))
    cv2.rectangle(canvas, (x0, y0), (x0 + tw + 2 * pad, y0 + th + base + 2 * pad), _TEXT_BG, -1)
    cv2.putText(canvas, text, (x0 + pad, y0 + pad + th), font, scale, _TEXT_FG, thickness,
                cv2.LINE_AA)


def render_overlay(
    image: np.ndarray,
    instances: Sequence[Instance],
    colours: Mapping[str, str],
    *,
    alpha: float = 0.45,
    outline: int = 2,
    captions: bool = True,
) -> np.ndarray:
    """A copy of ``image`` (RGB uint8) with ``instances`` drawn over it: fill at ``alpha`` in
    the label colour (``colours``: label name -> "#rrggbb"), an outline and the class name."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    canvas = image.astype(np.float32)
    for inst in instances:
        colour = np.array(hex_to_rgb(colours.get(inst.label, "#ff0000")), dtype=np.float32)
        mask = geometry_to_mask(inst.geometry, h, w)
        canvas[mask] = canvas[mask] * (1.0 - alpha) + colour * alpha
    out = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    for inst in instances:
        colour_t = hex_to_rgb(colours.get(inst.label, "#ff0000"))
        if outline > 0:
            _outline(out, inst, colour_t, outline)
    if captions:
        scale = max(0.4, min(h, w) / 900)
        for inst in instances:
            if inst.geometry.is_empty:
                continue
            x0, y0, _, _ = inst.geometry.bounds
            _caption(out, inst.label, x0, y0, scale)
    return out


def write_overlays(
    items: Iterable[ExportItem],
    labels: Sequence[Label],
    out_dir: Path,
    *,
    image_root: Path,
    image_format: str = "jpg",
    alpha: float = 0.45,
    outline: int = 2,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> ExportReport:
    """Write one overlay preview per image into ``out_dir`` as ``image_format`` ("jpg" or
    "png"), each written atomically; unreadable or missing images are skipped with a warning."""
    if image_format not in ("jpg", "jpeg", "png"):
        raise FormatError(f"overlay image format must be jpg or png, got {image_format!r}")
    items = list(items)
    out_dir = Path(out_dir)
    colours = {label.name: label.colour for label in ordered_labels(labels, items)}
    names = unique_file_names(record.path for record, _ in items)
    report = ExportReport()
    total = len(items)
    for index, ((record, instances), name) in enumerate(zip(items, names, strict=True)):
        check(cancel)
        report_progress(progress, index, total, record.path)
        src = image_file(image_root, record)
        try:
            image = load_image(src)
        except ImageError as exc:
            report.warnings.append(f"{src}: {exc}; no overlay written")
            continue
        overlay = render_overlay(image, instances, colours, alpha=alpha, outline=outline)
        dst = out_dir / f"{Path(name).stem}.{image_format}"
        report.files.append(write_bytes_atomic(dst, encode_image(dst, overlay)))
        report.images += 1
        report.instances += len(instances)
    report_progress(progress, total, total, "done")
    return report
