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
