"""``TiledPredictor``: any Predictor (SAM2, classical) on images larger than its input, in
overlapping tiles at native resolution (issue 16; the grid and its sizes: ``grid.py``).

- Cut-over: an image whose longest side is at most ``CUTOVER_FACTOR`` (2) model inputs
  (2048 px for SAM2) takes today's path unchanged (the inner predictor, one embedding): the
  model sees it downscaled at most 2x, and tiling it would cost 4 to 9 encodes for that.
- ``embed`` of a larger image encodes nothing: it remembers the image; a tile is encoded on
  demand, the one under the click first, through the inner predictor under the key
  "<image hash>-tile<x0>_<y0>_<w>x<h>" (so its disk cache keeps tiles like images).
  ``tiles``/``embed_tile``/``embed_tiles`` let a prefetcher or ``maskloop embed`` precompute.
- A click is decoded in the tile that owns it. When a candidate's mask touches a side of the
  tile that faces another tile, the neighbours across that side are decoded too, the prompt
  carried over (points outside a tile dropped, a box clipped, a positive point put where that
  candidate's mask so far lies deepest in the neighbour), and so on until the object stops or
  ``max_tiles`` tiles are decoded for it (``spread.py``: every candidate that reaches a side,
  the candidates' neighbour prompts decoded together). The tiles' logits are blended in the
  overlaps, each weighted towards its tile's centre (``TileGrid.weights``): one mask, one
  instance, for each candidate (cycling to the second one gives it whole too).
- The result's full-resolution masks are lazy (``TiledMaskResult``; the mask sits in a crop),
  built on the worker in ``predict`` (a crop never calls the inner predictor);
  ``low_res_logits`` are the clicked tile's (a stitched candidate's mask seen in its frame),
  and a later prompt that passes one back is recognised, so its tiles get that candidate's
  stitched mask in their own frames.
- Backends with a cheap encode (the classical one) are not tiled but decoded in one window
  fitted to the prompt, grown while the mask goes on past it (``region.py`` says why).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.core.images import array_hash
from app.core.jobs import CancelToken, Progress, check
from app.core.lru import BoundedCache
from app.core.types import LOW_RES, Box, EmbeddingKey, MaskProposal, MaskResult, Point, Prompt
from app.predict.base import (
    Capabilities,
    EverythingOptions,
    FindQuery,
    Predictor,
    PredictorError,
    SourceKind,
)
from app.predict.tiles import region, spread
from app.predict.tiles.field import (
    BACKGROUND,
    Field,
    downscaled,
    resample,
    tile_logits_field,
)
from app.predict.tiles.grid import CUTOVER_FACTOR, Tile, TileGrid
from app.predict.tiles.stitch import Decoded, deepest_points, stitch

__all__ = ["TiledMaskResult", "TiledPredictor", "model_input_side"]

MAX_TILES = 16  # tiles decoded for one prompt at most (4 x 4: objects up to ~3000 px)


def model_input_side(predictor: Predictor) -> int:
    """The side of the square the backend's model sees: SAM2's ``image_size`` (1024), the
    classical backend's working ``max_side`` (512); 1024 for any other."""
    kind = predictor.capabilities.kind
    if kind == SourceKind.SAM2:
        return int(getattr(getattr(predictor, "model", None), "image_size", 1024))
    if kind == SourceKind.CLASSICAL:
        return int(getattr(getattr(predictor, "params", None), "max_side", 1024))
    return 1024


class TiledMaskResult(MaskResult):
    """A MaskResult over a large image whose candidates each lie in a crop: ``crop(i)``
    gives (bool mask, x0, y0) without making the full-size mask (which ``mask(i)`` makes on
    first use); ``tiles`` are the tiles decoded for it."""

    __slots__ = ("_crops", "tiles")

    def __init__(self, crops: list[Callable[[], tuple[np.ndarray, int, int]]],
                 scores: np.ndarray, low_res_logits: np.ndarray, size: tuple[int, int],
                 tiles: list[Tile]) -> None:
        self._crops = crops
        self.tiles = tiles
        super().__init__(None, scores, low_res_logits, size=size, upscale=self._paste)

    def crop(self, index: int) -> tuple[np.ndarray, int, int]:
        """Candidate ``index``'s mask inside its crop, and the crop's top-left corner."""
        return self._crops[index]()

    def _paste(self, index: int) -> np.ndarray:
        mask, x0, y0 = self.crop(index)
        out = np.zeros(self.size, dtype=bool)
        out[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]] = mask
        return out


@dataclass
class _BigImage:
    image: np.ndarray
    grid: TileGrid
    image_hash: str


@dataclass
class _Given:
    """What a result handed out: its low-res logits and, per candidate, the Field to give
    back to any tile when a later prompt passes those logits as ``mask_input``."""

    logits: np.ndarray
    fields: list[Field]


class TiledPredictor:
    """Wraps ``inner``: small images go straight to it, large ones are tiled (module doc).
    Not thread-safe, like every Predictor: one worker owns it (and its inner predictor)."""

    def __init__(self, inner: Predictor, *, side: int | None = None,
                 overlap: int | None = None, cutover: int | None = None,
                 max_tiles: int = MAX_TILES, images_kept: int = 2,
                 regions: bool | None = None) -> None:
        """``side``/``overlap``: the tiles (default: the model's input, a quarter of it);
        ``cutover``: the longest side above which an image is tiled (default 2 tiles);
        ``regions``: decode in windows fitted to each prompt instead of fixed tiles (default:
        for the classical backend, whose encode is cheap)."""
        self.inner = inner
        self.side = int(side or model_input_side(inner))
        self.overlap = int(self.side // 4 if overlap is None else overlap)
        self.cutover = int(cutover or CUTOVER_FACTOR * self.side)
        self.max_tiles = max(1, int(max_tiles))
        self._stretch = inner.capabilities.kind == SourceKind.SAM2
        classical = inner.capabilities.kind == SourceKind.CLASSICAL
        self.regions = classical if regions is None else bool(regions)
        # what a grown window's mask prompt holds beyond the last window: "unknown" (NaN) for
        # the classical backend; background for a model (SAM takes no NaN)
        self._unknown = float("nan") if classical else BACKGROUND
        self._images: BoundedCache[EmbeddingKey, _BigImage] = BoundedCache(images_kept)
        self._given: BoundedCache[int, _Given] = BoundedCache(8)

    # -- Predictor protocol ----------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def description(self) -> str:
        return f"{self.inner.description}, tiled above {self.cutover} px"

    @property
    def capabilities(self) -> Capabilities:
        # tiles are decoded one prompt at a time and encoded whole: no batch, no steps
        return dataclasses.replace(self.inner.capabilities, batched_decode=False,
                                   resumable_encode=False)

    def set_threads(self, n: int) -> None:
        """Passed to the inner predictor when it has thread control."""
        if self.inner.capabilities.thread_control:
            self.inner.set_threads(n)  # type: ignore[attr-defined]

    def is_tiled(self, height: int, width: int) -> bool:
        """Whether an image of this size is tiled (its longest side is over ``cutover``)."""
        return max(height, width) > self.cutover

    def embed(self, image: np.ndarray, image_hash: str | None = None,
              cancel: CancelToken | None = None) -> EmbeddingKey:
        """A small image: the inner predictor's embed. A large one: remembered, nothing
        encoded yet (tiles are encoded on demand, or by ``embed_tiles``)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise PredictorError(f"expected an RGB uint8 (H, W, 3) image, got {image.shape}")
        h, w = image.shape[:2]
        if not self.is_tiled(h, w):
            return self.inner.embed(image, image_hash, cancel)
        check(cancel)
        digest = image_hash or array_hash(image)
        key = EmbeddingKey(digest, self.model_id)
        if key not in self._images:
            self._images.put(key, _BigImage(image, TileGrid(h, w, self.side, self.overlap),
                                            digest))
        return key

    def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        """Decode ``prompt``: in the inner predictor for a small image, in tiles stitched
        together for a large one."""
        big = self._images.get(key)
        if big is None:
            return self.inner.predict(key, prompt)
        if prompt.is_empty():
            raise PredictorError("empty prompt: give at least one point or a box")
        return self._predict_tiled(big, prompt)

    def segment_everything(self, image: EmbeddingKey | np.ndarray,
                           options: EverythingOptions = EverythingOptions(), *,
                           cancel: CancelToken | None = None,
                           progress: Progress | None = None) -> list[MaskProposal]:
        """The inner predictor's, on small images only (tiled proposals are not built)."""
        self._refuse_big(image, "segment everything")
        return self.inner.segment_everything(image, options, cancel=cancel, progress=progress)

    def find_all(self, image: EmbeddingKey | np.ndarray, query: FindQuery, *,
                 cancel: CancelToken | None = None,
                 progress: Progress | None = None) -> list[MaskProposal]:
        """The inner predictor's, on small images only (find all is not tiled)."""
        self._refuse_big(image, "find all")
        return self.inner.find_all(image, query, cancel=cancel, progress=progress)

    def close(self) -> None:
        self._images.clear()
        self._given.clear()
        self.inner.close()

    # -- tiles: for prefetch and ``maskloop embed`` -----------------------------------------

    def tiles(self, key: EmbeddingKey, near: tuple[float, float] | None = None) -> list[Tile]:
        """The tiles of an embedded large image (none for a small one, or in ``regions`` mode,
        where nothing is worth encoding ahead), nearest to ``near`` (x, y) first when given (the
        order to prefetch around the viewport)."""
        big = self._images.get(key)
        if big is None or self.regions:
            return []
        return big.grid.nearest_first(*near) if near is not None else big.grid.tiles()

    def tile_key(self, key: EmbeddingKey, tile: Tile) -> EmbeddingKey:
        """The inner predictor's cache key of ``tile`` of ``key``'s image."""
        return EmbeddingKey(f"{key.image_hash}-tile{tile.tag()}", self.model_id)

    def embed_tile(self, key: EmbeddingKey, tile: Tile,
                   cancel: CancelToken | None = None) -> EmbeddingKey:
        """Encode one tile (a no-op when the inner predictor has it cached)."""
        big = self._big(key)
        crop = np.ascontiguousarray(big.image[tile.y0:tile.y1, tile.x0:tile.x1])
        return self.inner.embed(crop, self.tile_key(key, tile).image_hash, cancel)

    def embed_tiles(self, image: np.ndarray, image_hash: str | None = None,
                    cancel: CancelToken | None = None, progress: Progress | None = None,
                    near: tuple[float, float] | None = None) -> EmbeddingKey:
        """``embed`` and then encode every tile of a large image (``maskloop embed``): tells
        ``progress(done, total, tile)``, stops between tiles on ``cancel`` keeping the tiles
        done (each is cached as it finishes)."""
        key = self.embed(image, image_hash, cancel)
        todo = self.tiles(key, near)
        for i, tile in enumerate(todo):
            check(cancel)
            if progress is not None:
                progress(i, len(todo), f"tile {tile.tag()}")
            self.embed_tile(key, tile, cancel)
        if progress is not None and todo:
            progress(len(todo), len(todo), "done")
        return key

    # -- internals -------------------------------------------------------------------------

    def _big(self, key: EmbeddingKey) -> _BigImage:
        big = self._images.get(key)
        if big is None:
            raise PredictorError(f"image {key.image_hash[:12]} is not a large embedded image")
        return big

    def _refuse_big(self, image: EmbeddingKey | np.ndarray, what: str) -> None:
        big = (image in self._images if isinstance(image, EmbeddingKey)
               else self.is_tiled(*image.shape[:2]))
        if big:
            raise PredictorError(f"{what} is not available on images over {self.cutover} px "
                                 "(tiled); crop the image or use a smaller one")

    def _predict_tiled(self, big: _BigImage, prompt: Prompt) -> TiledMaskResult:
        if self.regions:
            return self._predict_region(big, prompt)
        grid = big.grid
        prior = self._recognise(prompt.mask_input)
        if prompt.box is not None:
            b = prompt.box.normalized()
            seeds = grid.overlapping(b.x0, b.y0, b.x1, b.y1)[:self.max_tiles]
        else:
            newest = prompt.points[-1]
            seeds = [grid.owner(newest.x, newest.y)]
        first = seeds[0]
        first_prompt = self._tile_prompt(big, first, prompt, prior, {}, True)
        if first_prompt is None:
            raise PredictorError("the prompt lies in no tile of the image")
        (head,) = self._decode_tiles(big, [(first, first_prompt)])
        # SAM2's masks are its logits upscaled: they tell which candidates reach a side
        chains = spread.start_chains(grid, first, head, seeds[1:], self.max_tiles,
                                     quick_look=self._stretch)
        spread.spread(grid, chains,
                      lambda tile, done: self._tile_prompt(big, tile, prompt, prior, done, False),
                      lambda items: self._decode_tiles(big, items), self.max_tiles)
        best, *others = chains
        return self._result(big, first, best.decoded, {c.index: c.decoded for c in others})

    def _predict_region(self, big: _BigImage, prompt: Prompt) -> TiledMaskResult:
        """``prompt`` decoded in a window around what is known of the object, grown while the
        mask reaches past the window (``region.py``)."""
        prior = self._recognise(prompt.mask_input)
        if prior is None and prompt.mask_input is not None:
            # logits of unknown origin: no window's frame is known for them
            prompt = dataclasses.replace(prompt, mask_input=None)
        extent = region.prompt_extent(prompt, prior)
        if extent is None:
            raise PredictorError("empty prompt: give at least one point or a box")
        h, w = big.image.shape[:2]
        most = region.MAX_SIDE_FACTOR * self.side
        # a click alone: the person's view tells the scale (region.py)
        view = prompt.view if prompt.box is None and prior is None else None
        window: Tile | None = region.first_window(extent, view, self.side, most, h, w)
        last: Tile | None = None
        decoded: Decoded | None = None
        for _ in range(region.MAX_GROWTHS + 1):
            if window is None:
                break
            window_prompt = self._tile_prompt(big, window, prompt, prior, {}, True)
            if window_prompt is None:
                break
            if decoded is not None and last is not None:
                # grown: the last window's mask as the prompt's mask, unknown beyond it
                so_far = tile_logits_field(decoded.result.low_res_logits[decoded.index],
                                           last, self._stretch)
                window_prompt = dataclasses.replace(window_prompt, mask_input=resample(
                    so_far, window, self._stretch, self._unknown))
            self._embed_for(big, window)
            result = self.inner.predict(self.tile_key(self._key_of(big), window),
                                        window_prompt)
            decoded = Decoded(result, result.best, result.mask(result.best))
            last = window
            if not region.reaches_beyond(decoded.mask, window, h, w):
                break
            found = region.mask_extent(decoded.mask, window)
            grown = extent if found is None else region.union(extent, found)
            window = region.grown_window(window, grown, self.side, most, h, w)
        if decoded is None or last is None:
            raise PredictorError("the prompt lies outside the image")
        return self._result(big, last, {last: decoded})

    def _key_of(self, big: _BigImage) -> EmbeddingKey:
        return EmbeddingKey(big.image_hash, self.model_id)

    def _embed_for(self, big: _BigImage, tile: Tile) -> None:
        """Make sure the inner predictor has ``tile`` embedded (cached: a lookup)."""
        crop = np.ascontiguousarray(big.image[tile.y0:tile.y1, tile.x0:tile.x1])
        self.inner.embed(crop, self.tile_key(self._key_of(big), tile).image_hash)

    def _decode_tiles(self, big: _BigImage,
                      items: list[tuple[Tile, Prompt]]) -> list[MaskResult]:
        """Each (tile, prompt) decoded in its tile: all in one call of the inner predictor's
        ``predict_batch`` when it declares ``batched_decode``, there are several and it does
        not decode on a CPU, else one by one (on this 2-core CPU a batch was no faster, and
        SAM2 then keeps features for 8 images, ~128 MiB, instead of 2)."""
        image_key = self._key_of(big)
        for tile in dict.fromkeys(tile for tile, _ in items):
            self._embed_for(big, tile)
        keyed = [(self.tile_key(image_key, tile), p) for tile, p in items]
        batch = getattr(self.inner, "predict_batch", None)
        caps = self.inner.capabilities
        if len(keyed) > 1 and caps.batched_decode and caps.device != "cpu" and callable(batch):
            return list(batch(keyed))
        return [self.inner.predict(key, p) for key, p in keyed]

    def _recognise(self, mask_input: np.ndarray | None) -> Field | None:
        """The Field behind logits this predictor handed out (a refinement), else None."""
        if mask_input is None:
            return None
        flat = np.asarray(mask_input).reshape(-1)
        if flat.size != LOW_RES * LOW_RES:
            raise PredictorError(f"mask_input must be (1, {LOW_RES}, {LOW_RES}) logits")
        for _, given in reversed(list(self._given.items())):
            for i in range(given.logits.shape[0]):
                if np.array_equal(flat, given.logits[i].reshape(-1)):
                    return given.fields[i]
        return None

    def _tile_prompt(self, big: _BigImage, tile: Tile, prompt: Prompt, prior: Field | None,
                     decoded: dict[Tile, Decoded], is_first: bool) -> Prompt | None:
        """``prompt`` seen from ``tile``: its points inside the tile, its box clipped, the
        previous mask resampled; a neighbour also gets positive points where the mask so far
        lies deepest in it. None when nothing of the prompt reaches the tile."""
        points = [Point(p.x - tile.x0, p.y - tile.y0, p.positive)
                  for p in prompt.points if tile.contains(p.x, p.y)]
        box = None
        if prompt.box is not None:
            b = prompt.box.normalized()
            cx0, cy0 = max(b.x0, tile.x0), max(b.y0, tile.y0)
            cx1, cy1 = min(b.x1, tile.x1), min(b.y1, tile.y1)
            if cx1 > cx0 and cy1 > cy0:
                box = Box(cx0 - tile.x0, cy0 - tile.y0, cx1 - tile.x0, cy1 - tile.y0)
        if not is_first and box is None:
            carried = deepest_points(tile, decoded)
            if not carried:
                return None
            points = [p for p in points if not p.positive] + carried
        if not points and box is None:
            return None
        mask_input = None
        if prior is not None:
            mask_input = resample(prior, tile, self._stretch)
        elif is_first:
            mask_input = prompt.mask_input  # logits of unknown origin: the clicked tile's
        return Prompt(points=tuple(points), box=box, mask_input=mask_input,
                      multimask=prompt.multimask if is_first else False)

    def _result(self, big: _BigImage, first: Tile, decoded: dict[Tile, Decoded],
                others: dict[int, dict[Tile, Decoded]] | None = None) -> TiledMaskResult:
        """The first tile's candidates, each decoded in more tiles than the first replaced by
        its stitched mask: the best one's tiles are ``decoded``, another candidate's (by its
        index) in ``others``. Each stitched candidate's logits are its stitched field seen in
        the first tile's frame, and that field is what a prompt passing them back gets."""
        head = decoded[first]
        inner = head.result
        logits = np.array(inner.low_res_logits, dtype=np.float32)
        fields = [tile_logits_field(logits[i], first, self._stretch) for i in range(len(inner))]
        crops = [_tile_crop(inner, i, first) for i in range(len(inner))]
        chains = {head.index: decoded, **(others or {})}
        for index, chain in chains.items():
            if len(chain) > 1:
                stitched, x0, y0 = stitch(big.grid, chain, self._stretch)
                crops[index] = _made_crop(stitched > 0, x0, y0)
                fields[index] = downscaled(stitched, x0, y0)
                logits[index] = resample(fields[index], first, self._stretch)[0]
            else:
                crops[index] = _made_crop(chain[first].mask, first.x0, first.y0)
        self._given.put(id(logits), _Given(logits, fields))
        tiles = list(dict.fromkeys(tile for chain in chains.values() for tile in chain))
        h, w = big.image.shape[:2]
        return TiledMaskResult(crops, np.asarray(inner.scores, dtype=np.float32), logits,
                               (h, w), tiles)


def _tile_crop(result: MaskResult, index: int,
               tile: Tile) -> Callable[[], tuple[np.ndarray, int, int]]:
    return lambda: (result.mask(index), tile.x0, tile.y0)


def _made_crop(mask: np.ndarray, x0: int,
               y0: int) -> Callable[[], tuple[np.ndarray, int, int]]:
    return lambda: (mask, x0, y0)
