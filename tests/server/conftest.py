"""Fixtures of the server tests: real servers on 127.0.0.1 over a real predictor (SAM2 with
random weights, or GrabCut where only the plumbing matters), small images."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from server_helpers import make_image, png_bytes

from app.predict.cache.store import EmbeddingCache
from app.server.app import RunningServer, create_app, start_in_thread
from app.server.settings import ServerSettings


@pytest.fixture(scope="session")
def image() -> np.ndarray:
    return make_image()


@pytest.fixture(scope="session")
def image_png(image: np.ndarray) -> bytes:
    return png_bytes(image)


@pytest.fixture(scope="session")
def sam2_predictor(sam2_tiny_checkpoint: tuple[Path, str]) -> Iterator[Any]:
    """One random-weight SAM2 tiny for every server test (its embedding cache is shared,
    so each test image is encoded once per session)."""
    from app.predict.sam2.predictor import SAM2Predictor

    path, config = sam2_tiny_checkpoint
    predictor = SAM2Predictor(path, config, device="cpu",
                              cache=EmbeddingCache(memory_bytes=256 << 20, disk_dir=None))
    yield predictor
    predictor.close()


@pytest.fixture(scope="session")
def classical_predictor() -> Any:
    from app.predict.classical.predictor import ClassicalPredictor

    return ClassicalPredictor()


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningServer]]:
    """serve(predictor, **settings) -> a running server, stopped after the test."""
    running: list[RunningServer] = []

    def start(predictor: Any, **settings: Any) -> RunningServer:
        srv = start_in_thread(create_app(predictor, ServerSettings(**settings)))
        running.append(srv)
        return srv

    yield start
    for srv in running:
        srv.stop()
