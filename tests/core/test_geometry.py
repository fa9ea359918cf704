"""Geometry: mask <-> polygon round trips, the pixel convention and validity (hit-tests and
vertex edits: test_geometry_edit.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely
from PIL import Image
from pycocotools import mask as mask_utils
from shapely.geometry import MultiPolygon, Polygon, box

from app.core import geometry as G
from app.core.geometry_edit import contains

GRABCUT_MASKS = sorted((Path(__file__).parents[2] / "data/grabcut/masks").glob("*.png"))


def _gt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    gt = np.array(Image.open(path))
    return gt == 255, gt == 128


def _vertex_count(geom) -> int:
    return sum(
        len(ring.coords) - 1
        for p in G.polygons_of(geom)
        for ring in (p.exterior, *p.interiors)
    )


def _raw_contour_count(mask: np.ndarray) -> int:
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE
    )
    return sum(len(c) for c in contours)


def _pycocotools_mask(geom, height: int, width: int) -> np.ndarray:
    """Decode each polygon's rings with pycocotools: exterior minus holes, parts ORed."""
    out = np.zeros((height, width), dtype=bool)
    for polygon in G.polygons_of(geom):
        rings = [np.asarray(r.coords)[:-1].ravel().tolist()
                 for r in (polygon.exterior, *polygon.interiors)]
        decoded = mask_utils.decode(mask_utils.frPyObjects(rings, height, width)).astype(bool)
        filled = decoded[..., 0]
        for k in range(1, decoded.shape[2]):
            filled &= ~decoded[..., k]
        out |= filled
    return out


def _synthetic() -> np.ndarray:
    """Three parts: a block with two holes, a separate disc, and an island inside hole 1."""
    m = np.zeros((120, 160), dtype=bool)
    m[10:110, 10:100] = True  # big block
    m[20:60, 20:60] = False  # hole 1
    m[70:100, 70:90] = False  # hole 2
    m[30:50, 30:50] = True  # island inside hole 1
    yy, xx = np.mgrid[:120, :160]
    m |= (xx - 130) ** 2 + (yy - 60) ** 2 <= 20**2  # a disc apart
    return m


# -- round trips on the real GrabCut masks ------------------------------------------------------


def test_grabcut_masks_are_present():
    assert len(GRABCUT_MASKS) == 50


@pytest.mark.parametrize("path", GRABCUT_MASKS, ids=lambda p: p.stem)
def test_grabcut_round_trip(path: Path):
    obj, ignore = _gt(path)
    geom = G.mask_to_geometry(obj)
    assert geom is not None and geom.is_valid
    back = G.geometry_to_mask(geom, *obj.shape)
    assert G.mask_iou(obj, back, ignore) >= 0.99
    assert _vertex_count(geom) <= 0.25 * _raw_contour_count(obj)


def test_grabcut_mean_vertex_ratio_is_small():
    ratios = []
    for path in GRABCUT_MASKS:
        obj, _ = _gt(path)
        ratios.append(_vertex_count(G.mask_to_geometry(obj)) / _raw_contour_count(obj))
    assert np.mean(ratios) < 0.15


@pytest.mark.parametrize("path", GRABCUT_MASKS[::10], ids=lambda p: p.stem)
def test_grabcut_exact_at_tolerance_zero(path: Path):
    obj, _ = _gt(path)
    geom = G.mask_to_geometry(obj, tolerance=0)
    assert np.array_equal(G.geometry_to_mask(geom, *obj.shape), obj)
    assert geom.area == obj.sum()  # pixel-edge outline: area is the pixel count
    for p in G.polygons_of(geom):  # integer pixel corners
        xy = np.asarray(p.exterior.coords)
        assert np.array_equal(xy, np.round(xy))


def test_pycocotools_decodes_the_same_mask():
    obj, _ = _gt(GRABCUT_MASKS[0])
    h, w = obj.shape
    exact = G.mask_to_geometry(obj, tolerance=0)
    assert np.array_equal(_pycocotools_mask(exact, h, w), G.geometry_to_mask(exact, h, w))
    # Simplified outlines have half-integer vertices, which pycocotools rounds to 1/5 pixel:
    # it may only disagree on pixels whose centres are within that rounding of the outline.
    geom = G.mask_to_geometry(obj)
    ours = G.geometry_to_mask(geom, h, w)
    ys, xs = np.nonzero(_pycocotools_mask(geom, h, w) != ours)
    distances = shapely.distance(geom.boundary, shapely.points(xs + 0.5, ys + 0.5))
    assert np.all(distances < 0.15)
    assert len(ys) < 0.01 * ours.sum()


# -- exactness, holes and parts ---------------------------------------------------------------


@pytest.mark.parametrize("tolerance", [0.0, 1e-9])
def test_random_masks_round_trip_exactly(tolerance: float):
    rng = np.random.default_rng(7)
    for trial in range(150):
        h, w = rng.integers(1, 30, 2)
        m = rng.random((h, w)) < rng.uniform(0.1, 0.9)  # checkerboards, pinches, 1-px holes
        if trial % 2:
            m = cv2.GaussianBlur(m.astype(np.float32), (5, 5), 1.0) > 0.5
        geom = G.mask_to_geometry(m, tolerance=tolerance)
        if not m.any():
            assert geom is None
            continue
        assert geom.is_valid
        assert np.array_equal(G.geometry_to_mask(geom, h, w), m), trial


def test_holes_and_parts_are_kept():
    m = _synthetic()
    geom = G.mask_to_geometry(m, tolerance=0)
    parts = sorted(G.polygons_of(geom), key=lambda p: p.area)
    assert isinstance(geom, MultiPolygon) and len(parts) == 3
    island, disc, block = parts
    assert island.area == 400 and len(island.interiors) == 0
    assert len(block.interiors) == 2 and block.area == 90 * 100 - 40 * 40 - 30 * 20
    assert disc.area == (m[:, 110:]).sum()
    assert island.within(Polygon(block.interiors[0])) or island.within(Polygon(block.interiors[1]))
    assert np.array_equal(G.geometry_to_mask(geom, *m.shape), m)

    simplified = G.mask_to_geometry(m)
    assert len(G.polygons_of(simplified)) == 3
    assert sum(len(p.interiors) for p in G.polygons_of(simplified)) == 2
    assert G.mask_iou(m, G.geometry_to_mask(simplified, *m.shape)) >= 0.995


def test_thin_and_tiny_parts_survive_simplification():
    m = np.zeros((60, 60), dtype=bool)
    m[np.arange(5, 55), np.arange(5, 55)] = True  # a 1-pixel-wide diagonal line
    m[10, 40:55] = True  # a 1-pixel-wide horizontal line
    m[50:52, 40] = True  # a 2-pixel speck
    m[30:32, 50:52] = True  # a 2x2 speck
    geom = G.mask_to_geometry(m)
    assert geom.is_valid and len(G.polygons_of(geom)) == 4
    assert G.mask_iou(m, G.geometry_to_mask(geom, 60, 60)) >= 0.99


def test_pixel_convention():
    square = G.geometry_to_mask(box(2, 2, 8, 8), 10, 10)
    expected = np.zeros((10, 10), dtype=bool)
    expected[2:8, 2:8] = True
    assert np.array_equal(square, expected)

    one = np.zeros((8, 8), dtype=bool)
    one[5, 3] = True  # row 5, column 3
    geom = G.mask_to_geometry(one, tolerance=0)
    assert geom.equals(box(3, 5, 4, 6))
    assert contains(geom, 3.5, 5.5) and not contains(geom, 2.5, 5.5)


def test_polygons_sharing_an_edge_share_no_pixel():
    # The diagonal passes exactly through pixel centres: each centre goes to one side only.
    lower = Polygon([(0, 0), (10, 10), (0, 10)])
    upper = Polygon([(0, 0), (10, 0), (10, 10)])
    a = G.geometry_to_mask(lower, 10, 10)
    b = G.geometry_to_mask(upper, 10, 10)
    assert not (a & b).any()
    assert (a | b).all()
    assert np.array_equal(a, np.tri(10, dtype=bool))  # centre on the edge: region below it


def test_empty_and_min_area():
    assert G.mask_to_geometry(np.zeros((5, 7), dtype=bool)) is None
    assert not G.geometry_to_mask(None, 4, 6).any()
    m = np.zeros((40, 40), dtype=bool)
    m[5:30, 5:30] = True
    m[10:12, 10:12] = False  # a 4-pixel hole
    m[35, 35] = True  # a 1-pixel speck
    geom = G.mask_to_geometry(m, tolerance=0, min_area=5)
    assert isinstance(geom, Polygon) and len(geom.interiors) == 0 and geom.area == 625
    assert G.mask_to_geometry(m[34:, 34:], min_area=5) is None


def test_geometry_partly_outside_the_image_is_clipped():
    mask = G.geometry_to_mask(box(-5, -5, 3, 2), 4, 4)
    assert mask.sum() == 6 and mask[:2, :3].all()


# -- validity and boolean operations ----------------------------------------------------------


def test_bow_tie_is_fixed():
    bow_tie = Polygon([(0, 0), (4, 4), (4, 0), (0, 4)])
    assert not bow_tie.is_valid
    fixed = G.make_valid_polygonal(bow_tie)
    assert isinstance(fixed, MultiPolygon) and fixed.is_valid
    assert len(fixed.geoms) == 2 and fixed.area == pytest.approx(8.0)
    assert G.make_valid_polygonal(Polygon([(0, 0), (1, 1), (2, 2)])) is None
    assert G.make_valid_polygonal(None) is None


def test_overlapping_parts_are_unioned():
    overlapping = MultiPolygon([box(0, 0, 4, 4), box(2, 2, 6, 6)])
    fixed = G.make_valid_polygonal(overlapping)
    assert isinstance(fixed, Polygon) and fixed.area == pytest.approx(28.0)


def test_union_and_difference():
    a, b = box(0, 0, 10, 10), box(5, 0, 15, 10)
    assert G.union(a, b).equals(box(0, 0, 15, 10))
    assert G.union(None, b).equals(b)
    far = G.union(a, box(20, 0, 30, 10))
    assert isinstance(far, MultiPolygon) and far.area == 200
    holed = G.difference(a, box(3, 3, 6, 6))
    assert isinstance(holed, Polygon) and len(holed.interiors) == 1 and holed.area == 91
    assert G.difference(box(3, 3, 6, 6), a) is None
    assert G.difference(a, None).equals(a)
    # Overlapping halves: what is left is one valid rectangle.
    assert G.difference(a, b).equals(box(0, 0, 5, 10))


def test_simplify_bbox_and_iou():
    circle = shapely.Point(50, 50).buffer(30, quad_segs=64)
    simple = G.simplify(circle, 1.0)
    assert simple.is_valid and len(simple.exterior.coords) < len(circle.exterior.coords) / 4
    assert G.bbox(box(1, 2, 3, 4)) == (1.0, 2.0, 3.0, 4.0)
    with pytest.raises(ValueError):
        G.bbox(Polygon())
    a = np.zeros((4, 4), dtype=bool)
    b = a.copy()
    assert G.mask_iou(a, b) == 1.0
    a[0, :2] = True
    b[0, 1:3] = True
    assert G.mask_iou(a, b) == pytest.approx(1 / 3)
    ignore = np.zeros_like(a)
    ignore[0, 0] = ignore[0, 2] = True
    assert G.mask_iou(a, b, ignore) == 1.0


# -- a big mask ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_big_mask_round_trip(benchmark):
    m = np.zeros((4000, 4000), dtype=np.uint8)
    cv2.circle(m, (1000, 1000), 800, 1, -1)
    cv2.circle(m, (1000, 1000), 300, 0, -1)
    cv2.circle(m, (1000, 1000), 100, 1, -1)  # an island in the hole
    cv2.ellipse(m, (2800, 2600), (1000, 600), 30, 0, 360, 1, -1)
    cv2.rectangle(m, (200, 3000), (1500, 3900), 1, -1)
    mask = m.astype(bool)

    def round_trip() -> np.ndarray:
        return G.geometry_to_mask(G.mask_to_geometry(mask), 4000, 4000)

    back = benchmark.pedantic(round_trip, rounds=3, iterations=1)
    assert G.mask_iou(mask, back) >= 0.999


# -- many parts ---------------------------------------------------------------------------------


def _speckled(seed: int = 0, shape: tuple[int, int] = (192, 256)) -> np.ndarray:
    """Smoothed noise at its median: a big part full of holes and many small parts in them."""
    noise = np.random.default_rng(seed).random(shape).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 1.5) > 0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_speckled_mask_round_trips(seed: int):
    m = _speckled(seed)
    n_components = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)[0] - 1
    assert n_components > 50
    exact = G.mask_to_geometry(m, tolerance=0)
    assert exact.is_valid and exact.area == m.sum()
    assert np.array_equal(G.geometry_to_mask(exact, *m.shape), m)
    geom = G.mask_to_geometry(m)
    assert geom.is_valid and len(G.polygons_of(geom)) >= n_components
    assert G.mask_iou(m, G.geometry_to_mask(geom, *m.shape)) >= 0.99
    assert _vertex_count(geom) < 0.85 * _vertex_count(G.mask_to_geometry(m, tolerance=1e-9))


def test_salt_and_pepper_round_trips():
    m = np.random.default_rng(3).random((120, 160)) > 0.5  # no smoothing: pinches everywhere
    exact = G.mask_to_geometry(m, tolerance=0)
    assert exact.is_valid and np.array_equal(G.geometry_to_mask(exact, *m.shape), m)
    geom = G.mask_to_geometry(m)
    assert geom.is_valid
    assert G.mask_iou(m, G.geometry_to_mask(geom, *m.shape)) >= 0.99


def test_many_polygons_rasterise_like_one_at_a_time():
    # Overlapping, holed, partly outside the image, off-grid vertices: the one-pass raster of
    # many polygons must equal the OR of the polygons rasterised one by one.
    rng = np.random.default_rng(5)
    polygons = []
    for _ in range(40):
        x, y = rng.uniform(-10, 70, 2)
        p = shapely.Point(x, y).buffer(rng.uniform(1, 12), quad_segs=3)
        if rng.random() < 0.5:
            p = p.difference(shapely.Point(x + 0.3, y - 0.2).buffer(rng.uniform(0.5, 3)))
        polygons.extend(G.polygons_of(p))
    one_by_one = np.zeros((50, 60), dtype=bool)
    for p in polygons:
        one_by_one |= G.geometry_to_mask(p, 50, 60)
    many = G.geometry_to_mask(shapely.GeometryCollection(polygons), 50, 60)
    assert one_by_one.any() and np.array_equal(many, one_by_one)
