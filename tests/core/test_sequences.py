"""Sequences (videos through PyAV, numbered-frame folders), the synthetic shot builder and the
DAVIS J / F measures."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from app.core.sequences import (
    ArraySequence,
    FrameFolderSequence,
    SequenceError,
    VideoSequence,
    open_sequence,
)
from app.core.synthetic_video import synthesize
from app.core.video_metrics import boundary_f, jaccard, score_sequence, seg2bmap

av = pytest.importorskip("av")

W, H, N, GOP = 96, 64, 60, 12


def pattern(i: int) -> np.ndarray:
    """A moving gradient with the frame index written in 8-pixel-tall bits along the top."""
    y, x = np.mgrid[0:H, 0:W]
    f = np.zeros((H, W, 3), np.uint8)
    f[..., 0] = (x * 4 + i * 5) % 256
    f[..., 1] = (y * 4 + i * 3) % 256
    f[..., 2] = (i * 4) % 256
    for b in range(6):
        f[:8, b * 16:(b + 1) * 16] = 255 if (i >> b) & 1 else 0
    return f


def decoded_index(frame: np.ndarray) -> int:
    return sum(1 << b for b in range(6) if frame[2:6, b * 16 + 4:b * 16 + 12].mean() > 127)


def make_video(path: Path, codec: str, frames: int = N) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=24)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.gop_size = GOP
        if codec in ("h264", "libx264"):
            # B-frames on: presentation order differs from decoding order
            s.options = {"g": str(GOP), "keyint_min": str(GOP), "sc_threshold": "0", "bf": "2"}
        for i in range(frames):
            for p in s.encode(av.VideoFrame.from_ndarray(pattern(i), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _codec(*names: str) -> str:
    for name in names:
        if name in av.codecs_available:
            try:
                av.CodecContext.create(name, "w")
            except Exception:  # listed but not usable
                continue
            return name
    pytest.skip(f"none of the encoders {names} is in this PyAV build")


CASES = [("mp4", ("libx264", "h264", "mpeg4")), ("mov", ("mpeg4",)), ("avi", ("mpeg4",)),
         ("mkv", ("libx264", "h264", "mpeg4")), ("webm", ("libvpx-vp9", "libvpx"))]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def video(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ext, codecs = request.param
    return make_video(tmp_path_factory.mktemp("v") / f"clip.{ext}", _codec(*codecs))


def reference(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_video_seeks_are_frame_accurate(video: Path) -> None:
    ref = reference(video)
    assert len(ref) == N
    seq = open_sequence(video)
    assert isinstance(seq, VideoSequence)
    with seq:
        assert len(seq) == N and seq.size == (W, H) and seq.fps == pytest.approx(24.0)
        assert seq.keyframes[:2] == [0, GOP]
        order = list(range(N))
        random.Random(7).shuffle(order)
        order += list(range(N - 1, -1, -1))  # backwards, frame by frame
        order += [59, 0, 30, 29, 47, 11, 12, 13]  # jumps across keyframes both ways
        for i in order:
            got = seq.frame(i)
            assert got.shape == (H, W, 3) and got.dtype == np.uint8
            assert np.array_equal(got, ref[i]), f"frame {i} of {video.name}"
            assert decoded_index(got) == i


def test_video_uncached_seek_decodes_from_keyframe(tmp_path: Path) -> None:
    path = make_video(tmp_path / "clip.mp4", _codec("libx264", "h264", "mpeg4"))
    ref = reference(path)
    seq = VideoSequence(path, cache_bytes=0)  # every read decodes
    seeks: list[int] = []
    real = seq._seek_to
    seq._seek_to = lambda i, from_start=False: (seeks.append(i), real(i, from_start))[1]  # type: ignore[method-assign]
    for i in (50, 49, 5, 6, 7, 40):
        assert np.array_equal(seq.frame(i), ref[i])
    # 6 and 7 continue decoding from 5; the others seek (to their keyframe, not the start)
    assert seeks == [50, 49, 5, 40]
    seq.close()
    with pytest.raises(SequenceError, match="closed"):
        seq.frame(0)
    with pytest.raises(IndexError):
        VideoSequence(path).frame(N)


def test_truncated_and_broken_videos_name_the_file(tmp_path: Path) -> None:
    good = make_video(tmp_path / "good.mp4", _codec("libx264", "h264", "mpeg4"))
    data = good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: gone
    with pytest.raises(SequenceError, match=r"cut\.mp4"):
        VideoSequence(cut)
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"\x00not a video at all" * 50)
    with pytest.raises(SequenceError, match=r"junk\.mkv"):
        open_sequence(junk)
    empty = tmp_path / "empty.webm"
    empty.write_bytes(b"")
    with pytest.raises(SequenceError, match=r"empty\.webm.*empty"):
        open_sequence(empty)
    with pytest.raises(SequenceError, match="not found"):
        open_sequence(tmp_path / "missing.avi")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SequenceError, match="not a folder of frames or a video"):
        open_sequence(tmp_path / "notes.txt")


def test_truncated_matroska_reads_what_is_there_or_fails_clearly(tmp_path: Path) -> None:
    good = make_video(tmp_path / "good.mkv", _codec("libx264", "h264", "mpeg4"))
    data = good.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 2 // 3])
    try:
        seq = VideoSequence(cut)
    except SequenceError as exc:
        assert "cut.mkv" in str(exc)
        return
    with seq:
        assert 0 < len(seq) < N
        for i in (len(seq) - 1, 0, len(seq) // 2):
            try:
                assert decoded_index(seq.frame(i)) == i
            except SequenceError as exc:  # the last, half-written packet
                assert "cut.mkv" in str(exc) and f"frame {i}" in str(exc)


def test_frame_folder_sorts_numbers_naturally(tmp_path: Path) -> None:
    for i in (10, 2, 1, 100, 9):
        Image.fromarray(pattern(i)).save(tmp_path / f"frame_{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    seq = open_sequence(tmp_path, fps=12)
    assert isinstance(seq, FrameFolderSequence)
    assert [p.name for p in seq.files] == [
        "frame_1.png", "frame_2.png", "frame_9.png", "frame_10.png", "frame_100.png"]
    assert len(seq) == 5 and seq.size == (W, H) and seq.fps == 12
    assert [decoded_index(seq.frame(i)) for i in range(5)] == [1, 2, 9, 10, 100 % 64]
    assert np.array_equal(seq.frame(3), pattern(10))


def test_frame_folder_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SequenceError, match="no image frames"):
        FrameFolderSequence(tmp_path)
    Image.fromarray(pattern(0)).save(tmp_path / "f1.png")
    Image.fromarray(pattern(1)[:32]).save(tmp_path / "f2.png")
    (tmp_path / "f3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    seq = FrameFolderSequence(tmp_path)
    with pytest.raises(SequenceError, match=r"f2\.png.*96 x 32"):
        seq.frame(1)
    with pytest.raises(SequenceError, match=r"f3\.png"):
        seq.frame(2)


# ---------------------------------------------------------------- synthetic shots


def _object_image() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    labels = np.zeros((120, 160), np.uint8)
    cv2.circle(labels, (80, 60), 30, 128, -1)
    cv2.circle(labels, (80, 60), 27, 255, -1)
    return image, labels == 255, labels == 128


def test_synthetic_masks_move_with_the_frames() -> None:
    image, mask, ignore = _object_image()
    shot = synthesize(image, mask, ignore, frames=12, seed=5)
    again = synthesize(image, mask, ignore, frames=12, seed=5)
    other = synthesize(image, mask, ignore, frames=12, seed=6)
    assert len(shot) == 12
    assert all(np.array_equal(a, b) for a, b in zip(shot.frames, again.frames, strict=True))
    assert not np.array_equal(shot.frames[-1], other.frames[-1])
    assert any(o.any() for o in shot.occluded) and not shot.occluded[0].any()
    size = (160, 120)
    first = shot.masks[0] | shot.occluded[0]
    moved = 0
    for t in range(1, 12):
        m, occ = shot.transforms[t], shot.occluded[t]
        # exactly the source mask under frame t's transform, less the occluded pixels
        exact = cv2.warpAffine(mask.astype(np.uint8), m, size, flags=cv2.INTER_NEAREST) > 0
        assert np.array_equal(shot.masks[t], exact & ~occ)
        assert not (shot.masks[t] & shot.ignore[t]).any()
        # and frame 0's mask carried by the relative transform (t <- 0) lands on it too
        rel = np.vstack([m, [0, 0, 1]]) @ np.linalg.inv(np.vstack([shot.transforms[0],
                                                                   [0, 0, 1]]))
        carried = cv2.warpAffine(first.astype(np.uint8), rel[:2], size,
                                 flags=cv2.INTER_NEAREST) > 0
        assert jaccard(carried & ~occ, shot.masks[t]) > 0.97
        moved += not np.array_equal(shot.masks[t], shot.masks[0])
        # the frame is the source image filmed the same way (brightness aside)
        src = cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR)
        inner = cv2.erode(exact.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        inner &= ~occ
        corr = np.corrcoef(src[inner].ravel().astype(float),
                           shot.frames[t][inner].ravel().astype(float))[0, 1]
        assert corr > 0.9
    assert moved >= 10
    # the occluder hides part of the object in some frame
    assert any((o & (cv2.warpAffine(mask.astype(np.uint8), m, size,
                                    flags=cv2.INTER_NEAREST) > 0)).any()
               for o, m in zip(shot.occluded, shot.transforms, strict=True))


# ---------------------------------------------------------------- J and F


def test_jaccard_known_answers() -> None:
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:4, 0:5] = True  # 20 px
    b[2:6, 0:5] = True  # 20 px, 10 shared
    assert jaccard(a, b) == pytest.approx(10 / 30)
    assert jaccard(a, a) == 1.0
    assert jaccard(np.zeros_like(a), np.zeros_like(a)) == 1.0
    void = np.zeros_like(a)
    void[4:6, :] = True  # removes b's 10 unshared px
    assert jaccard(a, b, void) == pytest.approx(10 / 20)


def test_seg2bmap_marks_one_pixel_boundaries() -> None:
    seg = np.zeros((6, 6), bool)
    seg[2:4, 2:4] = True
    b = seg2bmap(seg)
    # a pixel is boundary when its right, lower or lower-right neighbour differs
    expected = np.zeros((6, 6), bool)
    expected[1, 1:4] = expected[1:4, 1] = True  # above and left of the square
    expected[2:4, 3] = expected[3, 2:4] = True  # its own right column and bottom row
    assert np.array_equal(b, expected)


def test_boundary_f_identical_shifted_and_empty() -> None:
    gt = np.zeros((200, 200), bool)
    cv2.rectangle(gt.view(np.uint8), (50, 50), (149, 149), 1, -1)
    assert boundary_f(gt, gt) == 1.0
    # radius = ceil(0.008 * 283) = 3 px: a 2-px shift is still matched, 12 px is not
    assert boundary_f(np.roll(gt, 2, axis=1), gt) == 1.0
    shifted = np.roll(gt, 12, axis=1)
    f = boundary_f(shifted, gt)
    assert 0.3 < f < 0.8
    assert boundary_f(np.zeros_like(gt), gt) == 0.0
    assert boundary_f(np.zeros_like(gt), np.zeros_like(gt)) == 1.0
    # a bound_th >= 1 is a radius in pixels
    assert boundary_f(shifted, gt, bound_th=12) == 1.0


def test_score_sequence_counts_missing_frames_as_empty() -> None:
    gt = [np.ones((8, 8), bool)] * 4
    s = score_sequence({0: gt[0], 1: gt[1], 2: ~gt[2]}, gt)
    assert s.frames == [1, 2, 3]
    assert s.j == [1.0, 0.0, 0.0]
    assert s.to_correct == [2, 3]
    assert s.j_last == 0.0 and s.j_mean == pytest.approx(1 / 3)
    assert ArraySequence([np.zeros((8, 8, 3), np.uint8)] * 2).size == (8, 8)
