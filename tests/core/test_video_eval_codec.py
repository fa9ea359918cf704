"""``round_trip``: a shot through a real H.264 encoder (PyAV) and back through VideoSequence."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.core.video_eval import Codec, round_trip


def _moving_square(n: int, h: int, w: int) -> list[np.ndarray]:
    """Smooth noise with a bright square moving 6 px right per frame (each frame distinct)."""
    rng = np.random.default_rng(5)
    noise = rng.normal(0, 1, (h // 6 + 2, w // 6 + 2, 3)).astype(np.float32)
    ground = np.clip(110 + 40 * cv2.resize(noise, (w, h)), 0, 255).astype(np.uint8)
    frames = []
    for t in range(n):
        image = ground.copy()
        image[20:44, 10 + 6 * t:34 + 6 * t] = (230, 200, 40)
        frames.append(image)
    return frames


@pytest.mark.parametrize(("h", "w"), [(72, 96), (75, 101)])  # odd sides are padded, cropped
def test_round_trip_changes_pixels_a_little_and_keeps_frames(h: int, w: int) -> None:
    frames = _moving_square(10, h, w)
    decoded = round_trip(frames, Codec("h264", crf=23))
    assert len(decoded) == len(frames)
    assert all(d.shape == (h, w, 3) and d.dtype == np.uint8 for d in decoded)
    for i, d in enumerate(decoded):
        errors = [float(np.abs(d.astype(int) - f.astype(int)).mean()) for f in frames]
        assert int(np.argmin(errors)) == i  # order kept: each is nearest its own source
        assert 0.0 < errors[i] < 6.0  # lossy, but only a little
        assert cv2.PSNR(frames[i], d) > 28.0


def test_round_trip_quality_follows_crf() -> None:
    frames = _moving_square(6, 72, 96)
    fine = round_trip(frames, Codec("h264", crf=10))
    coarse = round_trip(frames, Codec("h264", crf=40))
    psnr = [np.mean([cv2.PSNR(f, d) for f, d in zip(frames, out, strict=True)])
            for out in (fine, coarse)]
    assert psnr[0] > psnr[1] + 3.0


def test_codec_arguments_and_empty_shot() -> None:
    assert round_trip([], Codec()) == []
    assert Codec("h264", 23).label == "h264 crf 23"
    with pytest.raises(ValueError, match="unknown codec"):
        Codec("nothing")
    with pytest.raises(ValueError, match="crf"):
        Codec("h264", 60)
    with pytest.raises(ValueError, match="differ in size"):
        round_trip([np.zeros((16, 16, 3), np.uint8), np.zeros((16, 18, 3), np.uint8)], Codec())
