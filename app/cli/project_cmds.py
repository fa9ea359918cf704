"""``maskloop new | info | export | import``: project files from the command line.

PROJECT is the path of the project file (e.g. ``birds.maskloop``). Errors a user can fix (a
missing folder, an existing project, a file that is not a project) exit with code 2 and one
line naming the file; progress bars go to stderr, summaries to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.core.errors import FormatError, ProjectError
from app.core.jobs import Progress

VIDEO_CHOICES = ("youtube-vis", "mots")  # the project's sequences and their tracks
EXPORT_CHOICES = ("coco", "yolo", "labelme", "masks", "overlay", *VIDEO_CHOICES)
IMPORT_CHOICES = ("coco", "yolo", "labelme", "masks", *VIDEO_CHOICES)
COPY_OPTION = {"coco": "copy_images", "yolo": "copy_mode", "labelme": "images"}
MAX_LISTED = 20  # missing images / skipped files listed before "and N more"

Handler = Callable[[argparse.Namespace], int]


def _os_errors_as(error: type[Exception]) -> Callable[[Handler], Handler]:
    """Report an OSError (unreadable file, full disk, no permission) as a user error."""
    def wrap(func: Handler) -> Handler:
        @functools.wraps(func)
        def run(args: argparse.Namespace) -> int:
            try:
                return func(args)
            except OSError as exc:
                where = f"{exc.filename}: " if exc.filename else ""
                raise error(f"{where}{exc.strerror or exc}") from exc
        return run
    return wrap


@contextmanager
def progress_bar(description: str, quiet: bool) -> Iterator[Progress]:
    """A tqdm bar on stderr (hidden with --quiet or when stderr is not a terminal), as a
    Progress callback."""
    from tqdm import tqdm

    bar = tqdm(desc=description, unit="img", file=sys.stderr, disable=True if quiet else None,
               leave=False)

    def update(done: int, total: int, message: str = "") -> None:
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.set_postfix_str(message[-40:], refresh=False)
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


def _listed(lines: list[str]) -> list[str]:
    shown = lines[:MAX_LISTED]
    if len(lines) > MAX_LISTED:
        shown.append(f"... and {len(lines) - MAX_LISTED} more")
    return shown


# --- new ------------------------------------------------------------------------------------


@_os_errors_as(ProjectError)
def cmd_new(args: argparse.Namespace) -> int:
    from app.core.project import Project

    path = Path(args.project)
    images = Path(args.images) if args.images else None
    if images is not None and not images.is_dir():
        raise ProjectError(f"{images}: no such image folder")
    with Project.create(path, images, overwrite=args.force) as project:
        if images is None:
            print(f"Created {path} (no images yet; image root {project.image_root})")
            return 0
        with progress_bar("Adding images", args.quiet) as progress:
            report = project.add_images(images, progress=progress)
    print(f"Created {path}: {len(report.added)} image(s) added from {images}")
    if report.skipped_errors:
        print(f"Skipped {len(report.skipped_errors)} file(s) that could not be read:")
        for line in _listed([msg for _, msg in report.skipped_errors]):
            print(f"  {line}")
    return 0


# --- info -----------------------------------------------------------------------------------


def project_summary(project: Any) -> dict[str, Any]:
    """What ``maskloop info --json`` prints: images by status, labels with their instance
    counts, the number of instances, proposals by status and the images not found on disk."""
    counts = project.status_counts()
    label_counts = project.label_counts()
    return {
        "project": str(project.path),
        "image_root": str(project.image_root),
        "image_root_exists": project.image_root.is_dir(),
        "images": {"total": sum(counts.values()),
                   **{status.value: n for status, n in counts.items()}},
        "labels": [{"name": lab.name, "colour": lab.colour, "hotkey": lab.hotkey,
                    "instances": label_counts.get(lab.name, 0)} for lab in project.labels()],
        "instances": project.instance_count(),
        "proposals": dataclasses.asdict(project.proposals.counts()),
        "missing_images": [r.path for r in project.missing_images()],
        "sequences": [_sequence_summary(project, seq) for seq in project.sequences.all()],
    }


def _sequence_summary(project: Any, seq: Any) -> dict[str, Any]:
    """A sequence in ``info``: its file, frames, whether the file is there, and per track the
    frames holding the person's anchors and the propagated ones."""
    store = project.sequences
    tracks = []
    for track in store.tracks(seq.id):
        frames = store.instances(seq.id, track.id)
        anchors = sum(1 for insts in frames.values()
                      if any(i.origin == "anchor" for i in insts))
        tracks.append({"name": track.name, "label": track.label, "anchor_frames": anchors,
                       "propagated_frames": len(frames) - anchors})
    return {"path": seq.path, "kind": seq.kind, "frames": seq.frame_count, "fps": seq.fps,
            "size": [seq.width, seq.height], "missing": not store.path_of(seq).exists(),
            "tracks": tracks}


@_os_errors_as(ProjectError)
def cmd_info(args: argparse.Namespace) -> int:
    from app.core.project import Project

    with Project.open(args.project) as project:
        summary = project_summary(project)
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    images = summary["images"]
    by_status = ", ".join(f"{k} {v}" for k, v in images.items() if k != "total")
    root_note = "" if summary["image_root_exists"] else "  (MISSING)"
    print(summary["project"])
    print(f"  image root: {summary['image_root']}{root_note}")
    print(f"  images:     {images['total']} ({by_status})")
    print(f"  instances:  {summary['instances']}")
    proposals = summary["proposals"]
    if any(proposals.values()):
        print(f"  proposals:  {proposals['pending']} pending, {proposals['accepted']} accepted, "
              f"{proposals['rejected']} rejected")
    print(f"  labels:     {len(summary['labels'])}")
    for lab in summary["labels"]:
        key = f", key {lab['hotkey']}" if lab["hotkey"] else ""
        print(f"    {lab['name']} ({lab['colour']}{key}): {lab['instances']} instance(s)")
    missing = summary["missing_images"]
    print(f"  missing images: {len(missing)}")
    for line in _listed(missing):
        print(f"    {line}")
    if summary["sequences"]:
        print(f"  sequences:  {len(summary['sequences'])}")
    for seq in summary["sequences"]:
        gone = "  (MISSING)" if seq["missing"] else ""
        print(f"    {seq['path']}: {seq['frames']} frames, {len(seq['tracks'])} track(s){gone}")
        for t in seq["tracks"]:
            print(f"      {t['name']} ({t['label']}): {t['anchor_frames']} anchor frame(s), "
                  f"{t['propagated_frames']} propagated")
    return 0


# --- export / import ------------------------------------------------------------------------


def _select_images(project: Any, wanted: list[str] | None) -> list[int] | None:
    """Image ids from ids or paths (relative to the image root, or to the current folder)."""
    if not wanted:
        return None
    ids: list[int] = []
    for item in wanted:
        if item.isdigit():
            ids.append(project.image(int(item)).id)
            continue
        record = project.image_by_path(item)
        if record is None and Path(item).exists():
            record = project.image_by_path(project.relative_path(item))
        if record is None:
            raise ProjectError(f"{item}: not an image of {project.path}")
        ids.append(record.id)
    return ids


def _video_options(args: argparse.Namespace) -> dict[str, Any]:
    """Options of a youtube-vis / mots export; FormatError for the image-only ones."""
    given = [flag for flag, value in (("--images", args.images), ("--rle", args.rle),
                                      ("--copy-images", args.copy_images),
                                      ("--include-proposals", args.include_proposals),
                                      ("--frames", args.frames),
                                      ("--frame-type", args.frame_type),
                                      ("--verify", args.verify or args.verify_min_iou))
             if value]
    if given:
        raise FormatError(f"{', '.join(given)} do(es) not apply to {args.format} export "
                          "(it writes sequences: --sequences, --frame-images, --results)")
    options: dict[str, Any] = {"images": args.frame_images, "results": args.results}
    if args.sequences:
        options["sequences"] = list(args.sequences)
    return options


def _export_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.format in VIDEO_CHOICES:
        return _video_options(args)
    if args.sequences or args.frame_images or args.results:
        raise FormatError(f"--sequences, --frame-images and --results apply to "
                          f"{' and '.join(VIDEO_CHOICES)} export only (the frames of a "
                          f"{args.format} export: --frames, --frame-type)")
    options: dict[str, Any] = {}
    if args.frames is not None:  # the sequences' frames, written as images
        options["frames"] = args.frames
    if args.frame_type is not None:
        options["frame_images"] = args.frame_type
    if args.rle:
        options["rle"] = True
    if args.copy_images is not None:
        if args.format not in COPY_OPTION:
            raise FormatError(f"--copy-images does not apply to {args.format} export")
        options[COPY_OPTION[args.format]] = args.copy_images
    for name in ("val_fraction", "seed", "alpha"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


@_os_errors_as(FormatError)
def cmd_export(args: argparse.Namespace) -> int:
    from app.core.formats import export_project
    from app.core.project import Project

    verify = args.verify or args.verify_min_iou is not None
    if args.format in VIDEO_CHOICES:
        return _export_videos(args)
    with Project.open(args.project) as project:
        image_ids = _select_images(project, args.images)
        with progress_bar(f"Exporting {args.format}", args.quiet) as progress:
            report = export_project(project, args.format, Path(args.out), image_ids=image_ids,
                                    overwrite=args.overwrite, progress=progress, verify=verify,
                                    include_proposals=args.include_proposals,
                                    **_export_options(args))
        pending = sum(project.proposals.counts(i).pending for i in image_ids) \
            if image_ids is not None else project.proposals.counts().pending
    print(f"Exported {report.images} image(s) and {report.instances} instance(s) "
          f"as {args.format} to {args.out}")
    if report.frames:
        print(f"  frames: {report.frames} frame(s) of the project's sequences written as "
              f"images (--frames none leaves them out); {report.frames_propagated} "
              "propagated instance(s) among theirs are not reviewed")
    if args.include_proposals:
        print(f"  proposals: {report.proposals_included} pending proposal(s) exported as "
              f"instances, {report.proposals_unlabelled} without a label skipped")
    elif pending:
        print(f"  proposals: {pending} pending proposal(s) not exported "
              "(review them, or pass --include-proposals)")
    for warning in _listed(report.warnings):
        print(f"  warning: {warning}")
    if report.fidelity is None:
        return 0
    from app.core.formats.fidelity import DEFAULT_MIN_IOU

    threshold = DEFAULT_MIN_IOU if args.verify_min_iou is None else args.verify_min_iou
    print("Verify (the file read back as the training tools read it, against the project):")
    for line in report.fidelity.summary():
        print(f"  {line}")
    if report.fidelity.passed(threshold):
        return 0
    print(f"  FAILED: an instance's IoU is below {threshold:g} (or the file did not read back)")
    return 1


def _export_videos(args: argparse.Namespace) -> int:
    from app.core.formats import export_project
    from app.core.project import Project

    options = _export_options(args)
    with (Project.open(args.project) as project,
          progress_bar(f"Exporting {args.format}", args.quiet) as progress):
        report = export_project(project, args.format, Path(args.out), overwrite=args.overwrite,
                                progress=progress, **options)
    print(f"Exported {report.images} sequence(s) with {report.instances} tracked mask(s) "
          f"as {args.format} to {args.out}")
    for warning in _listed(report.warnings):
        print(f"  warning: {warning}")
    return 0


@_os_errors_as(FormatError)
def cmd_import(args: argparse.Namespace) -> int:
    from app.core.formats import import_into_project
    from app.core.project import Project

    src = Path(args.src)
    if not src.exists():
        raise FormatError(f"{src}: no such file or folder")
    with (Project.open(args.project) as project,
          progress_bar(f"Importing {args.format}", args.quiet) as progress):
        report = import_into_project(project, args.format, src, progress=progress,
                                     skip_duplicates=not args.keep_duplicates)
    if args.format in VIDEO_CHOICES:
        print(f"Imported {report.instances_added} tracked mask(s) from {src}: "
              f"{report.images_matched} sequence(s) matched, "
              f"{len(report.labels_created)} label(s) created, "
              f"{report.duplicates_skipped} duplicate mask(s) skipped")
        for warning in _listed(report.warnings):
            print(f"  warning: {warning}")
        return 0
    print(f"Imported {report.instances_added} instance(s) from {src}: "
          f"{report.images_matched} image(s) matched, {report.images_added} added, "
          f"{len(report.labels_created)} label(s) created, "
          f"{report.duplicates_skipped} duplicate(s) skipped")
    for warning in _listed(report.warnings):
        print(f"  warning: {warning}")
    return 0


# --- registration ---------------------------------------------------------------------------


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1)")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the new, info, export and import subcommands."""
    new = subparsers.add_parser("new", help="create a project from a folder of images",
                                description="Create a project file and register the images of "
                                "a folder (searched recursively). Images are never copied.")
    new.add_argument("project", metavar="PROJECT", help="project file to create, e.g. x.maskloop")
    new.add_argument("--images", metavar="DIR", help="folder of images (the image root)")
    new.add_argument("--force", action="store_true", help="replace an existing project file")
    new.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    new.set_defaults(func=cmd_new)

    info = subparsers.add_parser("info", help="summarise a project",
                                 description="Images by status, labels with their instance "
                                 "counts, instances, and images missing on disk.")
    info.add_argument("project", metavar="PROJECT")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)

    export = subparsers.add_parser("export", help="export annotations",
                                   description="Export the project (or some images) to COCO, "
                                   "YOLO segmentation, labelme JSON, PNG masks or overlays, or "
                                   "its sequences' tracks to YouTube-VIS JSON or MOTS text. "
                                   "The project's images and files the export did not write "
                                   "are never touched.")
    export.add_argument("project", metavar="PROJECT")
    export.add_argument("--format", required=True, choices=EXPORT_CHOICES)
    export.add_argument("--out", required=True, metavar="DIR", help="output folder")
    export.add_argument("--images", nargs="+", metavar="ID_OR_PATH",
                        help="only these images (ids, or paths relative to the image root)")
    export.add_argument("--rle", action="store_true", help="coco: every mask as RLE")
    export.add_argument("--copy-images", choices=("copy", "hardlink", "symlink"),
                        help="coco/yolo/labelme: how images are placed in the output (coco: "
                        "then annotations/instances_<split>.json and images/<split>/)")
    export.add_argument("--val-fraction", type=_fraction,
                        help="yolo/coco: share of images for val (a fixed split, see --seed)")
    export.add_argument("--seed", type=int, help="yolo/coco: seed of the train/val split")
    export.add_argument("--alpha", type=float, help="overlay: mask opacity")
    export.add_argument("--verify", action="store_true",
                        help="coco/yolo/labelme/masks: read the export back as pycocotools, "
                        "Ultralytics, labelme or cv2 read it and print min / mean IoU against "
                        "the project's masks and the worst instances; exit 1 when an instance "
                        "is below --verify-min-iou")
    export.add_argument("--verify-min-iou", type=float, metavar="IOU",
                        help="with --verify: the least IoU every instance must have (default "
                        "0.95; implies --verify)")
    export.add_argument("--include-proposals", action="store_true",
                        help="also export the pending proposals (automatic results not yet "
                        "reviewed) as instances under their label; those without a label are "
                        "skipped and counted")
    export.add_argument("--sequences", nargs="+", metavar="ID_OR_NAME",
                        help="youtube-vis/mots: only these sequences (ids, names or paths; "
                        "default: all)")
    export.add_argument("--frame-images", choices=("jpg", "png"),
                        help="youtube-vis/mots: also write every frame as an image")
    export.add_argument("--frames", choices=("labelled", "all", "none"),
                        help="coco/yolo/labelme/masks/overlay: which frames of the project's "
                        "videos to export, each written as an image: labelled (default: "
                        "frames with an instance a person drew or edited, with every "
                        "instance on them), all (also frames only propagation filled, not "
                        "reviewed) or none")
    export.add_argument("--frame-type", choices=("jpg", "png"),
                        help="coco/yolo/labelme/masks/overlay: the type of the frame images "
                        "(default jpg, quality 95; png is lossless)")
    export.add_argument("--results", action="store_true",
                        help="youtube-vis/mots: write a tracker's results (predictions) "
                        "instead of ground truth")
    export.add_argument("--overwrite", action="store_true",
                        help="export into a non-empty folder, replacing an earlier MaskLoop "
                        "export there: only the files its manifest lists are removed")
    export.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    export.set_defaults(func=cmd_export)

    imp = subparsers.add_parser("import", help="import annotations into a project",
                                description="Import COCO (polygons and RLE), YOLO "
                                "segmentation, labelme JSON or PNG masks, or tracks from "
                                "YouTube-VIS JSON or MOTS text into the project's sequences "
                                "of the same name.")
    imp.add_argument("project", metavar="PROJECT")
    imp.add_argument("src", metavar="SRC", help="annotation file or folder")
    imp.add_argument("--format", required=True, choices=IMPORT_CHOICES)
    imp.add_argument("--keep-duplicates", action="store_true",
                     help="add instances even if the same one is already there")
    imp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(func=cmd_import)
