"""``map_on_ray``: a per-image function over images on actors that hold a predictor built
once, results streamed back to the driver (the seam of ``autolabel --ray``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cluster_helpers import write_images

from app.cluster.image_map import map_on_ray
from app.cluster.worker_model import WorkerModel
from app.core.errors import Cancelled
from app.core.jobs import CancelToken

pytestmark = pytest.mark.slow


def test_results_stream_back_per_image_and_errors_stay_with_their_image(
        local_ray: str, tiny_model: WorkerModel, tmp_path: Path) -> None:
    from app.core.images import load_image
    from app.core.types import Point, Prompt
    from app.predict.cache.store import EmbeddingCache

    paths = write_images(tmp_path, ["a.png", "b.png"], seed=7)
    missing = tmp_path / "missing.png"

    def best_score(predictor: Any, path: Path, click: Prompt) -> float:
        """The per-image function: pixels in, a plain value out (no file written)."""
        result = predictor.predict(predictor.embed(load_image(path)), click)
        return float(result.scores.max())

    click = Prompt(points=(Point(20.5, 15.5),))
    got = dict(map_on_ray([*paths, missing], best_score, tiny_model.build, context=click,
                          workers=2))
    assert set(got) == {*paths, missing}
    assert isinstance(got[missing], str) and "missing.png" in got[missing]
    local = tiny_model.build(cache=EmbeddingCache(disk_dir=None))
    try:
        for path in paths:
            expected = local.predict(local.embed(load_image(path)), click).scores.max()
            np.testing.assert_allclose(got[path], expected, atol=1e-5)
    finally:
        local.close()


def test_cancel_stops_the_map_and_keeps_what_came_back(local_ray: str, tmp_path: Path) -> None:
    from app.predict.classical.predictor import ClassicalPredictor

    token = CancelToken()
    seen: list[int] = []

    def size(predictor: Any, item: int, _: object) -> str:
        return f"{predictor.model_id}:{item}"

    with pytest.raises(Cancelled):
        for item, value in map_on_ray(list(range(50)), size, ClassicalPredictor, workers=1,
                                      cancel=token):
            seen.append(item)
            assert value == f"{ClassicalPredictor().model_id}:{item}"
            if len(seen) == 3:
                token.cancel()
    assert len(seen) == 3
