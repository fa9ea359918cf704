"""SAM2's video path (app/predict/sam2/video.py) on a real tiny SAM2.1 with random weights.

The masks of a random model are noise; what is checked is the plumbing: prompts and masks
as anchors, forward and backward runs, two tracks, cancel keeping the finished frames,
re-propagation from a corrected frame, embeddings reused from the cache. The model is built
at a 256-pixel input (``++model.image_size=256``: the same modules, 16 x 16 feature maps) so
that memory attention costs seconds, not minutes, on a CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from video_shots import FRAMES, H, W, shot, small_sam2  # noqa: E402

from app.core.images import array_hash
from app.core.jobs import CancelToken
from app.core.sequences import ArraySequence
from app.core.types import Box, Point, Prompt
from app.predict.base import PredictorError
from app.predict.cache.store import EmbeddingCache
from app.predict.propagation import (
    MaskOrigin,
    PropagationRequest,
    TrackMasks,
    propagator_for,
    record,
    repropagate,
)
from app.predict.sam2.predictor import SAM2Predictor
from app.predict.sam2.video import SAM2Propagator, SAM2VideoSession

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def predictor() -> SAM2Predictor:
    """The predictor with every frame of the shot embedded once (the cache is shared by the
    sessions of this module: the video path reads it)."""
    pred = SAM2Predictor.from_model(small_sam2(), "sam2.1-tiny-256-random",
                                    EmbeddingCache(disk_dir=None), runtime="torch")
    seq, _ = shot()
    pred.embed_batch([seq.frame(i) for i in range(FRAMES)])
    return pred


@pytest.fixture()
def session(predictor: SAM2Predictor) -> SAM2VideoSession:
    seq, _ = shot()
    return SAM2Propagator(predictor).open(seq)


def test_forward_and_backward_from_a_prompt(session: SAM2VideoSession) -> None:
    first = session.add_prompt(2, 1, Prompt(points=(Point(30, 24),)))
    assert first.shape == (H, W) and first.dtype == bool
    seen: list[tuple[int, int]] = []
    fwd = session.propagate(PropagationRequest(2),
                            progress=lambda d, t, _m: seen.append((d, t))).wait()
    assert fwd.stopped == "end" and fwd.frames_done == [2, 3, 4]
    assert np.array_equal(fwd.results[0].masks[1], first)  # the anchor itself
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)
    back = session.propagate(PropagationRequest(2, direction=-1)).wait()
    assert back.frames_done == [2, 1, 0]
    for r in fwd.results + back.results:
        assert set(r.masks) == {1} and r.masks[1].shape == (H, W)
        assert 0.0 <= r.scores[1] <= 1.0
    # every frame's features came from the embedding cache the image path filled
    assert session.encoded == 0 and session.from_cache >= FRAMES


def test_two_tracks_are_independent(predictor: SAM2Predictor) -> None:
    seq, gts = shot()
    both = SAM2Propagator(predictor).open(seq)
    both.add_prompt(0, 1, Prompt(box=Box(16, 10, 44, 38)))
    kept = both.add_mask(0, 2, gts[0])
    # a mask anchor comes back as the decoder sees it: the same shape, resampled
    assert (kept == gts[0]).mean() > 0.95
    joint = both.propagate(PropagationRequest(0, count=2)).wait()
    assert joint.frames_done == [0, 1, 2]
    assert all(set(r.masks) == {1, 2} for r in joint.results)
    alone = SAM2Propagator(predictor).open(seq)
    alone.add_mask(0, 2, gts[0])
    single = alone.propagate(PropagationRequest(0, count=2)).wait()
    for a, b in zip(joint.results, single.results, strict=True):
        assert np.array_equal(a.masks[2], b.masks[2])
    # only the asked tracks run
    only = both.propagate(PropagationRequest(0, count=1, tracks=(1,))).wait()
    assert all(set(r.masks) == {1} for r in only.results)


def test_cancel_keeps_the_finished_frames(session: SAM2VideoSession) -> None:
    session.add_prompt(0, 7, Prompt(points=(Point(30, 24),)))
    store = TrackMasks()
    token = CancelToken()

    def sink(result) -> None:  # type: ignore[no-untyped-def]
        store.apply(result)
        if result.frame == 2:
            token.cancel()

    run = session.propagate(PropagationRequest(0), cancel=token, sink=sink).wait()
    assert run.stopped == "cancelled"
    assert run.frames_done == [0, 1, 2]
    assert store.frames(7) == [0, 1, 2]
    # a cancel that comes while a frame is being read and encoded (``Cancelled`` from the
    # encoder's steps) ends the run the same way, the finished frames kept
    seq, gts = shot()
    token2 = CancelToken()

    class CancelOnRead:
        def __len__(self) -> int:
            return len(seq)

        def frame(self, index: int) -> np.ndarray:
            if index == 1:
                token2.cancel()
            return seq.frame(index)

    cold = SAM2Propagator(predictor_without_cache(session)).open(CancelOnRead())
    cold.add_mask(0, 1, gts[0])
    run2 = cold.propagate(PropagationRequest(0), cancel=token2).wait()
    assert run2.stopped == "cancelled" and run2.frames_done == [0]
    assert cold.encoded == 1  # frame 0 only: frame 1's encode stopped at its first step


def predictor_without_cache(session: SAM2VideoSession) -> SAM2Predictor:
    """The session's model behind a predictor with an empty cache."""
    return SAM2Predictor.from_model(session.model, "sam2.1-tiny-256-random-cold",
                                    EmbeddingCache(disk_dir=None), runtime="torch")


def test_repropagation_replaces_only_propagated_frames(session: SAM2VideoSession) -> None:
    _, gts = shot()
    store = TrackMasks()
    store.set_anchor(0, 1, session.add_mask(0, 1, gts[0]))
    # a frame the person corrected earlier, further on
    late = np.zeros((H, W), bool)
    late[5:15, 5:15] = True
    store.set_anchor(4, 1, session.add_mask(4, 1, late))
    first = session.propagate(PropagationRequest(0, stop_at_anchors=False),
                              sink=store.apply).wait()
    assert first.frames_done == [0, 1, 2, 3, 4]
    assert store.get(4, 1).origin == MaskOrigin.ANCHOR  # type: ignore[union-attr]
    assert np.array_equal(store.get(4, 1).mask, late)  # type: ignore[union-attr]
    before = {f: store.get(f, 1).mask.copy() for f in range(5)}  # type: ignore[union-attr]
    # correct frame 2: it becomes an anchor, frames 3 (up to the next anchor) are redone
    fix = np.zeros((H, W), bool)
    fix[20:40, 30:60] = True
    run = repropagate(session, store, 2, 1, mask=fix).wait()
    assert run.frames_done == [2, 3]  # stops before the anchor on frame 4
    assert store.get(2, 1).origin == MaskOrigin.ANCHOR  # type: ignore[union-attr]
    assert store.get(3, 1).origin == MaskOrigin.PROPAGATED  # type: ignore[union-attr]
    for f in (0, 1, 4):
        assert np.array_equal(store.get(f, 1).mask, before[f])  # type: ignore[union-attr]
    assert store.frames(1, MaskOrigin.ANCHOR) == [0, 2, 4]
    assert record(store, run.results) == 1  # frame 3 again; the anchor on 2 is not written


def test_errors(session: SAM2VideoSession) -> None:
    with pytest.raises(PredictorError, match="no anchor"):
        session.propagate(PropagationRequest(0, tracks=(3,)))
    with pytest.raises(PredictorError, match="empty prompt"):
        session.add_prompt(0, 1, Prompt())
    with pytest.raises(PredictorError, match="mask is"):
        session.add_mask(0, 1, np.zeros((10, 10), bool))
    with pytest.raises(IndexError):
        session.add_mask(FRAMES, 1, np.zeros((H, W), bool))
    with pytest.raises(IndexError):
        PropagationRequest(FRAMES).frames(FRAMES)


def test_propagator_for_the_sam2_predictor(predictor: SAM2Predictor) -> None:
    assert predictor.capabilities.video
    prop = propagator_for(predictor)
    assert isinstance(prop, SAM2Propagator) and prop.capabilities.video


def test_cache_is_filled_and_features_match_the_official_encoder(
        predictor: SAM2Predictor) -> None:
    """A frame never embedded is encoded once and cached; the features the video path
    builds from it equal ``forward_image``'s (fresh), and from the float16 cache to its
    rounding."""
    rng = np.random.default_rng(9)
    frame = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    cold = predictor_without_cache_of(predictor)
    seq = ArraySequence([frame, frame.copy()])
    s1 = SAM2Propagator(cold).open(seq)
    fresh = s1.features(0)
    assert s1.encoded == 1 and cold.cache.contains(
        cold_key(cold, frame))
    s2 = SAM2Propagator(cold).open(seq)
    cached = s2.features(1)  # the same pixels: the same cache entry
    assert s2.encoded == 0 and s2.from_cache == 1
    from app.predict.sam2 import reference as ref

    with torch.inference_mode():
        official = cold.model.forward_image(
            ref.preprocess(frame, cold.model.image_size, torch.device("cpu")))
    for ours, theirs in zip(fresh["backbone_fpn"], official["backbone_fpn"][-3:],
                            strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    for ours, theirs in zip(fresh["vision_pos_enc"], official["vision_pos_enc"][-3:],
                            strict=True):
        torch.testing.assert_close(ours, theirs)
    for ours, theirs in zip(cached["backbone_fpn"], official["backbone_fpn"][-3:],
                            strict=True):
        torch.testing.assert_close(ours, theirs, rtol=2e-2, atol=2e-2)


def predictor_without_cache_of(predictor: SAM2Predictor) -> SAM2Predictor:
    return SAM2Predictor.from_model(predictor.model, "sam2.1-tiny-256-random-fresh",
                                    EmbeddingCache(disk_dir=None), runtime="torch")


def cold_key(pred: SAM2Predictor, frame: np.ndarray):  # type: ignore[no-untyped-def]
    from app.core.types import EmbeddingKey

    return EmbeddingKey(array_hash(frame), pred.model_id)
