"""FramePrefetch: the next frames of a run decoded on one background thread, bounded, and
the same pixels as reading the sequence directly (a real H.264 video with B-frames)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from test_sequences import _codec, make_video

from app.core.frame_prefetch import FramePrefetch
from app.core.sequences import ArraySequence, open_sequence


class Recording:
    """A sequence of 20 small frames that notes which frames were read and on which thread."""

    def __init__(self, n: int = 20) -> None:
        self.frames = [np.full((4, 6, 3), i, np.uint8) for i in range(n)]
        self.reads: list[tuple[int, str]] = []
        self.name = "recording"

    def __len__(self) -> int:
        return len(self.frames)

    def frame(self, index: int) -> np.ndarray:
        self.reads.append((index, threading.current_thread().name))
        return self.frames[index]


@pytest.mark.parametrize("step", [1, -1])
def test_a_run_finds_its_frames_decoded_ahead(step: int) -> None:
    source = Recording()
    ahead = FramePrefetch(source, step=step, ahead=4)
    order = list(range(20)) if step == 1 else list(range(19, -1, -1))
    try:
        for i in order:
            assert ahead.frame(i)[0, 0, 0] == i
            assert len(ahead._pending) <= 4  # bounded: never more than `ahead` waiting
    finally:
        ahead.close()
    assert (ahead.misses, ahead.hits) == (1, 19)  # only the first frame was waited for
    assert sorted(i for i, _ in source.reads) == list(range(20))  # each frame decoded once
    assert {name for _, name in source.reads} != {threading.current_thread().name}
    assert all(name.startswith("frame-prefetch") for _, name in source.reads)
    assert ahead.name == "recording" and len(ahead) == 20


def test_a_jump_drops_the_frames_queued_behind_it() -> None:
    source = Recording()
    ahead = FramePrefetch(source, ahead=3)
    try:
        ahead.frame(2)
        ahead.frame(12)  # a jump: 3..5 are no use any more
        assert set(ahead._pending) == {13, 14, 15}
        assert ahead.frame(13)[0, 0, 0] == 13 and ahead.hits == 1
    finally:
        ahead.close()


def test_errors_and_close() -> None:
    source = ArraySequence([np.zeros((4, 4, 3), np.uint8)] * 3)
    ahead = FramePrefetch(source, ahead=2)
    with pytest.raises(IndexError):
        ahead.frame(3)
    ahead.frame(0)
    ahead.close()
    with pytest.raises(RuntimeError, match="closed"):
        ahead.frame(1)
    assert source.frame(1).shape == (4, 4, 3)  # the sequence itself is its owner's to close
    with pytest.raises(ValueError):
        FramePrefetch(source, step=2)


def test_a_real_video_reads_the_same_through_it(tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.mp4", _codec("libx264", "h264", "mpeg4"), frames=30)
    with open_sequence(video) as direct:
        truth = [direct.frame(i) for i in range(30)]
    with open_sequence(video) as seq:
        ahead = FramePrefetch(seq, step=-1, ahead=5)
        try:
            for i in range(29, -1, -1):  # backward: the hard way for a video decoder
                np.testing.assert_array_equal(ahead.frame(i), truth[i])
        finally:
            ahead.close()
        assert ahead.hits == 29
