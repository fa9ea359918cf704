"""No boolean operation, brush, eraser or conversion leaves a part or hole smaller than a
pixel (the slivers where two outlines nearly coincide), checked over random shapes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, MultiPolygon, Polygon, box

from app.core import geometry as G
from app.core.command_base import union_geometry

SIZE = 64


def pieces(geom: object) -> list[Polygon]:
    """Every part and every hole (as a polygon) of ``geom``."""
    parts = G.polygons_of(geom)
    return parts + [Polygon(h) for p in parts for h in p.interiors]


def assert_no_slivers(geom: object, what: str, holes: bool = True) -> None:
    if geom is None:
        return
    assert geom.is_valid, what
    for piece in pieces(geom) if holes else G.polygons_of(geom):
        assert piece.area >= 1.0, f"{what}: a piece of {piece.area:.3f} px²"
        assert not piece.buffer(-0.25).is_empty, f"{what}: a sliver thinner than half a pixel"


def blob(rng: np.random.Generator) -> np.ndarray:
    """A SAM-like object mask: smoothed noise, sometimes with specks and pinholes."""
    noise = rng.random((SIZE, SIZE)).astype(np.float32)
    mask = cv2.GaussianBlur(noise, (0, 0), rng.uniform(2, 8)) > rng.uniform(0.45, 0.55)
    if rng.random() < 0.5:
        mask ^= rng.random((SIZE, SIZE)) < 0.01  # single-pixel specks and holes
    return mask


def instance(rng: np.random.Generator, like: np.ndarray | None = None) -> object:
    """An instance as the app makes it: a mask converted at a usual tolerance; ``like``
    gives a mask that shares part of its outline with another instance (a part of it)."""
    if like is not None and rng.random() < 0.7:
        yy, xx = np.mgrid[:SIZE, :SIZE]
        cx, cy, r2 = rng.uniform(0, SIZE), rng.uniform(0, SIZE), rng.uniform(80, 900)
        mask = like & ((xx - cx) ** 2 + (yy - cy) ** 2 < r2)
    else:
        mask = blob(rng)
    return G.mask_to_geometry(mask, float(rng.choice([0.5, 0.75, 1.0, 2.0])))


def stroke(rng: np.random.Generator) -> object:
    points = rng.uniform(0, SIZE, (int(rng.integers(1, 6)), 2))
    radius = float(rng.uniform(1, 10))
    shape = LineString(points) if len(points) > 1 else shapely.Point(points[0])
    return shape.buffer(radius)


@pytest.mark.parametrize("seed", range(4))
def test_boolean_operations_leave_no_part_smaller_than_a_pixel(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for trial in range(60):
        mask = blob(rng)
        a = G.mask_to_geometry(mask, float(rng.choice([0.5, 0.75, 1.0])))
        b = instance(rng, like=mask)
        if a is None or b is None:
            continue
        assert_no_slivers(G.difference(a, b), f"subtract, trial {trial}")  # Shift+M
        assert_no_slivers(G.union(a, b), f"union, trial {trial}")
        assert_no_slivers(union_geometry([a, b]), f"merge, trial {trial}")  # M
        assert_no_slivers(G.union(a, stroke(rng)), f"brush, trial {trial}")
        assert_no_slivers(G.difference(a, stroke(rng)), f"eraser, trial {trial}")


@pytest.mark.parametrize("tolerance", [0.0, 1e-9, 0.5, 1.0, 2.0])
def test_conversions_leave_no_part_smaller_than_a_pixel(tolerance: float) -> None:
    rng = np.random.default_rng(11)
    for trial in range(40):
        mask = blob(rng)
        geom = G.mask_to_geometry(mask, tolerance)
        # a one-pixel hole is kept as it was traced (the mask is kept exactly)
        assert_no_slivers(geom, f"mask to polygon, trial {trial}", holes=False)
        if tolerance < 1e-6 and geom is not None:  # still exact
            assert np.array_equal(G.geometry_to_mask(geom, SIZE, SIZE), mask)
        assert_no_slivers(G.simplify(geom, 1.0), f"simplify, trial {trial}")


def test_a_lone_pixel_is_a_whole_pixel() -> None:
    mask = np.zeros((10, 10), bool)
    mask[2, 3] = True
    assert G.mask_to_geometry(mask).equals(box(3, 2, 4, 3))
    mask[5:, 5:] = True
    mask[7, 7] = False  # a one-pixel hole: filled by an edit, not by the conversion
    geom = G.mask_to_geometry(mask)
    assert np.array_equal(G.geometry_to_mask(geom, 10, 10), mask)
    assert G.union(geom, box(0, 0, 1, 1)).area == geom.area + 1 + 0.5


def test_subtracting_a_near_copy_leaves_nothing() -> None:
    """The shapes differ by a sliver along their outline: nothing worth keeping is left."""
    a = box(10, 10, 40, 30)
    b = Polygon([(10, 9.9), (40.05, 10), (40, 30.04), (9.97, 30)])
    assert G.difference(a, b) is None
    frame = Polygon(box(0, 0, 30, 30).exterior, [box(10, 10, 20, 20).exterior.coords])
    filled = G.union(frame, box(10, 10, 20, 19.9))  # a hairline hole is left: filled
    assert isinstance(filled, Polygon) and not filled.interiors and filled.area == 900
    two = G.union(box(0, 0, 10, 10), box(20, 0, 30, 10))
    assert isinstance(two, MultiPolygon) and two.area == 200
