"""The Segmind client against a local fake of sam-v2-image."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from fakes import Reply, click_mask, jpeg_bytes

from app.core.types import Box, Point, Prompt
from app.predict.base import Exemplar, FindQuery, Predictor, PredictorError
from app.predict.hosted.factory import hosted_predictor
from app.predict.hosted.segmind import SegmindPredictor, coordinates

KEY = "secret-key-123"


def client(fake, **kw) -> SegmindPredictor:
    kw.setdefault("backoff", 0.01)
    return SegmindPredictor(KEY, fake.url, **kw)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_coordinates_format():
    assert coordinates([(834.2, 74)]) == "[834,74]"
    assert coordinates([(839, 74), (844, 20)]) == "[[839,74],[844,20]]"


def test_clicks_keep_and_remove(segmind, image):
    sm = client(segmind)
    assert isinstance(sm, Predictor) and sm.capabilities.text_prompts
    result = sm.predict(sm.embed(image), Prompt(points=(Point(60, 40), Point(66, 40, False))))
    expected = click_mask((96, 128), [(60, 40)], [(66, 40)])
    assert iou(result.masks[0], expected) > 0.97  # the mask comes back as a JPEG
    body = segmind.seen[0].json()
    assert body["coordinates"] == "[60,40]" and body["remove_coordinates"] == "[66,40]"
    assert body["overlay_mask"] is False and segmind.seen[0].headers["x-api-key"] == KEY


def test_find_all_splits_the_text_mask_into_parts(segmind, image):
    sm = client(segmind)
    found = sm.find_all(image, FindQuery.text("bright squares"))
    assert len(found) == 2
    assert found[0].bbox == (70.0, 50.0, 110.0, 80.0)
    assert found[0].prompt == "bright squares"
    assert segmind.seen[0].json()["prompt"] == "bright squares"


def test_find_all_sends_one_request_per_text_and_reports_progress(segmind, image):
    sm = client(segmind)
    steps: list[tuple[int, int]] = []
    found = sm.find_all(image, FindQuery.text("zebra, bright squares"),
                        progress=lambda done, total, _msg: steps.append((done, total)))
    assert [s.json()["prompt"] for s in segmind.seen] == ["zebra", "bright squares"]
    assert len(found) == 2 and steps == [(0, 2), (1, 2), (2, 2)]


def test_find_all_refuses_example_boxes(segmind, image):
    sm = client(segmind)
    assert not sm.capabilities.exemplar_prompts
    with pytest.raises(PredictorError, match="no example boxes"):
        sm.find_all(image, FindQuery(exemplars=(Exemplar((10, 10, 40, 30)),)))
    assert segmind.seen == []


def test_box_is_refused_clearly(segmind, image):
    sm = client(segmind)
    with pytest.raises(PredictorError, match="no boxes"):
        sm.predict(sm.embed(image), Prompt(box=Box(1, 1, 9, 9)))


def test_json_base64_reply_is_understood(segmind, image):
    sm = client(segmind)
    mask = click_mask((96, 128), [(20, 20)])
    segmind.fail_next(Reply.json(200, {"image": base64.b64encode(jpeg_bytes(mask)).decode()}))
    result = sm.predict(sm.embed(image), Prompt(points=(Point(20, 20),)))
    assert iou(result.masks[0], mask) > 0.97


@pytest.mark.parametrize(("status", "pattern"), [
    (401, "rejected the API key"), (406, r"refused .*HTTP 406.*credits"),
])
def test_errors(segmind, image, status, pattern):
    sm = client(segmind)
    segmind.fail_next(Reply.json(status, {"error": "Not enough credits" if status == 406
                                          else "Invalid API key"}))
    with pytest.raises(PredictorError, match=pattern):
        sm.predict(sm.embed(image), Prompt(points=(Point(5, 5),)))


def test_429_with_http_date_retry_after_then_500_then_success(segmind, image):
    sm = client(segmind)
    segmind.fail_next(Reply.json(429, {"error": "rate"},
                                 {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    segmind.fail_next(Reply.json(500, {"error": "oops"}))
    assert sm.predict(sm.embed(image), Prompt(points=(Point(60, 40),))).masks.any()
    assert len(segmind.seen) == 3


@pytest.mark.parametrize("reply", [
    Reply(200, b"<html>hi</html>", {"Content-Type": "text/html"}),
    Reply(200, b"\x89PNG broken", {"Content-Type": "image/png"}),
    Reply.json(200, {"status": "ok"}),
])
def test_malformed_replies(segmind, image, reply):
    sm = client(segmind)
    segmind.fail_next(reply)
    with pytest.raises(PredictorError, match="Segmind"):
        sm.predict(sm.embed(image), Prompt(points=(Point(5, 5),)))


def test_the_fake_rejects_misspelt_fields(segmind):
    r = httpx.post(f"{segmind.url}/sam-v2-image", headers={"x-api-key": KEY},
                   json={"image": "AA", "prompt": "", "coords": "[1,2]"})
    assert r.status_code == 400 and "coords" in r.text


def test_key_from_environment(monkeypatch, segmind, image):
    monkeypatch.setenv("SEGMIND_API_KEY", KEY)
    sm = hosted_predictor("segmind", url=segmind.url)
    assert sm.predict(sm.embed(image), Prompt(points=(Point(5, 5),))).masks.any()
    with pytest.raises(PredictorError, match="unknown hosted API"):
        hosted_predictor("replicate")
