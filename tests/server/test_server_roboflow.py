"""The Roboflow-compatible routes over a random-weight SAM2: every format decoded the way a
Roboflow client would, the prompt forms, the centre-based box, the logits cache, and the
requests Roboflow's inference-sdk sends."""

from __future__ import annotations

import base64
import hashlib
import io

import httpx
import numpy as np
import pytest
from pycocotools import mask as coco_mask
from server_helpers import b64_image

from app.core.types import Box, Point, Prompt
from app.server.encoding import mask_polygons, pixels_hash

pytestmark = pytest.mark.slow  # the first request encodes the image with SAM2 on a CPU

CLICK = {"x": 30, "y": 20, "positive": True}
BOX = {"x": 35, "y": 20, "width": 30, "height": 16}  # centre-based: corners (20, 12)-(50, 28)


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


def expected(sam2_predictor, image, prompt: Prompt) -> tuple[np.ndarray, float, np.ndarray]:
    """The best candidate the predictor itself gives for ``prompt``."""
    key = sam2_predictor.embed(image, pixels_hash(image))
    res = sam2_predictor.predict(key, prompt)
    b = res.best
    return res.masks[b], float(res.scores[b]), res.low_res_logits[b]


def test_embed_then_segment_by_image_id(client, image_png, image) -> None:
    r = client.post("/sam2/embed_image", json={"image": b64_image(image_png),
                                              "image_id": "img-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image_id"] == "img-1" and body["time"] >= 0
    r = client.post("/sam2/embed_image", json={"image": b64_image(image_png, data_uri=True)})
    assert r.json()["image_id"] == hashlib.md5(image.tobytes()).hexdigest()[:12]
    # segmenting by image_id alone works once it is embedded
    r = client.post("/sam2/segment_image",
                    json={"image_id": "img-1", "prompts": {"prompts": [{"points": [CLICK]}]}})
    assert r.status_code == 200, r.text


def test_json_polygons_match_the_predictor(client, sam2_predictor, image_png, image) -> None:
    r = client.post("/sam2/segment_image", json={
        "image": b64_image(image_png), "format": "json",
        "prompts": {"prompts": [{"points": [CLICK]}, {"box": BOX}]},
        "sam2_version_id": "hiera_tiny"})
    assert r.status_code == 200, r.text
    assert r.headers["X-MaskLoop-Model"] == sam2_predictor.model_id
    body = r.json()
    assert set(body) == {"predictions", "time"}
    assert len(body["predictions"]) == 2
    for pred, prompt in zip(body["predictions"], [
        Prompt(points=(Point(30, 20, True),)), Prompt(box=Box(20, 12, 50, 28))
    ], strict=True):
        mask, score, _ = expected(sam2_predictor, image, prompt)
        assert pred["format"] == "polygon"
        assert pred["confidence"] == pytest.approx(score, abs=1e-6)
        assert pred["masks"] == mask_polygons(mask)
        for poly in pred["masks"]:
            assert all(len(pt) == 2 and all(isinstance(v, int) for v in pt) for pt in poly)


def test_rle_decodes_with_pycocotools(client, sam2_predictor, image_png, image) -> None:
    r = client.post("/sam2/segment_image", json={
        "image": b64_image(image_png), "format": "rle", "multimask_output": False,
        "prompts": {"prompts": [{"box": BOX, "points": [CLICK]}]}})
    assert r.status_code == 200, r.text
    (pred,) = r.json()["predictions"]
    assert pred["format"] == "rle" and pred["masks"]["size"] == [48, 64]
    assert isinstance(pred["masks"]["counts"], str)
    decoded = coco_mask.decode({"size": pred["masks"]["size"],
                                "counts": pred["masks"]["counts"].encode()}).astype(bool)
    mask, score, _ = expected(sam2_predictor, image, Prompt(
        points=(Point(30, 20, True),), box=Box(20, 12, 50, 28), multimask=False))
    np.testing.assert_array_equal(decoded, mask)
    assert pred["confidence"] == pytest.approx(score, abs=1e-6)


def test_binary_is_an_npz(client, sam2_predictor, image_png, image) -> None:
    r = client.post("/sam2/segment_image", json={
        "image": b64_image(image_png), "format": "binary",
        "prompts": {"prompts": [{"points": [CLICK]}, {"box": BOX}]}})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    npz = np.load(io.BytesIO(r.content))
    assert npz["masks"].shape == (2, 48, 64) and npz["low_res_masks"].shape == (2, 256, 256)
    mask, _, logits = expected(sam2_predictor, image, Prompt(points=(Point(30, 20, True),)))
    np.testing.assert_array_equal(npz["masks"][0] > 0, mask)
    np.testing.assert_allclose(npz["low_res_masks"][0], logits, atol=1e-5)


def test_prompt_forms_are_equivalent(client, image_png) -> None:
    forms = [{"prompts": [{"points": [CLICK], "box": BOX}]},
             [{"points": [CLICK], "box": BOX}],
             {"points": [CLICK], "box": BOX}]
    answers = []
    for prompts in forms:
        r = client.post("/sam2/segment_image", json={"image": b64_image(image_png),
                                                    "format": "rle", "prompts": prompts})
        assert r.status_code == 200, r.text
        answers.append([p["masks"] for p in r.json()["predictions"]])
    assert answers[0] == answers[1] == answers[2] and len(answers[0]) == 1


def test_logits_cache_feeds_the_previous_mask(client, sam2_predictor, image_png, image) -> None:
    first = {"prompts": [{"points": [CLICK]}]}
    second = {"prompts": [{"points": [CLICK, {"x": 10, "y": 40, "positive": False}]}]}
    r = client.post("/sam2/segment_image", json={
        "image": b64_image(image_png), "image_id": "logits-test", "format": "rle",
        "prompts": first, "save_logits_to_cache": True})
    assert r.status_code == 200
    r = client.post("/sam2/segment_image", json={
        "image_id": "logits-test", "format": "binary", "prompts": second,
        "load_logits_from_cache": True})
    assert r.status_code == 200, r.text
    got = np.load(io.BytesIO(r.content))["masks"][0]
    _, _, prev_logits = expected(sam2_predictor, image, Prompt(points=(Point(30, 20, True),)))
    prev = prev_logits.astype(np.float16).astype(np.float32)[None]
    two = (Point(30, 20, True), Point(10, 40, False))
    with_prev, _, _ = expected(sam2_predictor, image, Prompt(points=two, mask_input=prev))
    without, _, _ = expected(sam2_predictor, image, Prompt(points=two))
    assert (with_prev != without).any()  # the previous mask matters, so the test can fail
    np.testing.assert_array_equal(got, with_prev)


def test_inference_sdk_style_requests(client, image_png) -> None:
    """What InferenceHTTPClient.sam2_segment_image posts: the image as {"type": "base64"},
    api_key in the body (v1 mode) or ?api_key= (v0 mode), format defaulting to json."""
    payload = {"api_key": "anything", "image": {"type": "base64",
                                                "value": base64.b64encode(image_png).decode()},
               "sam2_version_id": "hiera_tiny", "multimask_output": True, "format": "json",
               "prompts": {"prompts": [{"box": BOX}]}}
    r = client.post("/sam2/segment_image", json=payload, params={"api_key": "anything"})
    assert r.status_code == 200, r.text
    (pred,) = r.json()["predictions"]
    assert set(pred) == {"masks", "confidence", "format"}
    info = client.get("/info").json()
    assert info["sam2_version_id"] == "hiera_tiny"
