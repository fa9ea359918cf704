"""The RITM click simulator and the NoC / mIoU metrics, on synthetic masks and a toy
predictor whose answers are known in advance."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.evaluation import (
    ClickSimulator,
    DatasetError,
    GroundTruth,
    evaluate,
    evaluate_image,
    iou,
    noc,
)
from app.core.jobs import CancelToken
from app.core.types import EmbeddingKey, MaskProposal, MaskResult, Point, Prompt
from app.predict.base import Capabilities, FindQuery, Predictor, PredictorError, SourceKind


def disc(shape: tuple[int, int], centre: tuple[int, int], radius: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.circle(mask, centre, radius, 1, -1)
    return mask.astype(bool)


def gt_of(mask: np.ndarray, ignore: np.ndarray | None = None) -> GroundTruth:
    return GroundTruth(mask, np.zeros_like(mask) if ignore is None else ignore)


# ---------------------------------------------------------------- the click simulator


def test_first_click_is_positive_at_the_centre_of_a_disc() -> None:
    sim = ClickSimulator(gt_of(disc((101, 121), (70, 40), 25)))
    click = sim.next_click(None)
    assert click == Point(70.5, 40.5, True)


def test_image_border_counts_as_boundary() -> None:
    # a 40 x 40 object on the left edge: without the border as boundary the farthest
    # point would sit on that edge; with it, it is the middle of the square
    mask = np.zeros((61, 100), dtype=bool)
    mask[10:50, :40] = True
    click = ClickSimulator(gt_of(mask)).next_click(None)
    assert click is not None and click.positive
    assert 18 <= click.x <= 22
    assert 28 <= click.y <= 33


def test_next_click_is_negative_in_the_larger_false_positive_region() -> None:
    gt = np.zeros((100, 100), dtype=bool)
    gt[20:60, 20:60] = True
    pred = gt.copy()
    pred[20:26, 20:26] = False  # small miss: a 6 px false-negative notch
    pred[70:95, 65:95] = True  # large false positive: 25 x 30 block
    click = ClickSimulator(gt_of(gt)).next_click(pred)
    assert click is not None and not click.positive
    assert 65 <= click.x <= 95 and 70 <= click.y <= 95
    assert pred[int(click.y), int(click.x)] and not gt[int(click.y), int(click.x)]


def test_next_click_is_positive_in_the_larger_false_negative_region() -> None:
    gt = np.zeros((100, 100), dtype=bool)
    gt[10:90, 10:90] = True
    pred = gt.copy()
    pred[50:90, 10:60] = False  # a big missed part
    pred[0:4, 0:4] = True  # a tiny false positive
    click = ClickSimulator(gt_of(gt)).next_click(pred)
    assert click is not None and click.positive
    assert gt[int(click.y), int(click.x)] and not pred[int(click.y), int(click.x)]
    assert 10 <= click.x <= 60 and 50 <= click.y <= 90


def test_ignored_band_is_neither_error_nor_counted_in_iou() -> None:
    obj = disc((80, 80), (40, 40), 20)
    ring = disc((80, 80), (40, 40), 24) & ~obj
    gt = gt_of(obj, ring)
    assert iou(obj | ring, gt) == 1.0
    assert iou(obj, gt) == 1.0
    assert ClickSimulator(gt).next_click(obj | ring) is None
    half = obj.copy()
    half[:, :40] = False
    assert iou(half, gt) == pytest.approx(half.sum() / obj.sum())


def test_ignored_band_counts_as_boundary_for_the_first_click() -> None:
    obj = np.zeros((60, 100), dtype=bool)
    obj[10:50, 10:90] = True
    ignore = np.zeros_like(obj)
    ignore[10:50, 50:90] = True  # the right half of the object is "uncertain"
    click = ClickSimulator(GroundTruth(obj & ~ignore, ignore)).next_click(None)
    assert click is not None and click.positive
    assert 25 <= click.x <= 35  # the centre of the left half, not of the whole object


def test_a_clicked_pixel_is_not_clicked_again() -> None:
    gt = disc((50, 50), (25, 25), 10)
    sim = ClickSimulator(gt_of(gt))
    first = sim.next_click(None)
    second = sim.next_click(None)
    assert first is not None and second is not None and first != second


def test_noc_counts_clicks_to_threshold_or_max() -> None:
    assert noc([0.5, 0.86, 0.91], 0.85, 20) == 2
    assert noc([0.5, 0.86, 0.91], 0.90, 20) == 3
    assert noc([0.5, 0.6], 0.90, 20) == 20


# ---------------------------------------------------------------- a toy predictor


class RowsPredictor:
    """Answers click k with the top ``rows[k]`` rows of a fixed square (the last one
    afterwards), so IoU after each click is known; records the prompts it got."""

    def __init__(self, square: np.ndarray, rows: list[int]) -> None:
        self.square = square
        self.rows = rows
        self.prompts: list[Prompt] = []
        self.embedded: set[EmbeddingKey] = set()

    capabilities = Capabilities(SourceKind.SAM2, "test")

    @property
    def model_id(self) -> str:
        return "toy-rows"

    @property
    def description(self) -> str:
        return "toy predictor"

    def embed(self, image: np.ndarray, image_hash: str | None = None,
              cancel: CancelToken | None = None) -> EmbeddingKey:
        key = EmbeddingKey(image_hash or str(image.shape), self.model_id)
        self.embedded.add(key)
        return key

    def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        if key not in self.embedded:
            raise PredictorError("not embedded")
        k = min(len(self.prompts), len(self.rows) - 1)
        self.prompts.append(prompt)
        ys = np.nonzero(self.square.any(axis=1))[0]
        mask = self.square.copy()
        mask[ys[0] + self.rows[k]:] = False
        n = 3 if prompt.multimask else 1
        masks = np.stack([mask] + [np.zeros_like(mask)] * (n - 1))
        scores = np.array([0.9] + [0.1] * (n - 1), dtype=np.float32)
        logits = np.full((n, 256, 256), float(k), dtype=np.float32)
        return MaskResult(masks, scores, logits)

    def segment_everything(self, image: EmbeddingKey | np.ndarray, **kwargs: object
                           ) -> list[MaskProposal]:
        return []

    def find_all(self, image: EmbeddingKey | np.ndarray, query: FindQuery,
                 **kwargs: object) -> list[MaskProposal]:
        raise PredictorError("no find all")

    def close(self) -> None:
        pass


def square_gt() -> np.ndarray:
    gt = np.zeros((100, 100), dtype=bool)
    gt[30:70, 30:70] = True  # 40 rows of 40: IoU of the top r rows is r / 40
    return gt


def test_metrics_follow_a_known_sequence() -> None:
    gt = square_gt()
    toy = RowsPredictor(gt, [20, 32, 35, 38])  # IoU 0.5, 0.8, 0.875, 0.95, 0.95...
    assert isinstance(toy, Predictor)
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    row = evaluate_image(toy, image, gt_of(gt), "square", max_clicks=20)
    assert row.ious[:5] == pytest.approx([0.5, 0.8, 0.875, 0.95, 0.95])
    assert (row.noc85, row.noc90) == (3, 4)
    assert row.iou_after(1) == pytest.approx(0.5)
    assert row.iou_after(5) == pytest.approx(0.95)
    assert len(row.ious) == 5  # stops once both targets are met and 5 clicks are made
    assert len(row.latencies_s) == len(row.ious) == len(row.clicks)
    # multimask on the first click only; the chosen candidate's logits fed back
    assert [p.multimask for p in toy.prompts] == [True, False, False, False, False]
    assert toy.prompts[0].mask_input is None
    for k, prompt in enumerate(toy.prompts[1:]):
        assert prompt.mask_input is not None and prompt.mask_input.shape == (1, 256, 256)
        assert float(prompt.mask_input[0, 0, 0]) == float(k)
    assert [len(p.points) for p in toy.prompts] == [1, 2, 3, 4, 5]
    assert all(p.positive for p in toy.prompts[-1].points)  # every miss is a missing part


def test_an_object_never_reaching_the_target_counts_as_max_clicks() -> None:
    gt = square_gt()
    toy = RowsPredictor(gt, [20, 30])  # stuck at IoU 0.75
    row = evaluate_image(toy, np.zeros((100, 100, 3), np.uint8), gt_of(gt), max_clicks=6)
    assert (row.noc85, row.noc90) == (6, 6)
    assert len(row.ious) == 6


def write_dataset(root: Path, names: list[str]) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in names:
        cv2.imwrite(str(root / "images" / f"{name}.png"), np.zeros((100, 100, 3), np.uint8))
        labels = np.where(square_gt(), 255, 0).astype(np.uint8)
        cv2.imwrite(str(root / "masks" / f"{name}.png"), labels)


def test_evaluate_a_dataset_and_summarize(tmp_path: Path) -> None:
    write_dataset(tmp_path, ["a", "b", "c"])
    toy = RowsPredictor(square_gt(), [20, 32, 35, 38])
    seen: list[tuple[int, int, str]] = []
    report = evaluate(toy, tmp_path, limit=2, progress=lambda d, t, m: seen.append((d, t, m)))
    s = report.summary
    assert s.images == 2 and [r.name for r in report.rows] == ["a", "b"]
    # the toy's click counter is shared across images: the second image starts at IoU 0.95
    assert report.rows[1].noc90 == 1
    assert s.noc90 == pytest.approx((4 + 1) / 2)
    assert s.miou_at_1 == pytest.approx((0.5 + 0.95) / 2)
    assert s.nof90 == 0 and s.model_id == "toy-rows"
    assert s.clicks_total == len(report.rows[0].ious) + len(report.rows[1].ious)
    assert s.latency_p50_ms <= s.latency_p95_ms <= s.latency_max_ms
    assert seen[0] == (0, 2, "a") and seen[-1][0] == 2
    data = json.loads(report.to_json())
    assert data["summary"]["noc90"] == pytest.approx(2.5)
    assert data["images"][0]["name"] == "a"


def test_evaluate_is_cancellable(tmp_path: Path) -> None:
    write_dataset(tmp_path, ["a"])
    token = CancelToken()
    token.cancel()
    from app.core.errors import Cancelled

    with pytest.raises(Cancelled):
        evaluate(RowsPredictor(square_gt(), [10]), tmp_path, cancel=token)


def test_a_dataset_without_masks_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="masks"):
        evaluate(RowsPredictor(square_gt(), [10]), tmp_path)
