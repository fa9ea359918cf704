"""The SAM2.1 model registry: names, configs, official URLs, sizes, checksums; where
checkpoints are installed, and their download (progress, resume, checksum: ``download``).

Sizes and sha256 are those of the files Meta publishes under ``BASE_URL`` (the 2024-09-28
SAM2.1 release), as pinned by the Git LFS pointers of Hugging Face mirrors of that release
(see ``CHECKSUM_SOURCES``). A spec whose ``sha256`` is None is verified by size only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from app.core.jobs import CancelToken, Progress
from app.predict.base import PredictorError

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
                  f"{BASE_URL}/sam2.1_hiera_tiny.pt", 156_008_466,
                  "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69"),
        ModelSpec("small", "sam2.1_hiera_small", "configs/sam2.1/sam2.1_hiera_s.yaml",
                  f"{BASE_URL}/sam2.1_hiera_small.pt", 184_416_285,
                  "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38"),
        ModelSpec("base_plus", "sam2.1_hiera_base_plus", "configs/sam2.1/sam2.1_hiera_b+.yaml",
                  f"{BASE_URL}/sam2.1_hiera_base_plus.pt", 323_606_802,
                  "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5"),
        ModelSpec("large", "sam2.1_hiera_large", "configs/sam2.1/sam2.1_hiera_l.yaml",
                  f"{BASE_URL}/sam2.1_hiera_large.pt", 898_083_611,
                  "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318"),
    )
}

# Where the sizes and sha256 above were read (Git LFS pointers of copies of the official files).
CHECKSUM_SOURCES: dict[str, tuple[str, ...]] = {
    "tiny": ("huggingface.co/camenduru/sam2-1-hiera (commit cdd35a4)",
             "huggingface.co/Promethe-us/sam2 (commit d105770)"),
    "small": ("huggingface.co/camenduru/sam2-1-hiera (commit cdd35a4)",),
    "base_plus": ("huggingface.co/camenduru/sam2-1-hiera (commit cdd35a4)",
                  "huggingface.co/Promethe-us/sam2 (commit d105770)",
                  "huggingface.co/spaces/Mar2Ding/SAM2Long-Demo"),
    "large": ("huggingface.co/camenduru/sam2-1-hiera (commit cdd35a4)",
              "huggingface.co/tictag-io-demo/sam2.1-hiera-large",
              "huggingface.co/datasets/phenanthra/tmp (discussion 2)"),
}


@dataclass(frozen=True)
class ModelRow:
    """One line of ``maskloop models list``."""

    name: str
    model_id: str
    size_bytes: int | None
    installed: bool
    path: Path  # where the checkpoint is (or would be once downloaded)
    partial_bytes: int = 0  # bytes of an interrupted download waiting to be resumed


def models_dir() -> Path:
    """Where downloaded checkpoints live (user data dir); MASKLOOP_MODELS_DIR overrides."""
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


def list_models(dest_dir: Path | None = None) -> list[ModelRow]:
    """Every registry model with its size, whether it is installed and where."""
    folder = models_dir() if dest_dir is None else Path(dest_dir)
    rows = []
    for spec in REGISTRY.values():
        path = folder / spec.filename
        part = path.with_name(path.name + ".part")
        rows.append(ModelRow(
            name=spec.name, model_id=spec.model_id, size_bytes=spec.size_bytes,
            installed=path.is_file(), path=path,
            partial_bytes=part.stat().st_size if part.is_file() else 0,
        ))
    return rows


def download(
    name_or_spec: str | ModelSpec,
    dest_dir: Path | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    url: str | None = None,
    timeout: float = 30.0,
    retries: int = 3,
) -> Path:
    """Download a checkpoint into ``dest_dir`` (default ``models_dir()``) and return its path.

    Writes ``NAME.part``, resumes an interrupted transfer (also on the next call), verifies size
    and sha256, then renames atomically. ``url`` overrides the spec's URL (mirrors, tests).
    A checkpoint already installed with the right size is returned at once. Raises
    PredictorError (offline, HTTP error, bad checksum) or Cancelled (the .part is kept).
    """
    from app.predict.models.download import fetch

    if isinstance(name_or_spec, ModelSpec):
        spec = name_or_spec
    else:
        try:
            spec = get_model(name_or_spec)
        except KeyError as exc:
            raise PredictorError(str(exc.args[0])) from None
    folder = models_dir() if dest_dir is None else Path(dest_dir)
    return fetch(
        url or spec.url, folder / spec.filename, size=spec.size_bytes, sha256=spec.sha256,
        progress=progress, cancel=cancel, timeout=timeout, retries=retries,
    )
