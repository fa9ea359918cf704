"""The window's actions: menus, toolbar and keyboard shortcuts in one table. The table names
each action's slot; the window hands the slots in (``install(host, slots, ...)``), so this
module knows the keys and menus, not the window's parts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMainWindow, QWidget

from app.interaction.review import REVIEW_KEYS

TOOLS = [("sam", "SAM", "S"), ("edit", "Edit", "V"), ("polygon", "Polygon", "P"),
         ("box", "Box", "R"), ("brush", "Brush", "B"), ("eraser", "Eraser", "E")]
Slot = Callable[[], object]
REVIEW_PREFIX = "review_"  # the actions of review mode, enabled only while it is on

# (menu, action name, text, keys); the slot of each is slots[name]; None: a separator
MENUS: list[tuple[str, list[tuple[str, str, list[str] | str] | None]]] = [
    ("&File", [("open_folder", "Open folder…", "Ctrl+O"),
               ("open_project", "Open project…", "Ctrl+Shift+O"),
               ("add_video", "Add video or frames…", "Ctrl+Shift+V"),
               ("export", "Export…", "Ctrl+E"),
               ("settings", "Settings…", "Ctrl+,"),
               ("quit", "Close", "Ctrl+Q")]),
    ("&Edit", [("undo", "Undo", "Ctrl+Z"),
               ("redo", "Redo", ["Ctrl+Shift+Z", "Ctrl+Y"]),
               None,
               ("accept", "Accept mask / finish polygon", ["Return", "Enter"]),
               ("cycle", "Next candidate", "Tab"),
               ("undo_click", "Remove last click / vertex", "Backspace"),
               ("clear", "Clear prompt / selection", "Escape"),
               ("delete", "Delete vertex / instance", "Delete"),
               ("merge", "Merge selected", "M"),
               ("subtract", "Subtract from first selected", "Shift+M"),
               ("everything", "Segment everything", "Ctrl+Shift+S"),
               ("find_like", "Find all like the selection", "Ctrl+F"),
               ("find_unlike", "Find again, not like the proposal under the pointer / the "
                "selection", "Ctrl+Shift+F"),
               ("find_like_next", "Find all like the selection in the next images",
                "Ctrl+Alt+F"),
               ("accept_here", "Accept the proposal under the pointer", "Y"),
               ("reject_here", "Discard the proposal under the pointer", "N")]),
    ("&Tools", [*[(f"tool_{name}", f"{text} ({key})", key) for name, text, key in TOOLS],
                None,
                ("brush_smaller", "Smaller brush", "["),
                ("brush_bigger", "Bigger brush", "]")]),
    ("&Image", [("next", "Next image", "D"),
                ("prev", "Previous image", "A"),
                ("next_new", "Next image without instances", "Shift+D"),
                ("prev_new", "Previous image without instances", "Shift+A"),
                ("done", "Mark done", "Ctrl+D"),
                ("done_next", "Mark done, next image to label", "Ctrl+Shift+D"),
                ("skip", "Skip image (mark skipped, next image to label)", "Ctrl+K"),
                None,
                ("fit", "Fit to window", "F"),
                ("zoom_selection", "Zoom to the selection / the mask", "Z"),
                ("zoom_in", "Zoom in", ["Ctrl++", "Ctrl+="]),
                ("zoom_out", "Zoom out", "Ctrl+-"),
                ("toggle_instances", "Hide / show all instances", "H")]),
    # a video or frame folder (app/ui/video_controller.py); J K L as in video editors
    ("&Video", [("next_frame", "Next frame", ["L", "."]),
                ("prev_frame", "Previous frame", ["J", ","]),
                ("next_10_frames", "10 frames forward", "Shift+L"),
                ("prev_10_frames", "10 frames back", "Shift+J"),
                ("play", "Play / pause", "K"),
                ("next_anchor", "Next anchor (a frame the person labelled)", "Ctrl+Right"),
                ("prev_anchor", "Previous anchor", "Ctrl+Left"),
                None,
                ("propagate_forward", "Propagate forward (the chosen track, or all)",
                 "Ctrl+Shift+L"),
                ("propagate_backward", "Propagate backward", "Ctrl+Shift+J"),
                ("cancel_propagation", "Cancel propagation (keeps the frames done)",
                 "Ctrl+Shift+K")]),
    ("&Labels", [("add_label", "Add label…", "Ctrl+L"),
                 *[(f"label_{k}", f"Label {k}", str(k)) for k in range(1, 10)]]),
    # review mode (app/ui/review.py): its keys replace the others' while it is on
    ("&Review", [("review", "Review proposals (on / off)", "Ctrl+R"),
                 None,
                 *[(f"{REVIEW_PREFIX}{action.value}", f"Review: {text}", list(keys))
                   for action, text, keys in REVIEW_KEYS]]),
    ("&Help", [("shortcuts", "Keys and mouse", "F1"),
               ("models", "Get a SAM2 model…", "")]),
]


class Actions:
    """The actions of one window by name, and the toolbar's find-all box action."""

    def __init__(self) -> None:
        self.by_name: dict[str, QAction] = {}
        self.find_all: QAction | None = None


def install(host: QMainWindow, slots: Mapping[str, Slot], *, recent: Iterable[str],
            open_recent: Callable[[str], object], toolbar_widget: QWidget) -> Actions:
    """Create every action of the table on ``host`` with its menus and the toolbar (which
    ends with ``toolbar_widget``, the find-all box); ``slots`` has one callable per name."""
    out = Actions()
    tool_group = QActionGroup(host)
    bar = host.menuBar()
    for title, rows in MENUS:
        menu = bar.addMenu(title)
        menu.setToolTipsVisible(True)  # a disabled action's tooltip says why
        for row in rows:
            if row is None:
                menu.addSeparator()
                continue
            name, text, keys = row
            action = QAction(text, host)
            seqs = [keys] if isinstance(keys, str) else keys
            action.setShortcuts([QKeySequence(k) for k in seqs if k])
            if name.startswith("tool_"):
                action.setCheckable(True)
                tool_group.addAction(action)
            action.triggered.connect(lambda *_, slot=slots[name]: slot())
            action.setEnabled(not name.startswith(REVIEW_PREFIX))
            host.addAction(action)
            menu.addAction(action)
            out.by_name[name] = action
            if name == "open_project":
                sub = menu.addMenu("Recent projects")
                for path in recent:
                    a = sub.addAction(path)
                    a.triggered.connect(lambda *_, p=path: open_recent(p))
    toolbar = host.addToolBar("Tools")
    toolbar.setObjectName("toolbar_tools")
    for name, _, _ in TOOLS:
        toolbar.addAction(out.by_name[f"tool_{name}"])
    toolbar.addSeparator()
    toolbar.addAction(out.by_name["everything"])
    toolbar.addAction(out.by_name["export"])
    # shown only while the backend understands text (MainWindow follows backend_changed)
    out.find_all = toolbar.addWidget(toolbar_widget)
    return out


def _table_keys() -> dict[str, list[str]]:
    """Every action's keys as the table gives them, by action name."""
    return {row[0]: [row[2]] if isinstance(row[2], str) else list(row[2])
            for _, rows in MENUS for row in rows if row is not None}


def switch_review(by_name: Mapping[str, QAction], on: bool) -> None:
    """Review mode on: its actions take their keys (Enter, Del, E, Ctrl+Z, Esc, ...) from
    the actions that share them, which keep their other keys and stay usable from the menus
    and the toolbar (Qt fires no shortcut that two enabled actions share); off: back."""
    table = _table_keys()
    taken = {QKeySequence(k).toString() for name, keys in table.items()
             if name.startswith(REVIEW_PREFIX) for k in keys}
    for name, action in by_name.items():
        if name.startswith(REVIEW_PREFIX):
            action.setEnabled(on)
        elif any(QKeySequence(k).toString() in taken for k in table.get(name, [])):
            action.setShortcuts([QKeySequence(k) for k in table[name] if k and not (
                on and QKeySequence(k).toString() in taken)])


def shortcut_table(actions: Iterable[QAction]) -> list[tuple[str, str]]:
    """(action text, shortcuts) for the help dialog and the settings dialog."""
    rows = []
    for action in actions:
        keys = ", ".join(s.toString() for s in action.shortcuts())
        if keys:
            rows.append((action.text().replace("&", ""), keys))
    return rows
