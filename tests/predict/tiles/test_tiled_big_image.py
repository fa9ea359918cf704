"""Issue 16, done end to end: a 20000 x 20000 JPEG written here is opened as the app opens
images, an object spanning tiles is segmented with one click through the tiled predictor
(classical; random-weight SAM2 for the plumbing) and exported to COCO, which pycocotools reads
back with the object's area and box."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from shapely.affinity import translate

from app.core.formats.coco import export_coco
from app.core.geometry import mask_to_geometry
from app.core.images import content_hash, load_image
from app.core.types import ImageRecord, Instance, Label, Point, Prompt, Source
from app.predict.tiles.predictor import TiledMaskResult, TiledPredictor

SIDE = 20000
CENTRE = (10112, 10112)  # where SAM2's 1024 tiles (stride 768) hand over, both ways
RADIUS = 300
COLOUR_BGR = (40, 120, 210)  # orange


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smooth blue-green colour field with a noisy orange disc, as a 20000 x 20000 JPEG."""
    rng = np.random.default_rng(0)
    small = rng.integers(60, 160, (SIDE // 500, SIDE // 500, 3), np.uint8)
    small[..., 2] = 40  # little red anywhere in the background
    image = cv2.resize(small, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR)
    cv2.circle(image, CENTRE, RADIUS, COLOUR_BGR, -1)
    x, y = CENTRE
    around = image[y - 1000:y + 1000, x - 1000:x + 1000]
    noise = rng.integers(0, 20, around.shape, np.uint8)
    cv2.add(around, noise, dst=around)
    path = tmp_path_factory.mktemp("big") / "big.jpg"
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


def disc_crop(x0: int, y0: int, shape: tuple[int, int]) -> np.ndarray:
    """The true disc inside the crop at (x0, y0)."""
    truth = np.zeros(shape, np.uint8)
    cv2.circle(truth, (CENTRE[0] - x0, CENTRE[1] - y0), RADIUS, 1, -1)
    return truth > 0


@pytest.mark.slow
@pytest.mark.parametrize("regions", [True, False], ids=["window", "fixed-tiles"])
def test_a_20000_px_image_segmented_across_tiles_and_exported(
    big_jpeg: Path, tmp_path: Path, regions: bool
) -> None:
    """The classical backend's default is a window fitted to the click, grown while the mask
    goes on past it (the 600 px disc does not fit the first 512 px window); with fixed tiles
    the disc is stitched from several 512 px tiles. Both give one object and export it."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    from app.predict.classical.predictor import ClassicalPredictor

    image = load_image(big_jpeg)
    assert image.shape == (SIDE, SIDE, 3)
    digest = content_hash(big_jpeg)
    tiled = TiledPredictor(ClassicalPredictor(), regions=regions)
    key = tiled.embed(image, digest)
    result = tiled.predict(key, Prompt(points=(Point(CENTRE[0] - 40, CENTRE[1] + 30),)))
    assert isinstance(result, TiledMaskResult)
    if regions:
        assert tiled.tiles(key) == []  # nothing to encode ahead
        (window,) = result.tiles
        assert window.width == window.height > tiled.side  # it grew past the first window
        assert window.contains(CENTRE[0] - RADIUS, CENTRE[1] - RADIUS)
        assert window.contains(CENTRE[0] + RADIUS, CENTRE[1] + RADIUS)
    else:
        assert len(tiled.tiles(key)) > 1000  # 512 px tiles over 20000 px
        assert len(result.tiles) >= 2
    crop, x0, y0 = result.crop(result.best)
    truth = disc_crop(x0, y0, crop.shape)
    assert (crop & truth).sum() / (crop | truth).sum() > 0.9
    n, _ = cv2.connectedComponents(crop.astype(np.uint8))
    assert n == 2  # one object
    geometry = mask_to_geometry(crop, tolerance=0.0)
    assert geometry is not None
    geometry = translate(geometry, x0, y0)
    record = ImageRecord("big.jpg", SIDE, SIDE, digest, id=1)
    instance = Instance(1, "disc", geometry, float(result.scores[result.best]),
                        Source.CLASSICAL, id=1)
    out = tmp_path / "coco.json"
    export_coco([(record, [instance])], [Label("disc")], out)
    coco = COCO(str(out))
    (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert json.loads(out.read_text())["images"][0]["width"] == SIDE
    pixels = int(crop.sum())
    assert ann["area"] == pytest.approx(pixels, rel=0.01)
    rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], SIDE, SIDE))
    assert float(mask_utils.area(rle)) == pytest.approx(pixels, rel=0.01)
    bx, by, bw, bh = ann["bbox"]
    cx, cy = CENTRE
    assert abs(bx - (cx - RADIUS)) < 15 and abs(by - (cy - RADIUS)) < 15
    assert abs(bw - 2 * RADIUS) < 30 and abs(bh - 2 * RADIUS) < 30


@pytest.mark.slow
def test_a_20000_px_image_with_random_sam2_encodes_tiles_on_demand_and_caches_them(
    big_jpeg: Path, tmp_path: Path, sam2_tiny_checkpoint: tuple[Path, str]
) -> None:
    """Plumbing (random weights give noise masks): the clicked tile is encoded on demand
    and cached on disk under its own key, neighbours follow when a candidate's mask reaches an
    edge, each candidate comes back in a crop at full resolution, and no tile is encoded
    twice."""
    from app.predict.cache.store import EmbeddingCache
    from app.predict.sam2.predictor import SAM2Predictor

    path, config = sam2_tiny_checkpoint
    cache = EmbeddingCache(disk_dir=tmp_path / "embeddings")
    sam = SAM2Predictor(path, config, model_id="tiny-random", cache=cache, runtime="torch")
    tiled = TiledPredictor(sam, max_tiles=3)
    assert (tiled.side, tiled.overlap, tiled.cutover) == (1024, 256, 2048)
    image = load_image(big_jpeg)
    key = tiled.embed(image, content_hash(big_jpeg))
    assert cache.stats.disk_writes == 0  # nothing encoded before a click
    click = Prompt(points=(Point(*CENTRE),))
    result = tiled.predict(key, click)
    assert isinstance(result, TiledMaskResult)
    first = result.tiles[0]
    assert first.contains(*CENTRE) and first.width == first.height == 1024
    assert cache.on_disk(tiled.tile_key(key, first))
    # max_tiles per candidate: each of the 3 candidates that reaches past the clicked tile
    # (noise may reach every side) is decoded in 2 more tiles at most
    assert cache.stats.disk_writes == len(result.tiles) <= 1 + 3 * 2
    x1, y1 = max(t.x1 for t in result.tiles), max(t.y1 for t in result.tiles)
    for index in range(len(result)):  # each covers the clicked tile, in the tiles decoded
        crop, x0, y0 = result.crop(index)
        assert x0 <= first.x0 and y0 <= first.y0
        assert first.y1 <= y0 + crop.shape[0] <= y1 and first.x1 <= x0 + crop.shape[1] <= x1
        assert x0 >= min(t.x0 for t in result.tiles) and y0 >= min(t.y0 for t in result.tiles)
        placed = result.mask(index)[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]]
        assert np.array_equal(placed, crop)
    assert result.low_res_logits.shape == (3, 256, 256)
    again = tiled.predict(key, Prompt(points=click.points, mask_input=result.logits_for(
        result.best), multimask=False))
    assert len(again) == 1
    # every tile encoded once: the second click took the first click's tiles from the cache
    assert cache.stats.disk_writes == len(set(result.tiles) | set(again.tiles))
    sam.close()
