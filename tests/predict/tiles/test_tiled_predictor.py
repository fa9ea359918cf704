"""``TiledPredictor`` over the classical backend (small tiles, so GrabCut runs fast): small
images take the inner predictor's path unchanged; on a large one an object spanning tiles
comes back as one mask from a click or a box, refinement carries across tiles, and the tiles
can be listed and encoded ahead. Fixed tiles (``regions=False``) are what SAM2 uses; the
classical backend's default, a window fitted to the prompt, is tested in ``test_region.py``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from tile_scenes import iou, scene

from app.core.errors import Cancelled
from app.core.jobs import CancelToken
from app.core.types import Box, Point, Prompt
from app.predict.base import Predictor, PredictorError, SourceKind
from app.predict.classical.predictor import ClassicalPredictor
from app.predict.tiles.predictor import TiledMaskResult, TiledPredictor

SIDE = 256  # tiles of 256 px (overlap 64): cut-over at 512 px


@pytest.fixture
def tiled() -> TiledPredictor:
    return TiledPredictor(ClassicalPredictor(), side=SIDE, regions=False)


def test_small_images_take_todays_path(tiled: TiledPredictor) -> None:
    image, obj = scene(400, 500, (250, 200), 80)
    inner = ClassicalPredictor()
    assert isinstance(tiled, Predictor)
    assert tiled.model_id == inner.model_id and tiled.capabilities.kind == SourceKind.CLASSICAL
    key = tiled.embed(image)
    assert key == inner.embed(image)
    assert tiled.tiles(key) == []
    prompt = Prompt(points=(Point(250, 200),))
    got, want = tiled.predict(key, prompt), inner.predict(key, prompt)
    assert not isinstance(got, TiledMaskResult)
    assert np.array_equal(got.masks, want.masks)
    assert np.array_equal(got.scores, want.scores)


def test_an_object_spanning_tiles_comes_back_as_one_mask(tiled: TiledPredictor) -> None:
    image, obj = scene(1000, 1200, (600, 480), 120)
    key = tiled.embed(image)
    assert len(tiled.tiles(key)) > 4
    result = tiled.predict(key, Prompt(points=(Point(560, 470),)))
    assert isinstance(result, TiledMaskResult)
    assert len(result.tiles) >= 2  # the mask reached an inner edge: neighbours decoded
    mask = result.mask(result.best)
    assert result.size == (1000, 1200) and mask.shape == (1000, 1200)
    assert iou(mask, obj) > 0.9
    crop, x0, y0 = result.crop(result.best)
    assert np.array_equal(mask[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]], crop)
    assert mask.sum() == crop.sum()
    n, _ = cv2.connectedComponents(mask.astype(np.uint8))
    assert n == 2  # background and one object
    assert result.low_res_logits.shape == (len(result), 256, 256)


def test_an_object_inside_one_tile_needs_one_decode(tiled: TiledPredictor) -> None:
    image, obj = scene(1000, 1200, (320, 320), 45)
    key = tiled.embed(image)
    result = tiled.predict(key, Prompt(points=(Point(320, 320),)))
    assert len(result.tiles) == 1  # type: ignore[attr-defined]
    assert iou(result.mask(result.best), obj) > 0.9


def test_a_box_spanning_tiles_gives_the_whole_object(tiled: TiledPredictor) -> None:
    image, obj = scene(1000, 1200, (600, 480), 150)
    key = tiled.embed(image)
    result = tiled.predict(key, Prompt(box=Box(440, 320, 760, 640), multimask=False))
    assert len(result.tiles) >= 4  # type: ignore[attr-defined]
    assert iou(result.mask(result.best), obj) > 0.9


def test_refinement_in_another_tile_keeps_the_stitched_object(tiled: TiledPredictor) -> None:
    image, obj = scene(1000, 1200, (600, 480), 120)
    key = tiled.embed(image)
    first = tiled.predict(key, Prompt(points=(Point(560, 470),)))
    logits = first.logits_for(first.best).copy()  # a copy, as a thread hop would make
    far = Point(690, 420)  # inside the object, owned by another tile than the first click
    assert tiled.tiles(key)  # the grid is known
    second = tiled.predict(key, Prompt(points=(Point(560, 470), far), mask_input=logits,
                                       multimask=False))
    assert second.tiles[0] != first.tiles[0]  # type: ignore[attr-defined]
    assert iou(second.mask(second.best), obj) > 0.9


def test_tiles_are_listed_nearest_first_and_encoded_ahead_with_progress(
    tiled: TiledPredictor,
) -> None:
    image, _ = scene(700, 900, (300, 300), 60)
    key = tiled.embed(image)
    near = tiled.tiles(key, near=(899, 699))
    assert near[0].contains(899, 699) and len(near) == len(tiled.tiles(key))
    seen: list[tuple[int, int]] = []
    cancel = CancelToken()

    def progress(done: int, total: int, message: str) -> None:
        seen.append((done, total))
        if done == 2:
            cancel.cancel()

    with pytest.raises(Cancelled):
        tiled.embed_tiles(image, cancel=cancel, progress=progress)
    assert seen[:3] == [(0, len(near)), (1, len(near)), (2, len(near))]
    seen.clear()
    tiled.embed_tiles(image, progress=progress)
    assert seen[-1] == (len(near), len(near))


def test_proposals_on_a_tiled_image_are_refused_with_a_reason(tiled: TiledPredictor) -> None:
    image, _ = scene(700, 900, (300, 300), 60)
    key = tiled.embed(image)
    with pytest.raises(PredictorError, match="segment everything is not available"):
        tiled.segment_everything(key)
    with pytest.raises(PredictorError, match="empty prompt"):
        tiled.predict(key, Prompt())


def test_bad_images_are_refused_with_their_shape(tiled: TiledPredictor) -> None:
    with pytest.raises(PredictorError, match=r"\(50, 50\)"):
        tiled.embed(np.zeros((50, 50), np.uint8))
