"""Per-instance shades of a label's colour, so that two touching instances of one label are
told apart on the canvas and in the instance list (the same shade in both)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from PySide6.QtGui import QColor

from app.core.lru import BoundedCache
from app.core.types import Instance

# per instance of a label, in turn: (hue shift in degrees, lightness step); the lightness
# steps spread over LIGHT_RANGE like a van der Corput sequence (any two differ by 1/16 of it
# at least) and wrap around inside it, so shades never collapse onto each other at an end
STEPS = [(0, 0.0), (12, 0.5), (-12, 0.25), (20, 0.75), (-20, 0.125), (8, 0.625),
         (-8, 0.375), (16, 0.875), (-16, 0.0625), (4, 0.5625), (-4, 0.3125), (24, 0.8125)]
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
    lightness = lo + (min(max(lightness, lo), hi) - lo + step * (hi - lo)) % (hi - lo)
    hue = ((h if h >= 0 else 0.0) * 360 + dh + 3 * (index // len(STEPS))) % 360 / 360
    return QColor.fromHslF(hue, s, lightness, a)


SHADES_KEPT = 4096  # (colour, index) pairs remembered by ``shade_of``
_made: BoundedCache[tuple[str, int], QColor] = BoundedCache(SHADES_KEPT)


def instance_shades(instances: Iterable[Instance], colour_of: Callable[[str], str]
                    ) -> dict[int, QColor]:
    """Instance id -> its shade: the n-th instance of a label (by id) gets shade n. The
    window asks after every edit: a shade already made is not made again (the same QColor
    object, which callers copy rather than change), so an unchanged instance costs a look-up
    and the canvas and the list see at once that its colour did not change."""
    counts: dict[str, int] = {}
    out: dict[int, QColor] = {}
    for inst in sorted((i for i in instances if i.id is not None), key=lambda i: i.id or 0):
        n = counts.get(inst.label, 0)
        counts[inst.label] = n + 1
        out[int(inst.id or 0)] = shade_of(colour_of(inst.label), n)
    return out


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
