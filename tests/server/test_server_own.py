"""MaskLoop's own routes over a random-weight SAM2: upload once then hash-only, clicks by
reference to the previous result, hybrid mode (the embedding sent once), bytes per click,
and 20 concurrent clients."""

from __future__ import annotations

import hashlib
import json
import threading

import httpx
import numpy as np
import pytest
from server_helpers import b64_image

from app.core.types import Box, EmbeddingKey, Point, Prompt
from app.predict.cache.file_format import Embedding
from app.predict.cache.store import EmbeddingCache
from app.wire import messages as wire

pytestmark = pytest.mark.slow  # the first upload encodes the image with SAM2 on a CPU


@pytest.fixture(scope="module")
def server(sam2_predictor):
    from app.server.app import create_app, start_in_thread

    srv = start_in_thread(create_app(sam2_predictor))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def uploaded(client, image_png) -> str:
    digest = hashlib.sha256(image_png).hexdigest()
    r = client.put(f"/v1/images/{digest}", content=image_png)
    assert r.status_code == 200, r.text
    assert r.json()["width"] == 64 and r.json()["height"] == 48
    return digest


def click(client, digest: str, req: wire.PredictRequest) -> tuple[wire.WirePrediction, int, int]:
    """One click: (the decoded prediction, request body bytes, response body bytes)."""
    body = json.dumps(wire.prompt_to_wire(req), separators=(",", ":")).encode()
    r = client.post(f"/v1/images/{digest}/predict", content=body,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == wire.CONTENT_TYPE
    return wire.decode_prediction(r.content), len(body), len(r.content)


def test_upload_once_then_hash_only(client, server, sam2_predictor, image_png) -> None:
    digest = hashlib.sha256(image_png).hexdigest()
    state = server.server.config.app.state.maskloop
    if client.head(f"/v1/images/{digest}").status_code == 404:
        r = client.put(f"/v1/images/{digest}", content=image_png)
        assert r.status_code == 200
    jobs = state.worker.jobs_done
    r = client.head(f"/v1/images/{digest}")
    assert r.status_code == 200 and r.content == b""
    assert client.get(f"/v1/images/{digest}").json()["embedded"] is True
    # uploading again does not encode again; POST computes the same hash
    assert client.put(f"/v1/images/{digest}", content=image_png).status_code == 200
    assert client.post("/v1/images", content=image_png).json()["hash"] == digest
    assert state.worker.jobs_done == jobs
    info = client.get("/v1/info").json()
    assert info["model_id"] == sam2_predictor.model_id and info["hybrid"] is True


def test_click_matches_the_predictor(client, uploaded, sam2_predictor, image) -> None:
    prompt = Prompt(points=(Point(30.5, 20.5, True),), box=Box(18, 10, 52, 30))
    pred, _, _ = click(client, uploaded, wire.PredictRequest(prompt, return_logits=True))
    direct = sam2_predictor.predict(sam2_predictor.embed(image, uploaded), prompt)
    np.testing.assert_array_equal(pred.masks, direct.masks)
    np.testing.assert_allclose(pred.scores, direct.scores, atol=1e-5)
    assert pred.low_res_logits is not None
    np.testing.assert_allclose(pred.low_res_logits, direct.low_res_logits, atol=0.126)


def test_refine_by_reference(client, uploaded, sam2_predictor, image) -> None:
    first, _, _ = click(client, uploaded,
                        wire.PredictRequest(Prompt(points=(Point(30.5, 20.5),))))
    two = (Point(30.5, 20.5, True), Point(10.5, 40.5, False))
    k = 2
    second, nbytes, _ = click(client, uploaded, wire.PredictRequest(
        Prompt(points=two), refine=wire.Refine(first.result_id, k)))
    assert nbytes < 120
    key = sam2_predictor.embed(image, uploaded)
    prev = sam2_predictor.predict(key, Prompt(points=(Point(30.5, 20.5),))).low_res_logits[k]
    prev = prev.astype(np.float16).astype(np.float32)[None]  # the server keeps float16
    direct = sam2_predictor.predict(key, Prompt(points=two, mask_input=prev))
    np.testing.assert_array_equal(second.masks, direct.masks)
    plain = sam2_predictor.predict(key, Prompt(points=two))
    assert (plain.masks != direct.masks).any()  # the reference mattered
    r = client.post(f"/v1/images/{uploaded}/predict",
                    json={"points": [[1, 1, 1]], "refine": {"result": first.result_id,
                                                           "candidate": 7}})
    assert r.status_code == 422


def test_png_masks(client, uploaded) -> None:
    rle, _, _ = click(client, uploaded, wire.PredictRequest(Prompt(points=(Point(30.5, 20.5),))))
    png, _, _ = click(client, uploaded, wire.PredictRequest(
        Prompt(points=(Point(30.5, 20.5),)), mask_codec="png"))
    np.testing.assert_array_equal(rle.masks, png.masks)


def test_hybrid_mode_embedding(client, uploaded, sam2_predictor) -> None:
    from app.predict.sam2.predictor import SAM2Predictor

    r = client.get(f"/v1/images/{uploaded}/embedding")
    assert r.status_code == 200 and r.headers["content-type"] == wire.CONTENT_TYPE
    arrays, size, header = wire.decode_embedding(r.content)
    assert size == (48, 64) and header["model_id"] == sam2_predictor.model_id
    ekey = EmbeddingKey(uploaded, sam2_predictor.model_id)
    for name, a in sam2_predictor.cache.get(ekey).arrays.items():
        np.testing.assert_array_equal(arrays[name], a)
    zipped = client.get(f"/v1/images/{uploaded}/embedding", params={"compress": True})
    z_arrays, _, _ = wire.decode_embedding(zipped.content)
    for name, a in arrays.items():
        np.testing.assert_array_equal(z_arrays[name], a)
    # the client decodes clicks locally with the same weights: same masks as the server
    local = SAM2Predictor.from_model(sam2_predictor.model, sam2_predictor.model_id,
                                     cache=EmbeddingCache(disk_dir=None))
    local.cache.put(ekey, Embedding(arrays, size))
    prompt = Prompt(points=(Point(30.5, 20.5),))
    remote, _, _ = click(client, uploaded, wire.PredictRequest(prompt))
    np.testing.assert_array_equal(local.predict(ekey, prompt).masks, remote.masks)
    assert client.get(f"/v1/images/{'1' * 64}/embedding").status_code == 404


def test_bytes_per_click(client, uploaded, image_png, record_property) -> None:
    """Bytes on the wire (bodies) per click and per image, for the report."""
    figures: dict[str, int] = {"image_upload": len(image_png)}
    first, figures["own_click_request"], figures["own_click_response"] = click(
        client, uploaded, wire.PredictRequest(Prompt(points=(Point(30.5, 20.5),))))
    _, figures["own_refine_request"], figures["own_refine_response"] = click(
        client, uploaded, wire.PredictRequest(
            Prompt(points=(Point(30.5, 20.5), Point(10.5, 40.5, False))),
            refine=wire.Refine(first.result_id, first.scores.argmax())))
    _, _, figures["own_click_response_with_logits"] = click(
        client, uploaded, wire.PredictRequest(Prompt(points=(Point(30.5, 20.5),)),
                                              return_logits=True))
    figures["hybrid_embedding"] = len(client.get(f"/v1/images/{uploaded}/embedding").content)
    figures["hybrid_embedding_zlib"] = len(client.get(
        f"/v1/images/{uploaded}/embedding", params={"compress": True}).content)
    rf = {"image": b64_image(image_png), "format": "json",
          "prompts": {"prompts": [{"points": [{"x": 30.5, "y": 20.5, "positive": True}]}]}}
    for fmt in ("json", "rle", "binary"):
        body = json.dumps({**rf, "format": fmt}).encode()
        r = client.post("/sam2/segment_image", content=body,
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 200
        figures[f"roboflow_{fmt}_request"] = len(body)
        figures[f"roboflow_{fmt}_response"] = len(r.content)
    by_id = json.dumps({"image_id": "bytes", **{k: v for k, v in rf.items() if k != "image"}})
    client.post("/sam2/embed_image", json={"image": rf["image"], "image_id": "bytes"})
    figures["roboflow_by_id_request"] = len(by_id)
    for name, value in figures.items():
        record_property(name, value)
    print("\nbytes:", json.dumps(figures))
    assert figures["own_click_request"] < 100 and figures["own_refine_request"] < 150
    assert figures["own_click_request"] < figures["roboflow_json_request"] / 10


def test_twenty_concurrent_clients(server, image_png, uploaded) -> None:
    errors: list[str] = []
    barrier = threading.Barrier(20)

    def one_client(i: int) -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=300) as c:
                barrier.wait()
                if c.head(f"/v1/images/{uploaded}").status_code != 200:
                    errors.append(f"{i}: HEAD")
                x, y = 10.5 + i * 2, 12.5 + (i % 5) * 5
                pred, _, _ = click(c, uploaded, wire.PredictRequest(Prompt(points=(Point(x, y),))))
                click(c, uploaded, wire.PredictRequest(
                    Prompt(points=(Point(x, y), Point(5.5, 5.5, False))),
                    refine=wire.Refine(pred.result_id, 0)))
                r = c.post("/sam2/segment_image", json={
                    "image": b64_image(image_png), "format": ("json", "rle")[i % 2],
                    "prompts": [{"points": [{"x": x, "y": y, "positive": True}]}]})
                if r.status_code != 200:
                    errors.append(f"{i}: segment {r.status_code} {r.text[:200]}")
        except Exception as exc:  # collected and reported below
            errors.append(f"{i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=one_client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors
