"""Where each format places its coordinates so that its reader draws the project's mask.

The project's mask of an instance is the pixels whose centres its polygons enclose (the
pycocotools convention, ``app.core.geometry``). Readers differ:

- **pycocotools** (COCO) fills the same pixels, up to rounding points to 1/5 px: COCO polygons
  are the project's polygons, or those traced from its mask where that rounding would tip a
  pixel (``app.core.formats.coco``).
- **Ultralytics** (YOLO) and **labelme** draw with ``cv2.fillPoly`` / ``PIL.ImageDraw.polygon``
  on integer points (``app.core.formats.readers``): pixel (col, row) is the point (col, row)
  and a pixel is drawn when it lies inside the polygon or on its outline. A polygon whose
  vertices are the centres of the mask's boundary pixels, one after another along the
  8-connected contour (``cv2.findContours``), with the holes' contours, so draws exactly the
  mask: its outline is the boundary pixels, its inside the rest. That is what these formats
  get: the contours of the project's mask, straight runs of pixels merged into one edge (a
  straight horizontal, vertical or diagonal run is drawn as the same pixels), no further
  simplification (any other point set would change pixels these readers draw).
- A YOLO line is one polygon: the rings are bridged (``app.core.formats.bridges``). A reader
  that draws the outline draws a bridge's pixels too, so a bridge that crosses the background
  between two separate parts adds its pixels there (no line joins two parts without): the
  bridges are the shortest the rings allow, and a part (with the parts beyond it) is left out
  when its bridge would add more wrong pixels than the part has (``_worth_bridging``), so that
  the line draws as few wrong pixels as one line can.

Import applies the inverse: the reader's own drawing gives the mask, and the mask becomes
polygons with ``EXACT_TOLERANCE`` (see there), so an imported file holds exactly the pixels its
reader draws.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import shapely
from shapely.geometry import GeometryCollection

from app.core.formats.bridges import bridge_rings, bridge_tree, closest_vertices
from app.core.geometry import geometry_to_mask, mask_to_geometry, polygons_of
from app.core.types import Geometry

EXACT_TOLERANCE = 0.1
"""Simplification tolerance (pixels) of masks turned into polygons on import (an RLE, a PNG
mask, what a YOLO line or labelme shape draws). The outline through the pixel-edge midpoints
that ``mask_to_geometry`` simplifies keeps every pixel centre at least sqrt(2)/4 = 0.354 px
away, so an outline moved by at most 0.1 px still encloses exactly the mask's pixel centres,
with 0.25 px to spare for pycocotools, which rounds polygon points to 1/5 px before filling
(COCO polygons of the imported instance then give the same mask). Chosen on synthetic shapes
(random ellipses with holes, thin lines and specks): exact for MaskLoop and pycocotools up to
0.25 px, not at 0.3 px; with about 40 % fewer vertices than the pixel-edge staircase."""

YOLO_OFFSET = 0.45
"""What a YOLO vertex adds to its pixel's index before it is divided by the image size.
Ultralytics truncates ``value * size`` to an integer and supervision rounds it: any offset in
[0, 0.5) gives the pixel back under both. In training, Ultralytics also inserts points along
the edges (``resample_segments``) before it truncates them, and those land on the edge's own
pixels more often the closer the offset is to 0.5 (measured on synthetic shapes: 0.25 moved
1,933 pixels, 0.45 864). 0.45 keeps 0.05 px from the rounding boundary, far more than the
error of the decimals written (``yolo_decimals``) and of float32."""


def yolo_decimals(width: int, height: int) -> int:
    """Decimals of the YOLO values: 6 (Ultralytics' own), 8 for images over 50,000 px, so that
    rounding moves a point by less than 0.025 px."""
    return 6 if max(width, height) <= 50_000 else 8


def exact_geometry(mask: np.ndarray) -> Geometry | None:
    """The polygons of a mask that enclose exactly its pixels (see ``EXACT_TOLERANCE``)."""
    return mask_to_geometry(mask, EXACT_TOLERANCE)


def instance_mask(geom: Geometry, height: int, width: int) -> tuple[np.ndarray, int, int]:
    """(mask crop, x0, y0): the project's mask of ``geom`` cut to its polygons' box (one pixel
    more on every side, so that contours never touch the crop's edge)."""
    parts = polygons_of(geom)
    if not parts:
        return np.zeros((0, 0), dtype=bool), 0, 0
    x0, y0, x1, y1 = shapely.total_bounds(np.asarray(parts + [None], dtype=object)[:-1])
    c0, r0 = max(0, math.floor(x0) - 1), max(0, math.floor(y0) - 1)
    c1, r1 = min(width, math.ceil(x1) + 1), min(height, math.ceil(y1) + 1)
    if c1 <= c0 or r1 <= r0:
        return np.zeros((0, 0), dtype=bool), 0, 0
    moved = shapely.transform(np.asarray(parts + [None], dtype=object)[:-1],
                              lambda xy: xy - [c0, r0])  # exact: whole pixels, to >= 0
    return geometry_to_mask(GeometryCollection(list(moved)), r1 - r0, c1 - c0), c0, r0


def _merge_runs(ring: np.ndarray) -> np.ndarray:
    """A closed ring of 8-connected pixels without the points inside straight runs (where the
    unit step in and the unit step out are the same)."""
    if len(ring) < 3:
        return ring
    step_in = ring - np.roll(ring, 1, axis=0)
    step_out = np.roll(ring, -1, axis=0) - ring
    unit = np.abs(step_out).max(axis=1) == 1
    keep = ~((step_in == step_out).all(axis=1) & unit)
    return ring[keep] if keep.sum() >= 1 else ring[:1]


def pixel_contours(mask: np.ndarray, x0: int = 0, y0: int = 0, *, merge: bool = True
                   ) -> tuple[list[np.ndarray], list[bool]]:
    """The contours of ``mask`` through its boundary pixels' centres, as int pixel indices
    (offset by (x0, y0)), straight runs merged unless ``merge`` is False; and for each
    whether it is a hole's."""
    contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP,
                                           cv2.CHAIN_APPROX_NONE, offset=(x0, y0))
    if not contours:
        return [], []
    holes = [bool(h[3] != -1) for h in hierarchy[0]]
    rings = [c.reshape(-1, 2).astype(np.int64) for c in contours]
    return ([_merge_runs(r) for r in rings] if merge else rings), holes


def padded(points: np.ndarray) -> np.ndarray:
    """At least 3 points (a lone pixel or a straight line repeats its last point): readers
    need 3, and a repeated point draws nothing more."""
    if 0 < len(points) < 3:
        return np.concatenate([points, np.repeat(points[-1:], 3 - len(points), axis=0)])
    return points


def _parts(crop: np.ndarray) -> list[tuple[int, list[np.ndarray]]]:
    """(pixel count, [outer contour, hole contours...]) of each 8-connected part of a mask,
    largest first; the contours list every boundary pixel."""
    crop = crop.astype(np.uint8)
    contours, hierarchy = cv2.findContours(crop, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return []
    _, labels = cv2.connectedComponents(crop, connectivity=8)
    counts = np.bincount(labels.ravel())
    parent = hierarchy[0][:, 3]
    parts = []
    for i, contour in enumerate(contours):
        if parent[i] == -1:
            x, y = contour[0, 0]
            rings = [contour.reshape(-1, 2)] + [contours[j].reshape(-1, 2)
                                                 for j in np.flatnonzero(parent == i).tolist()]
            parts.append((int(counts[labels[y, x]]), [r.astype(np.int64) for r in rings]))
    return sorted(parts, key=lambda part: -part[0])


def _worth_bridging(parts: list[tuple[int, list[np.ndarray]]]) -> list[int]:
    """The parts (indices, the largest first) that one bridged line should hold: along the
    bridges' tree from the largest part, a part and the parts beyond it are kept when they
    have more pixels than their bridge draws outside the mask (max(|dx|, |dy|) - 1 pixels)."""
    if len(parts) < 2:
        return list(range(len(parts)))
    outers = [rings[0] for _, rings in parts]
    children: dict[int, list[int]] = {}
    cost: dict[int, int] = {}
    for parent, child in bridge_tree(outers):
        i, j = closest_vertices(outers[parent], outers[child])
        cost[child] = max(0, int(np.abs(outers[parent][i] - outers[child][j]).max()) - 1)
        children.setdefault(parent, []).append(child)
    order = [0]
    for node in order:  # breadth first: parents before children
        order.extend(children.get(node, []))
    value = {k: float(area) for k, (area, _) in enumerate(parts)}
    for node in reversed(order):
        for child in children.get(node, []):
            value[node] += max(0.0, value[child] - cost[child])
    kept = [0]
    for node in kept:
        kept.extend(c for c in children.get(node, []) if value[c] > cost[c])
    return sorted(kept)


def yolo_points(geom: Geometry, height: int, width: int) -> np.ndarray:
    """The pixel indices (N, 2), N >= 3, of the one YOLO polygon of ``geom``: the contours of
    its mask's parts worth bridging (``_worth_bridging``) joined into one path; empty when the
    mask is."""
    crop, x0, y0 = instance_mask(geom, height, width)
    parts = _parts(crop)
    rings = [ring + (x0, y0) for k in _worth_bridging(parts) for ring in parts[k][1]]
    return padded(_merge_runs(bridge_rings(rings).astype(np.int64)))


def yolo_values(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised YOLO values (N * 2) of pixel indices (see ``YOLO_OFFSET``)."""
    return ((points + YOLO_OFFSET) / np.array([width, height], dtype=float)).reshape(-1)


def labelme_polygons(geom: Geometry, height: int, width: int) -> list[np.ndarray] | None:
    """The labelme polygons (pixel indices, each of 3 points or more) of ``geom``: one per
    outer contour of its mask. None when the mask has a hole (a labelme polygon cannot have
    one: the instance becomes a mask shape)."""
    crop, x0, y0 = instance_mask(geom, height, width)
    rings, holes = pixel_contours(crop, x0, y0)
    if any(holes):
        return None
    return [padded(ring) for ring in rings]
