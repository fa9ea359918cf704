"""Every candidate of a tiled click that reaches past the clicked tile comes back whole
(``app/predict/tiles/spread.py``): cycling to the second or third candidate of an object that
spans tiles does not cut it at the tile's edge, a candidate inside the clicked tile costs no
decode, the candidates' neighbour prompts go to a batching backend in one call (one decode
when two candidates carry the same prompt into a tile), and a later
prompt that passes a non-best candidate's logits back gets that candidate's stitched mask in
the frame of each tile it is decoded in.

The inner predictor is a real, deterministic segmentation rule on the tile's pixels (no
model, nothing scripted per test): a click selects the connected region of pixels at least as
bright as the clicked one ("part"), the same at a lower level ("whole", which holds the part),
or a spot around the click inside the part; a prompt for one mask (the prompts carried into
neighbour tiles) gives, for each positive point, the region at least as bright as that point.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pytest
from tile_scenes import iou

from app.core.jobs import CancelToken
from app.core.types import LOW_RES, EmbeddingKey, MaskProposal, MaskResult, Point, Prompt
from app.predict.base import Capabilities, FindQuery, PredictorError, SourceKind
from app.predict.tiles.grid import Tile, TileGrid
from app.predict.tiles.predictor import TiledMaskResult, TiledPredictor
from app.predict.tiles.spread import spread, start_chains
from app.predict.tiles.stitch import Decoded

SIDE, OVERLAP = 256, 64  # tiles at x (and y) 0, 192, 384...: the first two overlap in 192..256
H, W = 600, 900
BACKGROUND, WHOLE, PART = 30, 120, 200  # grey levels
STEP = 100  # the "whole" candidate: the region at least STEP darker than the click
SPOT = 10  # the spot candidate's radius
SCORES = (0.95, 0.9, 0.85)  # spot, part, whole: the best (the spot) stays in its tile
CLICK = Point(100.0, 75.0)  # on the part, in the tile at (0, 0)
T00, T01 = Tile(0, 0, 256, 256), Tile(192, 0, 448, 256)


class LevelsPredictor:
    """The segmentation rule of the module doc, over SAM2-like frames (stretched 256 x 256
    logits); records every prompt it decodes as (tile key, prompt)."""

    model_id = "levels"
    description = "grey-level regions (test)"
    capabilities = Capabilities(SourceKind.SAM2, "test")

    def __init__(self) -> None:
        self.images: dict[str, np.ndarray] = {}
        self.calls: list[tuple[str, Prompt]] = []

    def embed(self, image: np.ndarray, image_hash: str | None = None,
              cancel: CancelToken | None = None) -> EmbeddingKey:
        key = EmbeddingKey(image_hash or str(image.shape), self.model_id)
        self.images[key.image_hash] = image[..., 0].astype(np.int32)
        return key

    def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        self.calls.append((key.image_hash, prompt))
        return self.segment(key, prompt)

    def segment(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        grey = self.images[key.image_hash]
        positives = [p for p in prompt.points if p.positive]
        if not positives:
            raise PredictorError("the rule needs a positive point")

        def level(at: Point) -> int:
            return int(grey[int(at.y), int(at.x)])

        def region(at: Point, down: int = 0) -> np.ndarray:
            _, labels = cv2.connectedComponents((grey >= level(at) - down).astype(np.uint8))
            return labels == labels[int(at.y), int(at.x)]

        part = np.logical_or.reduce([region(p) for p in positives])
        if not prompt.multimask:
            return self._result([part], [0.9])
        click = positives[-1]
        whole = np.logical_or.reduce([region(p, STEP) for p in positives])
        disc = np.zeros(grey.shape, np.uint8)
        cv2.circle(disc, (int(click.x), int(click.y)), SPOT, 1, -1)
        return self._result([part & (disc > 0), part, whole], list(SCORES))

    @staticmethod
    def _result(masks: list[np.ndarray], scores: list[float]) -> MaskResult:
        small = [cv2.resize(m.astype(np.float32), (LOW_RES, LOW_RES),
                            interpolation=cv2.INTER_AREA) for m in masks]
        logits = np.stack([(s - 0.5) * 16.0 for s in small]).astype(np.float32)
        return MaskResult(np.stack(masks), np.asarray(scores, np.float32), logits)

    def segment_everything(self, image: EmbeddingKey | np.ndarray,
                           **kwargs: object) -> list[MaskProposal]:
        return []

    def find_all(self, image: EmbeddingKey | np.ndarray, query: FindQuery,
                 **kwargs: object) -> list[MaskProposal]:
        return []

    def close(self) -> None:
        pass


class BatchingLevels(LevelsPredictor):
    """The same rule, declaring a batched decode; records each batch's size."""

    capabilities = Capabilities(SourceKind.SAM2, "test", batched_decode=True)

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def predict_batch(self, items: Sequence[tuple[EmbeddingKey, Prompt]]) -> list[MaskResult]:
        self.batches.append(len(items))
        return [self.segment(key, prompt) for key, prompt in items]


def bars(whole_x1: int, part_x1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, part, whole): a "whole" rectangle from x 60 to ``whole_x1`` (rows 60-180)
    whose top 30 rows, up to ``part_x1``, are the brighter "part"."""
    grey = np.full((H, W), BACKGROUND, np.uint8)
    grey[60:180, 60:whole_x1] = WHOLE
    grey[60:90, 60:part_x1] = PART
    return np.repeat(grey[..., None], 3, axis=2), grey == PART, grey >= WHOLE


def tiled_over(inner: LevelsPredictor, max_tiles: int = 16) -> TiledPredictor:
    return TiledPredictor(inner, side=SIDE, overlap=OVERLAP, max_tiles=max_tiles)


def full(result: TiledMaskResult, index: int) -> np.ndarray:
    mask = result.mask(index)
    assert np.array_equal(mask, result.masks[index])
    return mask


def test_the_candidates_that_reach_a_neighbour_come_back_stitched() -> None:
    image, part, whole = bars(400, 400)  # part and whole go on into the tile at x 192
    inner = LevelsPredictor()
    tiled = tiled_over(inner)
    key = tiled.embed(image)
    result = tiled.predict(key, Prompt(points=(CLICK,)))
    assert isinstance(result, TiledMaskResult)
    assert result.best == 0 and result.tiles == [T00, T01]
    # the best (the spot) lies inside the clicked tile: as the tile gave it
    spot, x0, y0 = result.crop(0)
    assert (x0, y0) == (0, 0) and spot.shape == (256, 256) and 0 < spot.sum() < 400
    for index, truth in ((1, part), (2, whole)):
        crop, x0, y0 = result.crop(index)
        assert (x0, y0) == (0, 0) and crop.shape == (256, 448)  # both tiles
        mask = full(result, index)
        assert mask[:, 256:].any()  # past the clicked tile's edge
        assert iou(mask, truth) > 0.98
        n, _ = cv2.connectedComponents(mask.astype(np.uint8))
        assert n == 2  # one object
    # the clicked tile, then the neighbour once for each candidate (different carried points)
    assert [k.endswith(T00.tag()) for k, _ in inner.calls] == [True, False, False]
    (_, for_part), (_, for_whole) = inner.calls[1:]
    assert for_part.points != for_whole.points and not for_part.multimask


@pytest.mark.parametrize(("whole_x1", "part_x1", "decodes"), [
    (200, 150, 1),  # every candidate inside the clicked tile
    (400, 150, 2),  # only the whole goes on
    (400, 400, 3),  # part and whole go on
])
def test_a_candidate_inside_the_clicked_tile_costs_no_decode(
    whole_x1: int, part_x1: int, decodes: int
) -> None:
    image, part, whole = bars(whole_x1, part_x1)
    inner = LevelsPredictor()
    tiled = tiled_over(inner)
    result = tiled.predict(tiled.embed(image), Prompt(points=(CLICK,)))
    assert len(inner.calls) == decodes
    assert isinstance(result, TiledMaskResult)
    for index, truth in ((1, part), (2, whole)):
        crop, x0, y0 = result.crop(index)
        inside = not truth[:, 254:].any()
        assert crop.shape == ((256, 256) if inside else (256, 448))
        assert iou(full(result, index), truth) > 0.98


def test_the_candidates_prompts_for_one_neighbour_are_decoded_in_one_batch() -> None:
    image, part, whole = bars(400, 400)
    plain, batching = tiled_over(LevelsPredictor()), BatchingLevels()
    want = plain.predict(plain.embed(image), Prompt(points=(CLICK,)))
    tiled = tiled_over(batching)
    got = tiled.predict(tiled.embed(image), Prompt(points=(CLICK,)))
    assert len(batching.calls) == 1 and batching.batches == [2]  # the click, then the pair
    for index in range(3):
        assert np.array_equal(got.masks[index], want.masks[index])
        assert np.array_equal(got.low_res_logits[index], want.low_res_logits[index])


def test_max_tiles_bounds_each_candidate() -> None:
    image, _, whole = bars(700, 150)  # the whole runs on over three tiles
    inner = LevelsPredictor()
    tiled = tiled_over(inner, max_tiles=2)
    result = tiled.predict(tiled.embed(image), Prompt(points=(CLICK,)))
    assert isinstance(result, TiledMaskResult)
    assert len(inner.calls) == 2 and result.tiles == [T00, T01]
    crop, x0, y0 = result.crop(2)
    assert (x0, y0) == (0, 0) and crop.shape == (256, 448)
    as_far = whole.copy()
    as_far[:, 448:] = False
    assert iou(full(result, 2), as_far) > 0.98


@pytest.mark.parametrize(("index", "name"), [(1, "part"), (2, "whole")])
def test_a_non_best_candidates_logits_passed_back_are_recognised(index: int,
                                                                 name: str) -> None:
    image, part, whole = bars(400, 400)
    truth = {"part": part, "whole": whole}[name]
    inner = LevelsPredictor()
    tiled = tiled_over(inner)
    key = tiled.embed(image)
    first = tiled.predict(key, Prompt(points=(CLICK,)))
    # the candidate's logits are its stitched mask seen in the clicked tile's frame
    seen = cv2.resize(first.logits_for(index)[0], (256, 256)) > 0
    assert iou(seen, truth[:256, :256]) > 0.95
    logits = first.logits_for(index).copy()  # a copy, as a thread hop would make
    far = Point(350.0, 75.0)  # on the part (and so the whole), in the tile at x 192
    inner.calls.clear()
    second = tiled.predict(key, Prompt(points=(CLICK, far), mask_input=logits,
                                       multimask=False))
    tile_key, prompt = inner.calls[0]
    assert tile_key.endswith(T01.tag()) and prompt.mask_input is not None
    # that tile got the candidate's stitched mask in its own frame
    given = cv2.resize(prompt.mask_input[0], (256, 256)) > 0
    assert iou(given, truth[:256, 192:448]) > 0.95
    assert iou(second.mask(second.best), part) > 0.98  # both clicks lie on the part


@pytest.mark.parametrize("same_mask_input", [True, False])
def test_chains_share_a_decode_only_for_the_same_prompt(same_mask_input: bool) -> None:
    grid = TileGrid(H, W, SIDE, OVERLAP)
    reaching = np.zeros((256, 256), bool)
    reaching[60:90, 60:] = True
    head = MaskResult(np.stack([reaching, reaching]), np.array([0.9, 0.8], np.float32),
                      np.zeros((2, LOW_RES, LOW_RES), np.float32))
    chains = start_chains(grid, T00, head, [], max_tiles=16)
    assert [c.index for c in chains] == [0, 1] and all(c.queue == [T01] for c in chains)
    inputs = {0: np.zeros((1, LOW_RES, LOW_RES), np.float32),
              1: np.full((1, LOW_RES, LOW_RES), 0.0 if same_mask_input else 1.0, np.float32)}

    def prompt_for(tile: Tile, done: dict[Tile, Decoded]) -> Prompt:
        index = next(c.index for c in chains if c.decoded is done)
        return Prompt(points=(Point(10.0, 75.0),), mask_input=inputs[index], multimask=False)

    asked: list[int] = []

    def decode(items: list[tuple[Tile, Prompt]]) -> list[MaskResult]:
        asked.append(len(items))
        return [MaskResult(np.zeros((1, 256, 256), bool), np.array([0.5], np.float32),
                           np.zeros((1, LOW_RES, LOW_RES), np.float32)) for _ in items]

    spread(grid, chains, prompt_for, decode, max_tiles=16)
    assert asked == ([1] if same_mask_input else [2])
    assert (chains[0].decoded[T01] is chains[1].decoded[T01]) == same_mask_input
