"""Videos in the real window (classical backend, a real MP4 written with PyAV, a real project
file): add a video, step through its frames, tracks from accepted instances, propagation
with its marks, edits, deletion from a frame on, cancelling mid-way."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTreeWidgetItem
from pytestqt.qtbot import QtBot
from shapely.affinity import translate
from ui_helpers import TIMEOUT, click, key, open_window, wait_mask, write_png
from video_helpers import moving_scene, qimage_rgb, write_video

from app.core.sequences import open_sequence
from app.core.types import ImageRecord, InstanceOrigin
from app.predict.track_propagation import FrameWritten
from app.ui.main_window import MainWindow

pytest.importorskip("av")


def shown(w: MainWindow) -> int | None:
    """The frame index whose pixels are on the canvas now (None: not a frame / loading)."""
    record = w.session.image
    if record is None or w.canvas.image_size is None:
        return None
    where = w.video.frame_of(record)
    return None if where is None else where[1]


def open_video(qtbot: QtBot, folder: Path, bridge: object,
               frames: int = 11) -> tuple[MainWindow, Path, list[ImageRecord]]:
    """The window on ``folder`` with a video of ``frames`` frames added and frame 0 shown;
    the list collects every record whose pixels reached the canvas."""
    video = write_video(folder / "clip.mp4", frames)
    w = open_window(qtbot, folder, bridge)  # type: ignore[arg-type]
    seen: list[ImageRecord] = []
    w.image_shown.connect(seen.append)
    w.video.add_sequence(video)
    qtbot.waitUntil(lambda: w.video.sequence is not None and bool(seen)
                    and w.video.frame_of(seen[-1]) is not None, timeout=TIMEOUT)
    assert shown(w) == 0
    return w, video, seen


def track_row(w: MainWindow, index: int = 0) -> QTreeWidgetItem:
    item = w.video_panel.tracks.topLevelItem(index)
    assert item is not None
    return item


def wait_shown(qtbot: QtBot, w: MainWindow, seen: list[ImageRecord], frame: int) -> None:
    """Until frame ``frame`` is the last record whose pixels reached the canvas."""
    seq = w.video.sequence
    assert seq is not None
    qtbot.waitUntil(lambda: shown(w) == frame and bool(seen)
                    and w.video.frame_of(seen[-1]) == (seq.id, frame), timeout=TIMEOUT)


def go(qtbot: QtBot, w: MainWindow, seen: list[ImageRecord], frame: int) -> None:
    w.video.go_to(frame)
    wait_shown(qtbot, w, seen, frame)


def test_add_video_and_step_with_keys(qtbot: QtBot, image_folder: Path,
                                      classical_bridge: object) -> None:
    w, video, seen = open_video(qtbot, image_folder, classical_bridge)
    seq = w.video.sequence
    assert seq is not None and seq.frame_count == 11 and seq.kind == "video"
    assert w.video_panel.sequences.count() == 1
    assert "clip.mp4" in w.video_panel.sequences.item(0).text()
    assert not w.frame_bar.isHidden() and w.frame_bar.count == 11
    # the image list still lists the plain images only
    assert w.images_panel.list.count() == 3

    with open_sequence(video) as decoded:
        for keys, expected in (([Qt.Key.Key_L], 1), ([Qt.Key.Key_Period], 2),
                               ([Qt.Key.Key_J], 1), ([Qt.Key.Key_L], 2)):
            for k in keys:
                key(qtbot, w, k)
            wait_shown(qtbot, w, seen, expected)
            assert w.frame_bar.frame == expected
            assert f"frame {expected} / 10" in w.frame_bar.label.text()
        pixels = qimage_rgb(w.canvas._pixmap_item.pixmap().toImage())
        assert np.array_equal(pixels, decoded.frame(2))
        key(qtbot, w, Qt.Key.Key_L, Qt.KeyboardModifier.ShiftModifier)  # +10: the last
        wait_shown(qtbot, w, seen, 10)
        assert np.array_equal(qimage_rgb(w.canvas._pixmap_item.pixmap().toImage()),
                              decoded.frame(10))

    # play from the start: frames go by, K pauses
    w.video.go_to(0)
    key(qtbot, w, Qt.Key.Key_K)
    assert w.video.playing
    qtbot.waitUntil(lambda: w.video.frame > 0, timeout=TIMEOUT)
    key(qtbot, w, Qt.Key.Key_K)
    assert not w.video.playing

    # a plain image still shows as before; the frame bar goes away
    w.show_image(w.project.images()[1])
    qtbot.waitUntil(lambda: seen[-1].path == "img1.png", timeout=TIMEOUT)
    assert w.frame_bar.isHidden() and w.video.sequence is None
    # choosing the sequence again shows its frame 0
    w.video_panel.sequences.setCurrentRow(-1)
    w.video_panel.sequences.setCurrentRow(0)
    qtbot.waitUntil(lambda: shown(w) == 0, timeout=TIMEOUT)


def test_adding_a_broken_video_names_it(qtbot: QtBot, image_folder: Path,
                                        classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)  # type: ignore[arg-type]
    bad = image_folder / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    w.video.add_sequence(bad)
    qtbot.waitUntil(lambda: "Cannot add" in w.statusBar().currentMessage(), timeout=TIMEOUT)
    assert "broken.mp4" in w.statusBar().currentMessage()
    assert w.project.sequences.all() == []


def accept_object(qtbot: QtBot, w: MainWindow) -> None:
    """Click the moving rectangle on the shown frame and accept the mask (Enter)."""
    x = 70 + 2 * (shown(w) or 0)
    click(qtbot, w, x, 55)
    wait_mask(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Return)


def test_tracks_from_accepts_edits_and_deletion(qtbot: QtBot, image_folder: Path,
                                                classical_bridge: object) -> None:
    w, _video, seen = open_video(qtbot, image_folder, classical_bridge)
    seq_id = int(w.video.sequence.id or 0)  # type: ignore[union-attr]
    store = w.project.sequences

    # accept on frame 0 with no track chosen: a new track named after the label
    accept_object(qtbot, w)
    tracks = store.tracks(seq_id)
    assert [t.name for t in tracks] == ["object 1"]
    track = tracks[0]
    (inst,) = store.instances(seq_id)[0]
    assert inst.track_id == track.id and inst.origin == InstanceOrigin.ANCHOR
    assert w.video.marks.anchors == {0} and w.frame_bar.slider.anchors == {0}
    assert track_row(w).text(0) == "object 1"

    # what propagation writes (the store's own call), then the marks and counts
    for f in range(1, 11):
        store.put_propagated(seq_id, f, int(track.id or 0),
                             translate(inst.geometry, 2 * f, 0), 0.9)
    w.video.refresh_tracks()
    assert w.frame_bar.slider.propagated == set(range(1, 11))
    row = track_row(w)
    assert (row.text(2), row.text(3)) == ("1", "10")

    # frame 5 shows the propagated instance; editing it makes it an anchor
    go(qtbot, w, seen, 5)
    (prop,) = w.session.instances()
    assert prop.origin == InstanceOrigin.PROPAGATED and prop.track_id == track.id
    w.session.edit_geometry(int(prop.id or 0), translate(prop.geometry, 1, 0))
    assert w.project.instance(int(prop.id or 0)).origin == InstanceOrigin.ANCHOR
    assert w.frame_bar.slider.anchors == {0, 5}
    assert w.frame_bar.slider.propagated == set(range(1, 11)) - {5}
    # next / previous anchor (Ctrl+Right / Ctrl+Left)
    w.video.go_to(2)
    key(qtbot, w, Qt.Key.Key_Right, Qt.KeyboardModifier.ControlModifier)
    assert w.video.frame == 5
    key(qtbot, w, Qt.Key.Key_Left, Qt.KeyboardModifier.ControlModifier)
    key(qtbot, w, Qt.Key.Key_Left, Qt.KeyboardModifier.ControlModifier)
    assert w.video.frame == 0

    # with the track chosen, an accept on a propagated frame replaces the propagated
    # instance, in one undoable step
    w.video_panel.choose_track(track.id)
    assert w.video.track_id == track.id
    go(qtbot, w, seen, 7)
    (old,) = w.session.instances()
    w.session.add_label("car")
    w.app_state.set_label("car")
    accept_object(qtbot, w)
    (new,) = w.session.instances()
    assert new.id != old.id and new.track_id == track.id
    assert new.origin == InstanceOrigin.ANCHOR and new.label == "object"  # the track's
    assert w.frame_bar.slider.anchors == {0, 5, 7}
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert [i.id for i in w.session.instances()] == [old.id]
    assert w.frame_bar.slider.anchors == {0, 5}
    key(qtbot, w, Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert w.frame_bar.slider.anchors == {0, 5, 7}
    assert len(store.tracks(seq_id)) == 1

    # delete the track from frame 8 on, after a confirmation that gives the counts
    asked: list[str] = []

    def confirm(text: str) -> bool:
        asked.append(text)
        return True

    w.video.confirm = confirm
    go(qtbot, w, seen, 8)
    w.video.delete_track_from_here(int(track.id or 0))
    assert "3 instances of object 1 from frame 8" in asked[0]
    assert "0 anchors, 3 propagated" in asked[0]
    assert sorted(store.instances(seq_id, track.id)) == list(range(8))
    assert w.frame_bar.slider.propagated == {1, 2, 3, 4, 6}
    assert w.session.instances() == []
    # refused: nothing goes
    w.video.confirm = lambda text: False
    go(qtbot, w, seen, 6)
    w.video.delete_track_from_here(int(track.id or 0))
    assert sorted(store.instances(seq_id, track.id)) == list(range(8))

    # rename (the name cell) and relabel (the context menu's signal) from the track list
    track_row(w).setText(0, "car A")
    assert store.track(int(track.id or 0)).name == "car A"
    w.video_panel.relabel_requested.emit(int(track.id or 0), "car")
    assert {i.label for insts in store.instances(seq_id).values() for i in insts} == {"car"}
    assert track_row(w).text(1) == "car"
    # a new accept with no track chosen starts a second track
    w.video_panel.choose_track(None)
    assert w.video.track_id is None
    go(qtbot, w, seen, 9)
    accept_object(qtbot, w)
    assert [(t.name, t.label) for t in store.tracks(seq_id)] == [("car A", "car"),
                                                                  ("car 1", "car")]


def test_propagate_forward_marks_and_frames(qtbot: QtBot, image_folder: Path,
                                            classical_bridge: object) -> None:
    w, _video, seen = open_video(qtbot, image_folder, classical_bridge)
    seq_id = int(w.video.sequence.id or 0)  # type: ignore[union-attr]
    store = w.project.sequences
    accept_object(qtbot, w)
    (track,) = store.tracks(seq_id)
    (anchor,) = store.instances(seq_id)[0]

    with qtbot.waitSignal(w.video.propagation_finished, timeout=60000) as done:
        key(qtbot, w, Qt.Key.Key_L,
            Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert done.args == [None, False]
    by_frame = store.instances(seq_id, track.id)
    assert sorted(by_frame) == list(range(11))
    assert all(i.origin == InstanceOrigin.PROPAGATED for f in range(1, 11)
               for i in by_frame[f])
    assert w.frame_bar.slider.anchors == {0}
    assert w.frame_bar.slider.propagated == set(range(1, 11))
    row = track_row(w)
    assert (row.text(2), row.text(3)) == ("1", "10")

    # frame 5 shows the propagated instance, which followed the object to the right
    go(qtbot, w, seen, 5)
    (prop,) = w.session.instances()
    assert prop.origin == InstanceOrigin.PROPAGATED and prop.track_id == track.id
    assert prop.geometry.centroid.x > anchor.geometry.centroid.x + 5
    # backward from frame 10 with an anchor there: frames up to the next anchor (0)
    go(qtbot, w, seen, 10)
    w.session.edit_geometry(int(w.session.instances()[0].id or 0),
                            translate(by_frame[10][0].geometry, 1, 0))
    with qtbot.waitSignal(w.video.propagation_finished, timeout=60000) as done:
        key(qtbot, w, Qt.Key.Key_J,
            Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert done.args == [None, False]
    assert w.frame_bar.slider.anchors == {0, 10}
    assert w.frame_bar.slider.propagated == set(range(1, 10))


def test_cancel_mid_propagation_keeps_the_frames_done(qtbot: QtBot, image_folder: Path,
                                                      classical_bridge: object) -> None:
    w, _video, _seen = open_video(qtbot, image_folder, classical_bridge, frames=16)
    seq_id = int(w.video.sequence.id or 0)  # type: ignore[union-attr]
    accept_object(qtbot, w)
    # cancel right after the first frame is written, on the worker, before the next step
    def written(_request: int, step: FrameWritten) -> None:
        if step.written:
            w.video.job_token.cancel()  # type: ignore[union-attr]

    w.bridge.step_done.connect(written, Qt.ConnectionType.DirectConnection)
    with qtbot.waitSignal(w.video.propagation_finished, timeout=60000) as done:
        w.video.propagate(1)
    assert done.args == [None, True]
    frames = sorted(w.project.sequences.instances(seq_id))
    assert frames == [0, 1]  # the anchor and the one frame done
    assert w.frame_bar.slider.propagated == {1}
    assert "cancelled" in w.statusBar().currentMessage()


def test_video_keys_collide_with_nothing_and_show_in_help(qapp: object) -> None:
    """Outside review mode (which takes some keys on purpose) every key of the table does
    one thing, no key is a menu's Alt+letter, and the help dialog lists the Video menu."""
    from collections import defaultdict

    from PySide6.QtGui import QKeySequence
    from PySide6.QtWidgets import QMainWindow, QWidget

    from app.ui import keys
    from app.ui.help_dialog import key_rows

    owners: dict[str, list[str]] = defaultdict(list)
    for _, rows in keys.MENUS:
        for row in rows:
            if row is None or row[0].startswith(keys.REVIEW_PREFIX):
                continue
            for k in [row[2]] if isinstance(row[2], str) else row[2]:
                if k:
                    owners[QKeySequence(k).toString()].append(row[0])
    assert {k: v for k, v in owners.items() if len(v) > 1} == {}
    mnemonics = {QKeySequence(f"Alt+{title[title.index('&') + 1]}").toString()
                 for title, _ in keys.MENUS}
    assert mnemonics.isdisjoint(owners)

    host = QMainWindow()
    slots: defaultdict[str, keys.Slot] = defaultdict(lambda: lambda: None)
    keys.install(host, slots, recent=[], open_recent=lambda _p: None,
                 toolbar_widget=QWidget())
    video = dict(key_rows(host.menuBar()))["Video"]
    assert ("L, .", "Next frame") in video and ("K", "Play / pause") in video
    assert ("Ctrl+Shift+J", "Propagate backward") in video


def test_the_shown_frame_refreshes_when_propagation_writes_it(
        qtbot: QtBot, image_folder: Path, classical_bridge: object) -> None:
    w, _video, _seen = open_video(qtbot, image_folder, classical_bridge, frames=12)
    accept_object(qtbot, w)
    rows_when_written: list[int] = []
    moved: list[int] = []

    def step(_request: int, item: FrameWritten) -> None:  # GUI thread, after the controller
        if not moved and item.written:
            moved.append(item.frame + 2)
            w.video.go_to(item.frame + 2)  # the person steps ahead while it runs
        elif moved and item.frame == moved[0]:
            rows_when_written.append(w.instances_panel.list.count())

    stepped_ahead = threading.Event()

    def hold(_request: int, item: FrameWritten) -> None:  # the worker, right after a step
        if item.written and not stepped_ahead.is_set():
            stepped_ahead.wait(10)  # frame +2 is computed only after the person moved

    w.bridge.step_done.connect(step)
    def release(*_args: object) -> None:  # GUI thread: the person has moved
        if moved:
            stepped_ahead.set()

    w.bridge.step_done.connect(release)
    w.bridge.step_done.connect(hold, Qt.ConnectionType.DirectConnection)
    with qtbot.waitSignal(w.video.propagation_finished, timeout=60000):
        w.video.propagate(1)
    assert w.video.frame == moved[0]
    assert rows_when_written == [1]  # shown at once, not only at the end of the run


def test_a_folder_of_frames_is_a_sequence_too(qtbot: QtBot, image_folder: Path,
                                              classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)  # type: ignore[arg-type]
    frames = image_folder.parent / "shot"
    frames.mkdir()
    for i in range(5):
        write_png(frames / f"frame_{i}.png", moving_scene(i))
    seen: list[ImageRecord] = []
    w.image_shown.connect(seen.append)
    w.video.add_sequence(frames)
    qtbot.waitUntil(lambda: w.video.sequence is not None and bool(seen), timeout=TIMEOUT)
    assert w.video.sequence is not None and w.video.sequence.kind == "frames"
    key(qtbot, w, Qt.Key.Key_L, Qt.KeyboardModifier.ShiftModifier)  # +10: clamped to 4
    wait_shown(qtbot, w, seen, 4)
    assert np.array_equal(qimage_rgb(w.canvas._pixmap_item.pixmap().toImage()),
                          moving_scene(4))  # PNG: lossless
    assert w.images_panel.list.count() == 3


def test_the_next_frames_are_encoded_ahead_in_the_direction_stepped(
        qtbot: QtBot, image_folder: Path, classical_bridge: object) -> None:
    """Stepping forward encodes the two frames after the shown one while the person looks
    at it (the service's prefetch), backward the two before; no images row is made for a
    frame only read ahead."""
    from app.ui.workers import PredictorBridge

    assert isinstance(classical_bridge, PredictorBridge)
    w, _video, seen = open_video(qtbot, image_folder, classical_bridge)
    seq = w.video.sequence
    assert seq is not None
    store = classical_bridge.images
    key(qtbot, w, Qt.Key.Key_L)  # next frame
    wait_shown(qtbot, w, seen, 1)
    qtbot.waitUntil(lambda: all(f"{seq.content_hash}#{k}" in store._images for k in (2, 3)),
                    timeout=TIMEOUT)
    key(qtbot, w, Qt.Key.Key_L, Qt.KeyboardModifier.ShiftModifier)  # 10 on: the last frame
    wait_shown(qtbot, w, seen, 10)
    key(qtbot, w, Qt.Key.Key_J)  # back one: 9 shown, 8 and 7 read ahead
    wait_shown(qtbot, w, seen, 9)
    qtbot.waitUntil(lambda: all(f"{seq.content_hash}#{k}" in store._images for k in (8, 7)),
                    timeout=TIMEOUT)
    rows = w.project.query("SELECT frame_index FROM images WHERE sequence_id = ?", (seq.id,))
    assert sorted(r[0] for r in rows) == [0, 1, 9, 10]  # visited frames only
