"""The fal client against a local fake of fal's queue and its SAM2 apps."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from fakes import Reply, click_mask

from app.core.types import Box, Point, Prompt
from app.predict.base import EverythingOptions, FindQuery, Predictor, PredictorError
from app.predict.hosted.factory import hosted_predictor
from app.predict.hosted.fal import FalPredictor

KEY = "secret-key-123"


def client(fake, **kw) -> FalPredictor:
    kw.setdefault("backoff", 0.01)
    return FalPredictor(KEY, fake.url, poll_interval=0.001, **kw)


def test_click_goes_through_the_queue(fal, image):
    cl = client(fal)
    assert isinstance(cl, Predictor) and not cl.capabilities.text_prompts
    key = cl.embed(image)
    result = cl.predict(key, Prompt(points=(Point(60.5, 40.5), Point(65, 40, False))))
    np.testing.assert_array_equal(
        result.masks[0], click_mask((96, 128), [(60.5, 40.5)], [(65, 40)]))
    assert result.low_res_logits.shape == (1, 256, 256)
    body = fal.calls("/fal-ai/sam2/image")[0].json()
    assert body["prompts"] == [{"x": 60.5, "y": 40.5, "label": 1}, {"x": 65, "y": 40, "label": 0}]
    assert body["image_url"].startswith("data:image/jpeg;base64,")
    statuses = fal.calls("/status")
    assert len(statuses) == 3  # IN_QUEUE, IN_PROGRESS, COMPLETED
    assert all(s.headers["authorization"] == f"Key {KEY}" for s in fal.seen)


def test_box_prompt_is_corner_based(fal, image):
    cl = client(fal)
    result = cl.predict(cl.embed(image), Prompt(box=Box(20, 10, 80, 60)))
    assert fal.calls("/fal-ai/sam2/image")[0].json()["box_prompts"] == [
        {"x_min": 20, "y_min": 10, "x_max": 80, "y_max": 60}]
    expected = np.zeros((96, 128), bool)
    expected[10:60, 20:80] = True
    np.testing.assert_array_equal(result.masks[0], expected)


def test_auto_segment_downloads_mask_files(fal, image, monkeypatch):
    cl = client(fal)
    found = cl.segment_everything(cl.embed(image), EverythingOptions(min_mask_region_area=10))
    assert [int(p.mask.sum()) for p in found] == [1200, 600]
    assert fal.calls("/fal-ai/sam2/auto-segment")[0].json()["min_mask_region_area"] == 10


def test_result_files_given_as_links_are_fetched(fal, image):
    cl = client(fal)
    key = cl.embed(image)
    # answer the submit ourselves with sync_mode off: the output holds a URL to fetch
    mask = click_mask((96, 128), [(30, 30)])
    fal.files["m.png"] = __import__("fakes").png_bytes(mask)
    fal.jobs["x1"] = {"polls": 5, "output": {"image": {"url": f"{fal.url}/files/m.png"}}}
    fal.fail_next(Reply.json(200, {"request_id": "x1"}))
    result = cl.predict(key, Prompt(points=(Point(30, 30),)))
    np.testing.assert_array_equal(result.masks[0], mask)
    assert fal.calls("/files/m.png")


def test_wrong_key(fal, image):
    cl = FalPredictor("nope-789", fal.url, backoff=0.01)
    with pytest.raises(PredictorError, match="fal rejected the API key") as err:
        cl.predict(cl.embed(image), Prompt(points=(Point(5, 5),)))
    assert "nope-789" not in str(err.value)


def test_429_on_status_poll_is_retried(fal, image):
    cl = client(fal)
    key = cl.embed(image)
    fal.fail_next(Reply.json(429, {"detail": "rate"}, {"Retry-After": "0"}))
    assert cl.predict(key, Prompt(points=(Point(60, 40),))).masks.any()


def test_500_then_success(fal, image):
    cl = client(fal)
    key = cl.embed(image)
    fal.fail_next(Reply.json(500, {"detail": "runner died"}))
    assert cl.predict(key, Prompt(points=(Point(60, 40),))).masks.any()
    assert len(fal.calls("/fal-ai/sam2/image")) == 2


@pytest.mark.parametrize("replies", [
    [Reply.json(200, {"queue_position": 0})],  # no request_id
    [Reply.json(200, {"request_id": "zz", "status_url": "/fal-ai/sam2/requests/zz/status"}),
     Reply.json(200, {"status": "EXPLODED"})],
    [Reply.json(200, {"request_id": "zz"}), Reply.json(200, {"status": "COMPLETED"}),
     Reply.json(200, {"image": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}})],
    [Reply.json(200, {"request_id": "zz"}), Reply.json(200, {"status": "COMPLETED"}),
     Reply.json(200, {"images": []})],
    [Reply.json(200, {"request_id": "zz"}), Reply.json(200, {"status": "COMPLETED"}),
     Reply(200, b"not json")],
])
def test_malformed_replies_are_predictor_errors(fal, image, replies):
    cl = client(fal)
    key = cl.embed(image)
    for r in replies:
        fal.fail_next(r)
    with pytest.raises(PredictorError, match="fal"):
        cl.predict(key, Prompt(points=(Point(60, 40),)))


def test_never_completing_request_times_out(fal, image):
    cl = client(fal, max_wait=0.005)
    fal.polls_before_done = 10**6
    with pytest.raises(PredictorError, match="still IN_PROGRESS|still IN_QUEUE"):
        cl.predict(cl.embed(image), Prompt(points=(Point(60, 40),)))


def test_the_fake_rejects_misspelt_fields(fal):
    r = httpx.post(f"{fal.url}/fal-ai/sam2/image", headers={"Authorization": f"Key {KEY}"},
                   json={"image_url": "data:image/png;base64,AA", "points": []})
    assert r.status_code == 422 and "points" in r.text


def test_key_from_settings_then_environment(monkeypatch, fal, image):
    monkeypatch.delenv("FAL_KEY", raising=False)
    with pytest.raises(PredictorError, match="FAL_KEY"):
        hosted_predictor("fal", url=fal.url)
    cl = hosted_predictor("fal", url=fal.url, settings={"fal_key": KEY}, poll_interval=0.001)
    assert cl.predict(cl.embed(image), Prompt(points=(Point(5, 5),))).masks.any()


def test_find_all_is_refused_clearly(fal, image):
    cl = client(fal)
    assert not cl.capabilities.text_prompts
    with pytest.raises(PredictorError, match="fal does not understand text prompts"):
        cl.find_all(cl.embed(image), FindQuery.text("person"))
    assert fal.seen == []
