"""YouTube-VIS (2019/2021) video instance segmentation JSON: write and read.

Ground truth (``write_youtube_vis``), one file::

    {"info", "licenses",
     "videos": [{"id", "width", "height", "length", "file_names": ["NAME/00000.jpg", ...]}],
     "categories": [{"id", "name", "supercategory"}],
     "annotations": [{"id", "video_id", "category_id", "iscrowd": 0, "height", "width",
                      "length", "segmentations": [RLE or null per frame],
                      "areas": [pixels or null], "bboxes": [[x, y, w, h] or null]}]}

One annotation is one track (its ``id`` the track id). Masks are COCO RLE, column-major, with
``counts`` uncompressed (a list of run lengths), as the dataset's own files carry them and as
TrackEval's ground-truth loader requires (it passes them to ``frPyObjects``). The video's name
is the folder of its file names (TrackEval takes ``file_names[0].split('/')[0]``).

Results (``write_youtube_vis_results``), as the benchmark's server and TrackEval's tracker
loader take them: a list of ``{"video_id", "category_id", "segmentations", "score"}`` with
compressed RLE (``counts`` a string), video and category ids those of the ground-truth file.

``read_youtube_vis`` reads a ground-truth file (either RLE form, or polygons) back.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from app.core import rle as rle_codec
from app.core.errors import FormatError
from app.core.formats.common import write_text_atomic
from app.core.formats.video_tracks import (
    VideoAnnotations,
    VideoTrack,
    all_categories,
    check_masks,
)

INFO = {"description": "exported by MaskLoop", "version": "1.0"}


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """{"size": [h, w], "counts": [runs]}: COCO's uncompressed RLE, column-major, starting
    with a run of 0s. pycocotools has no encoder for this form, so it is done here with numpy."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], edges, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": runs}


def _bbox(mask: np.ndarray) -> list[float] | None:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1)]


def _track_ids(videos: list[VideoAnnotations]) -> list[list[int]]:
    """Annotation ids: the tracks' own ids when they are unique and positive across the
    file, else 1..N in order."""
    own = [t.track_id for v in videos for t in v.tracks]
    if len(set(own)) == len(own) and all(i > 0 for i in own):
        return [[t.track_id for t in v.tracks] for v in videos]
    counter = iter(range(1, len(own) + 1))
    return [[next(counter) for _ in v.tracks] for v in videos]


def youtube_vis_document(videos: list[VideoAnnotations],
                         categories: list[str] | None = None) -> dict[str, Any]:
    """The ground-truth JSON document of ``videos`` (category ids 1.. in ``categories``
    order, default first-seen order; video ids 1.. in order)."""
    names = categories if categories is not None else all_categories(videos)
    category_id = {name: i for i, name in enumerate(names, start=1)}
    doc: dict[str, Any] = {
        "info": INFO, "licenses": [], "videos": [],
        "categories": [{"id": i, "name": n, "supercategory": n} for n, i in category_id.items()],
        "annotations": []}
    for video_id, (video, ids) in enumerate(zip(videos, _track_ids(videos), strict=True),
                                            start=1):
        check_masks(video, "YouTube-VIS export")
        doc["videos"].append({"id": video_id, "width": video.width, "height": video.height,
                              "length": video.length,
                              "file_names": [f"{video.name}/{f}" for f in video.frame_files]})
        for track, ann_id in zip(video.tracks, ids, strict=True):
            if track.category not in category_id:
                raise FormatError(f"YouTube-VIS export: track {track.track_id} of {video.name} "
                                  f"has category {track.category!r}, not among the categories")
            segs: list[Any] = [None] * video.length
            areas: list[Any] = [None] * video.length
            boxes: list[Any] = [None] * video.length
            for frame, mask in track.masks.items():
                if mask.any():
                    segs[frame] = uncompressed_rle(mask)
                    areas[frame] = int(mask.sum())
                    boxes[frame] = _bbox(mask)
            doc["annotations"].append({
                "id": ann_id, "video_id": video_id, "category_id": category_id[track.category],
                "iscrowd": 0, "height": video.height, "width": video.width,
                "length": video.length, "segmentations": segs, "areas": areas,
                "bboxes": boxes})
    return doc


def write_youtube_vis(videos: list[VideoAnnotations], path: Path,
                      categories: list[str] | None = None) -> Path:
    """Write the ground-truth file of ``videos`` to ``path``."""
    return write_text_atomic(Path(path), json.dumps(youtube_vis_document(videos, categories)))


def youtube_vis_results(videos: list[VideoAnnotations],
                        categories: list[str] | None = None) -> list[dict[str, Any]]:
    """The results list of ``videos`` (ids as ``youtube_vis_document`` gives them; each
    track's score its mean frame score, 1.0 when it has none)."""
    names = categories if categories is not None else all_categories(videos)
    category_id = {name: i for i, name in enumerate(names, start=1)}
    results: list[dict[str, Any]] = []
    for video_id, video in enumerate(videos, start=1):
        check_masks(video, "YouTube-VIS results")
        for track in video.tracks:
            segs: list[Any] = [None] * video.length
            for frame, mask in track.masks.items():
                if mask.any():
                    segs[frame] = rle_codec.encode_json(mask)
            results.append({"video_id": video_id, "category_id": category_id[track.category],
                            "segmentations": segs, "score": track.score()})
    return results


def write_youtube_vis_results(videos: list[VideoAnnotations], path: Path,
                              categories: list[str] | None = None) -> Path:
    """Write the results file of ``videos`` to ``path``."""
    return write_text_atomic(Path(path), json.dumps(youtube_vis_results(videos, categories)))


# ---------------------------------------------------------------------------------------------
# Reading


def _need(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise FormatError(f"{where}: missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FormatError(f"{where}: {key!r} is {type(value).__name__}, expected "
                          f"{getattr(kind, '__name__', kind)}")
    return value


def _decode(seg: Any, height: int, width: int, where: str) -> np.ndarray:
    """A frame's mask from RLE (either form) or COCO polygons."""
    try:
        if isinstance(seg, list):  # polygons
            mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, height, width)))
            decoded = np.asarray(mask, dtype=bool)
        else:
            decoded = rle_codec.decode(seg)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise FormatError(f"{where}: bad segmentation: {exc}") from exc
    if decoded.shape != (height, width):
        raise FormatError(f"{where}: segmentation is {decoded.shape[1]}x{decoded.shape[0]}, "
                          f"the video {width}x{height}")
    return decoded


def read_youtube_vis(path: Path) -> list[VideoAnnotations]:
    """The videos of a YouTube-VIS ground-truth file (segmentations in any COCO form). Clear
    FormatErrors name the file and the bad entry."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not a readable JSON file: {exc}") from exc
    if isinstance(doc, list):
        raise FormatError(f"{path}: a YouTube-VIS results list (no videos); give the "
                          f"ground-truth file")
    where = str(path)
    categories = {int(_need(c, "id", int, f"{where}: category")):
                  str(_need(c, "name", str, f"{where}: category"))
                  for c in _need(doc, "categories", list, where)}
    videos: dict[int, VideoAnnotations] = {}
    for v in _need(doc, "videos", list, where):
        vid = _need(v, "id", int, f"{where}: video")
        at = f"{where}: video {vid}"
        files = [str(f) for f in _need(v, "file_names", list, at)]
        if not files:
            raise FormatError(f"{at}: no file_names")
        parts = PurePosixPath(files[0]).parts
        name = parts[0] if len(parts) > 1 else path.stem
        videos[vid] = VideoAnnotations(
            name, int(_need(v, "width", int, at)), int(_need(v, "height", int, at)),
            [PurePosixPath(f).name for f in files], [])
    for ann in _need(doc, "annotations", list, where):
        ann_id = _need(ann, "id", int, f"{where}: annotation")
        at = f"{where}: annotation {ann_id}"
        video = videos.get(_need(ann, "video_id", int, at))
        if video is None:
            raise FormatError(f"{at}: video_id {ann['video_id']} is not among the videos")
        category = categories.get(_need(ann, "category_id", int, at))
        if category is None:
            raise FormatError(f"{at}: category_id {ann['category_id']} is not among the "
                              f"categories")
        segs = _need(ann, "segmentations", list, at)
        if len(segs) != video.length:
            raise FormatError(f"{at}: {len(segs)} segmentations, video {video.name} has "
                              f"{video.length} frames")
        masks = {frame: _decode(seg, video.height, video.width, f"{at}, frame {frame}")
                 for frame, seg in enumerate(segs) if seg}
        video.tracks.append(VideoTrack(int(ann_id), category, masks))
    return list(videos.values())
