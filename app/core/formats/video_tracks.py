"""Tracked objects of one video as plain data (``VideoAnnotations``), shared by the
YouTube-VIS and MOTS writers and readers, and their link to the project's sequence store.

``sequence_annotations`` rasterises a sequence's tracked instances (with the same rasteriser
as the PNG masks export); ``import_videos`` adds read tracks back as anchors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from app.core.errors import FormatError
from app.core.geometry import geometry_to_mask, mask_to_geometry

DUPLICATE_IOU = 0.99

if TYPE_CHECKING:
    from app.core.formats.common import ImportReport
    from app.core.project import Project


@dataclass(frozen=True)
class VideoTrack:
    """One object through a sequence: its per-frame masks (frame index -> bool (H, W))."""

    track_id: int
    category: str
    masks: dict[int, np.ndarray]
    scores: dict[int, float] = field(default_factory=dict)

    def score(self) -> float:
        """The track's score: the mean of its frame scores, 1.0 when it has none."""
        return float(np.mean(list(self.scores.values()))) if self.scores else 1.0


@dataclass(frozen=True)
class VideoAnnotations:
    """The tracks of one sequence; ``frame_files`` names each frame's exported image."""

    name: str
    width: int
    height: int
    frame_files: list[str]
    tracks: list[VideoTrack]

    @property
    def length(self) -> int:
        return len(self.frame_files)

    def categories(self) -> list[str]:
        """The track categories, in first-seen order."""
        return list(dict.fromkeys(t.category for t in self.tracks))


def frame_file_names(count: int, ext: str = ".jpg", start: int = 0, digits: int = 5) -> list[str]:
    """``count`` frame file names, "00000.jpg" onwards (as YouTube-VIS names its frames)."""
    return [f"{i:0{digits}d}{ext}" for i in range(start, start + count)]


def all_categories(videos: list[VideoAnnotations]) -> list[str]:
    """Every category of ``videos``, in first-seen order."""
    return list(dict.fromkeys(c for v in videos for c in v.categories()))


def check_masks(video: VideoAnnotations, where: str) -> None:
    """FormatError (naming ``where``) when a mask has the wrong size or a frame index lies
    outside the sequence."""
    for track in video.tracks:
        for frame, mask in track.masks.items():
            if not 0 <= frame < video.length:
                raise FormatError(f"{where}: track {track.track_id} of {video.name} has frame "
                                  f"{frame}, outside 0..{video.length - 1}")
            if mask.shape != (video.height, video.width):
                raise FormatError(f"{where}: track {track.track_id} of {video.name}, frame "
                                  f"{frame}: mask {mask.shape[1]}x{mask.shape[0]}, the video is "
                                  f"{video.width}x{video.height}")


def sequence_name(path: str) -> str:
    """A sequence's name: its file stem, or its folder's name."""
    pure = PurePosixPath(path)
    return pure.stem if pure.suffix else pure.name


def sequence_annotations(project: Project, sequence_id: int,
                         image_ext: str = ".jpg") -> VideoAnnotations:
    """The tracks of a project sequence with each frame's instance rasterised to a mask
    (anchors and propagated instances alike; scores where the instance has one)."""
    store = project.sequences
    record = store.get(sequence_id)
    by_frame = store.instances(sequence_id)
    tracks: list[VideoTrack] = []
    for track in store.tracks(sequence_id):
        masks: dict[int, np.ndarray] = {}
        scores: dict[int, float] = {}
        for frame, instances in sorted(by_frame.items()):
            for inst in instances:
                if inst.track_id != track.id:
                    continue
                mask = geometry_to_mask(inst.geometry, record.height, record.width)
                masks[frame] = masks[frame] | mask if frame in masks else mask
                if inst.score is not None:
                    scores[frame] = float(inst.score)
        if masks:
            tracks.append(VideoTrack(int(track.id or 0), track.label, masks, scores))
    return VideoAnnotations(sequence_name(record.path), record.width, record.height,
                            frame_file_names(record.frame_count, image_ext), tracks)


def same_track(a: VideoTrack, b: VideoTrack) -> bool:
    """Same category, same frames, and every frame's masks at IoU >= ``DUPLICATE_IOU``."""
    if a.category != b.category or set(a.masks) != set(b.masks):
        return False
    for frame, mask in a.masks.items():
        other = b.masks[frame]
        union = int(np.count_nonzero(mask | other))
        if union and np.count_nonzero(mask & other) / union < DUPLICATE_IOU:
            return False
    return True


def import_videos(project: Project, videos: list[VideoAnnotations], source: str,
                  report: ImportReport, skip_duplicates: bool = True) -> None:
    """Add ``videos``' tracks to the project's sequences of the same name (file stem or
    folder name) as new tracks, each mask an anchor instance; a video with no matching
    sequence, or a different size, is skipped with a warning. With ``skip_duplicates`` a
    track the sequence already has (``same_track``) is not added again, so importing twice
    changes nothing."""
    from app.core.types import Instance, InstanceOrigin

    store = project.sequences
    by_name: dict[str, list[int]] = {}
    for record in store.all():
        by_name.setdefault(sequence_name(record.path), []).append(int(record.id or 0))
    for video in videos:
        found = by_name.get(video.name, [])
        if len(found) != 1:
            why = "no sequence" if not found else f"{len(found)} sequences"
            report.warnings.append(f"{source}: video {video.name}: {why} of that name in the "
                                   f"project; its {len(video.tracks)} track(s) skipped")
            continue
        record = store.get(found[0])
        if (record.width, record.height) != (video.width, video.height):
            report.warnings.append(
                f"{source}: video {video.name} is {video.width}x{video.height}, the project's "
                f"sequence {record.path} {record.width}x{record.height}; skipped")
            continue
        report.images_matched += 1
        if video.length != record.frame_count:
            report.warnings.append(
                f"{source}: video {video.name} has {video.length} frames, the project's "
                f"sequence {record.path} {record.frame_count}; masks beyond it skipped")
        existing = sequence_annotations(project, found[0]).tracks if skip_duplicates else []
        for track in video.tracks:
            if any(same_track(track, other) for other in existing):
                report.duplicates_skipped += len(track.masks)
                continue
            if project.label(track.category) is None:
                project.ensure_label(track.category)
                report.labels_created.append(track.category)
            new = store.add_track(found[0], track.category)
            with project.transaction():
                for frame, mask in sorted(track.masks.items()):
                    if frame >= record.frame_count:
                        continue
                    geometry = mask_to_geometry(mask, tolerance=0)
                    if geometry is None:
                        continue
                    image = store.frame_image(found[0], frame)
                    project.add_instance(Instance(
                        image_id=int(image.id or 0), label=track.category, geometry=geometry,
                        score=track.scores.get(frame), track_id=new.id,
                        origin=InstanceOrigin.ANCHOR))
                    report.instances_added += 1
