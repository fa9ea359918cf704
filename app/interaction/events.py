"""Plain pointer events in image coordinates, independent of any GUI toolkit."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Button(IntEnum):
    NONE = 0
    LEFT = 1
    RIGHT = 2
    MIDDLE = 3


@dataclass(frozen=True)
class PointerEvent:
    """A pointer event at image position (x, y) (continuous pixel coordinates).

    ``radius`` is the hit-test tolerance in image pixels (a few screen pixels divided by the
    zoom), also used as the distance a press must travel to become a drag.
    """

    x: float
    y: float
    button: Button = Button.NONE
    shift: bool = False
    ctrl: bool = False
    alt: bool = False
    radius: float = 4.0

    def distance_to(self, x: float, y: float) -> float:
        return float(((self.x - x) ** 2 + (self.y - y) ** 2) ** 0.5)
