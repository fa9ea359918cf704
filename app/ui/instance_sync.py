"""Brings the canvas's instance layer and the instance list in step with the session's
instances after an edit, undo or redo.

An edit that only added instances after the last one (an accept, a redo of one) shades and
lists the new instances only, and the layer draws only them: the cost of an accept does not
grow with the number of instances on the image. Anything else (a delete, an edit, a relabel,
another image, a label recoloured, a row ticked) goes through every instance; even then an
unchanged one is cheap, since the session gives back the very same objects and shades are
made once."""

from __future__ import annotations

import operator
from collections.abc import Callable
from itertools import islice

from PySide6.QtGui import QColor

from app.core.types import Instance
from app.ui.canvas.layers import InstanceLayer
from app.ui.canvas.shades import instance_shades, shade_of
from app.ui.panels.instances_panel import InstancesPanel


class InstanceSync:
    """What the layer and the list show, as of the last ``refresh``."""

    def __init__(self, layer: InstanceLayer, panel: InstancesPanel) -> None:
        self.layer = layer
        self.panel = panel
        self._shown: dict[int, Instance] = {}  # id -> instance, by id
        self._shades: dict[int, QColor] = {}
        self._counts: dict[str, int] = {}  # instances shown per label (the next shade)
        self._hidden: frozenset[int] = frozenset()  # the list's unticked ids
        self.full = 0  # refreshes that went through every instance (for tests)

    def refresh(self, instances: dict[int, Instance], colour_of: Callable[[str], str]
                ) -> dict[int, QColor]:
        """Show ``instances`` (id -> instance, by id); ``colour_of``: a label's colour.
        Returns every instance's shade."""
        added = self._added(instances)
        if added is None:
            self._everything(instances, colour_of)
        else:
            self._add(instances, added, colour_of)
        self._shown = instances
        # the layer is given every row: one it drew last time (the same geometry and shade
        # objects) costs it a look-up, and a live preview of an edit gives way to the
        # stored shape
        hidden = self.panel.hidden
        self.layer.set_instances((iid, inst.geometry, self._shades[iid], iid not in hidden)
                                 for iid, inst in instances.items())
        return self._shades

    def _added(self, instances: dict[int, Instance]) -> list[Instance] | None:
        """The instances added after the last one shown, when that is the only change
        (the ones shown are the very same objects, nothing was unticked); None otherwise."""
        shown = self._shown
        if len(instances) < len(shown) or self.panel.hidden != self._hidden:
            return None
        old = len(shown)
        if not all(map(operator.is_, shown.values(), islice(instances.values(), old))):
            return None
        if not all(map(operator.eq, shown, islice(instances, old))):
            return None
        added = list(islice(instances.values(), old, None))
        last = next(reversed(shown), None)  # the highest id: both are in id order
        if last is not None and added and int(added[0].id or 0) <= last:
            return None
        return added

    def _everything(self, instances: dict[int, Instance],
                    colour_of: Callable[[str], str]) -> None:
        self.full += 1
        hidden = self.panel.hidden
        listed = list(instances.values())
        self._shades = instance_shades(listed, colour_of)
        self.panel.set_instances(listed, self._shades)
        self._counts = {}
        for inst in listed:
            self._counts[inst.label] = self._counts.get(inst.label, 0) + 1
        self._hidden = frozenset(hidden)

    def _add(self, instances: dict[int, Instance], added: list[Instance],
             colour_of: Callable[[str], str]) -> None:
        if not added:
            return
        shades = dict(self._shades)  # a caller may still hold the previous one
        for inst in added:
            n = self._counts.get(inst.label, 0)
            self._counts[inst.label] = n + 1
            shades[int(inst.id or 0)] = shade_of(colour_of(inst.label), n)
        self._shades = shades
        if not self.panel.append_instances(added, shades):
            self.panel.set_instances(list(instances.values()), shades)
