"""Find all like this with SAM2 (random weights, so no figures of quality here: those come
from ``maskloop eval-findall``).

The similarity stage is checked with known answers: an embedding written into the
predictor's cache whose features repeat the exemplar's at known places (and a negative's
elsewhere). The whole path (embed, pool, peaks, batched decode, NMS) runs on a real image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.errors import Cancelled
from app.core.geometry import mask_iou
from app.core.images import array_hash
from app.core.jobs import CancelToken
from app.core.types import EmbeddingKey, MaskProposal
from app.predict.base import Exemplar, FindQuery, PredictorError
from app.predict.cache.file_format import Embedding
from app.predict.cache.store import EmbeddingCache
from app.predict.sam2.findall import similarity_peaks
from app.predict.sam2.predictor import SAM2Predictor

pytestmark = pytest.mark.slow  # loads SAM2 and encodes on a CPU

H, W = 256, 256  # pixels: 4 per embedding location
GRID = 64


@pytest.fixture(scope="module")
def predictor(sam2_tiny_checkpoint: tuple[Path, str],
              tmp_path_factory: pytest.TempPathFactory) -> SAM2Predictor:
    path, config = sam2_tiny_checkpoint
    return SAM2Predictor(path, config, "random-tiny", "cpu",
                         EmbeddingCache(disk_dir=tmp_path_factory.mktemp("emb")))


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=256)
    return v / np.linalg.norm(v)


def planted(predictor: SAM2Predictor, name: str,
            blobs: list[tuple[int, int, np.ndarray]]) -> EmbeddingKey:
    """A cached embedding of noise with 4 x 4 locations of ``feature`` at each (row, col)."""
    rng = np.random.default_rng(len(blobs))
    embed = rng.normal(size=(1, 256, GRID, GRID)).astype(np.float32)
    for r, c, feature in blobs:
        embed[0, :, r:r + 4, c:c + 4] = 10 * feature[:, None, None]
    arrays = {"image_embed": embed.astype(np.float16),
              "high_res_feats_0": np.zeros((1, 32, 256, 256), np.float16),
              "high_res_feats_1": np.zeros((1, 64, 128, 128), np.float16)}
    key = EmbeddingKey(name, predictor.model_id)
    predictor.cache.put(key, Embedding(arrays, (H, W)))
    return key


def box_at(r: int, c: int) -> tuple[float, float, float, float]:
    """The pixel box of the 4 x 4 locations at (row, col)."""
    return (c * 4.0, r * 4.0, (c + 4) * 4.0, (r + 4) * 4.0)


def exemplar_mask(r: int, c: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    x0, y0, x1, y1 = (int(v) for v in box_at(r, c))
    m[y0:y1, x0:x1] = True
    return m


def near(points: list[tuple[float, float, float]], r: int, c: int) -> bool:
    x, y = (c + 2) * 4.0, (r + 2) * 4.0
    return any(abs(px - x) <= 8 and abs(py - y) <= 8 for px, py, _ in points)


def test_peaks_are_where_the_exemplar_features_repeat(predictor: SAM2Predictor) -> None:
    v, u = unit(1), unit(2)
    mixed = 0.6 * v + 0.8 * u  # cosine 0.6 with v (+ noise), more like u
    key = planted(predictor, "planted-1", [(10, 10, v), (10, 40, v), (45, 20, v),
                                           (40, 50, u), (25, 30, mixed)])
    query = FindQuery(exemplars=(Exemplar(box_at(10, 10), mask=exemplar_mask(10, 10)),))
    peaks = similarity_peaks(predictor, key, query)
    assert near(peaks.points, 10, 40) and near(peaks.points, 45, 20)
    assert near(peaks.points, 25, 30)  # 0.6 alike: above the 0.5 threshold
    assert not near(peaks.points, 10, 10)  # the exemplar itself is left out
    assert not near(peaks.points, 40, 50)
    assert all(s >= 0.5 for _, _, s in peaks.points)
    assert [s for _, _, s in peaks.points] == sorted((s for _, _, s in peaks.points), reverse=True)
    assert peaks.inside.sum() == 16 * 16 and peaks.area == pytest.approx(256 / (H * W))
    # a negative exemplar like u lowers what resembles u more than v
    negative = Exemplar(box_at(40, 50), positive=False, mask=exemplar_mask(40, 50))
    lowered = similarity_peaks(predictor, key, FindQuery(exemplars=(*query.exemplars, negative)))
    assert near(lowered.points, 10, 40) and near(lowered.points, 45, 20)
    assert not near(lowered.points, 25, 30)
    # a stricter threshold drops the half-alike blob
    strict = similarity_peaks(predictor, key, FindQuery(exemplars=query.exemplars,
                                                        score_threshold=0.8))
    assert near(strict.points, 10, 40) and not near(strict.points, 25, 30)


def test_an_exemplar_in_another_image_is_pooled_from_that_image(
        predictor: SAM2Predictor) -> None:
    v = unit(3)
    searched = planted(predictor, "planted-2", [(5, 5, v), (50, 50, v)])
    other = np.full((H, W, 3), 17, np.uint8)  # its embedding is planted under its pixel hash
    planted(predictor, array_hash(other), [(30, 30, v)])
    query = FindQuery(exemplars=(Exemplar(box_at(30, 30), mask=exemplar_mask(30, 30),
                                          image=other),))
    peaks = similarity_peaks(predictor, searched, query)
    assert near(peaks.points, 5, 5) and near(peaks.points, 50, 50)
    assert not peaks.inside.any()  # nothing of the searched image is an exemplar


def scene() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(60, 90, (H, W, 3)).astype(np.uint8)
    for x, y in ((30, 40), (150, 50), (90, 170), (190, 180)):
        image[y:y + 40, x:x + 40] = (220, 200, 30)
    return image


def test_find_all_like_a_box_decodes_proposals(predictor: SAM2Predictor) -> None:
    image = scene()
    key = predictor.embed(image)
    assert predictor.capabilities.exemplar_prompts
    query = FindQuery(exemplars=(Exemplar((30, 40, 70, 80)),), score_threshold=0.3,
                      nms_iou=0.5, max_results=5)
    seen: list[tuple[int, int, str]] = []
    found = predictor.find_all(key, query, progress=lambda d, t, m: seen.append((d, t, m)))
    assert found, "random features still peak somewhere above 0.3"
    assert all(isinstance(p, MaskProposal) and p.mask.shape == (H, W) and p.mask.any()
               for p in found)
    assert all(p.prompt == "+box(30,40,70,80)" and p.score >= 0.3 for p in found)
    assert [p.score for p in found] == sorted((p.score for p in found), reverse=True)
    assert len(found) <= 5
    for i, a in enumerate(found):
        ys, xs = np.nonzero(a.mask)
        assert a.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert all(mask_iou(a.mask, b.mask) <= 0.5 for b in found[i + 1:])
    assert seen[-1] == (2, 2, "done")
    # the same through an image instead of a key (embedded then, from the cache)
    again = predictor.find_all(image, query)
    assert [p.score for p in again] == [p.score for p in found]


def test_find_all_refuses_text_and_stops_when_cancelled(predictor: SAM2Predictor) -> None:
    key = predictor.embed(scene())
    with pytest.raises(PredictorError, match="SAM2 does not understand text"):
        predictor.find_all(key, FindQuery.text("person"))
    with pytest.raises(PredictorError, match="needs a text or an exemplar"):
        predictor.find_all(key, FindQuery())
    with pytest.raises(PredictorError, match="at least one positive exemplar"):
        predictor.find_all(key, FindQuery(exemplars=(Exemplar((0, 0, 9, 9), positive=False),)))
    with pytest.raises(PredictorError, match="outside the image"):
        predictor.find_all(key, FindQuery(exemplars=(Exemplar((900, 900, 990, 990)),)))
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        predictor.find_all(key, FindQuery(exemplars=(Exemplar((30, 40, 70, 80)),)),
                           cancel=token)
