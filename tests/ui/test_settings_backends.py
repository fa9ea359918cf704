"""Choosing a remote backend: the settings dialog's rows and keys, the settings file, and
the predictor the app builds from the settings or from ``maskloop FOLDER --hosted ...``."""

from __future__ import annotations

import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.cli.gui_cmd import build_parser, make_predictor, predictor_for_settings
from app.core.errors import MaskLoopError
from app.ui.dialogs.settings_dialog import SettingsDialog
from app.ui.settings import GuiSettings, settings_path
from app.ui.tasks import TaskRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "predict" / "hosted"))
from fakes import FakeRoboflow  # noqa: E402

KEY = "secret-key-123"


@pytest.fixture
def roboflow() -> Iterator[FakeRoboflow]:
    fake = FakeRoboflow(KEY)
    yield fake
    fake.close()


def test_dialog_shows_the_rows_of_the_chosen_backend_and_stores_keys(qtbot: QtBot) -> None:
    settings = GuiSettings(backend="classical", server_key="old")
    dlg = SettingsDialog(settings, TaskRunner(1), "Classical")
    qtbot.addWidget(dlg)
    form = dlg.form

    def shown(widget: object) -> bool:
        return form.isRowVisible(widget)  # type: ignore[arg-type]

    assert not shown(dlg.server_url) and not shown(dlg.hosted_keys["roboflow"])
    dlg.backend.setCurrentIndex(dlg.backend.findData("server"))
    assert shown(dlg.server_url) and shown(dlg.remote_mode) and shown(dlg.key_note)
    assert not shown(dlg.hosted_url)
    dlg.backend.setCurrentIndex(dlg.backend.findData("segmind"))
    assert shown(dlg.hosted_keys["segmind"]) and not shown(dlg.hosted_keys["fal"])
    assert shown(dlg.hosted_url) and not shown(dlg.server_url)
    assert str(settings_path()) in dlg.key_note.text()
    dlg.backend.setCurrentIndex(dlg.backend.findData("roboflow"))
    dlg.hosted_keys["roboflow"].setText(" rf-key ")
    dlg.hosted_url.setText("http://127.0.0.1:1234")
    dlg.remote_mode.setCurrentIndex(dlg.remote_mode.findData("hybrid"))
    dlg.accept()
    assert (settings.backend, settings.roboflow_key, settings.hosted_url,
            settings.remote_mode) == ("roboflow", "rf-key", "http://127.0.0.1:1234", "hybrid")
    assert "rf-key" not in repr(settings) and "old" not in repr(settings)
    settings.save()
    path = settings_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds keys
    assert GuiSettings.load().roboflow_key == "rf-key"


def test_settings_build_the_hosted_predictor(roboflow: FakeRoboflow) -> None:
    s = GuiSettings(backend="roboflow", roboflow_key=KEY, hosted_url=roboflow.url)
    predictor = predictor_for_settings(s)
    try:
        assert predictor.capabilities.text_prompts and "Roboflow" in predictor.description  # type: ignore[attr-defined]
        assert KEY not in predictor.description and KEY not in repr(predictor)
    finally:
        predictor.close()
    with pytest.raises(MaskLoopError, match="server URL"):
        predictor_for_settings(GuiSettings(backend="server"))


def test_hosted_without_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAL_KEY", raising=False)
    with pytest.raises(MaskLoopError, match="FAL_KEY"):
        predictor_for_settings(GuiSettings(backend="fal"))


def test_command_line_takes_every_remote_backend(roboflow: FakeRoboflow, tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args([str(tmp_path), "--server", "http://127.0.0.1:9",
                              "--remote-mode", "hybrid", "--api-key", "k"])
    assert (args.target, args.server, args.remote_mode, args.api_key) == (
        tmp_path, "http://127.0.0.1:9", "hybrid", "k")
    args = parser.parse_args([str(tmp_path), "--hosted", "roboflow", "--hosted-url",
                              roboflow.url, "--api-key", KEY])
    predictor = make_predictor(args)
    try:
        assert type(predictor).__name__ == "RoboflowPredictor"
    finally:
        predictor.close()
    with pytest.raises(SystemExit):  # one remote backend at a time
        parser.parse_args(["--server", "http://x", "--hosted", "fal"])


def test_dialog_offers_roboflow_sam3_with_the_shared_roboflow_key(qtbot: QtBot) -> None:
    settings = GuiSettings(backend="roboflow", roboflow_key="rf-key")
    dlg = SettingsDialog(settings, TaskRunner(1), "Roboflow")
    qtbot.addWidget(dlg)
    form = dlg.form
    assert not form.isRowVisible(dlg.shared_key_note)  # Roboflow itself: its own key
    dlg.backend.setCurrentIndex(dlg.backend.findData("roboflow-sam3"))
    assert dlg.backend.currentText().startswith("Roboflow SAM3")
    # the one Roboflow key row, already filled, and a note saying it is shared
    assert form.isRowVisible(dlg.hosted_keys["roboflow"]) and form.isRowVisible(dlg.hosted_url)
    assert not form.isRowVisible(dlg.hosted_keys["fal"])
    assert not form.isRowVisible(dlg.hosted_keys["segmind"])
    assert "roboflow-sam3" not in dlg.hosted_keys  # no second key to fill in
    assert dlg.hosted_keys["roboflow"].text() == "rf-key"
    assert form.isRowVisible(dlg.shared_key_note) and form.isRowVisible(dlg.key_note)
    note = dlg.shared_key_note.text()
    assert "Roboflow SAM3" in note and "Roboflow API key" in note and "rf-key" not in note
    dlg.hosted_keys["roboflow"].setText(" new-key ")
    dlg.accept()
    assert (settings.backend, settings.roboflow_key) == ("roboflow-sam3", "new-key")
    dlg2 = SettingsDialog(settings, TaskRunner(1), "Roboflow SAM3")  # opens on the choice
    qtbot.addWidget(dlg2)
    assert dlg2.backend.currentData() == "roboflow-sam3"
    assert dlg2.form.isRowVisible(dlg2.shared_key_note)


def test_roboflow_sam3_key_is_stored_once_and_used(roboflow: FakeRoboflow,
                                                   tmp_path: Path) -> None:
    import keyring
    import numpy as np
    from test_settings_keyring import MemoryKeyring

    from app.core.types import Point, Prompt
    from app.ui import secrets

    assert secrets.key_field("roboflow-sam3") == secrets.key_field("roboflow") == "roboflow_key"
    assert secrets.key_field("sam2") is None
    before = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    try:
        path = tmp_path / "gui.json"
        GuiSettings(backend="roboflow-sam3", roboflow_key=KEY,
                    hosted_url=roboflow.url).save(path)
        assert ring.store == {("maskloop", "roboflow_key"): KEY}  # Roboflow's entry, no other
        assert KEY not in path.read_text(encoding="utf-8")
        loaded = GuiSettings.load(path)
    finally:
        keyring.set_keyring(before)
    assert (loaded.backend, loaded.roboflow_key) == ("roboflow-sam3", KEY)
    predictor = predictor_for_settings(loaded)
    try:
        assert type(predictor).__name__ == "RoboflowSam3Predictor"
        image = np.full((96, 128, 3), 40, dtype=np.uint8)
        image[30:60, 40:90] = 230
        key = predictor.embed(image)
        result = predictor.predict(key, Prompt(points=(Point(60.5, 40.5),)))
        assert result.masks.shape[1:] == (96, 128) and result.masks[0].any()
        assert roboflow.calls("/sam3/visual_segment")  # the fake checked the shared key
        assert KEY not in repr(predictor) and KEY not in predictor.description  # type: ignore[attr-defined]
    finally:
        predictor.close()  # type: ignore[attr-defined]
