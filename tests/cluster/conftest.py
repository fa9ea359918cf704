"""The cluster tests' shared pieces: one local Ray per test module (2 CPUs, as CI has),
small image folders, the recipe of the random-weight SAM2 tiny checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cluster.worker_model import WorkerModel, worker_model


@pytest.fixture(scope="module")
def local_ray() -> Iterator[str]:
    """A local Ray for the module (its GCS address, for subprocess drivers); shut down after."""
    ray = pytest.importorskip("ray")
    # A busy 2-core machine starts Serve's proxy in more than the 5 s (ready) and 10 s
    # (health) that Serve allows, and then kills it; the processes Ray starts read these.
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "120")
    patch.setenv("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "120")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False,
             log_to_driver=False, _node_ip_address="127.0.0.1")  # loopback only
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        patch.undo()


@pytest.fixture(scope="module")
def tiny_model(sam2_tiny_checkpoint: tuple[Path, str]) -> WorkerModel:
    """The recipe a worker builds the random-weight tiny model from (torch, one thread)."""
    checkpoint, config = sam2_tiny_checkpoint
    return worker_model(checkpoint=checkpoint, config=config, device="cpu", runtime="torch")
