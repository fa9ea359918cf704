"""``maskloop embed FOLDER``: precompute the SAM2 embeddings of a whole folder into the disk
cache, so that opening any of its images later costs a file read, not an encode.

Resumable: images whose embedding is already on disk are skipped (and counted); every file
is written atomically, so Ctrl-C leaves a consistent cache and the next run carries on.
``--ray [ADDRESS]`` runs the same job on a Ray cluster (``app.cluster.embed_job``; SOURCE may
then be an object-store URI too); without it nothing here imports Ray. ``--tiled`` also
precomputes the full-resolution tiles of images over twice the model's input side
(``TiledPredictor.embed_tile``: the tiles a click on them decodes in), each tile cached as
it finishes and skipped when cached; smaller images get today's single embedding.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.cli.backend import add_model_args, predictor_from_args
from app.core.errors import ImageError, MaskLoopError
from app.core.types import EmbeddingKey

if TYPE_CHECKING:
    from app.predict.tiles.predictor import TiledPredictor


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="precompute SAM2 embeddings of a folder into the disk cache",
        description="Encode every image of FOLDER with SAM2 and keep the embeddings in the "
        "disk cache (skipping those already there), so that the app opens them at once.",
    )
    parser.add_argument("folder", metavar="SOURCE", type=str,
                        help="folder of images (with --ray also a URI: s3://, gs://, file://)")
    parser.add_argument("--recursive", action="store_true", help="include subfolders")
    parser.add_argument(
        "--batch", metavar="N", type=int, default=0,
        help="images per encoder batch (default: 4 on a GPU, 1 on a CPU)",
    )
    parser.add_argument(
        "--cache-dir", metavar="DIR", type=Path, default=None,
        help="embedding cache folder (default: $MASKLOOP_CACHE_DIR or the user cache dir)",
    )
    parser.add_argument(
        "--ray", metavar="ADDRESS", nargs="?", const="", default=None,
        help="run on Ray (needs maskloop[cluster]): the cluster at ADDRESS (auto, "
        "ray://HOST:10001), or without ADDRESS a local Ray on all the cores and GPUs here",
    )
    parser.add_argument(
        "--workers", metavar="N", type=int, default=0,
        help="with --ray: model workers (default: one per GPU, else one per CPU core)",
    )
    parser.add_argument(
        "--tiled", action="store_true",
        help="also encode the full-resolution tiles of images over twice the model's input "
        "side (what the app's --tiled decodes clicks in); 4 or more encodes per large image",
    )
    add_model_args(parser)
    parser.set_defaults(func=run)


@dataclass
class EmbedReport:
    """What a run did: counts, failures (path, message) and the time it took."""

    embedded: int = 0
    cached: int = 0
    tiles: int = 0  # tile embeddings encoded (--tiled)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False


@dataclass
class _Item:
    path: Path
    key: EmbeddingKey | None = None
    image: np.ndarray | None = None
    cached: bool = False
    error: str | None = None
    tiled: bool = False  # over the cut-over: encoded in tiles
    tiles_todo: int = 0  # its tiles not on disk yet


def run(args: argparse.Namespace) -> int:
    """The ``embed`` command; returns 0, 1 if some images could not be read, 130 on Ctrl-C."""
    from app.core.images import list_images
    from app.predict.cache.store import EmbeddingCache, default_cache_dir

    if args.ray is not None:
        if args.tiled:
            raise MaskLoopError("--tiled runs on this machine only: drop --ray (or --tiled)")
        return run_on_ray(args)
    if args.workers:
        raise MaskLoopError("--workers goes with --ray")
    folder = Path(args.folder)
    if not folder.is_dir():
        raise MaskLoopError(f"{folder} is not a folder of images")
    paths = list_images(folder, recursive=args.recursive)
    if not paths:
        print(f"no images found in {folder}" + ("" if args.recursive else
              " (use --recursive to include subfolders)"))
        return 0
    cache_dir = args.cache_dir or default_cache_dir()
    cache = EmbeddingCache(memory_bytes=0, disk_dir=cache_dir)  # every embedding goes to disk
    from app.predict.tiles.predictor import TiledPredictor

    built = predictor_from_args(args, cache=cache)
    # the SAM2 predictor that writes the cache (a --tiled backend may come wrapped already)
    predictor = built.inner if isinstance(built, TiledPredictor) else built
    try:
        if getattr(predictor, "cache", None) is not cache:
            print(f"nothing to precompute for {predictor.description}: it keeps no embeddings "
                  "on disk; pass --model NAME or --checkpoint PATH to use SAM2")
            return 0
        tiler = None
        if args.tiled:
            tiler = built if isinstance(built, TiledPredictor) else TiledPredictor(predictor)
        batch = args.batch or _default_batch(predictor)
        print(f"embedding {len(paths)} images of {folder} with {predictor.description} "
              f"into {cache_dir}" + (f" (tiles above {tiler.cutover} px)" if tiler else ""),
              file=sys.stderr)
        report = embed_folder(predictor, cache, paths, batch=batch, tiler=tiler)
    finally:
        built.close()
    rate = report.embedded / report.seconds if report.seconds > 0 else 0.0
    verb = "interrupted after" if report.interrupted else "done in"
    tiles = f" ({report.tiles} tiles)" if args.tiled else ""
    print(f"{verb} {report.seconds:.1f} s: {report.embedded} embedded{tiles} ({rate:.2f} "
          f"images/s), {report.cached} already cached, {len(report.failed)} unreadable")
    if report.interrupted:
        print("the cache is consistent: run the same command again to resume", file=sys.stderr)
        return 130
    return 1 if report.failed else 0


def run_on_ray(args: argparse.Namespace) -> int:
    """``embed SOURCE --ray [ADDRESS]``: the job on Ray (0, 1 if some images failed, 130 on
    Ctrl-C); SAM2 only, built in each worker from --model or --checkpoint."""
    from app.cluster import embed_job, ray_env, sources, worker_model
    from app.predict.cache.store import default_cache_dir

    if getattr(args, "server", None) or getattr(args, "hosted", None):
        raise MaskLoopError("--ray embeds with a local SAM2 model: drop --server/--hosted")
    if args.workers < 0 or args.batch < 0:
        raise MaskLoopError("--workers and --batch must be positive")
    ray_env.require_ray()  # the install hint before any listing
    model = worker_model.worker_model(args.model, args.checkpoint, args.config, args.device,
                                      args.runtime)
    locations = sources.list_source(args.folder, recursive=args.recursive)
    if not locations:
        print(f"no images found in {args.folder}")
        return 0
    cache_dir = (args.cache_dir or default_cache_dir()).resolve()
    started = ray_env.connect(args.ray or None)
    try:
        print(f"embedding {len(locations)} images of {args.folder} with {model.description} "
              f"on Ray into {cache_dir}", file=sys.stderr)
        report = embed_job.run_with_progress(locations, model, cache_dir,
                                             workers=args.workers or None,
                                             batch=args.batch or None)
    finally:
        ray_env.disconnect(started)
    rate = report.embedded / report.seconds if report.seconds > 0 else 0.0
    verb = "interrupted after" if report.interrupted else "done in"
    print(f"{verb} {report.seconds:.1f} s on {report.workers} workers: {report.embedded} "
          f"embedded ({rate:.2f} images/s), {report.cached} already cached, "
          f"{len(report.failed)} unreadable")
    if report.interrupted:
        print("the cache is consistent: run the same command again to resume", file=sys.stderr)
        return 130
    return 1 if report.failed else 0


def _default_batch(predictor: object) -> int:
    device = getattr(predictor, "device", None)
    return 4 if getattr(device, "type", "cpu") in ("cuda", "mps") else 1


def embed_folder(predictor: Any, cache: Any, paths: list[Path], *, batch: int = 1,
                 tiler: TiledPredictor | None = None) -> EmbedReport:
    """Encode ``paths`` into ``cache`` (SAM2Predictor with that cache), skipping cached ones,
    ``batch`` images per encoder call; images are read on two threads ahead of the encoder.
    With ``tiler`` (over ``predictor``) an image it tiles is encoded tile by tile instead,
    skipping the tiles already cached."""
    from tqdm import tqdm

    report = EmbedReport()
    t0 = time.perf_counter()
    bar = tqdm(total=len(paths), unit="img", desc="embedding", file=sys.stderr,
               dynamic_ncols=True, smoothing=0.1)
    pending: list[_Item] = []

    def fail(item: _Item, message: str) -> None:
        report.failed.append((item.path, message))
        shown = message if item.path.name in message else f"{item.path}: {message}"
        bar.write(f"warning: skipped {shown}", file=sys.stderr)

    def flush() -> None:
        if not pending:
            return
        images = [it.image for it in pending]
        hashes = [it.key.image_hash for it in pending if it.key is not None]
        try:
            if len(pending) == 1:
                predictor.embed(images[0], image_hash=hashes[0])
            else:
                predictor.embed_batch(images, hashes, batch_size=len(pending))
            report.embedded += len(pending)
        except MaskLoopError as exc:  # e.g. an image the model cannot take
            for it in pending:
                fail(it, str(exc))
        bar.update(len(pending))
        pending.clear()

    def embed_tiled(item: _Item) -> None:
        """The image's tiles not yet on disk (``TiledPredictor.embed_tiles`` would read the
        cached ones back), each written as it finishes, so Ctrl-C keeps those done."""
        assert tiler is not None and item.image is not None and item.key is not None
        try:
            key = tiler.embed(item.image, item.key.image_hash)
            todo = [t for t in tiler.tiles(key) if not cache.on_disk(tiler.tile_key(key, t))]
            for i, tile in enumerate(todo):
                bar.set_postfix_str(f"{item.path.name}: tile {i + 1}/{len(todo)}")
                tiler.embed_tile(key, tile)
                report.tiles += 1
            report.embedded += 1
        except MaskLoopError as exc:
            fail(item, str(exc))
        item.image = None  # a large image: do not hold it past its tiles
        bar.update(1)

    try:
        # with --tiled an image may be 20000 px square: read only one ahead
        lookahead = 2 if tiler is not None else 2 * batch + 2
        with closing(_read_ahead(paths, predictor.model_id, cache, lookahead,
                                 tiler)) as items:
            for item in items:
                if item.error is not None:
                    fail(item, item.error)
                    bar.update(1)
                elif item.cached:
                    report.cached += 1
                    bar.update(1)
                elif item.tiled:
                    embed_tiled(item)
                else:
                    pending.append(item)
                    if len(pending) >= batch:
                        flush()
                bar.set_postfix(cached=report.cached, failed=len(report.failed), refresh=False)
            flush()
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        bar.close()
        report.seconds = time.perf_counter() - t0
    return report


def _read_ahead(
    paths: list[Path], model_id: str, cache: Any, lookahead: int,
    tiler: TiledPredictor | None = None,
) -> Generator[_Item, None, None]:
    """Hash and load images on worker threads, in order, at most ``lookahead`` ahead."""
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="maskloop-embed-read")
    queue: deque[Future[_Item]] = deque()
    todo = iter(paths)
    try:
        for path in todo:
            queue.append(pool.submit(_read_one, path, model_id, cache, tiler))
            if len(queue) >= lookahead:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _read_one(path: Path, model_id: str, cache: Any,
              tiler: TiledPredictor | None = None) -> _Item:
    from app.core.images import content_hash, image_size, load_image

    item = _Item(path)
    try:
        item.key = EmbeddingKey(content_hash(path), model_id)
        if tiler is not None:
            width, height = image_size(path)  # the header only: a cached image is not decoded
            if tiler.is_tiled(height, width):
                item.tiled = True
                item.tiles_todo = _tiles_todo(tiler, item.key, height, width, cache)
                item.cached = item.tiles_todo == 0
                if not item.cached:
                    item.image = load_image(path)
                return item
        if cache.on_disk(item.key):
            item.cached = True
            return item
        item.image = load_image(path)
    except (ImageError, OSError) as exc:
        item.error = str(exc)
    return item


def _tiles_todo(tiler: TiledPredictor, key: EmbeddingKey, height: int, width: int,
                cache: Any) -> int:
    """How many tiles of ``key``'s ``height`` x ``width`` image are not in the disk cache."""
    from app.predict.tiles.grid import TileGrid

    grid = TileGrid(height, width, tiler.side, tiler.overlap)
    return sum(not cache.on_disk(tiler.tile_key(key, tile)) for tile in grid.tiles())
