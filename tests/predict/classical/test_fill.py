"""Uniform fill (``app/predict/classical/fill.py``): a letterbox or a mosaic's margins are the
image's edge for GrabCut, not a background to learn from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.core.evaluation import ClickSimulator, GroundTruth, iou, read_labels, read_rgb
from app.core.types import Prompt
from app.predict.classical.fill import fill_components, fill_to_ignore
from app.predict.classical.ops import content_bounds
from app.predict.classical.predictor import ClassicalPredictor

GRABCUT = Path(__file__).resolve().parents[3] / "data" / "grabcut"
GREY = 114


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(40, 200, size=(h, w, 3), dtype=np.uint8)


def test_a_grey_letterbox_is_fill_and_a_smooth_sky_is_not() -> None:
    image = np.full((200, 300, 3), GREY, dtype=np.uint8)
    image[40:160, 60:240] = textured(120, 180)
    fill = fill_components(image)
    assert (fill[:39] > 0).all() and (fill[:, :59] > 0).all()  # all but the ring by the photo
    assert not (fill[41:159, 61:239] > 0).any()
    # a sky that changes slowly (a step of at most 1 level between pixels, 100 levels in all)
    sky = np.zeros((200, 300, 3), dtype=np.uint8)
    sky[:] = np.linspace(100, 200, 300, dtype=np.uint8)[None, :, None]
    assert not fill_components(sky).any()


def test_small_or_inner_flat_areas_are_not_fill() -> None:
    image = textured(200, 300)
    image[:5, :5] = GREY  # on the border but tiny
    image[80:130, 100:200] = GREY  # large but inside: may be an object's flat part
    assert not fill_components(image).any()


def test_jpeg_noise_on_a_letterbox_still_counts_as_fill() -> None:
    image = np.full((200, 300, 3), GREY, dtype=np.int16)
    image += np.random.default_rng(1).integers(-1, 2, size=image.shape).astype(np.int16)
    image[40:160, 60:240] = textured(120, 180)
    fill = fill_components(image.astype(np.uint8))
    assert (fill > 0).mean() > 0.4


def test_a_clicked_fill_is_kept_and_content_is_bounded_around_the_click() -> None:
    image = np.full((100, 300, 3), GREY, dtype=np.uint8)
    image[10:90, 10:90] = textured(80, 80, 2)
    image[10:90, 200:290] = textured(80, 90, 3)
    fill = fill_components(image)
    click = np.zeros((100, 300), dtype=bool)
    click[50, 50] = True
    ignored = fill_to_ignore(fill, click)
    assert ignored[0, 150] and not ignored[50, 50]
    rows, cols = content_bounds(ignored, click) or (slice(0), slice(0))
    # the content and the ring of grey next to it (not flat: it borders the texture)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (9, 91, 9, 91)
    on_fill = np.zeros((100, 300), dtype=bool)
    on_fill[50, 150] = True
    assert not fill_to_ignore(fill, on_fill).any()


def test_a_click_in_a_letterboxed_photo_gives_the_object_not_the_photo() -> None:
    """208001 from GrabCut's photos in a grey frame of a fifth of its side: before fill was
    told apart, the first click gave the whole photo (IoU 0.14 against 0.83 alone)."""
    name = "208001"
    photo = read_rgb(GRABCUT / "images" / f"{name}.jpg")
    labels = read_labels(GRABCUT / "masks" / f"{name}.png", photo.shape[:2])
    m = max(photo.shape[:2]) // 5
    framed = np.pad(photo, ((m, m), (m, m), (0, 0)), constant_values=GREY)
    framed_labels = np.pad(labels, ((m, m), (m, m)), constant_values=0)
    predictor = ClassicalPredictor()
    ious = []
    for image, lab in ((photo, labels), (framed, framed_labels)):
        gt = GroundTruth.from_label_image(lab)
        click = ClickSimulator(gt).next_click(None)
        assert click is not None
        key = predictor.embed(image)
        result = predictor.predict(key, Prompt(points=(click,), multimask=True))
        ious.append(iou(result.mask(result.best), gt))
    alone, in_frame = ious
    assert alone > 0.75
    assert in_frame > alone - 0.1
