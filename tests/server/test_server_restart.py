"""A server that restarts: its embeddings and image ids survive a SIGKILL (the real
``maskloop serve`` as a subprocess), and the app's client carries on with a refine click
after a restart, whether the server kept the image or lost it."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from server_helpers import b64_image, make_image, png_bytes

from app.core.types import Point, Prompt
from app.predict.remote.predictor import RemotePredictor
from app.server.process import ServerProcess, free_port, source_root

CLICK = {"prompts": [{"points": [{"x": 30, "y": 20, "positive": True}]}]}


@pytest.mark.slow  # two server starts (torch, the checkpoint) and one SAM2 encode on a CPU
def test_a_killed_server_answers_known_images_at_once_after_a_restart(
    sam2_tiny_checkpoint, tmp_path
) -> None:
    checkpoint, _ = sam2_tiny_checkpoint
    cache, port = tmp_path / "cache", free_port()
    image = make_image(seed=4321)
    png = png_bytes(image)
    digest = hashlib.sha256(png).hexdigest()
    first = ServerProcess(checkpoint, cache, source_root(), port=port)
    client = None
    try:
        first.wait_ready()
        r = httpx.post(f"{first.url}/sam2/embed_image", timeout=120,
                       json={"image": b64_image(png), "image_id": "team-image-1"})
        assert r.status_code == 200, r.text
        client = RemotePredictor(first.url, mode="server", retries=5, backoff=0.5)
        key = client.embed_file(_write(tmp_path, png))
        earlier = client.predict(key, Prompt(points=(Point(30, 20),)))
    finally:
        first.kill()
        first.stop()
    with ServerProcess(checkpoint, cache, source_root(), port=port) as again:
        again.wait_ready()
        r = httpx.post(f"{again.url}/sam2/segment_image", timeout=60,
                       json={"image_id": "team-image-1", "prompts": CLICK})
        assert r.status_code == 200, r.text  # by image_id alone: nothing sent again
        assert httpx.head(f"{again.url}/v1/images/{digest}", timeout=30).status_code == 200
        # the app's client: a refine click refers to a result the restarted server forgot
        assert client is not None
        refine = Prompt(points=(Point(30, 20), Point(5, 5, False)),
                        mask_input=earlier.logits_for(earlier.best))
        before = client.stats.snapshot()
        result = client.predict(key, refine)
        assert result.masks.shape == (3, 48, 64)
        assert client.stats.since(before).requests == 2  # 409, then the click sent fresh
        client.close()


def _write(tmp_path, data: bytes):
    path = tmp_path / "image.png"
    path.write_bytes(data)
    return path


def test_a_refine_click_after_a_restart_that_lost_the_image(classical_predictor) -> None:
    """The restarted server has neither the image (404: the client uploads it again) nor
    the earlier result (409): the click is sent again as a fresh click."""
    from app.predict.classical.predictor import ClassicalPredictor
    from app.server.app import create_app, start_in_thread

    port = free_port()
    first = start_in_thread(create_app(ClassicalPredictor()), port=port)
    client = RemotePredictor(first.url, mode="server", retries=5, backoff=0.2)
    try:
        key = client.embed(make_image(seed=99))
        earlier = client.predict(key, Prompt(points=(Point(40, 20),)))
        first.stop()
        again = start_in_thread(create_app(ClassicalPredictor()), port=port)
        try:
            refine = Prompt(points=(Point(40, 20), Point(5, 5, False)),
                            mask_input=earlier.logits_for(earlier.best))
            result = client.predict(key, refine)
            assert result.masks.shape == (len(result), 48, 64)
            assert client.predict(key, refine).masks.shape[1:] == (48, 64)  # and again
        finally:
            again.stop()
    finally:
        client.close()


def test_result_ids_of_a_restarted_server_are_new() -> None:
    """A restarted server keeps the images, not the results: its result ids must not repeat
    the ids its clients still hold, or a refinement would take another result's logits."""
    import numpy as np

    from app.server.results import ResultStore

    logits = np.zeros((3, 256, 256), np.float32)
    ids = [ResultStore(1 << 20).add("h", logits) for _ in range(5)]
    assert len(set(ids)) == 5 and all(0 < i < 2**53 for i in ids)
