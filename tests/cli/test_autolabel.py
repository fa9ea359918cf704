"""``maskloop autolabel`` on a real project file with the classical backend: exemplars,
segment everything, a detector's boxes (COCO results, YOLO labels), resuming and Ctrl-C."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import shapely
from autolabel_data import MoonProject, box_of, iou, make_moon_project

from app.cli import main
from app.cli.autolabel_cmd import build_job, select_images
from app.cli.autolabel_work import AutolabelJob, ImageTask, TaskResult, map_local, run_autolabel
from app.core.geometry import geometry_to_mask
from app.core.jobs import CancelToken
from app.core.project import Project
from app.core.proposals import ProposalSource, ProposalStatus
from app.core.types import Source
from app.predict.classical.predictor import ClassicalPredictor

EXEMPLARS = ["--exemplars", "moon", "--backend", "classical", "--score-threshold", "0.9", "-q"]


@pytest.fixture
def moons(tmp_path: Path) -> MoonProject:
    return make_moon_project(tmp_path)


def instances_of(path: Path) -> list[tuple[int | None, str, bytes]]:
    with Project.open(path) as project:
        return [(i.id, i.label, shapely.to_wkb(i.geometry)) for i in project.all_instances()]


def best_iou(project: Project, image_path: str, truth: np.ndarray) -> float:
    record = project.image_by_path(image_path)
    assert record is not None
    found = project.proposals.find(record.id)
    return max((iou(geometry_to_mask(p.geometry, record.height, record.width), truth)
                for p in found), default=0.0)


@pytest.mark.slow
def test_exemplars_find_the_copies_and_a_rerun_skips_all(
        moons: MoonProject, capsys: pytest.CaptureFixture[str]) -> None:
    before = instances_of(moons.path)
    assert main(["autolabel", str(moons.path), *EXEMPLARS]) == 0
    out = capsys.readouterr().out
    assert "3 image(s) done, 0 skipped" in out
    with Project.open(moons.path) as project:
        for name, truth in moons.truth.items():
            assert best_iou(project, name, truth) >= 0.9, name
        found = project.proposals.find()
        assert found and all(p.status is ProposalStatus.PENDING for p in found)
        assert {(p.source, p.backend, p.made_by, p.label) for p in found} == {
            (ProposalSource.EXEMPLAR, "classical-grabcut", Source.CLASSICAL, "moon")}
        assert all(p.prompt.startswith("+box(") for p in found)
        stored = [p.id for p in found]
    assert instances_of(moons.path) == before  # the exemplar itself: untouched
    assert main(["autolabel", str(moons.path), *EXEMPLARS]) == 0
    assert "0 image(s) done, 3 skipped (done before)" in capsys.readouterr().out
    with Project.open(moons.path) as project:
        assert [p.id for p in project.proposals.find()] == stored
    # a subset of the images of the same run: all done already
    assert main(["autolabel", str(moons.path), *EXEMPLARS, "--images", "moon_on_*"]) == 0
    assert "0 image(s) done, 2 skipped" in capsys.readouterr().out


@pytest.mark.slow
def test_an_interrupted_run_keeps_what_finished_and_resumes(
        moons: MoonProject, capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C during the second image: the first stays stored and done, the rerun does the
    other two and skips it."""
    predictor = ClassicalPredictor()
    local = map_local(predictor)

    def interrupted(tasks: Sequence[ImageTask], job: AutolabelJob,
                    cancel: CancelToken | None) -> Iterator[TaskResult]:
        results = local(tasks, job, cancel)
        yield next(results)
        raise KeyboardInterrupt

    with Project.open(moons.path) as project:
        records = select_images(project, ["moon_on_*", "fullmoon.png"])
        args = _args(["--exemplars", "moon", "--score-threshold", "0.9"])
        job = build_job(args, project, records, predictor)
        report = run_autolabel(project, job, records, interrupted)
        assert report.interrupted and report.done == 1 and report.skipped == 0
        first = records[0]
        assert project.proposals.done_images(job.run_key) == {first.id}
        assert {p.image_id for p in project.proposals.find()} <= {first.id}
    assert main(["autolabel", str(moons.path), *EXEMPLARS]) == 0
    assert "2 image(s) done, 1 skipped (done before)" in capsys.readouterr().out
    with Project.open(moons.path) as project:
        for name, truth in moons.truth.items():
            assert best_iou(project, name, truth) >= 0.9, name


def test_cancel_stops_after_the_image_under_way(moons: MoonProject) -> None:
    cancel = CancelToken()
    with Project.open(moons.path) as project:
        records = select_images(project, ["fullmoon.png", "moon_on_86016.png"])
        job = build_job(_args(["--boxes", str(_yolo(moons, 0.7))]), project, records,
                        ClassicalPredictor())

        def progress(done: int, total: int, message: str) -> None:
            if done:  # the first image is stored: stop
                cancel.cancel()

        report = run_autolabel(project, job, records, map_local(ClassicalPredictor()),
                               progress=progress, cancel=cancel)
        assert report.interrupted and report.done == 1
        assert len(project.proposals.done_images(job.run_key)) == 1


def _args(extra: list[str]) -> argparse.Namespace:
    """The options of ``maskloop autolabel`` (the project argument unused)."""
    from app.cli import build_parser

    return build_parser().parse_args(["autolabel", "unused.maskloop", *extra])


def _yolo(moons: MoonProject, conf: float | None) -> Path:
    """A YOLO labels folder with one box around each pasted moon (class 0 = moon)."""
    folder = moons.path.parent / "dets"
    folder.mkdir(exist_ok=True)
    (folder / "classes.txt").write_text("moon\n")
    with Project.open(moons.path) as project:
        for name, truth in moons.truth.items():
            record = project.image_by_path(name)
            assert record is not None
            x0, y0, x1, y1 = box_of(truth)
            W, H = record.width, record.height
            line = f"0 {(x0 + x1) / 2 / W} {(y0 + y1) / 2 / H} {(x1 - x0) / W} {(y1 - y0) / H}"
            suffix = "" if conf is None else f" {conf}"
            (folder / f"{Path(name).stem}.txt").write_text(line + suffix + "\n")
    return folder


def test_boxes_from_a_yolo_folder(moons: MoonProject,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    folder = _yolo(moons, 0.7)
    before = instances_of(moons.path)
    assert main(["autolabel", str(moons.path), "--boxes", str(folder), "--backend",
                 "classical", "-q"]) == 0
    assert "3 image(s) done" in capsys.readouterr().out
    with Project.open(moons.path) as project:
        found = project.proposals.find()
        assert len(found) == 2
        assert {(p.source, p.label, p.score) for p in found} == {
            (ProposalSource.BOXES, "moon", 0.7)}
        assert all(p.prompt.startswith("box ") and p.prompt.endswith(" from dets")
                   for p in found)
        for name, truth in moons.truth.items():
            assert best_iou(project, name, truth) >= 0.8, name
    assert instances_of(moons.path) == before
    # the same boxes again: all skipped; the file changed: a new run
    assert main(["autolabel", str(moons.path), "--boxes", str(folder), "--backend",
                 "classical", "-q"]) == 0
    assert "0 image(s) done, 3 skipped" in capsys.readouterr().out
    _yolo(moons, 0.6)
    assert main(["autolabel", str(moons.path), "--boxes", str(folder), "--backend",
                 "classical", "-q"]) == 0
    assert "3 image(s) done, 0 skipped" in capsys.readouterr().out


def test_boxes_from_coco_results_with_their_dataset(
        moons: MoonProject, capsys: pytest.CaptureFixture[str]) -> None:
    names = sorted(moons.truth)
    dataset = {"images": [{"id": 10 + i, "file_name": f"val/{n}", "width": 1, "height": 1}
                          for i, n in enumerate(names)],
               "categories": [{"id": 3, "name": "moon"}]}
    results = []
    for i, name in enumerate(names):
        x0, y0, x1, y1 = box_of(moons.truth[name])
        results.append({"image_id": 10 + i, "category_id": 3,
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "score": 0.5 + i / 10})
    results.append({"image_id": 99, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.9})
    (moons.path.parent / "dataset.json").write_text(json.dumps(dataset))
    (moons.path.parent / "dets.json").write_text(json.dumps(results))
    args = ["autolabel", str(moons.path), "--boxes", str(moons.path.parent / "dets.json"),
            "--coco-dataset", str(moons.path.parent / "dataset.json"), "--backend",
            "classical", "-q"]
    assert main(args) == 2  # image 99 is not in the dataset
    assert "dets.json: detection 2: image_id 99 is not in the dataset's images" in \
        capsys.readouterr().err
    (moons.path.parent / "dets.json").write_text(json.dumps(results[:2]))
    assert main(args) == 0
    with Project.open(moons.path) as project:
        found = project.proposals.find()
        assert sorted(p.score or 0.0 for p in found) == [0.5, 0.6]
        assert {p.label for p in found} == {"moon"}
        assert all(p.prompt.endswith("from dets.json") for p in found)
        for name, truth in moons.truth.items():
            assert best_iou(project, name, truth) >= 0.8, name


def test_everything_makes_unlabelled_proposals(moons: MoonProject,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["autolabel", str(moons.path), "--everything", "--images", "fullmoon.png",
                 "--backend", "classical", "-q"]) == 0
    assert "1 image(s) done" in capsys.readouterr().out
    with Project.open(moons.path) as project:
        found = project.proposals.find()
        assert found and {(p.source, p.label, p.prompt) for p in found} == {
            (ProposalSource.EVERYTHING, None, "everything")}
        assert project.instance_count() == 1


def test_bad_requests_are_one_line_errors(moons: MoonProject,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    base = ["autolabel", str(moons.path), "--backend", "classical", "-q"]
    assert main([*base, "--text", "person, car"]) == 2
    assert "does not understand text prompts" in capsys.readouterr().err
    assert main([*base, "--exemplars", "cat"]) == 2
    assert "no label 'cat'" in capsys.readouterr().err
    assert main([*base, "--everything", "--images", "nothing*"]) == 2
    assert "nothing*: matches no image" in capsys.readouterr().err
    bad = moons.path.parent / "bad"
    bad.mkdir()
    (bad / "moon_on_86016.txt").write_text("0 0.5 0.5 0.2\n")
    assert main([*base, "--boxes", str(bad)]) == 2
    assert "moon_on_86016.txt:1: expected 'class cx cy w h [conf]'" in capsys.readouterr().err
    with Project.open(moons.path) as project:
        assert project.proposals.find() == []


@pytest.mark.slow
def test_boxes_with_random_weight_sam2(moons: MoonProject,
                                       sam2_tiny_checkpoint: tuple[Path, str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The SAM2 path (embed, a box prompt, the best candidate), plumbing only: random
    weights make arbitrary masks. The run key holds the model, so a rerun skips."""
    checkpoint, config = sam2_tiny_checkpoint
    folder = _yolo(moons, None)
    args = ["autolabel", str(moons.path), "--boxes", str(folder), "--images",
            "moon_on_21077.png", "--checkpoint", str(checkpoint), "--config", config,
            "--device", "cpu", "-q"]
    assert main(args) == 0
    assert "1 image(s) done, 0 skipped" in capsys.readouterr().out
    with Project.open(moons.path) as project:
        found = project.proposals.find()
        assert all(p.made_by is Source.SAM2 and p.label == "moon" and p.score is not None
                   for p in found)
        (key,) = {row["run_key"] for row in project.query("SELECT run_key FROM autolabel_done")}
        model_id = key.split("|")[-1]  # a custom checkpoint's id
        assert key.startswith("boxes|sha256:") and model_id.startswith("custom-")
        assert {p.backend for p in found} <= {model_id}
    assert main(args) == 0
    assert "0 image(s) done, 1 skipped" in capsys.readouterr().out


def test_an_unreadable_image_fails_alone_and_is_retried(
        moons: MoonProject, capsys: pytest.CaptureFixture[str]) -> None:
    image = moons.images / "moon_on_21077.png"
    good = image.read_bytes()
    image.write_bytes(good[:200])  # truncated
    args = ["autolabel", str(moons.path), "--boxes", str(_yolo(moons, 0.9)),
            "--backend", "classical", "-q"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "2 image(s) done, 0 skipped (done before), 1 failed" in out
    assert "failed: " in out and "moon_on_21077.png" in out
    image.write_bytes(good)
    assert main(args) == 0
    assert "1 image(s) done, 2 skipped (done before), 0 failed" in capsys.readouterr().out
    with Project.open(moons.path) as project:
        assert best_iou(project, image.name, moons.truth[image.name]) >= 0.8
