"""The open project and the image being labelled: every edit goes through the project's
persisted undo stack (app.core.commands), so it is in the project file at once."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from app.core import commands
from app.core.image_instances import ImageInstances
from app.core.project import Project
from app.core.types import Geometry, ImageRecord, ImageStatus, Instance, Label, Source

DEFAULT_LABEL = Label("object", "#ff3b30", "1")
PALETTE = ["#ff3b30", "#34c759", "#007aff", "#ff9500", "#af52de", "#5ac8fa", "#ffcc00",
           "#ff2d55", "#a2845e"]
LAST_IMAGE_KEY = "last_image_id"


class AnnotationSession(QObject):
    """Holds the project, the current image and its undo stack; emits what changed."""

    image_changed = Signal(object)  # ImageRecord | None
    instances_changed = Signal()
    labels_changed = Signal()
    images_changed = Signal()  # statuses or the image list
    current_label_changed = Signal(str)
    saved = Signal()  # an edit is in the project file (one committed transaction each)

    def __init__(self, project: Project, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self.image: ImageRecord | None = None
        self.undo_stack: commands.UndoStack | None = None
        # the current image's instances, kept in step with the project row by row
        self._instances: ImageInstances | None = None
        if not project.labels():
            project.add_label(Label(DEFAULT_LABEL.name, DEFAULT_LABEL.colour, DEFAULT_LABEL.hotkey))
        self.current_label = project.labels()[0].name
        # on a video frame: label -> (the track a new instance joins, its label, the
        # propagated instances it replaces); set by the video controller
        self.track_hook: Callable[[str], tuple[int | None, str, list[int]]] | None = None

    # -- images ----------------------------------------------------------------------------
    def set_image(self, record: ImageRecord | None) -> None:
        self.image = record
        self.undo_stack = None
        if record is not None and record.id is not None:
            self.undo_stack = commands.UndoStack(self.project, record.id)
            self.project.set_setting(LAST_IMAGE_KEY, record.id)
        self.image_changed.emit(record)
        self.instances_changed.emit()

    def close(self) -> None:
        """The window closed: forget the image, so a result that arrives late (a polygon
        conversion, a stroke) stores nothing in the project, which is being closed."""
        self.image = None
        self.undo_stack = None

    def last_image(self) -> ImageRecord | None:
        iid = self.project.get_setting(LAST_IMAGE_KEY)
        if iid is None:
            return None
        try:
            return self.project.image(int(iid))
        except Exception:  # noqa: BLE001 - the image was removed meanwhile
            return None

    def set_status(self, status: ImageStatus) -> None:
        if self.image is None or self.image.id is None:
            return
        self.project.set_status(self.image.id, status)
        self.image = self.project.image(self.image.id)
        self.images_changed.emit()
        self.saved.emit()

    # -- instances -------------------------------------------------------------------------
    def instances(self) -> list[Instance]:
        """The image's instances, in the order they were made. Only the rows that changed
        since the last call are read (the window, the edit tool and the guide all ask after
        each edit): an unchanged instance is the same object as before (instances are
        immutable), so the window redraws and relists the changed ones only."""
        return list(self.instance_map().values())

    def instance_map(self) -> dict[int, Instance]:
        """Instance id -> instance of the current image, in the order they were made (a
        copy of the session's own)."""
        if self.image is None or self.image.id is None:
            return {}
        if self._instances is None or self._instances.image_id != self.image.id:
            self._instances = ImageInstances(self.project, self.image.id)
        return dict(self._instances.get())

    def _push(self, cmd: commands.Command) -> None:
        if self.undo_stack is None:
            return
        labels = len(self.project.labels())
        self.undo_stack.push(cmd)
        self._edited(labels)

    def apply(self, cmd: commands.Command) -> None:
        """Push an undoable command built elsewhere (a decision on a proposal, from the
        review queue) on the image's stack; observers are told as after every edit."""
        self._push(cmd)

    def _edited(self, labels: int) -> None:
        """After an edit, undo or redo (``labels``: how many labels there were before). The
        project keeps the status in step in the same transaction (the first instance makes
        the image 'in progress', removing the last one makes it 'new' again): re-read it
        rather than write it a second time. A label removed meanwhile may be back."""
        if self.image is not None and self.image.id is not None:
            before = self.image.status
            self.image = self.project.image(self.image.id)
            if self.image.status != before:
                self.images_changed.emit()
        if len(self.project.labels()) != labels:
            self.labels_changed.emit()
        self.instances_changed.emit()
        self.saved.emit()

    def add_instance(self, geom: Geometry, source: Source, score: float | None = None,
                     label: str | None = None) -> None:
        if self.image is None or self.image.id is None:
            return
        label = label or self.current_label
        track_id, label, replaced = (None, label, []) if self.track_hook is None \
            else self.track_hook(label)
        inst = Instance(self.image.id, label, geom, score, source, track_id=track_id)
        cmd: commands.Command = commands.AddInstance(inst)
        if replaced:  # a track's propagated instance gives way to the person's, one undo
            cmd = commands.Batch([*(commands.DeleteInstance(i) for i in replaced), cmd], "Add")
        self._push(cmd)

    def edit_geometry(self, instance_id: int, geom: Geometry | None) -> None:
        """Store a new geometry; None deletes the instance."""
        if geom is None:
            self._push(commands.DeleteInstance(instance_id))
        else:
            self._push(commands.EditGeometry(instance_id, geom))

    def delete(self, instance_ids: list[int]) -> None:
        cmds: list[commands.Command] = [commands.DeleteInstance(i) for i in instance_ids]
        if cmds:
            self._push(cmds[0] if len(cmds) == 1 else commands.Batch(cmds, "Delete"))

    def relabel(self, instance_ids: list[int], label: str) -> None:
        cmds: list[commands.Command] = [commands.Relabel(i, label) for i in instance_ids]
        if cmds:
            self._push(cmds[0] if len(cmds) == 1 else commands.Batch(cmds, "Relabel"))

    def subtract(self, target: int, others: list[int]) -> None:
        """Cut the other instances out of ``target`` (the others stay)."""
        from app.core.geometry import difference

        geom = self.project.instance(target).geometry
        for oid in others:
            if geom is None:
                break
            geom = difference(geom, self.project.instance(oid).geometry)
        self.edit_geometry(target, geom)

    def merge(self, instance_ids: list[int]) -> None:
        if len(instance_ids) >= 2:
            self._push(commands.Merge(list(instance_ids)))

    def undo(self) -> bool:
        if self.undo_stack is None or not self.undo_stack.can_undo:
            return False
        labels = len(self.project.labels())
        self.undo_stack.undo()
        self._edited(labels)
        return True

    def redo(self) -> bool:
        if self.undo_stack is None or not self.undo_stack.can_redo:
            return False
        labels = len(self.project.labels())
        self.undo_stack.redo()
        self._edited(labels)
        return True

    # -- labels ----------------------------------------------------------------------------
    def labels(self) -> list[Label]:
        return self.project.labels()

    def colour_of(self, label: str) -> str:
        found = self.project.label(label)
        return found.colour if found else "#ff0000"

    def set_current_label(self, name: str) -> None:
        if self.project.label(name) is not None:
            self.current_label = name
            self.current_label_changed.emit(name)

    def add_label(self, name: str, colour: str | None = None) -> Label:
        existing = self.project.labels()
        used = {lab.hotkey for lab in existing}
        hotkey = next((str(k) for k in range(1, 10) if str(k) not in used), None)
        colour = colour or PALETTE[len(existing) % len(PALETTE)]
        label = self.project.add_label(Label(name, colour, hotkey))
        self.labels_changed.emit()
        self.saved.emit()
        return label

    def update_label(self, name: str, *, new_name: str | None = None,
                     colour: str | None = None) -> None:
        self.project.update_label(name, new_name=new_name, colour=colour)
        if new_name and self.current_label == name:
            self.current_label = new_name
        self.labels_changed.emit()
        self.instances_changed.emit()
        self.saved.emit()

    def label_for_hotkey(self, key: str) -> str | None:
        for lab in self.project.labels():
            if lab.hotkey == key:
                return lab.name
        return None
