"""The classical backend on a large image: each prompt decoded in one window fitted to it
(``app/predict/tiles/region.py``), grown while the mask goes on past the window; the window's
geometry on its own, then through ``TiledPredictor`` (small input side, so GrabCut runs fast)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from tile_scenes import iou
from tile_scenes import scene as _scene

from app.core.evaluation import ClickSimulator, GroundTruth, read_labels, read_rgb
from app.core.evaluation import iou as iou_gt
from app.core.types import Box, Point, Prompt
from app.predict.base import PredictorError
from app.predict.classical.predictor import ClassicalPredictor
from app.predict.tiles import region
from app.predict.tiles.field import Field
from app.predict.tiles.grid import Tile
from app.predict.tiles.predictor import TiledMaskResult, TiledPredictor

SIDE = 256  # the backend's input side here: cut-over at 512 px
GRABCUT = Path(__file__).resolve().parents[3] / "data" / "grabcut"


def scene(h: int, w: int, centre: tuple[int, int], radius: int) -> tuple[np.ndarray, np.ndarray]:
    return _scene(h, w, centre, radius, seed=1)


@pytest.fixture
def tiled() -> TiledPredictor:
    predictor = TiledPredictor(ClassicalPredictor(), side=SIDE)
    assert predictor.regions  # the classical backend's default
    return predictor


# -- the window's geometry ------------------------------------------------------------------


def test_the_window_is_centred_on_the_prompt_at_least_the_input_side_and_inside_the_image(
) -> None:
    click = Prompt(points=(Point(500, 400),))
    extent = region.prompt_extent(click, None)
    assert extent == (500, 400, 500, 400)
    window = region.window_around(extent, 256, 2048, 1000, 1200)
    assert (window.width, window.height) == (256, 256)
    assert window.contains(500, 400) and window.x0 == 500 - 128
    corner = region.window_around((5, 990, 5, 990), 256, 2048, 1000, 1200)
    assert (corner.x0, corner.y1) == (0, 1000) and corner.width == 256  # moved inside
    big = region.window_around((100, 100, 700, 400), 256, 2048, 1000, 1200)
    assert big.width == big.height == 900  # 1.5 x the extent's longer side
    capped = region.window_around((0, 0, 1200, 1000), 256, 512, 1000, 1200)
    assert capped.width == capped.height == 512


def test_a_previous_mask_and_a_box_widen_the_extent() -> None:
    values = np.full((256, 256), -20.0, np.float32)
    values[10:20, 30:40] = 5.0  # cells of 4 px from (1000, 2000)
    prior = Field(values, 1000.0, 2000.0, 4.0, 4.0)
    prompt = Prompt(points=(Point(1200, 2050),), box=Box(1190, 2010, 1210, 2200))
    assert region.prompt_extent(prompt, prior) == (1120, 2010, 1210, 2200)
    assert region.prompt_extent(Prompt(), None) is None


def test_a_mask_reaching_an_open_side_grows_the_window_until_the_image_or_the_cap() -> None:
    window = Tile(100, 100, 356, 356)
    mask = np.zeros((256, 256), bool)
    mask[100:150, 100:150] = True
    assert not region.reaches_beyond(mask, window, 1000, 1200)
    mask[100:150, 250:] = True  # reaches the right side, which lies inside the image
    assert region.reaches_beyond(mask, window, 1000, 1200)
    assert not region.reaches_beyond(mask, Tile(944, 100, 1200, 356), 1000, 1200)  # image edge
    extent = region.mask_extent(mask, window)
    assert extent == (200, 200, 356, 250)
    grown = region.grown_window(window, extent, 256, 2048, 1000, 1200)
    assert grown is not None and grown.width >= 1.5 * 256
    assert grown.x0 <= 200 and grown.x1 >= 356
    whole = Tile(0, 0, 1200, 1000)
    assert region.grown_window(whole, extent, 256, 4096, 1000, 1200) is None


def test_an_object_larger_than_the_first_window_comes_back_whole(
    tiled: TiledPredictor,
) -> None:
    image, obj = scene(1000, 1200, (600, 480), 170)  # 340 px across: over one 256 window
    key = tiled.embed(image)
    assert tiled.tiles(key) == []  # no tiles to encode ahead
    result = tiled.predict(key, Prompt(points=(Point(580, 470),)))
    assert isinstance(result, TiledMaskResult)
    (window,) = result.tiles
    assert window.width > SIDE  # grown
    mask = result.mask(result.best)
    assert mask.shape == (1000, 1200) and iou(mask, obj) > 0.9
    n, _ = cv2.connectedComponents(mask.astype(np.uint8))
    assert n == 2
    for i in range(len(result)):  # every candidate at full resolution, in the same window
        crop, x0, y0 = result.crop(i)
        assert (x0, y0) == (window.x0, window.y0) and crop.shape == (window.height,
                                                                     window.width)


def test_a_small_object_is_seen_at_native_resolution(tiled: TiledPredictor) -> None:
    image, obj = scene(1000, 1200, (320, 700), 30)
    key = tiled.embed(image)
    result = tiled.predict(key, Prompt(points=(Point(320, 700),)))
    (window,) = result.tiles  # type: ignore[attr-defined]
    assert window.width == window.height == SIDE  # one window pixel per working pixel
    assert iou(result.mask(result.best), obj) > 0.85


def test_a_neighbouring_object_outside_the_window_does_not_pull_the_mask(
    tiled: TiledPredictor,
) -> None:
    """Two discs of the object's colour 500 px apart: a click on one gives that one only."""
    image, obj = scene(1000, 1600, (400, 500), 80)
    other = np.zeros(obj.shape, np.uint8)
    cv2.circle(other, (1200, 500), 80, 1, -1)
    image[other > 0] = image[obj][: int(other.sum())]
    key = tiled.embed(image)
    mask = tiled.predict(key, Prompt(points=(Point(400, 500),))).mask(0)
    assert iou(mask, obj) > 0.85 and not (mask & (other > 0)).any()


def test_a_refinement_click_uses_the_previous_mask_in_the_new_window(
    tiled: TiledPredictor,
) -> None:
    image, obj = scene(1000, 1200, (600, 480), 170)
    key = tiled.embed(image)
    first = tiled.predict(key, Prompt(points=(Point(580, 470),)))
    logits = first.logits_for(first.best).copy()  # a copy, as a thread hop would make
    wrong = Point(900, 480, positive=False)  # background, far from the first window's centre
    second = tiled.predict(key, Prompt(points=(Point(580, 470), wrong), mask_input=logits,
                                       multimask=False))
    (window,) = second.tiles  # type: ignore[attr-defined]
    assert window.contains(900, 480)
    assert iou(second.mask(second.best), obj) > 0.9


def test_logits_of_unknown_origin_are_dropped_and_a_box_is_enough(
    tiled: TiledPredictor,
) -> None:
    image, obj = scene(1000, 1200, (600, 480), 150)
    key = tiled.embed(image)
    stranger = np.full((1, 256, 256), 10.0, np.float32)  # "everything", in no known frame
    result = tiled.predict(key, Prompt(box=Box(440, 320, 760, 640), mask_input=stranger,
                                       multimask=False))
    assert iou(result.mask(result.best), obj) > 0.9
    with pytest.raises(PredictorError, match="empty prompt"):
        tiled.predict(key, Prompt())


def test_a_click_alone_is_decoded_in_the_view_when_it_is_given() -> None:
    click = (800.0, 700.0, 800.0, 700.0)
    view = Box(300, 200, 1500, 1100)
    assert region.first_window(click, view, 256, 2048, 1600, 2000) == Tile(300, 200, 1500,
                                                                          1100)
    # cut to the image
    assert region.first_window(click, Box(-50, -20, 900, 800), 256, 2048, 1600, 2000) == Tile(
        0, 0, 900, 800)
    # zoomed in closer than the input side: the input side's window, as without a view
    close = region.first_window(click, Box(700, 650, 850, 750), 256, 2048, 1600, 2000)
    assert close == region.window_around(click, 256, 2048, 1600, 2000)
    # zoomed out past the cap: the largest window, around the click
    far = region.first_window(click, Box(0, 0, 2000, 1600), 256, 512, 1600, 2000)
    assert (far.width, far.height) == (512, 512) and far.contains(800, 700)
    # a view that does not hold the prompt is not the person's view of it
    assert region.first_window(click, Box(1000, 0, 1900, 900), 256, 2048, 1600, 2000) == \
        region.window_around(click, 256, 2048, 1600, 2000)
    assert region.first_window(click, None, 256, 2048, 1600, 2000) == \
        region.window_around(click, 256, 2048, 1600, 2000)


def test_an_object_much_larger_than_the_input_side_comes_back_whole_in_the_view() -> None:
    """GrabCut's flower photo enlarged 2x (1200 x 900 px, at the default 512 px input): one
    window of the input side lies inside the flower, where GrabCut learns the flower's own
    colours as background and returns a part of it; the person's view, all of the photo,
    holds the flower."""
    name = "flower"
    photo = read_rgb(GRABCUT / "images" / f"{name}.jpg")
    labels = read_labels(GRABCUT / "masks" / f"{name}.png", photo.shape[:2])
    image = cv2.resize(photo, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    labels = cv2.resize(labels, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    gt = GroundTruth.from_label_image(labels)
    tiled = TiledPredictor(ClassicalPredictor())
    assert tiled.is_tiled(*image.shape[:2])  # the region path, not the plain one
    key = tiled.embed(image)
    click = ClickSimulator(gt).next_click(None)
    assert click is not None
    h, w = image.shape[:2]
    ious = []
    for view in (None, Box(0, 0, w, h)):
        result = tiled.predict(key, Prompt(points=(click,), multimask=True, view=view))
        ious.append(iou_gt(result.mask(result.best), gt))
    blind, seen = ious
    assert seen > 0.9 and blind < 0.5
