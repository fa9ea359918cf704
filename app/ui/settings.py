"""GUI settings kept between runs in a JSON file under the user config dir
(``settings_path()``, e.g. ~/.config/maskloop/gui.json): recent projects, window layout,
backend choice and defaults. The API keys of the MaskLoop server and the hosted APIs are
stored there in plain text, in a file only its owner may read (mode 0600); they are never
logged or shown. Empty keys fall back to the environment ($MASKLOOP_API_KEY, $API_KEY,
$FAL_KEY, $SEGMIND_API_KEY)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import platformdirs

from app.core.geometry import DEFAULT_TOLERANCE

MAX_RECENT = 10


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
    tolerance: float = DEFAULT_TOLERANCE  # polygon simplification, pixels
    opacity: float = 0.4
    label_popup: bool = True  # Enter asks for the label (off: the current label at once)
    hover_preview: bool = True  # the mask under a resting pointer (fast backends only)
    guide_done: bool = False  # the first-run guide was shown to the end or dismissed
    recent: list[str] = field(default_factory=list)
    geometry: str = ""  # base64 of QMainWindow.saveGeometry()
    state: str = ""  # base64 of QMainWindow.saveState()

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
            return cls(**values)
        except TypeError:
            return cls()

    def save(self, path: Path | None = None) -> None:
        path = path or settings_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            # created owner-only: the file holds API keys
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(asdict(self), indent=2))
            os.chmod(tmp, 0o600)  # an old .tmp may have had other bits
            tmp.replace(path)
        except OSError:
            pass  # settings are a convenience; never fail the app over them

    def __repr__(self) -> str:  # never print the keys
        hidden = {"server_key", "roboflow_key", "fal_key", "segmind_key", "geometry", "state"}
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                          if f.name not in hidden)
        return f"GuiSettings({shown})"

    def add_recent(self, project: Path) -> None:
        p = str(project)
        self.recent = [p, *[r for r in self.recent if r != p]][:MAX_RECENT]
