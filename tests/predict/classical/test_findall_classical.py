"""Find all like this with the classical backend (template matching seeds GrabCut) on
composites of synthetic objects: three copies of a textured ellipse at different scales and
a distractor of the same colours (a rectangle) on a textured background."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.core.composites import Composite, CompositeSpec, CutOut, make_composite
from app.core.errors import Cancelled
from app.core.geometry import mask_iou
from app.core.jobs import CancelToken
from app.core.types import MaskProposal
from app.predict.base import Exemplar, FindQuery, PredictorError
from app.predict.classical.predictor import ClassicalPredictor

pytestmark = pytest.mark.slow  # template matching over scales and GrabCut, seconds per test


def textured(kind: str, seed: int, size: tuple[int, int] = (60, 80)) -> CutOut:
    """An orange-and-yellow striped object: an ellipse or a rectangle."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    alpha = np.zeros((h, w), np.float32)
    if kind == "ellipse":
        cv2.ellipse(alpha, (w // 2, h // 2), (w // 2 - 2, h // 2 - 2), 0, 0, 360, 1.0, -1)
    else:
        alpha[4:-4, 10:-10] = 1.0
    rgb = np.stack([200 + 40 * np.sin(xx / 3.0), 120 + 60 * np.sin(yy / 4.0),
                    40 + 30 * np.cos((xx + yy) / 5.0)], -1) + rng.normal(0, 6, (h, w, 3))
    return CutOut(kind, np.clip(rgb, 0, 255).astype(np.uint8), alpha)


def background(seed: int, h: int = 240, w: int = 320) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = np.stack([60 + 20 * np.sin(xx / 11.0), 110 + 25 * np.cos(yy / 7.0), 150 + 0 * xx], -1)
    return np.clip(bg + rng.normal(0, 10, bg.shape), 0, 255).astype(np.uint8)


def scene(seed: int = 0) -> Composite:
    spec = CompositeSpec(side=320, object_size=(0.18, 0.26), copies=3, distractors=1)
    comp = make_composite("scene", ("bg", background(seed)), textured("ellipse", 1),
                          [textured("rect", 2)], spec, np.random.default_rng(seed))
    assert comp is not None
    return comp


def best_ious(found: list[MaskProposal], masks: list[np.ndarray]) -> list[float]:
    """For each of ``masks``, the best IoU of a found mask with it."""
    return [max((mask_iou(f.mask, m) for f in found), default=0.0) for m in masks]


@pytest.fixture(scope="module")
def predictor() -> ClassicalPredictor:
    return ClassicalPredictor()


def test_finds_the_other_copies_of_a_masked_exemplar(predictor: ClassicalPredictor) -> None:
    comp = scene()
    ex = comp.exemplar
    key = predictor.embed(comp.image)
    assert predictor.capabilities.exemplar_prompts and not predictor.capabilities.text_prompts
    steps: list[str] = []
    query = FindQuery(exemplars=(Exemplar(ex.box, mask=ex.mask),))
    found = predictor.find_all(key, query, progress=lambda d, t, m: steps.append(m))
    assert len(found) == 2
    assert min(best_ious(found, [t.mask for t in comp.targets])) > 0.9
    assert best_ious(found, [ex.mask, comp.distractors[0].mask]) == [0.0, 0.0]
    assert all(p.prompt == query.describe() and 0.5 <= p.score <= 1.0 for p in found)
    assert found[0].score >= found[1].score
    for p in found:
        ys, xs = np.nonzero(p.mask)
        assert p.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert "matching" in steps and steps[-1] == "done"


def test_a_box_alone_is_an_exemplar_too(predictor: ClassicalPredictor) -> None:
    comp = scene()
    found = predictor.find_all(comp.image, FindQuery(exemplars=(Exemplar(comp.exemplar.box),)))
    assert min(best_ious(found, [t.mask for t in comp.targets])) > 0.9 and len(found) == 2


def test_a_negative_exemplar_removes_what_resembles_it(predictor: ClassicalPredictor) -> None:
    comp = scene()
    ex, distractor = comp.exemplar, comp.distractors[0]
    key = predictor.embed(comp.image)
    positive = Exemplar(ex.box, mask=ex.mask)
    # a low threshold lets the same-coloured rectangle in ...
    loose = predictor.find_all(key, FindQuery(exemplars=(positive,), score_threshold=0.2))
    assert best_ious(loose, [distractor.mask]) == [pytest.approx(1.0, abs=0.05)]
    # ... unless it is a negative exemplar; the copies stay
    negative = Exemplar(distractor.box, positive=False, mask=distractor.mask)
    found = predictor.find_all(key, FindQuery(exemplars=(positive, negative),
                                              score_threshold=0.2))
    assert best_ious(found, [distractor.mask]) == [0.0]
    assert min(best_ious(found, [t.mask for t in comp.targets])) > 0.9
    assert "-box(" in found[0].prompt


def test_an_exemplar_from_another_image_finds_every_copy(
        predictor: ClassicalPredictor) -> None:
    searched, other = scene(0), scene(5)
    ex = other.exemplar
    found = predictor.find_all(searched.image, FindQuery(
        exemplars=(Exemplar(ex.box, mask=ex.mask, image=other.image),)))
    assert len(found) == 3  # the exemplar lies elsewhere: all three copies are new
    assert min(best_ious(found, [c.mask for c in searched.copies])) > 0.9


def test_bad_queries_are_refused_and_cancel_stops(predictor: ClassicalPredictor) -> None:
    comp = scene()
    key = predictor.embed(comp.image)
    with pytest.raises(PredictorError, match="classical backend does not understand text"):
        predictor.find_all(key, FindQuery.text("person"))
    with pytest.raises(PredictorError, match="too small or outside"):
        predictor.find_all(key, FindQuery(exemplars=(Exemplar((500, 500, 600, 600)),)))
    with pytest.raises(PredictorError, match="exemplar mask is"):
        predictor.find_all(key, FindQuery(exemplars=(
            Exemplar(comp.exemplar.box, mask=np.ones((5, 5), bool)),)))
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        predictor.find_all(key, FindQuery(exemplars=(Exemplar(comp.exemplar.box),)),
                           cancel=token)
