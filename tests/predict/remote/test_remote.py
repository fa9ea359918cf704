"""The desktop client (RemotePredictor) through the REAL server: ``maskloop serve`` started as a
second process on a free loopback port with a random-weight SAM2 tiny checkpoint."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.core.types import Box, Point, Prompt
from app.predict.base import EverythingOptions, Exemplar, FindQuery, Predictor, PredictorError
from app.predict.remote.predictor import RemotePredictor

pytestmark = pytest.mark.slow

KEY = "remote-test-key-42"
ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(checkpoint: Path, config: str, cache_dir: Path, api_key: str | None = KEY,
                 ) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m app serve`` on a free port; returns the process and its URL when healthy."""
    port = free_port()
    cmd = [sys.executable, "-m", "app", "serve", "--port", str(port), "--checkpoint",
           str(checkpoint), "--config", config, "--device", "cpu"]
    if api_key:
        cmd += ["--api-key", api_key]
    env = {**os.environ, "MASKLOOP_CACHE_DIR": str(cache_dir)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become healthy in 120 s")


@pytest.fixture(scope="module")
def server(sam2_tiny_checkpoint, tmp_path_factory) -> Iterator[str]:
    checkpoint, config = sam2_tiny_checkpoint
    proc, url = start_server(checkpoint, config, tmp_path_factory.mktemp("server-cache"))
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def decoder(sam2_tiny_checkpoint):
    """The same checkpoint loaded here: hybrid mode's local decoder and the reference."""
    from app.predict.cache.store import EmbeddingCache
    from app.predict.sam2.predictor import SAM2Predictor

    checkpoint, config = sam2_tiny_checkpoint
    return SAM2Predictor(checkpoint, config, device="cpu",
                         cache=EmbeddingCache(disk_dir=None))


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 60, (72, 96, 3), dtype=np.uint8)
    img[20:50, 30:70] = (220, 180, 40)
    return img


CLICK = Prompt(points=(Point(50.5, 35.5),))


def test_server_mode_labels_through_the_server(server, decoder, image):
    rp = RemotePredictor(server, KEY, "server", backoff=0.05)
    assert isinstance(rp, Predictor)
    assert rp.model_id == decoder.model_id and "on the server" in rp.description
    key = rp.embed(image)
    result = rp.predict(key, CLICK)
    assert result.masks.shape == (3, 72, 96) and result.masks.dtype == np.bool_
    assert result.scores.shape == (3,) and result.low_res_logits.shape == (3, 256, 256)

    # the same model decoding here gives the same candidates (PNG upload is lossless)
    local = decoder.predict(decoder.embed(image), CLICK)
    np.testing.assert_allclose(result.scores, local.scores, atol=1e-4)
    assert (result.masks != local.masks).mean() < 1e-3

    # refinement refers to the server's result: no logits travel
    before = rp.stats.snapshot()
    refined = rp.predict(key, Prompt(points=(Point(50.5, 35.5), Point(35, 25, False)),
                                     mask_input=result.logits_for(result.best)))
    sent = rp.stats.since(before).bytes_sent
    assert len(refined) == 3 and sent < 1000
    boxed = rp.predict(key, Prompt(box=Box(30, 20, 70, 50), multimask=False))
    assert boxed.masks.shape == (1, 72, 96)
    rp.close()


def test_each_image_is_uploaded_once(server, image):
    image = image.copy()
    image[0, 0] = 255  # an image the server has not seen yet
    rp = RemotePredictor(server, KEY, backoff=0.05)
    rp.embed(image)
    uploaded = rp.stats.bytes_sent
    assert uploaded > image.size // 4  # the PNG went up
    before = rp.stats.snapshot()
    rp.embed(image)
    assert rp.stats.since(before).bytes_sent < 1000  # only a HEAD
    rp.close()
    again = RemotePredictor(server, KEY, backoff=0.05)  # a new session: the hash suffices
    again.embed(image)
    assert again.stats.bytes_sent < 3000
    again.close()


def test_hybrid_mode_decodes_locally_without_network(server, decoder, image):
    image = image.copy()
    image[1, 1] = 254  # not in the local decoder's cache yet
    rp = RemotePredictor(server, KEY, "hybrid", decoder=decoder, backoff=0.05)
    key = rp.embed(image)
    assert rp.stats.bytes_received > 4_000_000  # the float16 embedding, once
    before = rp.stats.snapshot()
    result = rp.predict(key, CLICK)
    refined = rp.predict(key, Prompt(points=CLICK.points, mask_input=result.logits_for(0)))
    assert rp.stats.since(before).requests == 0
    assert result.masks.shape == (3, 72, 96) and len(refined) == 3
    server_side = RemotePredictor(server, KEY, "server")
    there = server_side.predict(server_side.embed(image), CLICK)
    np.testing.assert_allclose(result.scores, there.scores, atol=1e-2)
    server_side.close()
    assert rp.segment_everything(key, EverythingOptions(
        points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)) is not None


def test_find_all_like_this_runs_here_in_hybrid_mode_only(server, decoder, image):
    """Hybrid mode finds on the fetched embeddings, also those of an exemplar's own picture
    (encoded by the server, not here); server mode refuses with what to do."""
    image = image.copy()
    image[2, 2] = 253  # new to the decoder's cache
    other = image.copy()
    other[3, 3] = 252
    rp = RemotePredictor(server, KEY, "hybrid", decoder=decoder, backoff=0.05)
    assert rp.capabilities.exemplar_prompts and not rp.capabilities.text_prompts
    key = rp.embed(image)
    query = FindQuery(exemplars=(Exemplar((30, 20, 70, 50), image=other),),
                      score_threshold=0.0, max_results=3)
    before = rp.stats.snapshot()
    found = rp.find_all(key, query)
    # the other picture's embedding came from the server
    assert rp.stats.since(before).bytes_received > 4_000_000
    assert len(found) <= 3 and all(p.mask.shape == (72, 96) for p in found)
    assert all(p.prompt == "+box(30,20,70,50)" for p in found)
    with pytest.raises(PredictorError, match="does not understand text"):
        rp.find_all(key, FindQuery.text("person"))
    rp.close()
    plain = RemotePredictor(server, KEY, "server", backoff=0.05)
    assert not plain.capabilities.exemplar_prompts
    with pytest.raises(PredictorError, match="needs hybrid mode"):
        plain.find_all(plain.embed(image), query)
    plain.close()


def test_forgotten_or_unknown_refinement_sends_the_logits(server, image):
    rp = RemotePredictor(server, KEY)
    key = rp.embed(image)
    logits = np.full((1, 256, 256), -3.0, dtype=np.float32)
    result = rp.predict(key, Prompt(points=CLICK.points, mask_input=logits))
    assert len(result) == 3


def test_wrong_key_and_unreachable_server(server):
    with pytest.raises(PredictorError, match="server rejected the API key") as err:
        RemotePredictor(server, "not-the-key", backoff=0.01)
    assert "not-the-key" not in str(err.value)
    with pytest.raises(PredictorError, match="cannot reach server at http://127.0.0.1:9"):
        RemotePredictor("http://127.0.0.1:9", KEY, retries=0)
    with pytest.raises(PredictorError, match="unknown remote mode"):
        RemotePredictor(server, KEY, "telepathy")


def test_roboflow_client_works_against_our_server(server, image):
    """Our server's Roboflow-compatible routes with our own Roboflow client."""
    from app.predict.hosted.roboflow import RoboflowPredictor

    rf = RoboflowPredictor(KEY, server, sam2_version_id="hiera_tiny", backoff=0.05)
    key = rf.embed(image)
    result = rf.predict(key, Prompt(points=CLICK.points, multimask=False))
    assert result.masks.shape == (1, 72, 96)
    rf.close()


def test_bench_remote_reports_bytes_and_latency_per_mode(server, sam2_tiny_checkpoint, capsys):
    import json

    from app.cli import main

    checkpoint, _ = sam2_tiny_checkpoint
    code = main(["bench", "--remote", server, "--api-key", KEY, "--mode", "both",
                 "--checkpoint", str(checkpoint), "--image-size", "64x48", "--images", "1",
                 "--clicks", "3", "--warmup", "1", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    srv, hyb = result["modes"]["server"], result["modes"]["hybrid"]
    assert srv["click"]["requests_per_click"] == 1 and srv["click"]["bytes_sent_mean"] < 1000
    assert srv["image"]["bytes_sent"][0] > 1000 and srv["image"]["known_image_bytes"] < 1000
    assert hyb["click"]["requests_per_click"] == 0 and hyb["click"]["bytes_mean"] == 0
    assert hyb["image"]["bytes_received"][0] > 4_000_000
    assert srv["click"]["latency"]["n"] == 3


def test_predictor_from_args_picks_the_remote_backends(server, monkeypatch):
    import argparse

    from app.cli.backend import predictor_from_args
    from app.cli.remote_backend import add_remote_args
    from app.predict.hosted.fal import FalPredictor

    parser = argparse.ArgumentParser()
    add_remote_args(parser)
    args = parser.parse_args(["--server", server, "--api-key", KEY])
    predictor = predictor_from_args(args)
    assert isinstance(predictor, RemotePredictor) and predictor.mode == "server"
    predictor.close()
    monkeypatch.setenv("FAL_KEY", "k")
    args = parser.parse_args(["--hosted", "fal", "--hosted-url", "http://127.0.0.1:9"])
    assert isinstance(predictor_from_args(args), FalPredictor)
    with pytest.raises(SystemExit):
        parser.parse_args(["--server", server, "--hosted", "fal"])


def test_embed_file_uploads_the_file_itself(server, image, tmp_path):
    import cv2

    from app.core.images import content_hash, load_image

    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    rp = RemotePredictor(server, KEY)
    key = rp.embed_file(path)
    assert key.image_hash == content_hash(path)
    assert rp.stats.bytes_sent < path.stat().st_size + 2000  # the JPEG, not a PNG
    result = rp.predict(key, CLICK)
    assert result.masks.shape == (3, 72, 96)
    # embed() of the same pixels with the file hash needs no upload at all
    before = rp.stats.snapshot()
    again = rp.embed(load_image(path), content_hash(path))
    assert again == key and rp.stats.since(before).bytes_sent < 1000
    with pytest.raises(PredictorError, match="cannot read image"):
        rp.embed_file(tmp_path / "missing.jpg")
    rp.close()
