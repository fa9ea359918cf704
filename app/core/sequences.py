"""Frame sequences: a video file or a folder of numbered frames, decoded one frame on demand.

``open_sequence(path)`` gives a ``Sequence``: ``len(seq)``, ``seq.fps``, ``seq.size`` (width,
height) and ``seq.frame(i)`` -> RGB uint8 (H, W, 3). Nothing is ever unpacked to disk.

- ``VideoSequence`` (MP4, MOV, AVI, MKV, WebM, through PyAV: the optional ``video`` extra).
  Opening demuxes the file once without decoding (cheap) to learn every frame's presentation
  timestamp and which packets are keyframes, so ``len`` is exact and frame ``i`` is the i-th
  timestamp in presentation order. ``frame(i)`` seeks to the keyframe at or before it and
  decodes forward to the exact timestamp (frame-accurate, B-frames included); reading
  forward continues decoding without seeking; recent frames stay in a small cache bounded by
  bytes, so stepping backwards does not re-decode a whole group of pictures each time.
- ``FrameFolderSequence``: the image files of a folder in natural order (frame_2 before
  frame_10), each decoded by ``app.core.images.load_image`` (its format allow-list and checks).
- ``ArraySequence``: frames already in memory (synthetic sequences, tests).

Anything that cannot be read raises ``SequenceError`` naming the file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from app.core.errors import ImageError, MaskLoopError
from app.core.images import check_dimensions, image_size, list_images, load_image
from app.core.lru import BoundedCache

VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm"})
"""Lower-case suffixes opened as videos."""

VIDEO_FORMATS: frozenset[str] = frozenset({"mov", "mp4", "avi", "matroska", "webm"})
"""The only demuxers accepted (FFmpeg format names; "mov,mp4,m4a,3gp,3g2,mj2" counts as mov).
FFmpeg probes many more (playlists that open other files or URLs among them), so a file is
refused unless one of these read it, whatever its suffix says."""

DEFAULT_FOLDER_FPS = 30.0
"""Frame rate assumed for a folder of frames (it has none of its own)."""

DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
"""Recent decoded frames kept per sequence: about 40 frames of 1080p, 270 of 640 x 480."""


class SequenceError(MaskLoopError):
    """A video or frame folder cannot be read; the message names the file and the problem."""


@runtime_checkable
class Sequence(Protocol):
    """Frames 0..len-1 of one shot, decoded on demand."""

    name: str

    def __len__(self) -> int: ...

    @property
    def fps(self) -> float: ...

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of every frame."""
        ...

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as RGB uint8 (H, W, 3); IndexError outside 0..len-1."""
        ...

    def close(self) -> None: ...


def _check_index(index: int, length: int) -> int:
    index = int(index)
    if not 0 <= index < length:
        raise IndexError(f"frame {index} out of range (0..{length - 1})")
    return index


class _Base:
    """What the sequences share: fps and size as set by each, the context manager and
    iteration."""

    name: str
    _fps: float
    _size: tuple[int, int]  # (width, height)

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def __len__(self) -> int:
        raise NotImplementedError

    def frame(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file (a no-op where nothing is held)."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.frame(i)


class ArraySequence(_Base):
    """Frames held in memory (all the same size)."""

    def __init__(self, frames: list[np.ndarray], fps: float = DEFAULT_FOLDER_FPS,
                 name: str = "frames") -> None:
        if not frames:
            raise SequenceError(f"{name}: a sequence needs at least one frame")
        h, w = frames[0].shape[:2]
        for i, f in enumerate(frames):
            if f.shape[:2] != (h, w) or f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise SequenceError(f"{name}: frame {i} is not RGB uint8 of {w} x {h}")
        self._frames = frames
        self._fps = float(fps)
        self._size = (int(w), int(h))
        self.name = name

    def __len__(self) -> int:
        return len(self._frames)

    def frame(self, index: int) -> np.ndarray:
        return self._frames[_check_index(index, len(self._frames))]


def _frame_bytes(_key: int, frame: np.ndarray) -> int:
    return int(frame.nbytes)


class FrameFolderSequence(_Base):
    """The images of one folder (not its subfolders), natural order, as frames."""

    def __init__(self, folder: str | os.PathLike[str], fps: float = DEFAULT_FOLDER_FPS,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.path = Path(folder)
        self.name = self.path.name
        try:
            self.files = list_images(self.path, recursive=False)
        except ImageError as exc:
            raise SequenceError(str(exc)) from exc
        if not self.files:
            raise SequenceError(f"'{self.path}': no image frames in this folder")
        try:
            self._size = image_size(self.files[0])
        except ImageError as exc:
            raise SequenceError(str(exc)) from exc
        self._fps = float(fps)
        self._cache: BoundedCache[int, np.ndarray] = BoundedCache(cache_bytes, _frame_bytes)

    def __len__(self) -> int:
        return len(self.files)

    def frame(self, index: int) -> np.ndarray:
        index = _check_index(index, len(self.files))
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        path = self.files[index]
        try:
            rgb = load_image(path)
        except ImageError as exc:
            raise SequenceError(f"frame {index}: {exc}") from exc
        h, w = rgb.shape[:2]
        if (w, h) != self._size:
            raise SequenceError(f"cannot read frame '{path}': it is {w} x {h}, the first frame "
                                f"is {self._size[0]} x {self._size[1]}")
        rgb.setflags(write=False)  # shared with the cache
        self._cache.put(index, rgb)
        return rgb


def _import_av() -> Any:
    try:
        import av
    except ImportError as exc:  # the optional extra is not installed
        raise SequenceError("reading videos needs PyAV: pip install 'maskloop[video]'") from exc
    return av


class VideoSequence(_Base):
    """One video stream of a file, frame-accurate, decoded on demand (see the module text)."""

    def __init__(self, path: str | os.PathLike[str],
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.path = Path(path)
        self.name = self.path.stem
        self._av = _import_av()
        if not self.path.is_file():
            problem = "not a file" if self.path.exists() else "file not found"
            raise SequenceError(f"cannot read video '{self.path}': {problem}")
        if self.path.stat().st_size == 0:
            raise SequenceError(f"cannot read video '{self.path}': file is empty (0 bytes)")
        self._lock = threading.RLock()
        self._container: Any = None
        self._cache: BoundedCache[int, np.ndarray] = BoundedCache(cache_bytes, _frame_bytes)
        self._decoder: Iterator[Any] | None = None
        self._next = -1  # index of the frame the live decoder yields next (-1: none live)
        try:
            self._open()
        except SequenceError:
            self.close()
            raise
        except (self._av.FFmpegError, OSError, ValueError, EOFError, MemoryError) as exc:
            self.close()
            raise self._fail(exc) from exc

    def _fail(self, exc: BaseException | str, index: int | None = None) -> SequenceError:
        where = f" (frame {index})" if index is not None else ""
        detail = exc if isinstance(exc, str) else (
            getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        return SequenceError(f"cannot read video '{self.path}'{where}: {detail}")

    def _open(self) -> None:
        container = self._av.open(str(self.path), mode="r")
        self._container = container
        formats = set(container.format.name.split(","))
        if not formats & VIDEO_FORMATS:
            raise self._fail(f"not a MP4, MOV, AVI, MKV or WebM file ({container.format.name})")
        if not container.streams.video:
            raise self._fail("no video stream")
        stream = container.streams.video[0]
        self._stream = stream
        width, height = stream.codec_context.width, stream.codec_context.height
        problem = check_dimensions(width, height)
        if problem is not None or width <= 0 or height <= 0:
            raise self._fail(problem or f"frames have no pixels ({width} x {height})")
        self._size = (int(width), int(height))
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self._fps = float(rate) if rate else 0.0
        # one pass over the packets, no decoding: every frame's timestamp, and the keyframes
        stamps: list[int] = []
        keys: list[int] = []
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:
                continue  # the flush packet at the end, or one the decoder would drop
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is None:
                raise self._fail("packets without timestamps (frame-accurate seeking "
                                 "is impossible)")
            stamps.append(int(pts))
            if packet.is_keyframe:
                keys.append(int(pts))
        if not stamps:
            raise self._fail("the video stream has no frames")
        if not keys:
            raise self._fail("the video stream has no keyframe")
        stamps.sort()
        if len(set(stamps)) != len(stamps):
            raise self._fail("frames with duplicate timestamps")
        self._pts = stamps
        self._index_of = {p: i for i, p in enumerate(stamps)}
        keys.sort()
        # for each frame, the index of the last keyframe at or before it (where a seek lands)
        self._key_before: list[int] = []
        ki = -1
        for p in stamps:
            while ki + 1 < len(keys) and keys[ki + 1] <= p:
                ki += 1
            self._key_before.append(self._index_of[keys[ki]] if ki >= 0 else 0)
        self._keys = keys
        self._seek_to(0)

    # ------------------------------------------------------------------ the protocol

    def __len__(self) -> int:
        return len(self._pts)

    @property
    def keyframes(self) -> list[int]:
        """Indices of the keyframes."""
        return sorted(self._index_of[p] for p in self._keys)

    def timestamp(self, index: int) -> float:
        """Presentation time of frame ``index`` in seconds."""
        pts = self._pts[_check_index(index, len(self._pts))]
        return float(pts * self._stream.time_base)

    def frame(self, index: int) -> np.ndarray:
        index = _check_index(index, len(self._pts))
        with self._lock:
            if self._container is None:
                raise SequenceError(f"cannot read video '{self.path}': it is closed")
            cached = self._cache.get(index)
            if cached is not None:
                return cached
            # keep decoding forward when a seek would land no later than where we are
            if not (0 <= self._next <= index and self._key_before[index] <= self._next):
                self._seek_to(index)
            try:
                rgb = self._decode_until(index)
            except SequenceError:
                self._next = -1
                raise
            except (self._av.FFmpegError, OSError, ValueError, EOFError, MemoryError) as exc:
                self._next = -1
                raise self._fail(exc, index) from exc
            if rgb is None and self._key_before[index] > 0:
                # the demuxer's index landed after the target: decode from the very start
                self._seek_to(0, from_start=True)
                rgb = self._decode_until(index)
            if rgb is None:
                self._next = -1
                raise self._fail("the frame could not be decoded (file truncated?)", index)
            return rgb

    def close(self) -> None:
        with self._lock:
            self._decoder = None
            self._next = -1
            if self._container is not None:
                self._container.close()
                self._container = None
            self._cache.clear()

    # ------------------------------------------------------------------ decoding

    def _seek_to(self, index: int, from_start: bool = False) -> None:
        """Position the demuxer at the keyframe at or before frame ``index``."""
        target = self._pts[self._key_before[index]]
        if from_start:
            target = self._pts[0]
        try:
            self._container.seek(target, backward=True, any_frame=False, stream=self._stream)
        except self._av.FFmpegError as exc:
            raise self._fail(exc, index) from exc
        self._stream.codec_context.flush_buffers()
        self._decoder = self._container.decode(self._stream)
        self._next = self._key_before[index] if not from_start else 0

    def _decode_until(self, index: int) -> np.ndarray | None:
        """Decode forward to frame ``index``, caching the frames passed on the way; None if
        the stream went past it (or ended) without showing it."""
        target = self._pts[index]
        assert self._decoder is not None
        for frame in self._decoder:
            pts = frame.pts
            if pts is None:
                pts = frame.dts
            if pts is None:
                raise self._fail("a decoded frame has no timestamp", index)
            if pts > target:
                # the seek landed after the target: hold the decoder as it is, report a miss
                self._next = -1
                return None
            i = self._index_of.get(int(pts))
            if i is None:
                continue  # a frame the demuxer pass did not see (never shown)
            rgb = frame.to_ndarray(format="rgb24")
            if rgb.shape[:2] != (self._size[1], self._size[0]):
                raise self._fail(f"frame size changed to {rgb.shape[1]} x {rgb.shape[0]}", i)
            rgb.setflags(write=False)
            self._cache.put(i, rgb)
            self._next = i + 1
            if i == index:
                return rgb
        self._next = -1
        return None


def open_sequence(path: str | os.PathLike[str], fps: float = DEFAULT_FOLDER_FPS) -> _Base:
    """A video file (by suffix: ``VIDEO_EXTENSIONS``) or a folder of frames, as a sequence;
    ``fps`` applies to a folder only."""
    p = Path(path)
    if p.is_dir():
        return FrameFolderSequence(p, fps=fps)
    if p.suffix.lower() in VIDEO_EXTENSIONS:
        return VideoSequence(p)
    if not p.exists():
        raise SequenceError(f"cannot open '{p}': not found")
    raise SequenceError(f"cannot open '{p}': not a folder of frames or a video "
                        f"({', '.join(sorted(VIDEO_EXTENSIONS))})")

