"""``maskloop embed --tiled``: a large image's full-resolution tiles go into the disk cache
(random-weight SAM2 tiny), a small image gets its one embedding, a rerun encodes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli_embed import cache_files, model_args, run_cli

from app.core.images import content_hash
from app.core.types import EmbeddingKey
from app.predict.cache.file_format import SUFFIX
from app.predict.cache.store import EmbeddingCache
from app.predict.tiles.grid import TileGrid

BIG = (1300, 2200)  # (height, width): over 2 x 1024, so tiled: 2 rows x 3 columns of tiles
SIDE, OVERLAP = 1024, 256  # SAM2's input side and the default quarter overlap


def write_folder(folder: Path) -> tuple[Path, Path]:
    """A large noisy JPEG and a small PNG."""
    folder.mkdir()
    rng = np.random.default_rng(3)
    big = folder / "aerial.jpg"
    Image.fromarray(rng.integers(0, 255, (*BIG, 3), dtype=np.uint8)).save(big, quality=80)
    small = folder / "small.png"
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(small)
    return big, small


def tile_keys(image: Path, model_id: str) -> dict[EmbeddingKey, tuple[int, int]]:
    """The cache key of each tile of the large image, with the tile's (height, width)."""
    digest = content_hash(image)
    return {EmbeddingKey(f"{digest}-tile{t.tag()}", model_id): (t.height, t.width)
            for t in TileGrid(*BIG, SIDE, OVERLAP).tiles()}


@pytest.mark.slow
def test_tiles_of_a_large_image_are_cached_and_a_rerun_encodes_nothing(
        tmp_path: Path, sam2_tiny_checkpoint: tuple[Path, str]) -> None:
    big, small = write_folder(tmp_path / "images")
    cache_dir = tmp_path / "cache"
    argv = ["embed", str(big.parent), *model_args(sam2_tiny_checkpoint), "--runtime", "torch",
            "--cache-dir", str(cache_dir), "--tiled"]
    code, out, err = run_cli(*argv)
    assert code == 0, err
    assert "2 embedded (6 tiles)" in out and "0 already cached" in out
    files = cache_files(cache_dir)
    (small_file,) = [n for n in files if n.startswith(content_hash(small))]
    model_id = small_file.removesuffix(SUFFIX).split("-", 1)[1]  # "<hash>-<model id>"
    cache = EmbeddingCache(memory_bytes=0, disk_dir=cache_dir)
    tiles = tile_keys(big, model_id)
    assert len(tiles) == 6
    for key, size in tiles.items():
        emb = cache.get(key)
        assert emb is not None, key
        assert emb.image_size == size  # the tile at native resolution, not the image
    assert cache.on_disk(EmbeddingKey(content_hash(small), model_id))
    assert not cache.on_disk(EmbeddingKey(content_hash(big), model_id))  # no downscaled one
    assert len(files) == 7
    files = cache_files(cache_dir)  # after the reads above (a read touches its file: LRU)

    code, out, _ = run_cli(*argv)
    assert code == 0
    assert "0 embedded (0 tiles)" in out and "2 already cached" in out
    assert cache_files(cache_dir) == files  # nothing rewritten

    lost = next(iter(tiles))  # one tile gone (e.g. Ctrl-C before it): only it is encoded
    path = cache.path_for(lost)
    assert path is not None
    path.unlink()
    code, out, _ = run_cli(*argv)
    assert code == 0
    assert "1 embedded (1 tiles)" in out and "1 already cached" in out
    again = cache_files(cache_dir)
    assert set(again) == set(files)
    assert {n for n in files if again[n] != files[n]} == {path.name}


def test_tiled_with_ray_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    code, _, err = run_cli("embed", str(folder), "--tiled", "--ray")
    assert code == 2
    assert "--tiled runs on this machine only" in err
