"""Vectorised mask tracing and ring simplification for `app.core.geometry`.

All rings of a mask are handled at once as one flat (N, 2) coordinate array with a ring index
per point (rings stored one after another, a polygon's shell first, then its holes), so masks
with thousands of separate parts cost a few numpy passes instead of a Python loop per part.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import shapely


@dataclass
class Rings:
    """Rings stored flat: `coords[i]` belongs to ring `ring[i]` (non-decreasing, no closing
    point); `polygon[k]` is ring k's polygon, and a polygon's first ring is its shell."""

    coords: np.ndarray  # (N, 2) float64
    ring: np.ndarray  # (N,) int64
    polygon: np.ndarray  # (R,) int64

    @property
    def count(self) -> int:
        return len(self.polygon)


def _starts(ring: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """First index and length of each of `count` rings in a non-decreasing ring-id array."""
    lengths = np.bincount(ring, minlength=count)
    return np.cumsum(lengths) - lengths, lengths


def _next_index(ring: np.ndarray, count: int) -> np.ndarray:
    """For every point the index of the next point of its ring, wrapping around."""
    starts, lengths = _starts(ring, count)
    idx = np.arange(len(ring)) + 1
    last = starts + lengths - 1
    idx[last[lengths > 0]] = starts[lengths > 0]
    return idx


def edge_grid(mask: np.ndarray) -> np.ndarray:
    """The mask at twice the resolution plus one, padded by one zero on every side.

    Without the padding, index k of the grid is the coordinate k/2: odd indices are pixel
    centres, even indices pixel edges. Pixel (c, r) covers indices 2c..2c+2, so two pixels
    touching at a corner share one grid cell and every contour OpenCV traces runs along pixel
    edges (bar cut corners, which `trace` restores).
    """
    h, w = mask.shape
    grid = np.zeros((2 * h + 3, 2 * w + 3), dtype=np.uint8)
    grid[2:-1:2, 2:-1:2] = mask  # pixel centres
    return cv2.dilate(grid, np.ones((3, 3), np.uint8))  # each centre grows to its 3x3 block


def _edge_points(pts: np.ndarray, ring: np.ndarray, count: int, midpoints: bool):
    """Grid contour points (k = 2 * coordinate) -> ring vertices in pixel coordinates.

    With `midpoints` False: the pixel corners of the exact pixel-edge staircase. With True:
    the midpoints of the unit pixel edges (every staircase corner cut by a quarter pixel, so
    every object pixel centre is inside and every background centre outside). OpenCV's
    8-connected trace cuts some corners diagonally; a diagonal step goes between two edge
    midpoints and the corner it cut is the grid point with both indices even. Collinear
    points are dropped.
    """
    px, py = pts[:, 0].copy(), pts[:, 1].copy()
    nxt = _next_index(ring, count)
    nx, ny = px[nxt], py[nxt]
    diagonal = (np.abs(nx - px) == 1) & (np.abs(ny - py) == 1)
    x_even = (px & 1) == 0
    n = len(px)
    sx = np.empty(2 * n, px.dtype)
    sy = np.empty(2 * n, px.dtype)
    sx[0::2], sy[0::2] = px, py
    sx[1::2] = np.where(x_even, px, nx)  # the corner a diagonal step cut
    sy[1::2] = np.where(x_even, ny, py)
    use = np.ones(2 * n, bool)
    use[1::2] = diagonal
    if midpoints:
        use &= ((sx ^ sy) & 1) == 1
    else:
        use &= ((sx | sy) & 1) == 0
    sx, sy, seq_ring = sx[use], sy[use], np.repeat(ring, 2)[use]
    # Drop points where the direction does not change (straight runs of unit steps).
    after = _next_index(seq_ring, count)
    before = np.empty(len(sx), dtype=np.int64)
    before[after] = np.arange(len(sx))
    in_x, in_y = sx - sx[before], sy - sy[before]
    turn = (in_x * (sy[after] - sy) - in_y * (sx[after] - sx)) != 0
    turn |= (in_x == 0) & (in_y == 0)  # a ring of a single repeated point: keep it
    coords = np.stack([sx[turn], sy[turn]], axis=1)
    return (coords / 2.0 if midpoints else (coords >> 1).astype(np.float64)), seq_ring[turn]


def trace(mask: np.ndarray, midpoints: bool, x0: int, y0: int) -> Rings:
    """The rings of a uint8 mask whose top-left pixel is (x0, y0) in the image: one polygon
    per outer contour with its holes; rings of fewer than 3 vertices are dropped (a shell
    with its holes)."""
    contours, hierarchy = cv2.findContours(
        edge_grid(mask), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE
    )
    if not contours:
        return Rings(np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros(0, np.int64))
    parent = hierarchy[0][:, 3]
    # Order: each outer contour followed by its holes (holes of outer contour i have parent i).
    owner = np.where(parent == -1, np.arange(len(contours)), parent)
    order = np.lexsort((parent != -1, owner))
    lengths = np.array([len(contours[i]) for i in order])
    pts = np.concatenate([contours[i] for i in order])[:, 0, :] - 1  # int32
    ring = np.repeat(np.arange(len(order)), lengths)
    coords, ring = _edge_points(pts, ring, len(order), midpoints)
    coords += (x0, y0)
    # Drop short rings (and the holes of dropped shells), then renumber.
    n = np.bincount(ring, minlength=len(order))
    is_shell = parent[order] == -1
    poly = np.cumsum(is_shell) - 1
    ok = n >= 3
    ok &= ok[np.flatnonzero(is_shell)][poly]
    new_id = np.cumsum(ok) - 1
    keep_pt = ok[ring]
    poly_ok = poly[ok]
    _, poly_new = np.unique(poly_ok, return_inverse=True)
    return Rings(coords[keep_pt], new_id[ring[keep_pt]], poly_new.astype(np.int64))


def concat(parts: list[Rings]) -> Rings:
    """Several Rings one after another (polygon and ring numbers shifted)."""
    coords, ring, polygon = [], [], []
    r_off = p_off = 0
    for rings in parts:
        coords.append(rings.coords)
        ring.append(rings.ring + r_off)
        polygon.append(rings.polygon + p_off)
        r_off += rings.count
        p_off += int(rings.polygon.max()) + 1 if rings.count else 0
    if not coords:
        return Rings(np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros(0, np.int64))
    return Rings(np.concatenate(coords), np.concatenate(ring), np.concatenate(polygon))


def polygons(rings: Rings) -> np.ndarray:
    """An object array of shapely Polygons, one per polygon number."""
    if rings.count == 0:
        return np.empty(0, dtype=object)
    linear = shapely.linearrings(rings.coords, indices=rings.ring)
    return shapely.polygons(linear, indices=rings.polygon)


def douglas_peucker(rings: Rings, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Douglas-Peucker (OpenCV's) on every ring; a ring left with fewer than 3
    vertices is kept whole, and so is a ring of at most 4 (the midpoint ring of a single
    pixel, a diamond, which Douglas-Peucker keeps or collapses). The ring's vertices must be
    distinct. Returns the mask of kept points and, per ring, an upper bound of the area
    between the ring and its simplification: for each edge of a dropped run, the area
    between the edge and the run's chord."""
    n_pts, count = len(rings.coords), rings.count
    keep = np.zeros(n_pts, bool)
    if n_pts == 0:
        return keep, np.zeros(0)
    starts, lengths = _starts(rings.ring, count)
    xy = np.round(rings.coords * 2).astype(np.int64)  # vertices are on the half-pixel grid
    xy -= xy.min(axis=0)
    span = int(xy.max()) + 1
    key = (rings.ring * span + xy[:, 0]) * span + xy[:, 1]
    order = np.argsort(key)
    # Each ring is cut at its first vertex and the vertex farthest from it (as GEOS does);
    # both halves are simplified as open polylines, so those two vertices stay.
    d0 = np.hypot(*(rings.coords - rings.coords[starts][rings.ring]).T)
    far = np.maximum.reduceat(d0, starts)
    far_idx = np.flatnonzero(d0 == far[rings.ring])
    far_idx = far_idx[np.unique(rings.ring[far_idx], return_index=True)[1]]
    c32 = rings.coords.astype(np.float32)[:, None, :]
    kept: list[np.ndarray] = []
    small = lengths <= 4  # a pixel's diamond: kept whole or collapsed (then kept whole too)
    for s, n, f, tiny in zip(starts.tolist(), lengths.tolist(), far_idx.tolist(),
                             small.tolist(), strict=True):
        if tiny:
            kept.extend((c32[s : s + n, 0, :], c32[:0, 0, :]))
            continue
        ring32 = np.concatenate([c32[s : s + n], c32[s : s + 1]])
        first = cv2.approxPolyDP(ring32[: f - s + 1], tolerance, False)
        second = cv2.approxPolyDP(ring32[f - s :], tolerance, False)
        kept.append(first[:, 0, :])
        kept.append(second[1:-1, 0, :])
    n_kept = np.add.reduceat(np.array([len(k) for k in kept]), np.arange(0, 2 * count, 2))
    kept_xy = np.round(np.concatenate(kept).astype(np.float64) * 2).astype(np.int64)
    kept_xy -= np.round(rings.coords * 2).astype(np.int64).min(axis=0)
    kept_key = (np.repeat(np.arange(count), n_kept) * span + kept_xy[:, 0]) * span + kept_xy[:, 1]
    keep[order[np.searchsorted(key, kept_key, sorter=order)]] = True
    keep |= (n_kept < 3)[rings.ring]  # would collapse: kept as it is
    # For every edge j -> next(j): the kept vertices a (last at or before j) and b (first
    # after j), wrapping around the ring; the run's chord is a -> b.
    kept_idx = np.flatnonzero(keep)
    k_ring = rings.ring[kept_idx]
    first_kept = kept_idx[np.searchsorted(k_ring, np.arange(count))]
    last_kept = kept_idx[np.searchsorted(k_ring, np.arange(count), side="right") - 1]
    j = np.arange(n_pts)
    nj = _next_index(rings.ring, count)
    p = np.searchsorted(kept_idx, j, side="right") - 1
    same = (p >= 0) & (rings.ring[kept_idx[np.maximum(p, 0)]] == rings.ring)
    a_idx = np.where(same, kept_idx[np.maximum(p, 0)], last_kept[rings.ring])
    q = np.searchsorted(kept_idx, j + 1)
    q_ok = q < len(kept_idx)
    same = q_ok & (rings.ring[kept_idx[np.minimum(q, len(kept_idx) - 1)]] == rings.ring)
    b_idx = np.where(same, kept_idx[np.minimum(q, len(kept_idx) - 1)], first_kept[rings.ring])
    a = rings.coords[a_idx]
    chord = rings.coords[b_idx] - a
    length = np.hypot(chord[:, 0], chord[:, 1])
    length[length == 0] = 1.0
    u = chord / length[:, None]
    p0, p1 = rings.coords - a, rings.coords[nj] - a
    s0 = p0[:, 0] * u[:, 0] + p0[:, 1] * u[:, 1]
    s1 = p1[:, 0] * u[:, 0] + p1[:, 1] * u[:, 1]
    h0 = u[:, 0] * p0[:, 1] - u[:, 1] * p0[:, 0]
    h1 = u[:, 0] * p1[:, 1] - u[:, 1] * p1[:, 0]
    ds = np.abs(s1 - s0)
    denom = np.abs(h0) + np.abs(h1)
    denom[denom == 0] = 1.0
    area = np.where(h0 * h1 >= 0, ds * np.abs(h0 + h1) / 2,
                    ds * (h0 * h0 + h1 * h1) / (2 * denom))
    return keep, np.bincount(rings.ring, weights=area, minlength=count)


def select(rings: Rings, keep_ring: np.ndarray) -> Rings:
    """The rings where `keep_ring` is True (whole polygons), renumbered from 0."""
    new_ring = np.cumsum(keep_ring) - 1
    keep_pt = keep_ring[rings.ring]
    _, polygon = np.unique(rings.polygon[keep_ring], return_inverse=True)
    return Rings(rings.coords[keep_pt], new_ring[rings.ring[keep_pt]], polygon.astype(np.int64))


def intersecting_pairs(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of geometries that intersect. Only pairs whose boxes meet are
    tested, each from the side with more vertices (prepared), so one big geometry with many
    small ones around it stays cheap."""
    left, right = shapely.STRtree(geoms).query(geoms)
    pair = left < right
    left, right = left[pair], right[pair]
    if not len(left):
        return left, right
    size = shapely.get_num_coordinates(geoms)
    swap = size[left] < size[right]
    big, small = np.where(swap, right, left), np.where(swap, left, right)
    prepared = geoms[np.unique(big)]
    shapely.prepare(prepared)
    try:
        hit = shapely.intersects(geoms[big], geoms[small])
    finally:
        shapely.destroy_prepared(prepared)
    return left[hit], right[hit]


def rings_cross(polygons: np.ndarray) -> tuple[np.ndarray, bool]:
    """Per polygon: whether one of its rings touches itself or another of its rings; and
    whether rings of two different polygons touch."""
    rings, owner = shapely.get_rings(polygons, return_index=True)
    bad = np.zeros(len(polygons), bool)
    bad[owner[~shapely.is_simple(rings)]] = True
    left, right = intersecting_pairs(rings)
    same = owner[left] == owner[right]
    bad[owner[left[same]]] = True
    return bad, bool((~same).any())


def fill_polygons(polygons: np.ndarray, out: np.ndarray) -> bool:
    """`geometry_raster._fill_polygon` for many polygons in one pass: each polygon's crossings are
    counted in its own bounding box (the boxes laid out one after another, column by column),
    so the result is the same. Returns False (and does nothing) when the boxes together
    would be much larger than the image."""
    height, width = out.shape
    bounds = shapely.bounds(polygons)
    c0 = np.clip(np.floor(bounds[:, 0]), 0, width).astype(np.int64)
    c1 = np.clip(np.ceil(bounds[:, 2]), 0, width).astype(np.int64)
    r0 = np.clip(np.floor(bounds[:, 1]), 0, height).astype(np.int64)
    r1 = np.clip(np.ceil(bounds[:, 3]), 0, height).astype(np.int64)
    n_cols = np.maximum(c1 - c0, 0)
    n_rows = np.where(n_cols > 0, np.maximum(r1 - r0, 0) + 1, 0)  # one spare row
    n_rows[r1 <= r0] = 0
    n_cols[n_rows == 0] = 0
    size = n_rows * n_cols
    if int(size.sum()) > 4 * out.size + 1_000_000:
        return False
    offset = np.cumsum(size) - size
    coords, ring = shapely.get_coordinates(shapely.get_rings(polygons), return_index=True)
    _, owner = shapely.get_rings(polygons, return_index=True)
    same = ring[1:] == ring[:-1]
    x0, y0 = coords[:-1][same, 0], coords[:-1][same, 1]
    x1, y1 = coords[1:][same, 0], coords[1:][same, 1]
    poly = owner[ring[:-1][same]]
    lo, hi = c0[poly], c0[poly] + n_cols[poly]
    # Columns whose centre c + 0.5 lies in [min(x0, x1), max(x0, x1)) (see _fill_polygon).
    first = np.clip(np.ceil(np.minimum(x0, x1) - 0.5), lo, hi).astype(np.int64)
    stop = np.clip(np.ceil(np.maximum(x0, x1) - 0.5), lo, hi).astype(np.int64)
    counts = stop - first
    keep = counts > 0
    x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
    first, counts, poly = first[keep], counts[keep], poly[keep]
    edge = np.repeat(np.arange(len(counts)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    cols = first[edge] + (np.arange(int(counts.sum())) - starts)
    ys = y0[edge] + (cols + 0.5 - x0[edge]) * (y1[edge] - y0[edge]) / (x1[edge] - x0[edge])
    p = poly[edge]
    rows = np.clip(np.ceil(ys - 0.5), r0[p], r0[p] + n_rows[p] - 1).astype(np.int64)
    cell = offset[p] + (cols - c0[p]) * n_rows[p] + (rows - r0[p])
    total = int(size.sum())
    toggles = np.bincount(cell, minlength=total).astype(np.int64)
    csum = np.cumsum(toggles)
    # Parity down each column: the count since the column's first cell.
    n_columns = int(n_cols.sum())
    col_poly = np.repeat(np.arange(len(polygons)), n_cols)
    col_start = offset[col_poly] + (np.arange(n_columns) - np.repeat(np.cumsum(n_cols) - n_cols,
                                                                     n_cols)) * n_rows[col_poly]
    before = np.where(col_start > 0, csum[np.maximum(col_start - 1, 0)], 0)
    base = np.repeat(before, n_rows[col_poly])
    inside = np.flatnonzero((csum - base) & 1)
    owner_cell = np.searchsorted(offset, inside, side="right") - 1
    # cells of empty boxes share offsets with the next box: searchsorted picks the last one
    local = inside - offset[owner_cell]
    row = local % n_rows[owner_cell]
    col = local // n_rows[owner_cell]
    ok = row < n_rows[owner_cell] - 1
    out[(r0[owner_cell] + row)[ok], (c0[owner_cell] + col)[ok]] = True
    return True
