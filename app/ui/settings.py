"""GUI settings kept between runs in a JSON file under the user config dir: recent
projects, window layout, backend choice and defaults."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import platformdirs

MAX_RECENT = 10


def settings_path() -> Path:
    return Path(platformdirs.user_config_dir("maskloop")) / "gui.json"


@dataclass
class GuiSettings:
    backend: str = "auto"  # auto | sam2 | classical | server
    model: str = "tiny"
    checkpoint: str = ""
    device: str = "auto"
    server_url: str = ""
    server_key: str = ""
    cache_mb: int = 1024
    tolerance: float = 1.0  # polygon simplification, pixels
    opacity: float = 0.4
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
            tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
            tmp.replace(path)
        except OSError:
            pass  # settings are a convenience; never fail the app over them

    def add_recent(self, project: Path) -> None:
        p = str(project)
        self.recent = [p, *[r for r in self.recent if r != p]][:MAX_RECENT]
