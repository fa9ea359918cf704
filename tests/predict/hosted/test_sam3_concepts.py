"""SAM3 concept segmentation ("find all": texts, example boxes, both) through Roboflow's
/sam3/concept_segment, against the local fake that validates Roboflow's schema."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from fake_common import image_from_b64, png_bytes
from fakes import Reply

from app.core.errors import Cancelled
from app.core.jobs import CancelToken
from app.predict.base import Exemplar, FindQuery, PredictorError
from app.predict.hosted.roboflow import RoboflowPredictor
from app.predict.hosted.sam3_concepts import box_xywh

KEY = "secret-key-123"
A_TOP = (10, 10, 40, 30)  # corners of the top one of the two light squares
A_LOW = (10, 60, 40, 80)
B = (70, 50, 110, 80)  # the darker square


def client(fake, **kw) -> RoboflowPredictor:
    kw.setdefault("backoff", 0.01)
    return RoboflowPredictor(KEY, fake.url, sam2_version_id="hiera_tiny",
                             warm_embeddings=False, **kw)


def square(mask_box: tuple[int, int, int, int], shape=(96, 128)) -> np.ndarray:
    x0, y0, x1, y1 = mask_box
    m = np.zeros(shape, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture
def squares() -> np.ndarray:
    """Two light squares (250) like each other and one darker (180), on dark grey."""
    img = np.full((96, 128, 3), 40, dtype=np.uint8)
    for (x0, y0, x1, y1), v in ((A_TOP, 250), (A_LOW, 250), (B, 180)):
        img[y0:y1, x0:x1] = v
    return img


def concept_bodies(fake) -> list[dict]:
    return [s.json() for s in fake.calls("/sam3/concept_segment")]


def test_a_positive_box_finds_everything_like_it(roboflow, squares):
    rf = client(roboflow)
    found = rf.find_all(squares, FindQuery(exemplars=(Exemplar(A_TOP),)))
    assert len(found) == 2
    for p, box in zip(sorted(found, key=lambda p: p.bbox[1]), (A_TOP, A_LOW), strict=True):
        np.testing.assert_array_equal(p.mask, square(box))
        assert p.prompt == "+box(10,10,40,30)"
    (body,) = concept_bodies(roboflow)
    # corners (10, 10, 40, 30) -> SAM3's top-left based box
    assert body["prompts"] == [{"type": "visual", "boxes": [
        {"x": 10, "y": 10, "width": 30, "height": 20}], "box_labels": [1]}]


def test_negative_box_and_other_positive(roboflow, squares):
    rf = client(roboflow)
    query = FindQuery(exemplars=(Exemplar(A_TOP), Exemplar(B, positive=False)))
    found = rf.find_all(squares, query)
    assert sorted(p.bbox for p in found) == [A_TOP, A_LOW]
    assert concept_bodies(roboflow)[0]["prompts"][0]["box_labels"] == [1, 0]
    assert found[0].prompt == "+box(10,10,40,30), -box(70,50,110,80)"
    only_b = rf.find_all(squares, FindQuery(exemplars=(Exemplar((112, 82, 68, 48)),)))
    assert [p.bbox for p in only_b] == [B]  # a box dragged up-left works too


def test_text_and_boxes_make_one_concept(roboflow, squares):
    rf = client(roboflow)
    found = rf.find_all(squares, FindQuery(texts=("bright thing",), exemplars=(Exemplar(B),)))
    assert [p.bbox for p in found] == [B]
    assert found[0].prompt == "bright thing, +box(70,50,110,80)"
    assert concept_bodies(roboflow)[0]["prompts"] == [{
        "type": "visual", "text": "bright thing",
        "boxes": [{"x": 70, "y": 50, "width": 40, "height": 30}], "box_labels": [1]}]
    # the text must hold as well: nothing is a zebra
    assert rf.find_all(squares, FindQuery(texts=("zebra",), exemplars=(Exemplar(B),))) == []


def test_negative_boxes_alone_are_refused_before_sending(roboflow, squares):
    rf = client(roboflow)
    with pytest.raises(PredictorError, match="needs a positive example box"):
        rf.find_all(squares, FindQuery(exemplars=(Exemplar(B, positive=False),)))
    with pytest.raises(PredictorError, match="outside the 128x96 image"):
        rf.find_all(squares, FindQuery(exemplars=(Exemplar((200, 10, 250, 30)),)))
    with pytest.raises(PredictorError, match=r"score threshold must lie in \[0, 1\]"):
        rf.find_all(squares, FindQuery.text("bright", score_threshold=1.5))
    assert roboflow.seen == []


def test_box_conversion():
    assert box_xywh((30, 40, 10, 20), 100, 100) == {"x": 10, "y": 20, "width": 20,
                                                    "height": 20}
    assert box_xywh((-5, 90, 20, 120), 100, 100) == {"x": 0, "y": 90, "width": 20,
                                                     "height": 10}


def test_more_than_16_prompts_are_split_and_merged(roboflow, image):
    rf = client(roboflow)
    steps: list[tuple[int, int]] = []
    query = FindQuery(texts=tuple(f"bright {i}" for i in range(20)))
    found = rf.find_all(image, query, progress=lambda d, t, _m: steps.append((d, t)))
    assert [len(b["prompts"]) for b in concept_bodies(roboflow)] == [16, 4]
    assert steps == [(0, 2), (1, 2), (2, 2)]
    # every prompt finds both squares: one of each is kept, across the two requests too
    assert [int(p.mask.sum()) for p in found] == [1200, 600]
    assert {p.prompt for p in found} == {"bright 0"}


def test_cancel_between_requests_sends_no_more(roboflow, image):
    rf = client(roboflow)
    token = CancelToken()

    def progress(done: int, total: int, _message: str) -> None:
        if done == 1:
            token.cancel()

    query = FindQuery(texts=tuple(f"bright {i}" for i in range(20)))
    with pytest.raises(Cancelled):
        rf.find_all(image, query, cancel=token, progress=progress)
    assert len(concept_bodies(roboflow)) == 1


def test_thresholds_and_max_results(roboflow, image):
    rf = client(roboflow)
    assert rf.find_all(image, FindQuery.text("bright", score_threshold=0.9)) == []
    assert concept_bodies(roboflow)[0]["output_prob_thresh"] == 0.9
    found = rf.find_all(image, FindQuery.text("bright", max_results=1, nms_iou=0.3))
    assert [int(p.mask.sum()) for p in found] == [1200]
    assert concept_bodies(roboflow)[1]["nms_iou_threshold"] == 0.3


@pytest.mark.parametrize(("fmt", "hole_kept"), [("rle", True), ("json", False)])
def test_rle_keeps_holes_polygons_do_not(roboflow, fmt, hole_kept):
    img = np.full((96, 128, 3), 40, dtype=np.uint8)
    img[20:70, 20:90] = 240
    img[35:55, 45:65] = 40  # the hole
    rf = client(roboflow, mask_format=fmt)
    (ring,) = rf.find_all(img, FindQuery.text("bright ring"))
    assert concept_bodies(roboflow)[0]["format"] == ("rle" if fmt == "rle" else "polygon")
    assert bool(ring.mask[45, 55]) is not hole_kept
    assert ring.mask[25, 25] and not ring.mask[10, 10]
    assert int(ring.mask.sum()) == 50 * 70 - (0 if not hole_kept else 20 * 20)


def test_example_from_another_picture_is_pasted_beside(roboflow, squares):
    other = np.full((60, 50, 3), 40, dtype=np.uint8)
    other[20:40, 15:35] = 180  # a darker square, like B
    rf = client(roboflow)
    query = FindQuery(exemplars=(Exemplar((15, 20, 35, 40), image=other),))
    found = rf.find_all(squares, query)
    assert [p.bbox for p in found] == [B]
    assert found[0].mask.shape == (96, 128)
    (body,) = concept_bodies(roboflow)
    sent = image_from_b64(body["image"]["value"])
    assert sent.shape[0] == 96 and sent.shape[1] == 128 + 40  # the crop: box + context
    assert body["prompts"][0]["boxes"] == [{"x": 138, "y": 10, "width": 20, "height": 20}]


@pytest.mark.parametrize(("reply", "pattern"), [
    (Reply.json(422, {"detail": [{"type": "value_error", "loc": ["body", "prompts", 0, "boxes"],
                                  "msg": "Visual prompt requires at least one box"}]}),
     r"does not match its schema \(HTTP 422 from /sam3/concept_segment\): "
     r"body\.prompts\.0\.boxes: Visual prompt requires at least one box"),
    (Reply.json(401, {"message": "Unauthorized access to roboflow API"}),
     r"rejected the API key \(HTTP 401\)"),
    (Reply.json(402, {"message": "Not enough credits to perform this request."}),
     r"no credits left \(HTTP 402\): Not enough credits"),
    (Reply.json(423, {"message": "Roboflow API usage is paused."}), r"paused \(HTTP 423\)"),
    (Reply.json(400, {"message": "Could not load input image. Cause: bad"}),
     r"refused finding 'bright' \(HTTP 400\): Could not load input image"),
    (Reply.json(404, {"detail": "Not Found"}),
     r"does not offer /sam3/concept_segment \(HTTP 404\)"),
    (Reply.json(200, {"time": 1.0}), "lacks a 'prompt_results' list"),
    (Reply.json(200, {"prompt_results": [{"prompt_index": 3, "predictions": []}]}),
     "no valid 'prompt_index'"),
    (Reply.json(200, {"prompt_results": [{"prompt_index": 0}]}), "lacks 'predictions'"),
    (Reply.json(200, {"prompt_results": [{"prompt_index": 0, "predictions": [
        {"masks": {"size": [10, 10], "counts": "PPP"}, "confidence": 0.9,
         "format": "rle"}]}]}), "RLE"),
])
def test_error_replies_become_clear_messages(roboflow, image, reply, pattern):
    rf = client(roboflow)
    roboflow.fail_next(reply)
    with pytest.raises(PredictorError, match=pattern) as err:
        rf.find_all(image, FindQuery.text("bright"))
    assert "Roboflow" in str(err.value) and KEY not in str(err.value)


def test_server_errors_are_retried_then_reported(roboflow, image):
    rf = client(roboflow, retries=2)
    roboflow.fail_next(Reply.json(500, {"message": "SAM3 remote request failed."}), times=2)
    assert len(rf.find_all(image, FindQuery.text("bright"))) == 2
    roboflow.fail_next(Reply.json(500, {"message": "SAM3 remote request failed."}), times=3)
    with pytest.raises(PredictorError, match=r"HTTP 500\) after 3 attempt.*SAM3 remote"):
        rf.find_all(image, FindQuery.text("bright"))


def test_a_server_that_does_not_answer_times_out(roboflow, image):
    rf = client(roboflow, timeout=0.2, retries=0)
    roboflow.fail_next(Reply(200, b"{}", {"Content-Type": "application/json"}, delay=1.0))
    with pytest.raises(PredictorError, match="finding 'bright' timed out after 1 attempt"):
        rf.find_all(image, FindQuery.text("bright"))


@pytest.mark.parametrize(("body", "fragment"), [
    ({"prompts": [{"type": "text", "text": "a"}], "formats": "rle"}, "formats"),
    ({"prompts": [{"type": "visual", "boxes": [{"x": 1, "y": 1, "width": 4, "height": 4}],
                   "box_label": [1]}]}, "box_label"),
    ({"prompts": [{"type": "visual", "text": "a"}]}, "requires at least one box"),
    ({"prompts": [{"boxes": [{"x0": 1, "y0": 1, "x1": 4, "y1": 4}], "box_labels": [1, 0]}]},
     "box_labels must match boxes length"),
    ({"prompts": [{"boxes": [{"x": 1, "y": 1, "x1": 4, "y1": 4}], "box_labels": [1]}]},
     "x0, y0, x1, y1"),
    ({"prompts": [{"type": "text", "text": str(i)} for i in range(17)]},
     "SAM3_MAX_PROMPT_BATCH_SIZE=16"),
    ({"prompts": []}, "At least one prompt"),
    ({"prompts": [{"type": "text", "text": "a"}], "nms_iou_threshold": 1.5}, "between 0.0"),
])
def test_the_fake_validates_like_roboflow(roboflow, image, body, fragment):
    payload = {"image": {"type": "base64",
                         "value": base64.b64encode(png_bytes(image[..., 0] > 0)).decode()},
               **body}
    r = httpx.post(f"{roboflow.url}/sam3/concept_segment", params={"api_key": KEY},
                   json=payload)
    assert r.status_code == 422 and fragment in r.text
