"""Polygon editing and drawing state machines, without Qt."""

from shapely.geometry import Polygon, box

from app.interaction.drawing import BoxDrawer, BrushStroke, PolygonDrawer
from app.interaction.events import Button, PointerEvent
from app.interaction.polygon_edit import EditKind, PolygonEditor

SQUARE = box(10, 10, 20, 20)
WITH_HOLE = Polygon([(30, 30), (60, 30), (60, 60), (30, 60)],
                    [[(40, 40), (50, 40), (50, 50), (40, 50)]])


def ev(x: float, y: float, button: Button = Button.LEFT) -> PointerEvent:
    return PointerEvent(x, y, button, radius=1.5)


def editor() -> PolygonEditor:
    ed = PolygonEditor()
    ed.set_instances({1: SQUARE, 2: WITH_HOLE})
    return ed


def test_click_selects_topmost_and_empty_deselects() -> None:
    ed = editor()
    assert ed.press(ev(15, 15)).instance_id == 1
    ed.release(ev(15, 15))
    assert ed.selected == 1
    act = ed.press(ev(45, 45))  # inside the hole: not inside instance 2
    assert act.kind == EditKind.SELECT and act.instance_id is None
    assert ed.press(ev(35, 35)).instance_id == 2


def test_drag_vertex_previews_then_commits() -> None:
    ed = editor()
    ed.press(ev(15, 15))
    ed.release(ev(15, 15))
    ed.press(ev(20.5, 20.5))
    prev = ed.move(ev(25, 25))
    assert prev.kind == EditKind.PREVIEW
    done = ed.release(ev(25, 25))
    assert done.kind == EditKind.COMMIT and done.instance_id == 1
    assert done.geometry.area > SQUARE.area
    assert done.geometry.covers(Polygon([(24, 24), (24.5, 24), (24.5, 24.5)]))


def test_move_whole_shape() -> None:
    ed = editor()
    ed.press(ev(15, 15))
    ed.release(ev(15, 15))
    ed.press(ev(15, 15))
    ed.move(ev(17, 18))
    done = ed.release(ev(17, 18))
    assert done.kind == EditKind.COMMIT
    assert done.geometry.bounds == (12, 13, 22, 23)


def test_insert_and_delete_vertex_in_a_hole() -> None:
    ed = editor()
    ed.press(ev(35, 35))
    ed.release(ev(35, 35))
    act = ed.double_click(ev(45, 40.5))  # on the hole's top edge
    assert act.kind == EditKind.COMMIT
    hole = list(act.geometry.interiors[0].coords)
    assert len(hole) == 6 and (45.0, 40.0) in hole
    # drag the new hole vertex down: the hole shrinks, the area grows
    ed.press(ev(45, 40))
    ed.move(ev(45, 45))
    grown = ed.release(ev(45, 45))
    assert grown.geometry.area > WITH_HOLE.area
    # right click on the new hole vertex deletes it: the hole is a square again
    act = ed.press(ev(45, 45, Button.RIGHT))
    assert act.kind == EditKind.COMMIT and len(act.geometry.interiors[0].coords) == 5
    assert act.geometry.area == WITH_HOLE.area
    # Delete key removes the hovered vertex; a triangle losing one is deleted
    ed.set_instances({3: Polygon([(0, 0), (9, 0), (0, 9)])})
    ed.press(ev(1, 1))
    ed.release(ev(1, 1))
    ed.move(ev(9, 0))
    assert ed.hover_vertex is not None
    gone = ed.delete_hovered_vertex()
    assert gone.kind == EditKind.COMMIT and gone.instance_id == 3 and gone.geometry is None


def test_polygon_and_box_drawers() -> None:
    pd = PolygonDrawer()
    for x, y in [(0, 0), (10, 0), (10, 10)]:
        assert pd.press(ev(x, y)) is None
    assert pd.undo_last()
    pd.press(ev(10, 10))
    geom = pd.press(ev(0.5, 0.5))  # on the first vertex: closes
    assert geom is not None and geom.area == 50 and pd.vertices == []
    bd = BoxDrawer()
    bd.press(ev(2, 3))
    bd.move(ev(6, 9))
    assert bd.release(ev(6, 9)).bounds == (2, 3, 6, 9)
    bd.press(ev(2, 3))
    assert bd.release(ev(2.2, 3)) is None


def test_brush_stroke_area() -> None:
    stroke = BrushStroke(radius=2)
    stroke.press(ev(0, 0))
    stroke.move(ev(10, 0))
    area = stroke.release(ev(10, 0))
    assert 40 < area.area < 60


def test_polygon_drawer_resumes_and_previews_box_drawer_cancels() -> None:
    pd = PolygonDrawer()
    pd.resume(SQUARE)
    assert len(pd.vertices) == 4 and pd.preview() == pd.vertices
    pd.move(ev(5, 5))
    assert pd.preview()[-1] == (5, 5)
    assert pd.finish().equals(SQUARE) and pd.preview() == []
    bd = BoxDrawer()
    bd.press(ev(0, 0))
    bd.move(ev(4, 4))
    bd.cancel()
    assert bd.rect() is None and bd.release(ev(4, 4)) is None
