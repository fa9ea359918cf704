"""Spreading a click over the tiles its object continues into (``predictor.py``), for every
candidate of the clicked tile whose mask reaches one of the tile's inner sides.

Each such candidate has its own ``Chain``: the clicked tile's decode with that candidate
chosen, then the neighbours its mask continues into, decoded one after another (breadth
first, at most ``max_tiles`` tiles) with the prompt carried over from that chain's own masks
(``stitch.deepest_points``), so that stitching the chain (``stitch.stitch``) gives that
candidate across the tiles. The best candidate always has a chain (with a box, the other
tiles the box covers are in it even when the mask does not reach them); another one only
when its mask reaches an inner side: a candidate inside the clicked tile costs no decode.

The chains advance together, one tile each per round, and a round's prompts are decoded in
one call (``DecodeTiles``: the inner predictor's batch when it has one). Two chains that
want the same tile with the same prompt (a box's tiles; masks that agree) share one decode.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

from app.core.types import LOW_RES, MaskResult, Prompt
from app.predict.tiles.field import frame_scale
from app.predict.tiles.grid import Tile, TileGrid
from app.predict.tiles.stitch import Decoded

EDGE = 2  # a mask within this many pixels of a tile's inner side continues past it

PromptFor = Callable[[Tile, dict[Tile, Decoded]], Prompt | None]
"""A chain's prompt for a neighbour tile, given what the chain decoded (None: nothing of
the prompt reaches that tile)."""

DecodeTiles = Callable[[list[tuple[Tile, Prompt]]], list[MaskResult]]
"""Decode each (tile, prompt) in its tile: the results in the same order."""


@dataclass
class Chain:
    """One candidate of the clicked tile (``index``) and the tiles decoded for it, the
    clicked one first; ``queue``: the tiles it still continues into."""

    index: int
    decoded: dict[Tile, Decoded]
    queue: list[Tile] = field(default_factory=list)


def continues_in(grid: TileGrid, tile: Tile, mask: np.ndarray) -> set[Tile]:
    """The neighbours across the sides of ``tile`` that ``mask`` (the tile's) touches."""
    left, top, right, bottom = grid.inner_sides(tile)
    found: set[Tile] = set()
    if left and mask[:, :EDGE].any():
        rows = np.nonzero(mask[:, :EDGE].any(axis=1))[0]
        found |= grid.owners_of(np.full(rows.size, tile.x0 - 1.0), rows + tile.y0 + 0.5)
    if right and mask[:, -EDGE:].any():
        rows = np.nonzero(mask[:, -EDGE:].any(axis=1))[0]
        found |= grid.owners_of(np.full(rows.size, float(tile.x1)), rows + tile.y0 + 0.5)
    if top and mask[:EDGE].any():
        cols = np.nonzero(mask[:EDGE].any(axis=0))[0]
        found |= grid.owners_of(cols + tile.x0 + 0.5, np.full(cols.size, tile.y0 - 1.0))
    if bottom and mask[-EDGE:].any():
        cols = np.nonzero(mask[-EDGE:].any(axis=0))[0]
        found |= grid.owners_of(cols + tile.x0 + 0.5, np.full(cols.size, float(tile.y1)))
    found.discard(tile)
    return found


def logits_reach(grid: TileGrid, tile: Tile, logits: np.ndarray) -> bool:
    """Whether ``tile``'s low-res ``logits`` (SAM2's: a stretched frame, whose mask is their
    bilinear upscale > 0) are positive near an inner side; when not, their mask cannot come
    within ``EDGE`` pixels of one, and is not worth making to look."""
    left, top, right, bottom = grid.inner_sides(tile)
    sx, sy = frame_scale(tile, True)
    bx, by = int(np.ceil(EDGE / sx)) + 1, int(np.ceil(EDGE / sy)) + 1
    low = np.asarray(logits).reshape(LOW_RES, LOW_RES) > 0
    return bool((left and low[:, :bx].any()) or (right and low[:, -bx:].any())
                or (top and low[:by].any()) or (bottom and low[-by:].any()))


def start_chains(grid: TileGrid, first: Tile, head: MaskResult, others: list[Tile],
                 max_tiles: int, quick_look: bool = False) -> list[Chain]:
    """The chains of ``head`` (the clicked tile's decode), the best candidate's first: it
    goes on into ``others`` (a box's other tiles) and the tiles its mask continues into; any
    other candidate too, but only when its mask reaches an inner side of ``first``.
    ``quick_look``: the logits tell where the masks are (``logits_reach``), so a candidate
    whose logits stay off the inner sides is passed by without making its mask."""
    best = head.best
    chains = []
    for index in [best] + [i for i in range(len(head)) if i != best]:
        if index != best and (max_tiles < 2 or quick_look and not logits_reach(
                grid, first, head.low_res_logits[index])):
            continue
        mask = head.mask(index)
        onward = continues_in(grid, first, mask) if max_tiles > 1 else set()
        if index == best or onward:
            queue = list(others) + [t for t in onward if t not in others]
            chains.append(Chain(index, {first: Decoded(head, index, mask)}, queue))
    return chains


def spread(grid: TileGrid, chains: list[Chain], prompt_for: PromptFor,
           decode: DecodeTiles, max_tiles: int) -> None:
    """Decode each chain's tiles in rounds until none goes on (module doc): a decoded tile's
    neighbours that its mask reaches join the chain's queue."""
    made: dict[Hashable, Decoded] = {}
    while True:
        wanted = [(chain, step) for chain in chains
                  if (step := _next(chain, prompt_for, max_tiles)) is not None]
        if not wanted:
            return
        keys = [_same_prompt(tile, prompt) for _, (tile, prompt) in wanted]
        todo = {key: step for key, (_, step) in zip(keys, wanted, strict=True)
                if key not in made}
        for key, result in zip(todo, decode(list(todo.values())), strict=True):
            made[key] = Decoded(result, result.best, result.mask(result.best))
        for (chain, (tile, _)), key in zip(wanted, keys, strict=True):
            decoded = chain.decoded[tile] = made[key]
            for nxt in continues_in(grid, tile, decoded.mask):
                if nxt not in chain.decoded and nxt not in chain.queue:
                    chain.queue.append(nxt)


def _next(chain: Chain, prompt_for: PromptFor,
          max_tiles: int) -> tuple[Tile, Prompt] | None:
    """The chain's next tile to decode and its prompt; None when the chain is done."""
    while chain.queue and len(chain.decoded) < max_tiles:
        tile = chain.queue.pop(0)
        if tile in chain.decoded:
            continue
        prompt = prompt_for(tile, chain.decoded)
        if prompt is not None:
            return tile, prompt
    return None


def _same_prompt(tile: Tile, prompt: Prompt) -> Hashable:
    """Equal for the same prompt in the same tile (``Prompt`` leaves its mask out of ==)."""
    mask = None if prompt.mask_input is None else np.asarray(prompt.mask_input).tobytes()
    return tile, prompt, mask
