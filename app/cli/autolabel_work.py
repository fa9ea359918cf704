"""The work of ``maskloop autolabel``: a pure per-image step and the loop that stores it.

``propose_for_image(predictor, task, job)`` reads one image and turns it into
``NewProposal``s, writing nothing: it is the *map* step. ``map_local`` runs it here, image
after image; ``map_ray`` (``--ray``) runs the same function on Ray actors, each with its own
predictor built from a picklable recipe (``app.cluster.image_map.map_on_ray``), and yields
the same ``(task, proposals | message)`` pairs. ``run_autolabel`` is the driver and the only writer
of the project file (SQLite has one writer): it skips images already done for the job's run
key, drops proposals that repeat an instance already there, and stores each image's
proposals together with its "done" mark in one transaction, so an interrupted run keeps every
image it finished and a rerun carries on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from app.core.errors import Cancelled, ImageError
from app.core.formats.detections import Detection
from app.core.geometry import mask_to_geometry
from app.core.jobs import CancelToken, Progress, check
from app.core.project import Project
from app.core.proposals import NewProposal, ProposalSource
from app.core.types import Box, Geometry, ImageRecord, MaskProposal, Prompt
from app.predict.base import EverythingOptions, Exemplar, FindQuery, Predictor


@dataclass(frozen=True)
class ExemplarSource:
    """An accepted instance used as a positive exemplar: where it lies (image id, pixels),
    its box and its mask."""

    image_id: int
    box: tuple[float, float, float, float]
    mask: np.ndarray = field(repr=False)
    pixels: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class AutolabelJob:
    """What to propose for every image, the same for all of them (plain values, so that a
    worker process can receive it). ``kind`` picks the tool; ``query`` holds the texts (text)
    and thresholds; ``exemplars`` (exemplar); ``everything`` (everything); ``boxes`` by
    image id and ``boxes_name`` (boxes). ``label`` names proposals that have no label of
    their own. ``run_key`` identifies the run for resuming."""

    kind: ProposalSource
    run_key: str
    query: FindQuery = FindQuery()
    exemplars: tuple[ExemplarSource, ...] = ()
    everything: EverythingOptions = EverythingOptions()
    boxes: Mapping[int, Sequence[Detection]] = field(default_factory=dict)
    boxes_name: str = ""
    label: str | None = None


@dataclass(frozen=True)
class ImageTask:
    """One image to work on: its record and where its file is."""

    record: ImageRecord
    path: Path

    @property
    def image_id(self) -> int:
        return int(self.record.id or 0)


# the result of one task: its proposals, or why it failed (the image is then not marked done)
TaskResult = tuple[ImageTask, list[NewProposal] | str]
MapStep = Callable[[Sequence[ImageTask], AutolabelJob, CancelToken | None],
                   Iterator[TaskResult]]


def _geometry(mask: np.ndarray) -> Geometry | None:
    """The mask's polygon; None when it is empty (or, rarely, not a valid polygon): such a
    mask is no proposal, and must not stop the run."""
    geom = mask_to_geometry(mask)
    return geom if geom is not None and not geom.is_empty and geom.is_valid else None


def _query_for(job: AutolabelJob, image_id: int) -> FindQuery:
    """The job's query for one image: exemplars found in it are searched without their
    picture (``Exemplar.image`` None), those of other images with theirs."""
    if job.kind is not ProposalSource.EXEMPLAR:
        return job.query
    exemplars = tuple(
        Exemplar(e.box, True, e.mask, None if e.image_id == image_id else e.pixels)
        for e in job.exemplars)
    return replace(job.query, exemplars=exemplars)


def propose_for_image(predictor: Predictor, task: ImageTask, job: AutolabelJob,
                      cancel: CancelToken | None = None) -> list[NewProposal]:
    """The proposals of one image for ``job``: reads the image file, writes nothing. Its
    signature is the Ray seam's ``per_image(predictor, item, context)``
    (``app.cluster.image_map.map_on_ray``). Raises ImageError when the image cannot be
    read, PredictorError when the backend fails."""
    from app.core.images import load_image

    try:
        image = load_image(task.path)
    except OSError as exc:
        raise ImageError(f"{task.path}: {exc.strerror or exc}") from exc
    return propose_from_pixels(predictor, task, image, job, cancel)


def propose_from_pixels(predictor: Predictor, task: ImageTask, image: np.ndarray,
                        job: AutolabelJob, cancel: CancelToken | None = None) -> list[NewProposal]:
    """The proposals of one image (RGB uint8 pixels) for ``job``; reads and writes no file."""
    made_by = predictor.capabilities.source
    backend = predictor.model_id

    def proposal(geom: Geometry, prompt: str, score: float | None,
                 label: str | None) -> NewProposal:
        return NewProposal(geom, job.kind, backend, made_by, prompt, score, label)

    boxes = job.boxes.get(task.image_id, ())
    if job.kind is ProposalSource.BOXES and not boxes:
        return []  # no encode for an image the detector found nothing in
    key = predictor.embed(image, image_hash=task.record.content_hash or None, cancel=cancel)
    out: list[NewProposal] = []
    if job.kind is ProposalSource.BOXES:
        for det in boxes:
            check(cancel)
            result = predictor.predict(key, Prompt(box=Box(*det.box)))
            geom = _geometry(result.mask(result.best))
            if geom is not None:
                prompt = "box " + ",".join(f"{v:g}" for v in (round(c, 1) for c in det.box))
                score = det.score if det.score is not None else float(result.scores[result.best])
                out.append(proposal(geom, f"{prompt} from {job.boxes_name}", score, det.label))
        return out
    found: list[MaskProposal]
    if job.kind is ProposalSource.EVERYTHING:
        found = predictor.segment_everything(key, job.everything, cancel=cancel)
        prompt_of = "everything"
    else:
        query = _query_for(job, task.image_id)
        found = predictor.find_all(key, query, cancel=cancel)
        prompt_of = query.describe()
    for item in found:
        geom = _geometry(item.mask)
        if geom is None:
            continue
        label = job.label
        if job.kind is ProposalSource.TEXT:
            label = item.prompt or job.label
        out.append(proposal(geom, item.prompt or prompt_of, float(item.score), label))
    return out


def _propose_one(predictor: Predictor, task: ImageTask, job: AutolabelJob,
                 cancel: CancelToken | None = None) -> list[NewProposal] | str:
    """``propose_for_image``, with an image that cannot be read or that the backend fails
    on turned into its message (module-level, so that Ray ships it to workers by name)."""
    from app.predict.base import PredictorError

    try:
        return propose_for_image(predictor, task, job, cancel)
    except ImageError as exc:
        return str(exc)
    except PredictorError as exc:
        return f"{task.path}: {exc}"


def map_local(predictor: Predictor) -> MapStep:
    """The map step on this process: ``propose_for_image`` for each task, in order; an
    image that cannot be read or that the backend fails on comes back as a message."""

    def run(tasks: Sequence[ImageTask], job: AutolabelJob,
            cancel: CancelToken | None) -> Iterator[TaskResult]:
        for task in tasks:
            check(cancel)
            yield task, _propose_one(predictor, task, job, cancel)
    return run


def map_ray(build: Callable[[], Predictor], workers: int | None = None) -> MapStep:
    """The map step on the connected Ray: ``workers`` actors (default: one per GPU, else per
    CPU) each build a predictor once with ``build`` (a picklable recipe's ``build``, e.g.
    ``app.cluster.worker_model.WorkerModel.build``) and stream results back as they finish;
    only the tasks and the job travel, never the project file."""
    from app.cluster.image_map import map_on_ray

    def run(tasks: Sequence[ImageTask], job: AutolabelJob,
            cancel: CancelToken | None) -> Iterator[TaskResult]:
        return map_on_ray(tasks, _propose_one, build, context=job, workers=workers,
                          cancel=cancel)
    return run


@dataclass
class AutolabelReport:
    """What a run did: images done now, skipped (done before), failed (path, message),
    proposals stored, proposals not stored for repeating an instance or a proposal, and
    whether it was interrupted."""

    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    proposals: int = 0
    duplicates: int = 0
    interrupted: bool = False


def _new_only(project: Project, image_id: int,
              proposals: list[NewProposal]) -> tuple[list[NewProposal], int]:
    """The proposals that repeat nothing the image has (an instance, such as the
    exemplar found again, or a pending or rejected proposal: ``ProposalStore.repeats``),
    and how many did."""
    repeats = project.proposals.repeats(image_id, [p.geometry for p in proposals])
    kept = [p for p, ref in zip(proposals, repeats, strict=True) if ref is None]
    return kept, len(proposals) - len(kept)


def run_autolabel(project: Project, job: AutolabelJob, records: Sequence[ImageRecord],
                  map_step: MapStep, *, progress: Progress | None = None,
                  cancel: CancelToken | None = None) -> AutolabelReport:
    """Propose for ``records`` (those not yet done for ``job.run_key``) through
    ``map_step``, storing each image as it comes. Ctrl-C or ``cancel`` stop it after the
    image under way; what finished stays."""
    report = AutolabelReport()
    done_before = project.proposals.done_images(job.run_key)
    tasks = [ImageTask(r, project.image_path(r)) for r in records if r.id not in done_before]
    report.skipped = len(records) - len(tasks)
    total = len(records)

    def tell(message: str) -> None:
        if progress is not None:
            progress(report.skipped + report.done + len(report.failed), total, message)

    tell("")
    results = map_step(tasks, job, cancel)
    try:
        for task, result in results:
            if isinstance(result, str):
                report.failed.append(result)
            else:
                kept, repeats = _new_only(project, task.image_id, result)
                project.proposals.add_for_run(task.image_id, job.run_key, kept)
                report.done += 1
                report.proposals += len(kept)
                report.duplicates += repeats
            tell(task.record.path)
            check(cancel)
    except (KeyboardInterrupt, Cancelled):
        report.interrupted = True
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
    return report
