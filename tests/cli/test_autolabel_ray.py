"""``maskloop autolabel --ray``: the per-image step on Ray actors (classical backend, a local
Ray of 2 CPUs), the results stored by the driver alone: the same proposals as the local
run, a rerun skips every image."""

from __future__ import annotations

import importlib.util
import pickle
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import shapely
from autolabel_data import MoonProject, box_of, make_moon_project

from app.cli import main
from app.cli.autolabel_cmd import build_job, select_images
from app.cli.autolabel_work import AutolabelJob, ImageTask, TaskResult, map_ray, run_autolabel
from app.cluster.worker_model import ClassicalModel
from app.core.jobs import CancelToken
from app.core.project import Project
from app.predict.classical.predictor import ClassicalPredictor

pytestmark = pytest.mark.slow


def _cluster_fixtures() -> object:
    """tests/cluster/conftest.py, loaded under its own name: its ``local_ray`` fixture (one
    local Ray per module) is reused here rather than copied."""
    path = Path(__file__).resolve().parents[1] / "cluster" / "conftest.py"
    spec = importlib.util.spec_from_file_location("cluster_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


local_ray = _cluster_fixtures().local_ray  # type: ignore[attr-defined]

Stored = list[tuple[str, str, bytes, str, str | None, float | None, str]]


def write_yolo(moons: MoonProject) -> Path:
    """A YOLO labels folder with one box around each pasted moon (class 0 = moon)."""
    folder = moons.path.parent / "dets"
    folder.mkdir(exist_ok=True)
    (folder / "classes.txt").write_text("moon\n")
    with Project.open(moons.path) as project:
        for name, truth in moons.truth.items():
            record = project.image_by_path(name)
            assert record is not None
            x0, y0, x1, y1 = box_of(truth)
            w, h = record.width, record.height
            (folder / f"{Path(name).stem}.txt").write_text(
                f"0 {(x0 + x1) / 2 / w} {(y0 + y1) / 2 / h} {(x1 - x0) / w} {(y1 - y0) / h}\n")
    return folder


def stored(path: Path) -> Stored:
    """Every proposal of the project, by image path, in a comparable form."""
    with Project.open(path) as project:
        paths = {r.id: r.path for r in project.images()}
        return sorted((paths[p.image_id], p.source.value, shapely.to_wkb(p.geometry),
                       p.prompt, p.label, p.score, p.backend)
                      for p in project.proposals.find())


def autolabel(moons: MoonProject, *extra: str) -> list[str]:
    return ["autolabel", str(moons.path), "--boxes", str(write_yolo(moons)), "--backend",
            "classical", "-q", *extra]


def test_ray_stores_what_the_local_run_stores_and_a_rerun_skips(
        local_ray: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    here = make_moon_project(tmp_path / "local")
    there = make_moon_project(tmp_path / "ray")
    assert main(autolabel(here)) == 0
    assert "3 image(s) done, 0 skipped" in capsys.readouterr().out
    assert main(autolabel(there, "--ray", local_ray, "--workers", "2")) == 0
    assert "3 image(s) done, 0 skipped" in capsys.readouterr().out
    expected = stored(here.path)
    assert len(expected) == 2  # one moon in each composite, none in the empty-box image
    assert stored(there.path) == expected
    assert main(autolabel(there, "--ray", local_ray)) == 0
    assert "0 image(s) done, 3 skipped (done before)" in capsys.readouterr().out
    assert stored(there.path) == expected


def test_ray_with_random_weight_sam2_names_the_driver_model(
        local_ray: str, tmp_path: Path, sam2_tiny_checkpoint: tuple[Path, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    """The SAM2 recipe: each worker builds the checkpoint the driver names (plumbing only:
    random weights make arbitrary masks); the proposals carry the driver's model id."""
    checkpoint, config = sam2_tiny_checkpoint
    moons = make_moon_project(tmp_path)
    args = ["autolabel", str(moons.path), "--boxes", str(write_yolo(moons)), "--checkpoint",
            str(checkpoint), "--config", config, "--device", "cpu", "--runtime", "torch",
            "--images", "moon_on_*", "-q", "--ray", local_ray, "--workers", "2"]
    assert main(args) == 0
    assert "2 image(s) done, 0 skipped" in capsys.readouterr().out
    with Project.open(moons.path) as project:
        (key,) = {row["run_key"] for row in project.query("SELECT run_key FROM autolabel_done")}
        model_id = key.split("|")[-1]
        assert model_id.startswith("custom-")
        assert {p.backend for p in project.proposals.find()} <= {model_id}
    assert main(args) == 0
    assert "0 image(s) done, 2 skipped" in capsys.readouterr().out


def test_only_the_driver_writes_the_project(local_ray: str, tmp_path: Path) -> None:
    """What travels to the workers never names the project file, and after each result the
    file holds exactly the images the driver stored before it."""
    moons = make_moon_project(tmp_path)
    folder = write_yolo(moons)
    from app.cli import build_parser

    args = build_parser().parse_args(["autolabel", str(moons.path), "--boxes", str(folder)])
    ray_step = map_ray(ClassicalModel().build, workers=2)
    with Project.open(moons.path) as project:
        records = select_images(project, None)
        job = build_job(args, project, records, ClassicalPredictor())
        seen: list[int] = []

        def watched(tasks: Sequence[ImageTask], job: AutolabelJob,
                    cancel: CancelToken | None) -> Iterator[TaskResult]:
            assert moons.path.name.encode() not in pickle.dumps((list(tasks), job))
            for task, result in ray_step(tasks, job, cancel):
                assert project.proposals.done_images(job.run_key) == set(seen)
                seen.append(task.image_id)
                yield task, result

        report = run_autolabel(project, job, records, watched)
        assert report.done == 3 and not report.failed
        assert project.proposals.done_images(job.run_key) == set(seen) == {
            r.id for r in records}


def test_ray_refuses_a_remote_backend_and_workers_without_ray(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    moons = make_moon_project(tmp_path)
    base = ["autolabel", str(moons.path), "--everything", "-q"]
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "ray", None)  # as if maskloop[cluster] were not installed
        assert main([*base, "--ray"]) == 2
        assert "pip install 'maskloop[cluster]'" in capsys.readouterr().err
    assert main([*base, "--workers", "2"]) == 2
    assert "--workers goes with --ray" in capsys.readouterr().err
    assert main([*base, "--ray", "--server", "http://127.0.0.1:9"]) == 2
    assert "drop --server/--hosted" in capsys.readouterr().err
    with Project.open(moons.path) as project:
        assert project.proposals.find() == []
