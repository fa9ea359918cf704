"""The window's actions: menus, toolbar and keyboard shortcuts in one table."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QActionGroup, QKeySequence

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

TOOLS = [("sam", "SAM", "S"), ("edit", "Edit", "V"), ("polygon", "Polygon", "P"),
         ("box", "Box", "R"), ("brush", "Brush", "B"), ("eraser", "Eraser", "E")]


def install(w: MainWindow) -> None:
    """Create every action of ``w`` (kept in ``w.actions_by_name``) with menus and toolbar."""
    from app.ui import dialogs
    from app.ui.tools import instance_ops as ops

    def add(name: str, text: str, keys: list[str] | str, slot: Callable[[], object],
            menu: object = None, checkable: bool = False) -> QAction:
        action = QAction(text, w)
        seqs = [keys] if isinstance(keys, str) else keys
        action.setShortcuts([QKeySequence(k) for k in seqs if k])
        action.setCheckable(checkable)
        action.triggered.connect(lambda *_: slot())
        w.addAction(action)
        if menu is not None:
            menu.addAction(action)  # type: ignore[attr-defined]
        w.actions_by_name[name] = action
        return action

    bar = w.menuBar()
    file_menu = bar.addMenu("&File")
    add("open_folder", "Open folder…", "Ctrl+O", lambda: dialogs.open_folder(w), file_menu)
    add("open_project", "Open project…", "Ctrl+Shift+O", lambda: dialogs.open_project(w),
        file_menu)
    recent = file_menu.addMenu("Recent projects")
    for path in w.settings.recent:
        a = recent.addAction(path)
        a.triggered.connect(lambda *_, p=path: dialogs.open_recent(w, p))
    add("export", "Export…", "Ctrl+E", lambda: dialogs.export(w), file_menu)
    add("settings", "Settings…", "Ctrl+,", lambda: dialogs.settings(w), file_menu)
    add("quit", "Close", "Ctrl+Q", w.close, file_menu)

    edit_menu = bar.addMenu("&Edit")
    add("undo", "Undo", "Ctrl+Z", w.undo, edit_menu)
    add("redo", "Redo", ["Ctrl+Shift+Z", "Ctrl+Y"], w.redo, edit_menu)
    edit_menu.addSeparator()
    add("accept", "Accept mask / finish polygon", ["Return", "Enter"], w.accept, edit_menu)
    add("cycle", "Next candidate", "Tab", w.sam_tool.cycle, edit_menu)
    add("undo_click", "Remove last click / vertex", "Backspace", w.backspace, edit_menu)
    add("clear", "Clear prompt / selection", "Escape", w.escape, edit_menu)
    add("delete", "Delete vertex / instance", "Delete", w.edit_tool.delete_vertex_or_instance,
        edit_menu)
    add("merge", "Merge selected", "M", lambda: ops.merge_selected(w), edit_menu)
    add("subtract", "Subtract from first selected", "Shift+M", lambda: ops.subtract_selected(w),
        edit_menu)
    add("everything", "Segment everything", "Ctrl+Shift+S", w.proposals.request, edit_menu)
    add("accept_here", "Accept the proposal under the pointer", "Y",
        lambda: w.proposals.take_under_pointer(True), edit_menu)
    add("reject_here", "Discard the proposal under the pointer", "N",
        lambda: w.proposals.take_under_pointer(False), edit_menu)

    tools_menu = bar.addMenu("&Tools")
    toolbar = w.addToolBar("Tools")
    toolbar.setObjectName("toolbar_tools")
    group = QActionGroup(w)
    for name, text, key in TOOLS:
        a = add(f"tool_{name}", f"{text} ({key})", key, lambda n=name: w.set_tool(n),
                tools_menu, checkable=True)
        group.addAction(a)
        toolbar.addAction(a)
    toolbar.addSeparator()
    toolbar.addAction(w.actions_by_name["everything"])
    toolbar.addAction(w.actions_by_name["export"])
    # shown only while the backend understands text (MainWindow.set_bridge)
    w.find_all_action = toolbar.addWidget(w.find_all_box)
    tools_menu.addSeparator()
    add("brush_smaller", "Smaller brush", "[", lambda: w.edit_tool.resize_brush(-1), tools_menu)
    add("brush_bigger", "Bigger brush", "]", lambda: w.edit_tool.resize_brush(1), tools_menu)

    image_menu = bar.addMenu("&Image")
    add("next", "Next image", "D", lambda: w.nav.step(1), image_menu)
    add("prev", "Previous image", "A", lambda: w.nav.step(-1), image_menu)
    add("next_new", "Next image without instances", "Shift+D", lambda: w.nav.step_new(1),
        image_menu)
    add("prev_new", "Previous image without instances", "Shift+A",
        lambda: w.nav.step_new(-1), image_menu)
    add("done", "Mark done", "Ctrl+D", w.mark_done, image_menu)
    add("done_next", "Mark done, next image to label", "Ctrl+Shift+D", w.nav.done_next,
        image_menu)
    add("skip", "Skip image (mark skipped, next image to label)", "Ctrl+K", w.nav.skip,
        image_menu)
    image_menu.addSeparator()
    add("fit", "Fit to window", "F", w.canvas.fit, image_menu)
    add("zoom_selection", "Zoom to the selection / the mask", "Z", w.nav.zoom_to_selection,
        image_menu)
    add("zoom_in", "Zoom in", ["Ctrl++", "Ctrl+="], lambda: w.canvas.zoom_by(1.25), image_menu)
    add("zoom_out", "Zoom out", "Ctrl+-", lambda: w.canvas.zoom_by(0.8), image_menu)
    add("toggle_instances", "Hide / show all instances", "H", w.nav.toggle_instances,
        image_menu)

    label_menu = bar.addMenu("&Labels")
    add("add_label", "Add label…", "Ctrl+L", w.labels_panel.add_label, label_menu)
    for k in range(1, 10):
        add(f"label_{k}", f"Label {k}", str(k), lambda k=k: ops.label_hotkey(w, str(k)), label_menu)

    help_menu = bar.addMenu("&Help")
    add("shortcuts", "Keys and mouse", "F1", lambda: dialogs.shortcuts(w), help_menu)
    add("models", "Get a SAM2 model…", "", lambda: dialogs.settings(w), help_menu)


def shortcut_table(w: MainWindow) -> list[tuple[str, str]]:
    """(action text, shortcuts) for the help dialog and the settings dialog."""
    rows = []
    for action in w.actions_by_name.values():
        keys = ", ".join(s.toString() for s in action.shortcuts())
        if keys:
            rows.append((action.text().replace("&", ""), keys))
    return rows
