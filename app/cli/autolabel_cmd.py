"""``maskloop autolabel PROJECT (--text T | --exemplars LABEL | --everything | --boxes FILE)``:
proposals for many images, for a person to review.

Each image's results are stored as proposals (``app.core.proposals``), never as instances;
instances already there are never touched, and proposals repeating one are not stored.
Resumable: every image is stored with a "done" mark for the run key (the kind, the query or
the boxes file's hash, the backend's model id) in one transaction; a rerun of the same
command skips the images done, and Ctrl-C keeps every image finished. The work itself is in
``app.cli.autolabel_work`` (a pure per-image step and the one loop that writes).
``--ray [ADDRESS]`` runs the per-image step on Ray actors (``maskloop[cluster]``, imported
only then); the results come back here and this process alone writes the project file.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from app.cli.autolabel_work import (
    AutolabelJob,
    AutolabelReport,
    ExemplarSource,
    MapStep,
    map_local,
    map_ray,
    run_autolabel,
)
from app.cli.backend import BACKENDS, add_model_args, predictor_from_args
from app.cli.project_cmds import progress_bar
from app.cli.remote_backend import add_remote_args
from app.core.errors import MaskLoopError, ProjectError
from app.core.proposals import ProposalSource
from app.core.types import ImageRecord
from app.predict.base import EverythingOptions, FindQuery, Predictor

MAX_LISTED = 10
EXIT_INTERRUPTED = 130


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "autolabel", help="propose annotations for many images (reviewed later)",
        description="Run an automatic tool over the project's images and store what it finds "
        "as proposals to review (never as annotations). Resumable: images already done for "
        "the same prompt and model are skipped; Ctrl-C keeps what finished.")
    parser.add_argument("project", metavar="PROJECT", help="the project file")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", metavar="TEXT",
                      help='find all by text, comma-separated ("person, car"); needs a '
                      "backend with text prompts (e.g. --hosted roboflow)")
    what.add_argument("--exemplars", metavar="LABEL",
                      help="find all like the accepted instances of LABEL (positive "
                      "exemplars, searched in every image)")
    what.add_argument("--everything", action="store_true", help="segment everything")
    what.add_argument("--boxes", metavar="FILE_OR_DIR",
                      help="an external detector's boxes (a COCO results JSON file or a YOLO "
                      "labels folder), each decoded as a box prompt")
    parser.add_argument("--images", nargs="+", metavar="GLOB_OR_ID",
                        help="only these images: ids, or glob patterns of paths relative to "
                        "the image root ('train/*.jpg')")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="sam2 or classical (default: SAM2 when a model is installed)")
    parser.add_argument("--label", metavar="NAME",
                        help="the label of proposals that have none (everything; default for "
                        "--exemplars: LABEL)")
    parser.add_argument("--coco-dataset", metavar="FILE",
                        help="--boxes: the COCO dataset whose images and categories the "
                        "results' image_id and category_id refer to")
    parser.add_argument("--max-exemplars", type=int, default=16, metavar="N",
                        help="--exemplars: use at most N instances, oldest first (default 16)")
    parser.add_argument("--score-threshold", type=float, default=None, metavar="S",
                        help="--text/--exemplars: drop results scoring under S (default 0.5)")
    parser.add_argument("--max-results", type=int, default=None, metavar="N",
                        help="--text/--exemplars: at most N results per image (default 100)")
    parser.add_argument("--ray", metavar="ADDRESS", nargs="?", const="", default=None,
                        help="run the images on Ray (needs maskloop[cluster]): the cluster at "
                        "ADDRESS (auto, ray://HOST:10001), or without ADDRESS a local Ray on "
                        "the cores here; this process alone writes the project")
    parser.add_argument("--workers", metavar="N", type=int, default=0,
                        help="with --ray: model workers (default: one per GPU, else one per "
                        "CPU core)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_model_args(parser)
    add_remote_args(parser)
    parser.set_defaults(func=run)


def select_images(project: Any, wanted: Sequence[str] | None) -> list[ImageRecord]:
    """The project's images (in its order) named by ids or glob patterns; every item must
    name at least one image."""
    records: list[ImageRecord] = project.images()
    if not wanted:
        return records
    chosen: set[int] = set()
    for item in wanted:
        if item.isdigit():
            chosen.add(int(project.image(int(item)).id or 0))
            continue
        hits = [r for r in records if fnmatch.fnmatchcase(r.path, item)]
        if not hits:
            raise ProjectError(f"{item}: matches no image of {project.path}")
        chosen.update(int(r.id or 0) for r in hits)
    return [r for r in records if r.id in chosen]


def _query_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.score_threshold is not None:
        options["score_threshold"] = args.score_threshold
    if args.max_results is not None:
        options["max_results"] = args.max_results
    return options


def exemplar_sources(project: Any, label: str, limit: int) -> tuple[ExemplarSource, ...]:
    """The first ``limit`` instances of ``label`` as exemplars, with their image's pixels."""
    from app.core.geometry import bbox, geometry_to_mask
    from app.core.images import load_image

    if project.label(label) is None:
        raise ProjectError(f"{project.path}: no label {label!r}")
    instances = [i for i in project.all_instances() if i.label == label]
    if not instances:
        raise ProjectError(f"{project.path}: no instance labelled {label!r} to use as an "
                           "exemplar: accept or draw one first")
    instances.sort(key=lambda inst: inst.id or 0)
    pixels: dict[int, Any] = {}
    sources = []
    for inst in instances[:max(1, limit)]:
        if inst.image_id not in pixels:
            record = project.image(inst.image_id)
            pixels[inst.image_id] = load_image(project.image_path(record))
        image = pixels[inst.image_id]
        mask = geometry_to_mask(inst.geometry, image.shape[0], image.shape[1])
        sources.append(ExemplarSource(inst.image_id, bbox(inst.geometry), mask, image))
    return tuple(sources)


def build_job(args: argparse.Namespace, project: Any, records: Sequence[ImageRecord],
              predictor: Predictor) -> AutolabelJob:
    """The job the options ask for, checked against what the backend can do."""
    model = predictor.model_id
    if args.text is not None:
        query = FindQuery.text(args.text, **_query_options(args))
        query.check_supported(predictor.capabilities, predictor.description)
        return AutolabelJob(ProposalSource.TEXT, f"text|{query.describe()}|{model}", query)
    if args.exemplars is not None:
        sources = exemplar_sources(project, args.exemplars, args.max_exemplars)
        from app.predict.base import Exemplar

        query = FindQuery(exemplars=tuple(Exemplar(s.box) for s in sources),
                          **_query_options(args))
        query.check_supported(predictor.capabilities, predictor.description)
        where = ",".join(str(s.image_id) for s in sources)
        return AutolabelJob(ProposalSource.EXEMPLAR,
                            f"exemplar|{query.describe()} in images {where}|{model}",
                            query, exemplars=sources, label=args.label or args.exemplars)
    if args.everything:
        options = EverythingOptions()
        return AutolabelJob(ProposalSource.EVERYTHING, f"everything|{options}|{model}",
                            everything=options, label=args.label)
    from pathlib import Path

    from app.core.formats.detections import read_detections

    detections = read_detections(args.boxes, records, coco_dataset=args.coco_dataset)
    for ref in detections.unmatched[:MAX_LISTED]:
        print(f"warning: {detections.source}: image {ref} is not in the project; its boxes "
              "are skipped", file=sys.stderr)
    if len(detections.unmatched) > MAX_LISTED:
        print(f"warning: ... and {len(detections.unmatched) - MAX_LISTED} more images not in "
              "the project", file=sys.stderr)
    return AutolabelJob(ProposalSource.BOXES, f"boxes|sha256:{detections.digest}|{model}",
                        boxes=detections.by_image, boxes_name=Path(args.boxes).name,
                        label=args.label)


def _summary(report: AutolabelReport, job: AutolabelJob, predictor: Predictor) -> list[str]:
    lines = [f"autolabel {job.kind.value} with {predictor.description}: "
             f"{report.done} image(s) done, {report.skipped} skipped (done before), "
             f"{len(report.failed)} failed; {report.proposals} proposal(s) stored, "
             f"{report.duplicates} repeating an instance or a proposal not stored"]
    lines += [f"  failed: {msg}" for msg in report.failed[:MAX_LISTED]]
    if len(report.failed) > MAX_LISTED:
        lines.append(f"  ... and {len(report.failed) - MAX_LISTED} more")
    return lines


def check_ray_args(args: argparse.Namespace) -> None:
    """Refuse options that do not go with ``--ray`` (or need it), and tell how to install
    Ray when it is missing, before any work."""
    if args.ray is None:
        if args.workers:
            raise MaskLoopError("--workers goes with --ray")
        return
    if args.workers < 0:
        raise MaskLoopError("--workers must be positive")
    if getattr(args, "server", None) or getattr(args, "hosted", None):
        raise MaskLoopError("--ray runs a local backend (sam2, classical) on each worker: "
                           "drop --server/--hosted")
    from app.cluster.ray_env import require_ray

    require_ray()


def ray_recipe(args: argparse.Namespace, predictor: Predictor) -> Any:
    """The picklable recipe that builds, in each Ray worker, the backend ``predictor`` is
    (same model id: the run key and the proposals name it)."""
    from app.cluster.worker_model import ClassicalModel, worker_model
    from app.predict.base import PredictorError, SourceKind

    kind = predictor.capabilities.kind
    if kind == SourceKind.CLASSICAL:
        return ClassicalModel()
    if kind != SourceKind.SAM2:
        raise PredictorError(f"--ray cannot run {predictor.description} on workers")
    recipe = worker_model(args.model, args.checkpoint, args.config, args.device, args.runtime)
    if recipe.model_id != predictor.model_id:
        raise PredictorError(f"--ray: the workers' model {recipe.model_id} is not "
                             f"{predictor.model_id}; pass --model or --checkpoint")
    return recipe


@contextmanager
def _map_step(args: argparse.Namespace, predictor: Predictor) -> Iterator[MapStep]:
    """This process's map step, or with ``--ray`` the Ray one (connected for the run)."""
    if args.ray is None:
        yield map_local(predictor)
        return
    from app.cluster import ray_env

    recipe = ray_recipe(args, predictor)
    started = ray_env.connect(args.ray or None)
    try:
        yield map_ray(recipe.build, args.workers or None)
    finally:
        ray_env.disconnect(started)


def run(args: argparse.Namespace) -> int:
    """The ``autolabel`` command: 0, 1 when some images failed, 130 when interrupted."""
    from app.core.project import Project

    check_ray_args(args)
    with Project.open(args.project) as project:
        records = select_images(project, args.images)
        predictor = predictor_from_args(args, backend=args.backend)
        try:
            job = build_job(args, project, records, predictor)
            with _map_step(args, predictor) as step, \
                    progress_bar("autolabel", args.quiet) as progress:
                report = run_autolabel(project, job, records, step, progress=progress)
        finally:
            predictor.close()
        pending = project.proposals.counts().pending
    for line in _summary(report, job, predictor):
        print(line)
    print(f"  {pending} proposal(s) of the project wait for review")
    if report.interrupted:
        print("interrupted: the images done are kept; run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 1 if report.failed else 0
