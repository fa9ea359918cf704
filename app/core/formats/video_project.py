"""Export a project's sequences as YouTube-VIS or MOTS, and import such files into it.

``export_videos`` writes through ``OutputFolder`` (staged, moved in with its manifest, never
over the project's files); frames are written as images only when asked (``images`` "jpg" or
"png"), decoded from the project's videos or frame folders:

- youtube-vis: ``instances.json`` (or ``results.json`` with ``results``), frames in
  ``JPEGImages/NAME/00000.jpg`` as the dataset lays them out;
- mots: the MOTSChallenge layout of ``app.core.formats.mots`` (tracker files ``NAME.txt``
  with ``results``), frames in ``NAME/img1/000001.jpg``.
"""

from __future__ import annotations

from pathlib import Path

from app.core.errors import FormatError
from app.core.formats.common import (
    ExportReport,
    ImportReport,
    encode_image,
    report_progress,
    write_bytes_atomic,
)
from app.core.formats.mots import read_mots, write_mots, write_mots_results
from app.core.formats.output import MANIFEST_NAME, OutputFolder, manifest_info
from app.core.formats.video_tracks import (
    VideoAnnotations,
    import_videos,
    sequence_annotations,
    sequence_name,
)
from app.core.formats.youtube_vis import (
    read_youtube_vis,
    write_youtube_vis,
    write_youtube_vis_results,
)
from app.core.images import list_images
from app.core.jobs import CancelToken, Progress, check
from app.core.project import Project

VIDEO_FORMATS = ("youtube-vis", "mots")
IMAGE_TYPES = ("jpg", "png")
YOUTUBE_VIS_FILE = "instances.json"
YOUTUBE_VIS_RESULTS = "results.json"


def select_sequences(project: Project, wanted: list[int | str] | None) -> list[int]:
    """Sequence ids of ``wanted`` (ids, names or paths relative to the image root), or of
    every sequence; FormatError naming what is not a sequence of the project."""
    records = project.sequences.all()
    if wanted is None:
        return [int(r.id or 0) for r in records]
    ids: list[int] = []
    for item in wanted:
        text = str(item)
        found = [r for r in records if (text.isdigit() and r.id == int(text))
                 or r.path == text or sequence_name(r.path) == text]
        if len(found) != 1:
            why = "no sequence" if not found else f"{len(found)} sequences"
            raise FormatError(f"{project.path}: {why} named {text!r}")
        ids.append(int(found[0].id or 0))
    return ids


def project_files(project: Project) -> list[Path]:
    """The files an export must never write over or among: the project's images, its
    videos and the frames of its frame folders."""
    files = [project.image_path(r) for r in project.images()]
    for record in project.sequences.all():
        path = project.sequences.path_of(record)
        if record.kind == "frames" and path.is_dir():
            files += list_images(path)
        else:
            files.append(path)
    return files


def _image_dir(fmt: str, video: VideoAnnotations) -> str:
    return f"JPEGImages/{video.name}" if fmt == "youtube-vis" else f"{video.name}/img1"


def _write_frames(project: Project, fmt: str, sequence_id: int, video: VideoAnnotations,
                  stage: Path, first_frame: int, report: ExportReport,
                  cancel: CancelToken | None) -> None:
    folder = stage / _image_dir(fmt, video)
    seq = project.sequences.open(sequence_id)
    try:
        for index in range(video.length):
            check(cancel)
            name = video.frame_files[index] if fmt == "youtube-vis" else \
                f"{index + first_frame:06d}{Path(video.frame_files[index]).suffix}"
            path = folder / name
            report.files.append(write_bytes_atomic(path, encode_image(path, seq.frame(index))))
    finally:
        seq.close()


def export_videos(
    project: Project,
    fmt: str,
    out_dir: str | Path,
    *,
    sequences: list[int | str] | None = None,
    images: str | None = None,
    results: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> ExportReport:
    """Export the project's sequences (all, or ``sequences`` by id or name) as ``fmt``
    (one of ``VIDEO_FORMATS``); ``images`` "jpg"/"png" writes the frames too; ``results``
    writes a tracker's results file(s) instead of ground truth. The report counts sequences
    as ``images`` and (track, frame) masks as ``instances``."""
    if fmt not in VIDEO_FORMATS:
        raise FormatError(f"unknown video format {fmt!r}: use one of {', '.join(VIDEO_FORMATS)}")
    if images is not None and images not in IMAGE_TYPES:
        raise FormatError(f"{fmt} export: images must be one of {', '.join(IMAGE_TYPES)}, "
                          f"not {images!r}")
    ids = select_sequences(project, sequences)
    if not ids:
        raise FormatError(f"{project.path}: no sequences to export")
    ext = f".{images or 'jpg'}"
    videos = []
    for done, sequence_id in enumerate(ids):
        check(cancel)
        report_progress(progress, done, len(ids), f"reading sequence {sequence_id}")
        videos.append(sequence_annotations(project, sequence_id, ext))
    subdirs = [_image_dir(fmt, v) for v in videos] if images else []
    target = OutputFolder.prepare(
        out_dir, images=project_files(project), extra_protected=[project.path],
        image_subdirs=subdirs, fmt=fmt, overwrite=overwrite)
    report = ExportReport(images=len(videos),
                          instances=sum(len(t.masks) for v in videos for t in v.tracks))
    first_frame = 1
    with target.staging() as stage:
        if fmt == "youtube-vis":
            name = YOUTUBE_VIS_RESULTS if results else YOUTUBE_VIS_FILE
            writer = write_youtube_vis_results if results else write_youtube_vis
            report.files.append(writer(videos, stage / name))
        else:
            fps = {v.name: project.sequences.get(i).fps or 30.0
                   for i, v in zip(ids, videos, strict=True)}
            mots = write_mots_results(videos, stage, first_frame=first_frame) if results \
                else write_mots(videos, stage, first_frame=first_frame, image_ext=ext, fps=fps)
            report.files += mots.files
            if mots.overlap_pixels:
                report.warnings.append(
                    f"MOTS forbids overlapping masks: {mots.overlap_pixels} pixel(s) given to "
                    f"the earlier track, {mots.emptied} mask(s) left empty and not written")
        if images:
            for done, (sequence_id, video) in enumerate(zip(ids, videos, strict=True)):
                report_progress(progress, done, len(ids), f"frames of {video.name}")
                _write_frames(project, fmt, sequence_id, video, stage, first_frame, report,
                              cancel)
        check(cancel)
        info = manifest_info(fmt, report.images, report.instances,
                             {"images": images, "results": results}, None)
        info["sequences"] = ids
        report.files, warnings = target.commit(stage, info)
    report.warnings += warnings
    report_progress(progress, len(ids), len(ids), "done")
    return report


def _youtube_vis_file(src: Path) -> Path:
    if src.is_file():
        return src
    candidates = sorted(p for p in src.glob("*.json") if p.name != MANIFEST_NAME)
    if len(candidates) == 1:
        return candidates[0]
    if (src / YOUTUBE_VIS_FILE).is_file():
        return src / YOUTUBE_VIS_FILE
    raise FormatError(f"{src}: give the YouTube-VIS JSON file (found {len(candidates)} JSON "
                      f"files)")


def read_videos(fmt: str, src: str | Path) -> list[VideoAnnotations]:
    """The videos in ``src`` (a file, or a folder holding one) in ``fmt``."""
    src = Path(src)
    if not src.exists():
        raise FormatError(f"{src}: no such file or folder")
    if fmt == "youtube-vis":
        return read_youtube_vis(_youtube_vis_file(src))
    if fmt == "mots":
        return read_mots(src)
    raise FormatError(f"unknown video format {fmt!r}: use one of {', '.join(VIDEO_FORMATS)}")


def import_video_annotations(project: Project, fmt: str, src: str | Path, *,
                             skip_duplicates: bool = True,
                             progress: Progress | None = None,
                             cancel: CancelToken | None = None) -> ImportReport:
    """Import the tracks in ``src`` into the project's sequences of the same name (see
    ``import_videos``); ``images_matched`` counts the sequences matched."""
    videos = read_videos(fmt, src)
    report = ImportReport()
    for done, video in enumerate(videos):
        check(cancel)
        report_progress(progress, done, len(videos), video.name)
        import_videos(project, [video], str(src), report, skip_duplicates=skip_duplicates)
    report_progress(progress, len(videos), len(videos), "done")
    return report

