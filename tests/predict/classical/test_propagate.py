"""Classical mask propagation (DIS optical flow + GrabCut) on synthetic sequences."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.core.jobs import CancelToken
from app.core.sequences import ArraySequence
from app.core.types import Box, Prompt
from app.core.video_metrics import jaccard
from app.predict.base import PredictorError
from app.predict.classical.predictor import ClassicalPredictor
from app.predict.classical.propagate import (
    ClassicalPropagator,
    PropagationParams,
    propagate,
    warp_mask,
)
from app.predict.propagation import (
    FrameResult,
    MaskOrigin,
    PropagationRequest,
    TrackMasks,
    propagator_for,
    record,
    repropagate,
)

H, W = 120, 160


def _texture(rng: np.random.Generator, base: tuple[int, int, int], amp: float,
             cell: int, size: tuple[int, int] = (H + 60, W + 60)) -> np.ndarray:
    h, w = size
    noise = rng.normal(0, 1, (h // cell + 2, w // cell + 2, 3)).astype(np.float32)
    noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.array(base, np.float32) + amp * noise, 0, 255).astype(np.uint8)


def disc_sequence(n: int = 8, step: tuple[int, int] = (4, 2), radius: int = 24,
                  ) -> tuple[ArraySequence, list[np.ndarray]]:
    """A textured disc moving over a (slowly panning) textured background."""
    rng = np.random.default_rng(11)
    background = _texture(rng, (70, 140, 90), 35, 8)
    skin = _texture(rng, (200, 120, 60), 30, 4)
    frames, masks = [], []
    for t in range(n):
        bx, by = t, t // 2  # the camera pans slowly
        frame = background[by:by + H, bx:bx + W].copy()
        cx, cy = 50 + step[0] * t, 55 + step[1] * t
        mask = np.zeros((H, W), np.uint8)
        cv2.circle(mask, (cx, cy), radius, 1, -1)
        m = mask > 0
        # the disc's own texture moves with it
        patch = np.roll(skin, (step[1] * t, step[0] * t), axis=(0, 1))[:H, :W]
        frame[m] = patch[m]
        frames.append(frame)
        masks.append(m)
    return ArraySequence(frames, fps=25), masks


def test_warp_mask_follows_a_uniform_flow() -> None:
    mask = np.zeros((40, 40), bool)
    mask[10:20, 10:20] = True
    flow = np.zeros((40, 40, 2), np.float32)
    flow[..., 0] = -3.0  # each later pixel came from 3 px to its left
    assert np.array_equal(warp_mask(mask, flow), np.roll(mask, 3, axis=1))


def test_disc_is_tracked_forward_and_backward() -> None:
    seq, gts = disc_sequence()
    seen: list[tuple[int, int]] = []
    fwd = propagate(seq, 0, gts[0], progress=lambda d, t, _m: seen.append((d, t)))
    assert fwd.stopped == "end" and fwd.last == 7
    assert sorted(fwd.masks) == list(range(8))
    js = [jaccard(fwd.masks[i], gts[i]) for i in range(1, 8)]
    assert min(js) > 0.9, js
    assert seen[0] == (0, 7) and seen[-1] == (7, 7)
    back = propagate(seq, 7, gts[7], direction=-1, count=4)
    assert sorted(back.masks) == [3, 4, 5, 6, 7] and back.stopped == "end"
    assert min(jaccard(back.masks[i], gts[i]) for i in range(3, 7)) > 0.9


def test_cancel_keeps_the_finished_frames() -> None:
    seq, gts = disc_sequence()
    token = CancelToken()

    def progress(done: int, _total: int, _message: str) -> None:
        if done == 3:
            token.cancel()

    result = propagate(seq, 0, gts[0], progress=progress, cancel=token)
    assert result.stopped == "cancelled"
    assert sorted(result.masks) == [0, 1, 2, 3] and result.last == 3
    assert all(jaccard(result.masks[i], gts[i]) > 0.9 for i in (1, 2, 3))


def test_lost_object_stops_propagation() -> None:
    seq, gts = disc_sequence()
    frames = [seq.frame(i) for i in range(4)]
    empty = frames[3].copy()
    # the disc leaves: frames 4.. show only background
    rng = np.random.default_rng(2)
    plain = _texture(rng, (70, 140, 90), 35, 8)[:H, :W]
    frames += [plain] * 4
    del empty
    result = propagate(ArraySequence(frames), 0, gts[0],
                       params=PropagationParams(lost_fraction=0.3))
    assert result.stopped in ("lost", "end")
    if result.stopped == "lost":
        assert result.lost_at is not None and result.lost_at >= 4
        assert result.lost_at not in result.masks
    assert all(i in result.masks for i in range(4))


def test_bad_arguments() -> None:
    seq, gts = disc_sequence(n=2)
    with pytest.raises(ValueError, match="direction"):
        propagate(seq, 0, gts[0], direction=2)
    with pytest.raises(IndexError):
        propagate(seq, 5, gts[0])
    with pytest.raises(ValueError, match="mask is"):
        propagate(seq, 0, gts[0][:10])
    # count 0 returns the start only
    assert sorted(propagate(seq, 0, gts[0], count=0).masks) == [0]


# -- the Propagator interface (app/predict/propagation.py) -----------------------------------

def two_disc_sequence(n: int = 8) -> tuple[ArraySequence, list[np.ndarray], list[np.ndarray]]:
    """The moving disc of ``disc_sequence`` and a second, smaller one moving the other way."""
    seq, first = disc_sequence(n)
    rng = np.random.default_rng(5)
    skin = _texture(rng, (60, 80, 200), 30, 4)
    frames, second = [], []
    for t in range(n):
        frame = seq.frame(t).copy()
        mask = np.zeros((H, W), np.uint8)
        cv2.circle(mask, (125 - 3 * t, 85), 14, 1, -1)
        m = (mask > 0) & ~first[t]
        patch = np.roll(skin, (0, -3 * t), axis=(0, 1))[:H, :W]
        frame[m] = patch[m]
        frames.append(frame)
        second.append(m)
    return ArraySequence(frames, fps=25), first, second


def test_session_follows_two_tracks_like_the_single_track_function() -> None:
    seq, a, b = two_disc_sequence()
    session = ClassicalPropagator().open(seq)
    session.add_mask(0, 1, a[0])
    session.add_mask(0, 2, b[0])
    run = session.propagate(PropagationRequest(0)).wait()
    assert run.stopped == "end" and run.frames_done == list(range(8))
    alone = propagate(seq, 0, a[0])
    for r in run.results:
        assert set(r.masks) == {1, 2}
        # the flow is shared, each track steps on its own: the same masks as alone
        assert np.array_equal(r.masks[1], alone.masks[r.frame])
        assert jaccard(r.masks[2], b[r.frame]) > 0.8, r.frame
    back = session.propagate(PropagationRequest(7, direction=-1, count=3, tracks=(2,))).wait()
    assert back.frames_done == [7, 6, 5, 4]  # frame 7's mask: the one the last run left
    assert all(set(r.masks) == {2} for r in back.results)


def test_session_cancel_keeps_the_finished_frames() -> None:
    seq, gts = disc_sequence()
    session = ClassicalPropagator().open(seq)
    session.add_mask(0, 1, gts[0])
    token = CancelToken()
    store = TrackMasks()

    def sink(result: FrameResult) -> None:
        store.apply(result)
        if result.frame == 3:
            token.cancel()

    run = session.propagate(PropagationRequest(0), cancel=token, sink=sink).wait()
    assert run.stopped == "cancelled" and run.frames_done == [0, 1, 2, 3]
    assert store.frames(1) == [0, 1, 2, 3]
    assert all(jaccard(store.get(f, 1).mask, gts[f]) > 0.9 for f in (1, 2, 3))  # type: ignore[union-attr]


def test_session_lost_track_ends_and_others_go_on() -> None:
    seq, a, b = two_disc_sequence(6)
    only, _ = disc_sequence(6)  # the same shot without the second disc
    frames = [seq.frame(i) if i < 3 else only.frame(i) for i in range(6)]  # it goes at 3
    session = ClassicalPropagator(params=PropagationParams(lost_fraction=0.5)).open(
        ArraySequence(frames))
    session.add_mask(0, 1, a[0])
    session.add_mask(0, 2, b[0])
    run = session.propagate(PropagationRequest(0)).wait()
    assert run.stopped == "end" and run.frames_done == list(range(6))
    assert [r.frame for r in run.results if r.lost] == [3]
    assert run.results[3].lost == (2,)
    assert [sorted(r.masks) for r in run.results] == [[1, 2]] * 3 + [[1]] * 3
    # when every track is lost the run ends early, "lost"
    session.remove_track(1)
    alone = session.propagate(PropagationRequest(0)).wait()
    assert alone.stopped == "lost" and alone.frames_done == [0, 1, 2, 3]


def test_repropagation_from_a_corrected_frame() -> None:
    seq, gts = disc_sequence()
    session = ClassicalPropagator().open(seq)
    store = TrackMasks()
    store.set_anchor(0, 1, session.add_mask(0, 1, gts[0]))
    store.set_anchor(6, 1, session.add_mask(6, 1, gts[6]))
    record(store, session.propagate(PropagationRequest(0, stop_at_anchors=False)).wait().results)
    assert store.frames(1) == list(range(8))
    assert store.frames(1, MaskOrigin.ANCHOR) == [0, 6]
    before = {f: store.get(f, 1).mask.copy() for f in range(8)}  # type: ignore[union-attr]
    # the person corrects frame 3 (here: a smaller disc); frames 4 and 5 follow it, the
    # anchor on 6 and everything before 3 stay
    fix = np.zeros((H, W), np.uint8)
    cv2.circle(fix, (62, 61), 16, 1, -1)
    run = repropagate(session, store, 3, 1, mask=fix > 0).wait()
    assert run.frames_done == [3, 4, 5]
    assert store.frames(1, MaskOrigin.ANCHOR) == [0, 3, 6]
    for f in (0, 1, 2, 6, 7):
        assert np.array_equal(store.get(f, 1).mask, before[f])  # type: ignore[union-attr]
    for f in (4, 5):
        entry = store.get(f, 1)
        assert entry is not None and entry.origin == MaskOrigin.PROPAGATED
        assert entry.mask.sum() < before[f].sum()  # it follows the smaller correction


def test_session_prompt_and_errors() -> None:
    seq, gts = disc_sequence(4)
    prop = propagator_for(ClassicalPredictor())
    assert isinstance(prop, ClassicalPropagator) and prop.capabilities.video
    session = prop.open(seq)
    mask = session.add_prompt(0, 1, Prompt(box=Box(20, 25, 80, 85)))
    assert jaccard(mask, gts[0]) > 0.7
    assert session.anchors() == {1: {0}}
    with pytest.raises(PredictorError, match="no mask on frame 2"):
        session.propagate(PropagationRequest(2))
    with pytest.raises(PredictorError, match="no anchor"):
        session.propagate(PropagationRequest(0, tracks=(9,)))
    with pytest.raises(ValueError, match="mask is"):
        session.add_mask(0, 1, gts[0][:10])
    with pytest.raises(ValueError, match="direction"):
        session.propagate(PropagationRequest(0, direction=0))
    session.remove_track(1)
    assert session.anchors() == {}
