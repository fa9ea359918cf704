"""The SAM2.1 model registry: names, configs, official URLs, sizes, checksums; where
checkpoints are installed. (Download with progress, resume and checksum: see ``download``.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import platformdirs

BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"


@dataclass(frozen=True)
class ModelSpec:
    name: str  # registry name used by --model: tiny, small, base_plus, large
    model_id: str  # stable id used in cache keys, e.g. "sam2.1_hiera_tiny"
    config: str  # sam2 Hydra config name
    url: str
    size_bytes: int | None
    sha256: str | None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("tiny", "sam2.1_hiera_tiny", "configs/sam2.1/sam2.1_hiera_t.yaml",
                  f"{BASE_URL}/sam2.1_hiera_tiny.pt", None, None),
        ModelSpec("small", "sam2.1_hiera_small", "configs/sam2.1/sam2.1_hiera_s.yaml",
                  f"{BASE_URL}/sam2.1_hiera_small.pt", None, None),
        ModelSpec("base_plus", "sam2.1_hiera_base_plus", "configs/sam2.1/sam2.1_hiera_b+.yaml",
                  f"{BASE_URL}/sam2.1_hiera_base_plus.pt", None, None),
        ModelSpec("large", "sam2.1_hiera_large", "configs/sam2.1/sam2.1_hiera_l.yaml",
                  f"{BASE_URL}/sam2.1_hiera_large.pt", None, None),
    )
}


def models_dir() -> Path:
    """Where downloaded checkpoints live (user data dir); MASKLOOP_MODELS_DIR overrides."""
    import os

    override = os.environ.get("MASKLOOP_MODELS_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir("maskloop")) / "models"


def get_model(name: str) -> ModelSpec:
    """The spec of a registry name ("tiny"...) or model id ("sam2.1_hiera_tiny")."""
    for spec in REGISTRY.values():
        if name in (spec.name, spec.model_id):
            return spec
    known = ", ".join(REGISTRY)
    raise KeyError(f"unknown model {name!r}; known models: {known}")


def installed_checkpoint(name: str) -> Path | None:
    """The checkpoint file of a registry model if it has been downloaded, else None."""
    path = models_dir() / get_model(name).filename
    return path if path.is_file() else None
