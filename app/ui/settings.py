"""GUI settings kept between runs in a JSON file under the user config dir
(``settings_path()``, e.g. ~/.config/maskloop/gui.json): recent projects, window layout,
backend choice and defaults. The API keys of the MaskLoop server and the hosted APIs go to
the system keyring (``app.ui.secrets``); only where no keyring works are they stored in the
file, in plain text, readable only by its owner (mode 0600). A key found in the file while a
keyring works is moved into the keyring on load. Keys are never logged or shown. Empty keys
fall back to the environment ($MASKLOOP_API_KEY, $API_KEY, $FAL_KEY, $SEGMIND_API_KEY)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import platformdirs

from app.core.geometry import DEFAULT_TOLERANCE
from app.ui import secrets

MAX_RECENT = 10
SECRET_FIELDS = ("server_key", "roboflow_key", "fal_key", "segmind_key")


def settings_path() -> Path:
    return Path(platformdirs.user_config_dir("maskloop")) / "gui.json"


@dataclass
class GuiSettings:
    backend: str = "auto"  # auto | sam2 | classical | server | roboflow | fal | segmind
    model: str = "tiny"
    checkpoint: str = ""
    device: str = "auto"
    server_url: str = ""
    server_key: str = ""
    remote_mode: str = "server"  # server | hybrid (MaskLoop server only)
    hosted_url: str = ""  # base URL of a hosted API (empty: its public endpoint)
    roboflow_key: str = ""
    fal_key: str = ""
    segmind_key: str = ""
    cache_mb: int = 1024
    tiled: bool = False  # full-resolution tiles on large images (local backends; opt-in)
    tolerance: float = DEFAULT_TOLERANCE  # polygon simplification, pixels
    opacity: float = 0.4
    label_popup: bool = True  # Enter asks for the label (off: the current label at once)
    hover_preview: bool = True  # the mask under a resting pointer (fast backends only)
    guide_done: bool = False  # the first-run guide was shown to the end or dismissed
    recent: list[str] = field(default_factory=list)
    geometry: str = ""  # base64 of QMainWindow.saveGeometry()
    state: str = ""  # base64 of QMainWindow.saveState()

    def __post_init__(self) -> None:
        self._in_keyring: dict[str, str] = {}  # the keys as last read from/put in the keyring

    @classmethod
    def load(cls, path: Path | None = None) -> GuiSettings:
        path = path or settings_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known} if isinstance(data, dict) else {}
        try:
            settings = cls(**values)
        except TypeError:
            return cls()
        settings._load_keys(path)
        return settings

    def _load_keys(self, path: Path) -> None:
        """Take the keys from the keyring; move any key still in the file there."""
        if not secrets.available():
            return
        in_file = False
        stored: dict[str, str] = {}
        for name in SECRET_FIELDS:
            ring = secrets.get(name)
            if ring is None:
                return  # the keyring failed: the file's keys
            if getattr(self, name):
                in_file = True  # save() below moves it into the keyring
            else:
                setattr(self, name, ring)
                stored[name] = ring
        self._in_keyring = stored
        if in_file:
            self.save(path)

    def _file_data(self) -> dict[str, object]:
        """What the file holds: every setting, with the keys that the keyring took blanked."""
        data = asdict(self)
        stored = self._in_keyring
        for name in SECRET_FIELDS:
            value = data[name]
            if (name in stored and stored[name] == value) or secrets.put(name, value):
                stored[name] = value
                data[name] = ""
        return data

    def save(self, path: Path | None = None) -> None:
        path = path or settings_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            # created owner-only: the file may hold API keys (no keyring)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(self._file_data(), indent=2))
            os.chmod(tmp, 0o600)  # an old .tmp may have had other bits
            tmp.replace(path)
        except OSError:
            pass  # settings are a convenience; never fail the app over them

    def __repr__(self) -> str:  # never print the keys
        hidden = {*SECRET_FIELDS, "geometry", "state"}
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                          if f.name not in hidden)
        return f"GuiSettings({shown})"

    def add_recent(self, project: Path) -> None:
        p = str(project)
        self.recent = [p, *[r for r in self.recent if r != p]][:MAX_RECENT]
