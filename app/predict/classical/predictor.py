"""A predictor that needs no model: OpenCV GrabCut seeded by the clicks, the box and the
previous mask. The default when no SAM2 checkpoint is installed.

How a prompt becomes a GrabCut seed (on a copy downscaled to ``GrabCutParams.max_side``):
- a box: probable foreground inside, definite background outside;
- clicks alone: probable background everywhere, probable foreground in a disc around each
  positive click (``first_disc`` of the longest side; on the GrabCut benchmark this beat a
  watershed basin grown from the click: mIoU@1 0.77 against 0.69);
- a previous mask (``Prompt.mask_input``, SAM-style 256x256 logits of the padded square
  frame, as SAM2 gives them): definite far from its boundary, except in a zone around the
  newest click whose size follows the click's depth inside its error region; there the
  watershed basin of the newest click (flooded against the other clicks, the mask's core,
  the image border) takes the click's label, the rest of the zone and the band along the
  boundary are probable. A click thus corrects its error region and leaves the rest alone.
  NaN logits mean "unknown here" (a window grown past the one the mask was made in, see
  ``app/predict/tiles/region.py``): nothing there is definite, the watershed decides what is
  probable, and GrabCut what the object is;
- positive clicks: discs of definite foreground; negative clicks: discs of definite background;
- a large uniform area reaching the border (a letterbox, a mosaic's margins; ``fill.py``) without
  a positive click in it: definite background, and GrabCut's crop ends at the content there.
GrabCut runs on a crop around the undecided pixels; the result keeps the components connected
to the positive clicks, small holes without a negative click are filled, and it is upscaled
through a smoothed field.

Candidates (multimask): the full GrabCut result, the result after one iteration (closer to
the seed) and a morphologically smoothed one. Score (``edge_score``): how well the boundary
follows image edges, half the mean gradient on the boundary relative to the image's strong
edges and half the colour contrast across it, in [0, 1]. It ranks candidates; it is not a
calibrated IoU. Low-res logits are the signed distance to the boundary in 256-frame pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from app.core.jobs import CancelToken, Progress, check
from app.core.lru import BoundedCache
from app.core.types import EmbeddingKey, MaskProposal, MaskResult, Prompt
from app.predict.base import (
    Capabilities,
    EverythingOptions,
    FindQuery,
    PredictorError,
    SourceKind,
)
from app.predict.classical.fill import fill_to_ignore
from app.predict.classical.ops import (
    GrabCutParams,
    PreparedImage,
    build_seed,
    content_bounds,
    edge_score,
    fill_small_holes,
    image_key_hash,
    keep_connected,
    mask_to_logits,
    pixel_of,
    prepare_image,
    run_grabcut,
    smooth_mask,
    upscale_mask,
)

MODEL_ID = "classical-grabcut"


class ClassicalPredictor:
    """GrabCut behind the Predictor interface; ``embed`` caches the prepared images (LRU)."""

    def __init__(self, params: GrabCutParams | None = None, cache_size: int = 8) -> None:
        self.params = params or GrabCutParams()
        self._cache = BoundedCache[EmbeddingKey, PreparedImage](max(1, cache_size))

    @property
    def model_id(self) -> str:
        return MODEL_ID

    @property
    def description(self) -> str:
        return "Classical GrabCut (no model installed)"

    capabilities = Capabilities(SourceKind.CLASSICAL, "cpu", exemplar_prompts=True,
                                video=True)

    # ------------------------------------------------------------ embedding

    def embed(
        self,
        image: np.ndarray,
        image_hash: str | None = None,
        cancel: CancelToken | None = None,
    ) -> EmbeddingKey:
        """Downscale the image and compute its gradient/colours, cached by (hash, model)."""
        check(cancel)
        key = EmbeddingKey(image_hash or image_key_hash(image), MODEL_ID)
        if self._cache.get(key) is not None:  # now the most recent
            return key
        prepared = prepare_image(image, self.params.max_side)
        check(cancel)
        self._cache.put(key, prepared)
        return key

    def _prepared(self, key: EmbeddingKey) -> PreparedImage:
        prepared = self._cache.get(key)
        if prepared is None:
            raise PredictorError(
                f"image {key.image_hash[:12]} is not embedded for {key.model_id}; call embed first"
            )
        return prepared

    # ------------------------------------------------------------ prediction

    def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        """Segment with GrabCut from ``prompt``; 3 candidates when ``prompt.multimask``."""
        prep = self._prepared(key)
        h, w = prep.image.shape[:2]
        if prompt.is_empty() and prompt.mask_input is None:
            return self._result(prep, [np.zeros((h, w), dtype=bool)], [0.0])
        seed = build_seed(prep, prompt, self.params)
        pixels = [(pixel_of(p, prep.scale, h, w), p.positive) for p in prompt.points]
        # the result keeps what is connected to a positive click (to the sure part of a
        # previous mask when there is no positive click; the largest component when neither)
        sure = np.zeros((h, w), dtype=bool)
        for (col, row), positive in pixels:
            sure[row, col] |= positive
        if not sure.any():
            sure = seed == cv2.GC_FGD
        # uniform fill (a letterbox, a mosaic's margins) is the image's edge, unless clicked
        ignored = fill_to_ignore(prep.fill, sure)
        bounds = None
        if ignored.any():
            seed[ignored] = cv2.GC_BGD
            bounds = content_bounds(ignored, sure)
        early, full = run_grabcut(prep, seed, self.params, bounds)
        neg = [xy for xy, positive in pixels if not positive]
        hole_area = max(4, int(0.002 * h * w))

        def clean(mask: np.ndarray) -> np.ndarray:
            return fill_small_holes(keep_connected(mask, sure), hole_area, neg)

        main = clean(full)
        if not prompt.multimask:
            return self._result(prep, [main], [edge_score(prep, main)])
        radius = max(1, round(0.006 * max(h, w)))
        candidates = [main, clean(early), clean(smooth_mask(full, radius))]
        return self._result(prep, candidates, [edge_score(prep, m) for m in candidates])

    def _result(self, prep: PreparedImage, masks: list[np.ndarray],
                scores: list[float]) -> MaskResult:
        big = np.stack([upscale_mask(m, prep.size) for m in masks])
        logits = np.stack([mask_to_logits(m) for m in masks])
        return MaskResult(big, np.asarray(scores, dtype=np.float32), logits)

    # ------------------------------------------------------------ everything

    def segment_everything(self, image: EmbeddingKey | np.ndarray,
                           options: EverythingOptions = EverythingOptions(), *,
                           cancel: CancelToken | None = None,
                           progress: Progress | None = None) -> list[MaskProposal]:
        """Region proposals from merging watershed superpixels (see ``everything.py``)."""
        from app.predict.classical.everything import propose_regions

        key = image if isinstance(image, EmbeddingKey) else self.embed(image, cancel=cancel)
        return propose_regions(
            self._prepared(key),
            options,
            cancel=cancel,
            progress=progress,
        )

    def find_all(self, image: EmbeddingKey | np.ndarray, query: FindQuery, *,
                 cancel: CancelToken | None = None,
                 progress: Progress | None = None) -> list[MaskProposal]:
        """Objects like the query's exemplars: template matching over scales seeds GrabCut
        (see ``findall.py``); no text."""
        from app.predict.classical.findall import PreparedFor, find_like

        query.check_supported(self.capabilities, "the classical backend")
        key = image if isinstance(image, EmbeddingKey) else self.embed(image, cancel=cancel)
        prep = self._prepared(key)
        return find_like(prep, query, PreparedFor(prep, self.params.max_side), self.params,
                         cancel=cancel, progress=progress)

    def close(self) -> None:
        self._cache.clear()


__all__ = ["MODEL_ID", "ClassicalPredictor"]
