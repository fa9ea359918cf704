"""The Roboflow client against a local fake of Roboflow's inference API."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from fakes import Reply, click_mask

from app.core.types import Box, Point, Prompt
from app.predict.base import FindQuery, Predictor, PredictorError
from app.predict.hosted.factory import hosted_predictor
from app.predict.hosted.roboflow import RoboflowPredictor

KEY = "secret-key-123"


def client(fake, **kw) -> RoboflowPredictor:
    kw.setdefault("backoff", 0.01)
    return RoboflowPredictor(KEY, fake.url, sam2_version_id="hiera_tiny", **kw)


@pytest.mark.parametrize("fmt", ["rle", "json"])
def test_click_gives_the_clicked_square(roboflow, image, fmt):
    rf = client(roboflow, mask_format=fmt)
    assert isinstance(rf, Predictor)
    key = rf.embed(image, "abc123")
    result = rf.predict(key, Prompt(points=(Point(60.5, 40.5),)))
    assert result.masks.shape == (1, 96, 128) and result.low_res_logits.shape == (1, 256, 256)
    np.testing.assert_array_equal(result.masks[0], click_mask((96, 128), [(60.5, 40.5)]))
    assert result.scores[0] == pytest.approx(0.9)
    body = roboflow.calls("/sam2/segment_image")[0].json()
    assert body["prompts"] == {"prompts": [{"points": [{"x": 60.5, "y": 40.5,
                                                        "positive": True}]}]}
    assert body["image_id"] == "abc123" and body["format"] == fmt
    assert roboflow.calls("/sam2/embed_image")[0].json()["image_id"] == "abc123"
    rf.close()


def test_box_is_sent_centre_based(roboflow, image):
    rf = client(roboflow)
    key = rf.embed(image)
    result = rf.predict(key, Prompt(box=Box(80, 60, 20, 10)))  # dragged up-left
    sent = roboflow.calls("/sam2/segment_image")[0].json()["prompts"]["prompts"][0]["box"]
    assert sent == {"x": 50, "y": 35, "width": 60, "height": 50}
    expected = np.zeros((96, 128), bool)
    expected[10:60, 20:80] = True
    np.testing.assert_array_equal(result.masks[0], expected)


def test_negative_point_and_refinement_flags(roboflow, image):
    rf = client(roboflow)
    key = rf.embed(image)
    first = rf.predict(key, Prompt(points=(Point(60, 40),)))
    second = rf.predict(key, Prompt(points=(Point(60, 40), Point(65, 40, False)),
                                    mask_input=first.logits_for(0)))
    assert not second.masks[0, 40, 65] and second.masks[0, 40, 55]
    body = roboflow.calls("/sam2/segment_image")[1].json()
    assert body["load_logits_from_cache"] is True and body["save_logits_to_cache"] is True


def test_find_all_text_returns_every_instance(roboflow, image):
    rf = client(roboflow)
    assert rf.capabilities.text_prompts and rf.capabilities.exemplar_prompts
    found = rf.find_all(image, FindQuery.text("bright square"))
    assert len(found) == 2
    assert [int(p.mask.sum()) for p in found] == [1200, 600]  # equal scores: larger first
    assert found[0].bbox == (70.0, 50.0, 110.0, 80.0)
    assert {p.prompt for p in found} == {"bright square"}
    assert rf.find_all(image, FindQuery.text("zebra")) == []
    body = roboflow.calls("/sam3/concept_segment")[0].json()
    assert body["prompts"] == [{"type": "text", "text": "bright square"}]
    assert (body["format"], body["output_prob_thresh"], body["nms_iou_threshold"]) == (
        "rle", 0.5, 0.5)


def test_wrong_key_is_a_clear_error_without_the_key(roboflow, image):
    rf = RoboflowPredictor("wrong-key-456", roboflow.url, backoff=0.01)
    with pytest.raises(PredictorError, match="rejected the API key") as err:
        rf.embed(image)
    assert "wrong-key-456" not in str(err.value) and "wrong-key-456" not in repr(rf)


def test_429_with_retry_after_is_retried(roboflow, image):
    rf = client(roboflow, warm_embeddings=False)
    key = rf.embed(image)
    roboflow.fail_next(Reply.json(429, {"message": "slow down"}, {"Retry-After": "0"}))
    result = rf.predict(key, Prompt(points=(Point(60, 40),)))
    assert result.masks[0].sum() > 0
    assert len(roboflow.calls("/sam2/segment_image")) == 2


def test_500_then_success(roboflow, image):
    rf = client(roboflow, warm_embeddings=False)
    key = rf.embed(image)
    roboflow.fail_next(Reply.json(500, {"message": "boom"}), times=2)
    assert rf.predict(key, Prompt(points=(Point(60, 40),))).masks.any()
    assert len(roboflow.calls("/sam2/segment_image")) == 3


def test_500_forever_gives_up_with_a_message(roboflow, image):
    rf = client(roboflow, warm_embeddings=False, retries=2)
    key = rf.embed(image)
    roboflow.fail_next(Reply.json(500, {"message": "GPU on fire"}), times=3)
    with pytest.raises(PredictorError, match=r"HTTP 500\) after 3 attempt.*GPU on fire"):
        rf.predict(key, Prompt(points=(Point(60, 40),)))


@pytest.mark.parametrize("reply", [
    Reply(200, b"<html>proxy error</html>", {"Content-Type": "text/html"}),
    Reply.json(200, {"time": 1.0}),
    Reply.json(200, {"predictions": [{"confidence": 0.5}]}),
    Reply.json(200, {"predictions": [{"masks": {"size": [96, 128], "counts": 7},
                                      "confidence": 0.5, "format": "rle"}]}),
    Reply.json(200, {"predictions": [{"masks": {"size": [10, 10], "counts": "PPP"},
                                      "confidence": 0.5, "format": "rle"}]}),
    Reply.json(200, {"predictions": [{"masks": [[["a", 1]]], "confidence": 0.5}]}),
])
def test_malformed_replies_are_predictor_errors(roboflow, image, reply):
    rf = client(roboflow, warm_embeddings=False)
    key = rf.embed(image)
    roboflow.fail_next(reply)
    with pytest.raises(PredictorError, match="Roboflow"):
        rf.predict(key, Prompt(points=(Point(60, 40),)))


def test_the_fake_rejects_misspelt_fields(roboflow, image):
    """The fake validates: a client sending "prompt" instead of "prompts" would fail."""
    r = httpx.post(f"{roboflow.url}/sam2/segment_image", params={"api_key": KEY},
                   json={"image": {"type": "base64", "value": "x"}, "prompt": {}})
    assert r.status_code == 422 and "prompt" in r.text


def test_key_from_environment_and_missing_key(monkeypatch, roboflow, image):
    monkeypatch.setenv("API_KEY", KEY)
    rf = hosted_predictor("roboflow", url=roboflow.url)
    assert rf.predict(rf.embed(image), Prompt(points=(Point(5, 5),))).masks.any()
    monkeypatch.delenv("API_KEY")
    with pytest.raises(PredictorError, match="API_KEY"):
        hosted_predictor("roboflow", url=roboflow.url)


def test_unreachable_server_names_the_url_not_the_key(image):
    rf = RoboflowPredictor(KEY, "http://127.0.0.1:9", retries=0)
    with pytest.raises(PredictorError, match="cannot reach Roboflow at http://127.0.0.1:9") as e:
        rf.embed(image)
    assert KEY not in str(e.value)
