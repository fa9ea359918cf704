"""The polygon editor's vertex lists: round trips, hit-tests and pure vertex edits."""

from __future__ import annotations

import pytest
from shapely.geometry import MultiPolygon, Polygon, box

from app.core.geometry_edit import (
    VertexRef,
    contains,
    delete_vertex,
    insert_vertex,
    move_vertex,
    nearest_edge,
    nearest_vertex,
    to_geometry,
    to_shape,
    translate,
    vertex,
)


def _holed() -> Polygon:
    return Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(4, 4), (6, 4), (6, 6), (4, 6)]])


def test_shape_round_trip_multipolygon() -> None:
    geom = MultiPolygon([_holed(), box(20, 0, 30, 10)])
    shape = to_shape(geom)
    assert len(shape) == 2 and sum(len(rings) for rings in shape) == 3
    assert to_geometry(shape).equals(geom)
    assert to_geometry([[[(0, 0), (1, 1), (2, 2)]]]) is None  # no area
    assert to_geometry([]) is None


def test_nearest_vertex_and_edge() -> None:
    shape = to_shape(MultiPolygon([_holed(), box(20, 0, 30, 10)]))
    assert nearest_vertex(shape, 9.6, 0.3, radius=1) == VertexRef(0, 0, 1)
    assert nearest_vertex(shape, 6.2, 5.9, radius=1) == VertexRef(0, 1, 2)  # hole: ring 1
    assert nearest_vertex(shape, 5, 2, radius=1) is None
    hit = nearest_vertex(shape, 29.8, 9.9, radius=2)
    assert hit is not None and hit.polygon == 1 and vertex(shape, hit) == (30.0, 10.0)
    edge = nearest_edge(shape, 5, 0.4, radius=1)
    assert edge == (VertexRef(0, 0, 0), (5.0, 0.0))
    hole_edge = nearest_edge(shape, 5, 3.7, radius=0.5)
    assert hole_edge is not None and hole_edge[0] == VertexRef(0, 1, 0)
    assert nearest_edge(shape, 15, 5, radius=1) is None


def test_contains() -> None:
    geom = _holed()
    assert contains(geom, 1, 1)
    assert not contains(geom, 5, 5)  # in the hole
    assert contains(geom, 0, 5)  # on the outline
    assert not contains(geom, 11, 5)
    assert not contains(None, 1, 1)


def test_edits_return_new_shapes_that_make_valid_geometries() -> None:
    geom = _holed()
    shape = to_shape(geom)
    moved = to_geometry(move_vertex(shape, VertexRef(0, 0, 2), 12, 12))
    assert moved.is_valid and moved.area == pytest.approx(100 + 20 - 4)
    assert shape[0][0][2] == (10.0, 10.0)  # the input is unchanged

    inserted = insert_vertex(shape, VertexRef(0, 0, 0), 5, -2)  # on edge 0, pulled outward
    assert inserted[0][0][1] == (5.0, -2.0)
    assert to_geometry(inserted).area == pytest.approx(96 + 10)

    hole_moved = to_geometry(move_vertex(shape, VertexRef(0, 1, 0), 3, 3))
    assert hole_moved.area < geom.area

    assert to_geometry(delete_vertex(inserted, VertexRef(0, 0, 1))).equals(geom)
    with pytest.raises(IndexError):
        move_vertex(shape, VertexRef(1, 0, 0), 1, 1)
    with pytest.raises(IndexError):
        move_vertex(shape, VertexRef(0, 2, 0), 1, 1)

    crossing = to_geometry(move_vertex(to_shape(box(0, 0, 4, 4)), VertexRef(0, 0, 0), -2, 6))
    assert crossing is not None and crossing.is_valid  # dragged across: a bow tie, made valid

    shifted = to_geometry(translate(shape, 2.5, -1))
    assert shifted.bounds == (2.5, -1.0, 12.5, 9.0) and shifted.area == geom.area


def test_deleting_below_three_vertices_drops_the_ring() -> None:
    shape = to_shape(_holed())
    no_hole = delete_vertex(shape, VertexRef(0, 1, 0))
    no_hole = delete_vertex(no_hole, VertexRef(0, 1, 0))
    assert len(no_hole[0]) == 1  # the hole went with its third-last vertex
    assert to_geometry(no_hole).area == pytest.approx(100)
    triangle = to_shape(Polygon([(0, 0), (4, 0), (0, 4)]))
    assert delete_vertex(triangle, VertexRef(0, 0, 0)) == []  # the exterior takes its polygon
