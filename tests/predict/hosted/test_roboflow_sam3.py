"""Roboflow's SAM3 as the whole backend: clicks and boxes through /sam3/visual_segment
(promptable visual segmentation), find all through /sam3/concept_segment; chosen with
``--hosted roboflow-sam3``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from fake_roboflow import FakeRoboflow
from fakes import Reply, click_mask

from app.cli.remote_backend import add_remote_args, remote_predictor_from_args
from app.core.types import Box, Point, Prompt
from app.predict.base import FindQuery, Predictor, PredictorError
from app.predict.hosted.factory import hosted_predictor
from app.predict.hosted.roboflow_sam3 import RoboflowSam3Predictor

KEY = "secret-key-123"


def client(fake, **kw) -> RoboflowSam3Predictor:
    kw.setdefault("backoff", 0.01)
    return RoboflowSam3Predictor(KEY, fake.url, **kw)


@pytest.fixture
def cloud_forwarding() -> Iterator[FakeRoboflow]:
    """A server that forwards SAM3 to Roboflow's cloud: no /sam3/embed_image (501)."""
    fake = FakeRoboflow(KEY, sam3_remote=True)
    yield fake
    fake.close()


@pytest.mark.parametrize("fmt", ["rle", "json"])
def test_click_through_visual_segment(roboflow, image, fmt):
    rf = client(roboflow, mask_format=fmt)
    assert isinstance(rf, Predictor) and rf.model_id == "roboflow-sam3"
    assert rf.capabilities.text_prompts and rf.capabilities.exemplar_prompts
    key = rf.embed(image, "abc123")
    result = rf.predict(key, Prompt(points=(Point(60.5, 40.5),)))
    assert result.masks.shape == (1, 96, 128)
    np.testing.assert_array_equal(result.masks[0], click_mask((96, 128), [(60.5, 40.5)]))
    assert roboflow.calls("/sam3/embed_image")[0].json()["image_id"] == "abc123"
    body = roboflow.calls("/sam3/visual_segment")[0].json()
    assert "sam2_version_id" not in body  # the route picks its model itself
    assert body["image_id"] == "abc123" and body["format"] == fmt
    assert body["prompts"] == {"prompts": [{"points": [{"x": 60.5, "y": 40.5,
                                                        "positive": True}]}]}
    assert not roboflow.calls("/sam2/")


def test_box_is_centre_based_and_refinement_flags(roboflow, image):
    rf = client(roboflow)
    key = rf.embed(image)
    first = rf.predict(key, Prompt(box=Box(80, 60, 20, 10), multimask=False))
    sent = roboflow.calls("/sam3/visual_segment")[0].json()
    assert sent["prompts"]["prompts"][0]["box"] == {"x": 50, "y": 35, "width": 60,
                                                    "height": 50}
    assert sent["multimask_output"] is False
    np.testing.assert_array_equal(first.masks[0], click_mask((96, 128), [], box=(20, 10, 80,
                                                                                 60)))
    rf.predict(key, Prompt(box=Box(20, 10, 80, 60), points=(Point(50, 30, False),),
                           mask_input=first.logits_for(0)))
    again = roboflow.calls("/sam3/visual_segment")[1].json()
    assert again["load_logits_from_cache"] is True and again["save_logits_to_cache"] is True


def test_a_server_without_sam3_embedding_still_clicks(cloud_forwarding, image):
    rf = client(cloud_forwarding)
    key = rf.embed(image)
    rf.embed(image[::-1].copy())  # warming is not tried again
    assert len(cloud_forwarding.calls("/sam3/embed_image")) == 1
    result = rf.predict(key, Prompt(points=(Point(60, 40),)))
    assert result.masks[0].sum() == 21 * 21
    assert cloud_forwarding.calls("/sam3/visual_segment")[0].json()["image_id"] == (
        key.image_hash)


def test_find_all_through_concept_segment(roboflow, image):
    rf = client(roboflow)
    found = rf.find_all(rf.embed(image), FindQuery.text("bright, zebra"))
    assert [p.prompt for p in found] == ["bright", "bright"]
    assert roboflow.calls("/sam3/concept_segment")[0].json()["prompts"] == [
        {"type": "text", "text": "bright"}, {"type": "text", "text": "zebra"}]


@pytest.mark.parametrize(("reply", "pattern"), [
    (Reply.json(422, {"detail": [{"type": "missing", "loc": ["body", "image"],
                                  "msg": "Field required"}]}),
     r"schema \(HTTP 422 from /sam3/visual_segment\): body\.image: Field required"),
    (Reply.json(401, {"message": "Unauthorized access"}), r"rejected the API key"),
    (Reply.json(200, {"time": 0.1}), "/sam3/visual_segment lacks a 'predictions' list"),
])
def test_click_errors(roboflow, image, reply, pattern):
    rf = client(roboflow, warm_embeddings=False)
    key = rf.embed(image)
    roboflow.fail_next(reply)
    with pytest.raises(PredictorError, match=pattern):
        rf.predict(key, Prompt(points=(Point(60, 40),)))


def test_the_fake_validates_visual_segment(roboflow):
    r = httpx.post(f"{roboflow.url}/sam3/visual_segment", params={"api_key": KEY},
                   json={"image": {"type": "base64", "value": "x"}, "prompt": []})
    assert r.status_code == 422 and "prompt" in r.text


def test_chosen_by_name_and_on_the_command_line(monkeypatch, roboflow, image):
    monkeypatch.setenv("API_KEY", KEY)
    assert isinstance(hosted_predictor("roboflow-sam3", url=roboflow.url),
                      RoboflowSam3Predictor)
    parser = argparse.ArgumentParser()
    add_remote_args(parser)
    args = parser.parse_args(["--hosted", "roboflow-sam3", "--hosted-url", roboflow.url])
    rf = remote_predictor_from_args(args)
    assert isinstance(rf, RoboflowSam3Predictor)
    assert rf.predict(rf.embed(image), Prompt(points=(Point(5, 5),))).masks.any()
    with pytest.raises(PredictorError, match="no sam2_version_id"):
        hosted_predictor("roboflow-sam3", url=roboflow.url, sam2_version_id="hiera_tiny")
