"""API keys go to the system keyring, with the settings file as the fallback where no
keyring works; a key found in the file is moved into a working keyring on load."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.errors
import pytest
from keyring.backend import KeyringBackend

from app.ui import secrets
from app.ui.settings import GuiSettings


class MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.store.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError(username)


class LockedKeyring(MemoryKeyring):
    """A keyring that is configured but fails on use (a locked store, no D-Bus)."""

    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked("locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.PasswordSetError("locked")


@pytest.fixture
def ring() -> Iterator[MemoryKeyring]:
    before = keyring.get_keyring()
    mem = MemoryKeyring()
    keyring.set_keyring(mem)
    yield mem
    keyring.set_keyring(before)


def _file(path: Path) -> dict[str, object]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_without_a_keyring_keys_stay_in_the_owner_only_file(tmp_path: Path) -> None:
    assert not secrets.available()  # the suite's default: keyring's fail.Keyring
    path = tmp_path / "gui.json"
    GuiSettings(fal_key="fal-secret", server_key="srv").save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _file(path)["fal_key"] == "fal-secret"
    loaded = GuiSettings.load(path)
    assert (loaded.fal_key, loaded.server_key) == ("fal-secret", "srv")


def test_keys_go_to_the_keyring_and_not_the_file(tmp_path: Path, ring: MemoryKeyring) -> None:
    path = tmp_path / "gui.json"
    s = GuiSettings(roboflow_key="rf", model="small")
    s.save(path)
    assert ring.store == {("maskloop", "roboflow_key"): "rf"}
    data = _file(path)
    assert data["roboflow_key"] == "" and data["model"] == "small"
    loaded = GuiSettings.load(path)
    assert (loaded.roboflow_key, loaded.model) == ("rf", "small")
    loaded.roboflow_key = ""  # cleared in the dialog: gone from the keyring too
    loaded.segmind_key = "sg"
    loaded.save(path)
    assert ring.store == {("maskloop", "segmind_key"): "sg"}
    assert "sg" not in path.read_text(encoding="utf-8")


def test_a_key_in_the_file_moves_into_a_working_keyring_on_load(
        tmp_path: Path, ring: MemoryKeyring) -> None:
    path = tmp_path / "gui.json"
    path.write_text(json.dumps({"backend": "fal", "fal_key": "old-plaintext"}), encoding="utf-8")
    ring.store[("maskloop", "segmind_key")] = "from-ring"
    loaded = GuiSettings.load(path)
    assert (loaded.fal_key, loaded.segmind_key, loaded.backend) == (
        "old-plaintext", "from-ring", "fal")
    assert ring.store[("maskloop", "fal_key")] == "old-plaintext"
    assert "old-plaintext" not in path.read_text(encoding="utf-8")
    assert _file(path)["backend"] == "fal"
    assert GuiSettings.load(path).fal_key == "old-plaintext"


def test_a_keyring_that_fails_on_use_falls_back_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gui.json"
    before = keyring.get_keyring()
    keyring.set_keyring(LockedKeyring())
    try:
        assert secrets.available() and secrets.get("fal_key") is None
        GuiSettings(fal_key="kept").save(path)
        assert _file(path)["fal_key"] == "kept"
        assert GuiSettings.load(path).fal_key == "kept"
        assert _file(path)["fal_key"] == "kept"  # not lost by a failed move
    finally:
        keyring.set_keyring(before)


def test_the_dialog_says_where_keys_are_stored(qtbot, ring: MemoryKeyring) -> None:
    from app.ui.dialogs.settings_dialog import SettingsDialog
    from app.ui.tasks import TaskRunner

    dlg = SettingsDialog(GuiSettings(), TaskRunner(1), "Classical")
    qtbot.addWidget(dlg)
    assert "system keyring" in dlg.key_note.text()
