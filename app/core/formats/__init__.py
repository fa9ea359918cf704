"""Export a project to COCO, YOLO segmentation, labelme or PNG masks (plus overlay previews),
and import COCO, YOLO, labelme or PNG masks into a project.

Each format lives in its own module and works on plain values (``ImageRecord``, ``Label``,
``Instance``); this module adapts them to the ``Project`` store.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from shapely import affinity

from app.core.errors import FormatError, ImageError
from app.core.formats.checks import SizeLookup
from app.core.formats.coco import export_coco, export_coco_dataset, read_coco, read_coco_folder
from app.core.formats.coco_read import layout_files
from app.core.formats.common import (
    Dataset,
    ExportItem,
    ExportReport,
    ImportReport,
    report_progress,
    safe_relative,
    unique_file_names,
)
from app.core.formats.fidelity import READERS, FidelityReport, verify_export
from app.core.formats.frame_images import (
    DEFAULT_FRAMES,
    decoded_frames,
    frame_ids,
    frames_folder,
    plan_frames,
)
from app.core.formats.labelme import (
    export_labelme,
    read_embedded_image,
    read_labelme,
    write_embedded_image,
)
from app.core.formats.masks import export_masks, read_masks
from app.core.formats.output import MANIFEST_NAME, OutputFolder, manifest_info
from app.core.formats.overlay import render_overlay, write_overlays
from app.core.formats.video_project import (
    VIDEO_FORMATS,
    export_videos,
    import_video_annotations,
    project_files,
)
from app.core.formats.yolo import export_yolo, read_yolo
from app.core.image_checks import check_images
from app.core.images import content_hash
from app.core.jobs import CancelToken, Progress, check
from app.core.project import Project
from app.core.proposals import ProposalStatus
from app.core.types import ImageRecord, Instance

__all__ = [
    "EXPORT_FORMATS",
    "FORMATS",
    "FidelityReport",
    "VIDEO_FORMATS",
    "MANIFEST_NAME",
    "Dataset",
    "ExportReport",
    "ImportReport",
    "export_coco",
    "export_labelme",
    "export_masks",
    "export_project",
    "verify_export",
    "export_yolo",
    "import_into_project",
    "read_coco",
    "read_dataset",
    "read_labelme",
    "read_masks",
    "read_yolo",
    "render_overlay",
    "write_overlays",
]

FORMATS = ("coco", "yolo", "labelme", "masks")  # export and import
EXPORT_FORMATS = (*FORMATS, "overlay")  # overlay previews are export-only

COCO_FILE_NAME = "annotations.json"
DUPLICATE_IOU = 0.99


def _options_of(function: Callable[..., Any], fmt: str, options: dict[str, Any]) -> None:
    allowed = {name for name, p in inspect.signature(function).parameters.items()
               if p.kind is inspect.Parameter.KEYWORD_ONLY} - {"progress", "cancel",
                                                               "image_root"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise FormatError(f"{fmt} export has no option {', '.join(unknown)} "
                          f"(it has: {', '.join(sorted(allowed)) or 'none'})")


def _image_subdirs(fmt: str, options: dict[str, Any], coco_file: str) -> list[str]:
    """Where (relative to the output folder) an export of ``fmt`` puts image files: copied or
    linked images, overlays, mask PNGs ("." is the folder itself)."""
    if fmt == "coco":  # in images/ beside the JSON file (the layout: beside annotations/)
        return [str(PurePosixPath(coco_file or ".").parent / "images")] \
            if options.get("copy_images") else []
    if fmt == "yolo":
        return ["images"]
    if fmt == "labelme":
        return [] if options.get("images") == "reference" else ["."]
    if fmt == "masks":
        return ["instances", "semantic"]
    return ["."]  # overlay


def _coco_file_name(options: dict[str, Any]) -> str:
    """The COCO file to write; "" for the layout of ``export_coco_dataset``, which images
    copied or a val fraction get unless a file name is given."""
    if "file_name" not in options and (options.get("copy_images") or options.get("val_fraction")):
        return ""
    name = str(options.pop("file_name", COCO_FILE_NAME))
    if not name or not safe_relative(name) or name == MANIFEST_NAME:
        raise FormatError(f"COCO file name {name!r} must be a relative path inside the output "
                          f"folder (and not {MANIFEST_NAME})")
    return name


def export_project(
    project: Project,
    fmt: str,
    out_dir: str | Path,
    *,
    image_ids: list[int] | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    verify: bool = False,
    include_proposals: bool = False,
    **options: Any,
) -> ExportReport:
    """Export the project's images (or those in ``image_ids``) to ``out_dir`` in ``fmt``
    (one of ``EXPORT_FORMATS``). Options go to the format's exporter: coco ``rle``,
    ``copy_images``, ``file_name``, ``val_fraction``, ``seed`` (images copied or a val fraction
    give the layout ``annotations/instances_<split>.json`` + ``images/<split>/`` unless
    ``file_name`` is given); yolo ``val_fraction``, ``seed``, ``copy_mode``; labelme
    ``images``; overlay ``image_format``, ``alpha``, ``outline``. The report's ``written``
    says where each image's annotations went; with ``verify`` its ``fidelity`` says what the
    format's reference reader gets back (``app.core.formats.fidelity``).

    Proposals (``app.core.proposals``) are left out unless ``include_proposals``: then each
    image's pending proposals are written as instances under their label after its instances
    (unlabelled ones are skipped); the report counts both (``proposals_included``,
    ``proposals_unlabelled``).

    The export never touches the project's images or any file it did not write (see
    ``app.core.formats.output``): ``out_dir`` must be new or empty, or ``overwrite`` given
    (then only the files an earlier export's manifest lists are removed), and it is refused
    when image files of the export could land among the project's images. The export is
    written beside ``out_dir`` and moved in at the end with its manifest
    (``maskloop-export.json``), so a cancelled or failed export leaves the folder as it was.

    ``frames`` ("labelled", "all", "none") and ``frame_images`` ("jpg", "png") say which
    frames of the project's sequences are exported too, written as image files
    (``app.core.formats.frame_images``); ``image_ids`` may name frames.

    ``VIDEO_FORMATS`` export the project's sequences instead (options ``sequences``,
    ``images``, ``results``: see ``app.core.formats.video_project.export_videos``)."""
    if fmt in VIDEO_FORMATS:
        if image_ids is not None or verify or include_proposals:
            raise FormatError(f"{fmt} export writes sequences: it takes no images, verify or "
                              f"proposals")
        _options_of(export_videos, fmt, options)
        return export_videos(project, fmt, out_dir, overwrite=overwrite, progress=progress,
                             cancel=cancel, **options)
    if fmt not in EXPORT_FORMATS:
        raise FormatError(f"unknown export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    if verify and fmt not in READERS:
        raise FormatError(f"{fmt} export: nothing to verify (verify reads back "
                          f"{', '.join(READERS)})")
    all_records = project.images()
    records = all_records
    frame_options = {"frames": options.pop("frames", DEFAULT_FRAMES),
                     "frame_images": options.pop("frame_images", "jpg")}
    plan = plan_frames(project, frame_options["frames"], image_ids,
                       frame_options["frame_images"])
    if image_ids is not None:
        known = {r.id for r in records} | frame_ids(project, image_ids)
        unknown = [i for i in image_ids if i not in known]
        if unknown:
            raise FormatError(f"{project.path}: no image with id {', '.join(map(str, unknown))}")
        wanted = set(image_ids)
        records = [r for r in records if r.id in wanted]
    exporters: dict[str, Callable[..., ExportReport]] = {
        "coco": export_coco, "yolo": export_yolo, "labelme": export_labelme,
        "masks": export_masks, "overlay": write_overlays}
    given = dict(options) | (frame_options if plan.frames else {})
    file_name = _coco_file_name(options) if fmt == "coco" else ""
    exporter = export_coco_dataset if fmt == "coco" and not file_name else exporters[fmt]
    _options_of(exporter, fmt, options)
    plan.folder = frames_folder(fmt, options, file_name) if plan.frames else ""
    target = OutputFolder.prepare(
        out_dir, images=project_files(project), extra_protected=[project.path],
        image_subdirs=_image_subdirs(fmt, options, file_name) + [plan.folder] * bool(plan.folder),
        fmt=fmt, overwrite=overwrite)
    unreadable = check_images(project, records, cancel=cancel)  # e.g. truncated: left out
    items: list[ExportItem] = []
    included = unlabelled = 0
    for record in records:
        check(cancel)
        if record.id not in unreadable:
            instances = project.instances(int(record.id or 0))
            if include_proposals:
                extra, skipped = _pending_as_instances(project, int(record.id or 0))
                instances += extra
                included, unlabelled = included + len(extra), unlabelled + skipped
            items.append((record, instances))
    labels = project.labels()
    common: dict[str, Any] = {"progress": progress, "cancel": cancel}
    if fmt != "masks":
        common["image_root"] = project.image_root
    with target.staging() as stage:
        with decoded_frames(project, plan, fmt, stage, target.path, progress=progress,
                            cancel=cancel) as frames:
            items += frames
            dest = stage / file_name if file_name else stage
            report = exporter(items, labels, dest, **common, **options)
        check(cancel)
        info = manifest_info(fmt, report.images, report.instances, given, image_ids)
        report.files, warnings = target.commit(stage, info)
    for written in report.written:  # where the files are now
        written.file = target.path / Path(written.file).relative_to(stage)
    report.proposals_included, report.proposals_unlabelled = included, unlabelled
    report.frames, report.frames_propagated = len(plan.frames), plan.propagated
    if verify:
        report.fidelity = verify_export(items, fmt, report, progress=progress, cancel=cancel)
    report.warnings += [f"{r.path}: left out: {unreadable[r.id]}" for r in records
                        if r.id in unreadable]
    report.warnings += warnings
    return report


def _pending_as_instances(project: Project, image_id: int) -> tuple[list[Instance], int]:
    """The image's pending proposals that have a label, as instances (not stored), and how
    many were left out for having none."""
    pending = project.proposals.find(image_id, status=ProposalStatus.PENDING)
    labelled = [Instance(image_id, p.label, p.geometry, p.score, p.made_by)
                for p in pending if p.label]
    return labelled, len(pending) - len(labelled)


# ---------------------------------------------------------------------------------------------
# Import


def _coco_file(src: Path) -> Path:
    """The one COCO JSON file that ``src`` is or holds."""
    if src.is_file():
        return src
    if (src / COCO_FILE_NAME).is_file():
        return src / COCO_FILE_NAME
    candidates = sorted(p for p in src.glob("*.json") if p.name != MANIFEST_NAME) \
        if src.is_dir() else []
    if len(candidates) == 1:
        return candidates[0]
    raise FormatError(f"{src}: give the COCO JSON file (found {len(candidates)} JSON files)")


def read_dataset(fmt: str, src: str | Path, *,
                 project_size: SizeLookup | None = None) -> Dataset:
    """Read ``src`` in ``fmt`` (one of ``FORMATS``) into a ``Dataset``. ``project_size`` gives
    the size of an image that the file does not state and whose image file is not found (YOLO
    always has its image files)."""
    src = Path(src)
    if not src.exists():
        raise FormatError(f"{src}: no such file or folder")
    if fmt == "coco":
        if src.is_dir() and not (src / COCO_FILE_NAME).is_file() and layout_files(src):
            return read_coco_folder(src, project_size=project_size)
        return read_coco(_coco_file(src), project_size=project_size)
    if fmt == "yolo":
        return read_yolo(src)
    if fmt == "labelme":
        return read_labelme(src, project_size=project_size)
    if fmt == "masks":
        return read_masks(src, project_size=project_size)
    raise FormatError(f"unknown import format {fmt!r}: use one of {', '.join(FORMATS)}")


class _ImageMatcher:
    """Finds the project image a dataset image is: same relative path, same flattened export
    name (as YOLO / labelme / masks exports name files), same unique file name, or same
    content hash."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.records = project.images()
        self.by_path = {r.path: r for r in self.records}
        flat = unique_file_names(r.path for r in self.records)
        self.by_flat = {PurePosixPath(n).stem: r for n, r in zip(flat, self.records, strict=True)}
        self.by_name: dict[str, list[ImageRecord]] = {}
        for r in self.records:
            self.by_name.setdefault(PurePosixPath(r.path).name.casefold(), []).append(r)
        self._by_hash: dict[str, ImageRecord] | None = None

    def match(self, record: ImageRecord, file: Path | None) -> ImageRecord | None:
        if record.path in self.by_path:
            return self.by_path[record.path]
        name = PurePosixPath(record.path).name
        same_name = self.by_name.get(name.casefold(), [])
        if len(same_name) == 1:
            return same_name[0]
        flat = self.by_flat.get(PurePosixPath(name).stem)
        if flat is not None:
            return flat
        if file is not None:
            try:
                return self.by_hash(content_hash(file))
            except (ImageError, OSError):
                return None
        return None

    def size_of(self, path: str) -> tuple[int, int, str] | None:
        """(width, height, description) of the project image a dataset path names (a
        ``SizeLookup``), matched by path or name as ``match`` does."""
        found = self.match(ImageRecord(path=path, width=0, height=0, content_hash=""), None)
        return None if found is None else (found.width, found.height,
                                           f"the project's image {found.path}")

    def by_hash(self, digest: str) -> ImageRecord | None:
        if self._by_hash is None:
            self._by_hash = {r.content_hash: r for r in self.records if r.content_hash}
        return self._by_hash.get(digest)


def _embedded_file(matcher: _ImageMatcher, json_path: Path,
                   report: ImportReport) -> ImageRecord | Path | None:
    """The project image that a labelme file's embedded image is (same bytes), or the file it
    was written to (see ``write_embedded_image``); None, with a warning, when neither."""
    try:
        image = read_embedded_image(json_path)
        found = matcher.by_hash(hashlib.sha256(image.data).hexdigest())
        if found is not None:
            return found
        file, note = write_embedded_image(image)
    except FormatError as exc:
        report.warnings.append(str(exc))
        return None
    report.warnings.append(note)
    return file


def _resolve_image(project: Project, matcher: _ImageMatcher, record: ImageRecord,
                   dataset: Dataset, report: ImportReport, count: int) -> ImageRecord | None:
    """The project image ``record`` is: matched, or added from its file (or from the image
    its label file embeds); None, with a warning naming the label file, when neither works."""
    image_id = int(record.id or 0)
    source = dataset.sources.get(image_id, record.path)
    file = dataset.image_files.get(image_id)
    found = matcher.match(record, file)
    if found is not None:
        report.images_matched += 1
        return found
    if file is None and image_id in dataset.embedded_images:
        embedded = _embedded_file(matcher, dataset.embedded_images[image_id], report)
        if isinstance(embedded, ImageRecord):
            report.images_matched += 1
            return embedded
        file = embedded
    if file is None:
        where = f"image {record.path}" if source != record.path else "image"
        report.warnings.append(f"{source}: {where} not found and not in the project; its "
                               f"{count} annotation(s) skipped")
        return None
    added = project.add_images([file])
    if added.added:
        report.images_added += 1
        return added.added[0]
    if added.skipped_existing:
        return project.image_by_path(added.skipped_existing[0])
    for path, message in added.skipped_errors:
        report.warnings.append(f"{path}: {message}; its {count} annotation(s) skipped")
    return None


def _is_duplicate(inst: Instance, existing: list[Instance]) -> bool:
    for other in existing:
        if other.label != inst.label:
            continue
        union = other.geometry.union(inst.geometry).area
        if union > 0 and other.geometry.intersection(inst.geometry).area / union >= DUPLICATE_IOU:
            return True
    return False


def import_into_project(
    project: Project,
    fmt: str,
    src: str | Path,
    *,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    skip_duplicates: bool = True,
) -> ImportReport:
    """Import the annotations in ``src`` (``fmt`` one of ``FORMATS``) into ``project``.

    Images are matched to project images (see ``_ImageMatcher``) or added when their file is
    found; missing labels are created; each instance is added (one transaction per image).
    With ``skip_duplicates`` an instance that matches one already there (same label, IoU >=
    0.99) is not added again, so importing twice changes nothing. On cancel, the images
    imported so far stay and ``Cancelled`` is raised. ``VIDEO_FORMATS`` add tracks to the
    project's sequences of the same name (``video_project.import_video_annotations``)."""
    if fmt in VIDEO_FORMATS:
        return import_video_annotations(project, fmt, src, skip_duplicates=skip_duplicates,
                                        progress=progress, cancel=cancel)
    matcher = _ImageMatcher(project)
    dataset = read_dataset(fmt, src, project_size=matcher.size_of)
    report = ImportReport(warnings=list(dataset.warnings))
    for label in dataset.labels:
        if project.label(label.name) is None:
            project.ensure_label(label.name)
            report.labels_created.append(label.name)
    by_image: dict[int, list[Instance]] = {}
    for inst in dataset.instances:
        by_image.setdefault(inst.image_id, []).append(inst)
    total = len(dataset.images)
    for done, record in enumerate(dataset.images):
        check(cancel)
        report_progress(progress, done, total, record.path)
        count = len(by_image.get(int(record.id or 0), []))
        target = _resolve_image(project, matcher, record, dataset, report, count)
        if target is None or target.id is None:
            continue
        scale = None
        if (target.width, target.height) != (record.width, record.height):
            report.warnings.append(
                f"{record.path}: size {record.width}x{record.height} in {src} but "
                f"{target.width}x{target.height} in the project; annotations rescaled")
            scale = (target.width / record.width, target.height / record.height)
        existing = project.instances(target.id) if skip_duplicates else []
        with project.transaction():
            for inst in by_image.get(int(record.id or 0), []):
                geom = inst.geometry
                if scale is not None:
                    geom = affinity.scale(geom, scale[0], scale[1], origin=(0, 0))
                new = Instance(image_id=target.id, label=inst.label, geometry=geom,
                               score=inst.score, source=inst.source)
                if skip_duplicates and _is_duplicate(new, existing):
                    report.duplicates_skipped += 1
                    continue
                existing.append(project.add_instance(new))
                report.instances_added += 1
    report_progress(progress, total, total, "done")
    return report
