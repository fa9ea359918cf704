"""Brings the canvas's instance layer and the instance list in step with the session's
instances after an edit, undo or redo.

An instance's shade follows from its id (``shades.shade_index``), so an edit changes the
shades of the instances it touched and no others. A refresh therefore touches only what
changed since the last one: the instances gone lose their row (a delete), the ones added get
a row in their place by id (an accept, an undo of a delete), the ones changed (the same id,
another object: a reshape, a relabel) and the ones ticked or unticked in the list get their
row rewritten; the layer draws, redraws or drops only those. The cost of a delete, an edit
or an accept does not grow with the number of instances on the image (the session gives
back the very same object for an unchanged instance, so telling them apart is a look-up).
A refresh where most instances changed (another image, a label recoloured: every instance
of it read again) goes through every instance (``full`` counts those)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QColor

from app.core.types import Instance
from app.ui.canvas.layers import InstanceLayer
from app.ui.canvas.shades import instance_shade, instance_shades
from app.ui.panels.instances_panel import InstancesPanel


class InstanceSync:
    """What the layer and the list show, as of the last ``refresh``."""

    def __init__(self, layer: InstanceLayer, panel: InstancesPanel) -> None:
        self.layer = layer
        self.panel = panel
        self._shown: dict[int, Instance] = {}  # id -> instance, by id
        self._shades: dict[int, QColor] = {}
        self._colours: dict[str, str] = {}  # label -> the colour its shades were made of
        self._hidden: frozenset[int] = frozenset()  # the list's unticked ids
        self.full = 0  # refreshes that went through every instance (for tests)

    def refresh(self, instances: dict[int, Instance], colour_of: Callable[[str], str]
                ) -> dict[int, QColor]:
        """Show ``instances`` (id -> instance, by id); ``colour_of``: a label's colour.
        Returns every instance's shade."""
        hidden = frozenset(self.panel.hidden)
        change = self._change(instances, hidden, colour_of)
        if change is None:
            self._everything(instances, colour_of)
        else:
            self._patch(instances, *change, colour_of)
        self._shown = instances
        self._hidden = hidden
        # the layer is given every row: one it drew last time (the same geometry and shade
        # objects) costs it a look-up, and a live preview of an edit gives way to the
        # stored shape
        self.layer.set_instances((iid, inst.geometry, self._shades[iid], iid not in hidden)
                                 for iid, inst in instances.items())
        return self._shades

    def _change(self, instances: dict[int, Instance], hidden: frozenset[int],
                colour_of: Callable[[str], str]) -> tuple[set[int], list[int]] | None:
        """(the ids gone, the ids new or changed, by id) since the last refresh; None when
        more than half of the instances changed or a label's colour did (then every
        instance is shaded and listed again)."""
        if any(colour_of(label) != colour for label, colour in self._colours.items()):
            return None
        shown = self._shown
        gone = shown.keys() - instances.keys()
        new = instances.keys() - shown.keys()
        # the same id, another object (reshaped, relabelled); a new id is not "changed"
        changed = {iid for iid, inst in instances.items() if shown.get(iid, inst) is not inst}
        changed |= (hidden ^ self._hidden) & instances.keys()  # ticked or unticked rows
        touched = len(gone) + len(changed | new)
        if touched and 2 * touched >= len(shown) + len(instances):
            return None
        return gone, sorted(changed | new)

    def _everything(self, instances: dict[int, Instance],
                    colour_of: Callable[[str], str]) -> None:
        self.full += 1
        listed = list(instances.values())
        self._shades = instance_shades(listed, colour_of)
        self._colours = {label: colour_of(label) for label in {i.label for i in listed}}
        self.panel.set_instances(listed, self._shades)

    def _patch(self, instances: dict[int, Instance], gone: set[int], touched: list[int],
               colour_of: Callable[[str], str]) -> None:
        if not gone and not touched:
            return
        shades = dict(self._shades)  # a caller may still hold the previous one
        for iid in gone:
            del shades[iid]
        for iid in touched:
            inst = instances[iid]
            shades[iid] = instance_shade(inst, colour_of)
            self._colours.setdefault(inst.label, colour_of(inst.label))
        self._shades = shades
        listed = [instances[iid] for iid in touched]
        if not self.panel.patch_instances(gone, listed, shades):
            self.panel.set_instances(list(instances.values()), shades)
