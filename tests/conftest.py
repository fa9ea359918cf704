"""Shared fixtures: private user dirs and no system keyring for every test session, a
random-weight SAM2 checkpoint."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


@pytest.fixture(scope="session", autouse=True)
def _private_user_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point the embedding cache and the models folder at temporary dirs so that tests never
    read or write the real user cache/data dirs; SAM2 runs on torch unless a test asks for
    another runtime (tests/predict/sam2/test_sam2_runtime.py does): many tests count forward
    hooks on the torch modules, and converting the model in every test would cost minutes."""
    base = tmp_path_factory.mktemp("user-dirs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MASKLOOP_CACHE_DIR", str(base / "cache"))
        mp.setenv("MASKLOOP_MODELS_DIR", str(base / "models"))
        mp.setenv("MASKLOOP_RUNTIME", "torch")
        yield


@pytest.fixture(scope="session", autouse=True)
def _no_system_keyring() -> Iterator[None]:
    """Tests never read or write the user's keyring: API keys go to the settings file (the
    fallback) unless a test sets a keyring of its own."""
    import keyring
    from keyring.backends import fail

    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(before)


@pytest.fixture(scope="session")
def sam2_tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(path, config) of a SAM2.1 tiny checkpoint with seeded random weights, saved as
    {"model": state_dict} like the official ones."""
    from app.predict.sam2.model import save_random_checkpoint

    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny_random.pt"
    save_random_checkpoint(path, TINY_CONFIG, seed=0)
    return path, TINY_CONFIG
