"""Classical mask propagation (DIS optical flow + GrabCut) on synthetic sequences."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.core.jobs import CancelToken
from app.core.sequences import ArraySequence
from app.core.video_metrics import jaccard
from app.predict.classical.propagate import PropagationParams, propagate, warp_mask

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
