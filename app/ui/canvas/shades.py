"""Per-instance shades of a label's colour, so that two touching instances of one label are
told apart on the canvas and in the instance list (the same shade in both).

An instance's shade follows from its id alone (``shade_index``: the id, counted from 1, around
a cycle of 13 shades), not from its place among the image's instances: deleting, adding,
undoing or redoing another instance never changes it, it is the same whether the window
shades one new instance or every instance again (another image and back, the project
reopened), and a delete restyles nothing but the deleted row. Instances made one after
another get consecutive ids, so touching objects of one label, typically drawn in a row,
still get different shades: any 13 consecutive ids differ, and as 13 is prime, so do 13
instances of one label made in turn with other labels (every 2nd or 3rd id).

The trade-off against shading by place (the n-th instance of a label on the image gets shade
n): shade 0, the label's own colour, goes to ids 1, 14, 27 ... rather than to the first
instance of every label on every image (one instance in 13 of each label shows the label's
colour itself, and the first of a new project does), and two instances of a label whose ids
differ by a multiple of 13 share a shade even when they are the only two on the image."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from PySide6.QtGui import QColor

from app.core.lru import BoundedCache
from app.core.types import Instance

# the cycle of shades, in turn: (hue shift in degrees, lightness step in 13ths of LIGHT_RANGE);
# the lightness steps go round by 5/13, so that neighbours in the cycle (consecutive ids) and
# ids two or three apart differ clearly, any two by 1/13 of the range at least, and wrap
# around inside it, so shades never collapse onto each other at an end
STEPS = [(0, 0), (-16, 5), (-8, 10), (12, 2), (16, 7), (4, 12), (8, 4), (-24, 9), (24, 1),
         (20, 6), (-12, 11), (-20, 3), (-4, 8)]
LIGHT_RANGE = (0.28, 0.8)


def shade(colour: str | QColor, index: int) -> QColor:
    """The ``index``-th shade of ``colour`` (0: the colour itself)."""
    base = QColor(colour)
    if index <= 0:
        return base
    dh, step = STEPS[index % len(STEPS)]
    hsl: tuple[float, float, float, float] = base.getHslF()  # type: ignore[assignment]
    h, s, lightness, a = hsl
    lo, hi = LIGHT_RANGE
    span = hi - lo
    lightness = lo + (min(max(lightness, lo), hi) - lo + step / len(STEPS) * span) % span
    hue = ((h if h >= 0 else 0.0) * 360 + dh + 3 * (index // len(STEPS))) % 360 / 360
    return QColor.fromHslF(hue, s, lightness, a)


SHADES_KEPT = 4096  # (colour, index) pairs remembered by ``shade_of``
_made: BoundedCache[tuple[str, int], QColor] = BoundedCache(SHADES_KEPT)


def shade_index(iid: int) -> int:
    """The shade of instance ``iid`` (see the module doc): 0 for ids 1, 14, 27 ..."""
    return (iid - 1) % len(STEPS)


def instance_shades(instances: Iterable[Instance], colour_of: Callable[[str], str]
                    ) -> dict[int, QColor]:
    """Instance id -> its shade (``instance_shade``)."""
    return {int(inst.id): instance_shade(inst, colour_of) for inst in instances
            if inst.id is not None}


def instance_shade(inst: Instance, colour_of: Callable[[str], str]) -> QColor:
    """The shade of ``inst``: its label's colour, shaded by its id. A shade already made is
    not made again (the same QColor object, which callers copy rather than change), so an
    unchanged instance costs a look-up and the canvas and the list see at once that its
    colour did not change."""
    return shade_of(colour_of(inst.label), shade_index(int(inst.id or 0)))


def shade_of(colour: str, index: int) -> QColor:
    """``shade(colour, index)``, made once: the same QColor object each time (callers copy
    it rather than change it)."""
    key = (colour, index)
    made = _made.get(key)
    if made is None:
        made = shade(colour, index)
        _made.put(key, made)
    return made


def outline_colour(fill: QColor) -> QColor:
    """A line that stands out from the fill: darker for light colours, lighter for dark."""
    return fill.darker(185) if fill.lightnessF() > 0.45 else fill.lighter(190)
