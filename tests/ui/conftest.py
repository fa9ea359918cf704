"""UI test fixtures: offscreen Qt, private settings dirs, small generated image folders."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before Qt is imported

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from ui_helpers import scene_image, write_png  # noqa: E402


@pytest.fixture(autouse=True)
def _private_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GUI settings and the samples project go to per-test dirs (platformdirs honours XDG)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        write_png(folder / f"img{i}.png", scene_image(seed=i))
    return folder


@pytest.fixture
def classical_bridge(qapp: object) -> Iterator[object]:
    from app.predict.classical.predictor import ClassicalPredictor
    from app.ui.workers import PredictorBridge

    bridge = PredictorBridge(ClassicalPredictor())
    yield bridge
    bridge.close()


@pytest.fixture
def sam2_bridge(qapp: object, sam2_tiny_checkpoint: tuple[Path, str],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A random-weight SAM2.1 tiny behind a fresh bridge per test (no prefetch left over from
    another test runs meanwhile)."""
    from app.predict.cache.store import EmbeddingCache
    from app.predict.sam2.predictor import SAM2Predictor
    from app.ui.workers import PredictorBridge

    path, config = sam2_tiny_checkpoint
    predictor = SAM2Predictor(path, config, "random-tiny", "cpu",
                              EmbeddingCache(disk_dir=tmp_path_factory.mktemp("emb")))
    bridge = PredictorBridge(predictor)
    yield bridge
    bridge.close()
