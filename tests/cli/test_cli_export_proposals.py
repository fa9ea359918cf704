"""``maskloop export`` leaves proposals out unless ``--include-proposals``; judged by
pycocotools, which is what reads COCO files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from shapely.geometry import Polygon, box

from app.cli import main
from app.core.commands import AcceptProposal, RejectProposal, UndoStack
from app.core.project import Project
from app.core.proposals import NewProposal, ProposalSource
from app.core.types import Instance, Source


@pytest.fixture
def project_path(tmp_path: Path) -> Path:
    """Two images; one manual instance; pending, accepted, rejected and unlabelled
    proposals."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(images / name)
    path = tmp_path / "p.maskloop"
    assert main(["new", str(path), "--images", str(images), "-q"]) == 0
    with Project.open(path) as project:
        a, b = project.images()
        assert a.id is not None and b.id is not None
        project.add_instance(Instance(a.id, "cat", box(2, 2, 20, 20)))
    return path


def _propose(path: Path) -> None:
    with Project.open(path) as project:
        a, b = project.images()
        assert a.id is not None and b.id is not None

        def new(geom: Polygon, label: str | None, score: float) -> NewProposal:
            return NewProposal(geom, ProposalSource.BOXES, "classical-grabcut",
                               Source.CLASSICAL, "box from dets.json", score, label)

        ids = project.proposals.add(a.id, [new(box(30, 5, 50, 25), "dog", 0.9),
                                           new(box(55, 5, 75, 25), "dog", 0.8),
                                           new(box(30, 30, 50, 50), "cat", 0.7),
                                           new(box(5, 35, 25, 55), None, 0.6)])
        project.proposals.add(b.id, [new(box(10, 10, 40, 40), "bird", 0.5)])
        stack = UndoStack(project, a.id)
        stack.push(AcceptProposal(ids[0]))  # now an instance
        stack.push(RejectProposal(ids[1]))  # never exported


def _coco(folder: Path) -> COCO:
    return COCO(str(folder / "annotations.json"))


def _by_label(coco: COCO) -> dict[str, int]:
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    counts: dict[str, int] = {}
    for ann in coco.loadAnns(coco.getAnnIds()):
        counts[names[ann["category_id"]]] = counts.get(names[ann["category_id"]], 0) + 1
    return counts


def test_default_export_leaves_proposals_out(project_path: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(project_path), "--format", "coco", "--out",
                 str(tmp_path / "before"), "-q"]) == 0
    assert "proposals" not in capsys.readouterr().out  # nothing to say without proposals
    _propose(project_path)
    assert main(["export", str(project_path), "--format", "coco", "--out",
                 str(tmp_path / "after"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "Exported 2 image(s) and 2 instance(s)" in out
    assert "3 pending proposal(s) not exported" in out
    assert _by_label(_coco(tmp_path / "after")) == {"cat": 1, "dog": 1}  # the accepted dog
    # the instances' annotations are the same as before the proposals were made
    before, after = _coco(tmp_path / "before"), _coco(tmp_path / "after")
    cat = [a for a in after.loadAnns(after.getAnnIds()) if a["bbox"] == [2.0, 2.0, 18.0, 18.0]]
    assert len(cat) == 1 and before.loadAnns(before.getAnnIds())[0]["segmentation"] == \
        cat[0]["segmentation"]


def test_include_proposals_exports_the_pending_labelled_ones(
        project_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _propose(project_path)
    out_dir = tmp_path / "with"
    assert main(["export", str(project_path), "--format", "coco", "--out", str(out_dir),
                 "--include-proposals", "--verify", "-q"]) == 0
    out = capsys.readouterr().out
    assert "Exported 2 image(s) and 4 instance(s)" in out
    assert "2 pending proposal(s) exported as instances, 1 without a label skipped" in out
    coco = _coco(out_dir)
    assert _by_label(coco) == {"cat": 2, "dog": 1, "bird": 1}
    image_b = next(i for i in coco.loadImgs(coco.getImgIds()) if i["file_name"] == "b.png")
    (bird,) = coco.loadAnns(coco.getAnnIds(imgIds=[image_b["id"]]))
    assert bird["score"] == 0.5 and bird["bbox"] == [10.0, 10.0, 30.0, 30.0]
    assert int(coco.annToMask(bird).sum()) == 900
    with Project.open(project_path) as project:  # the export changed nothing
        assert project.proposals.counts().pending == 3 and project.instance_count() == 2


def test_include_proposals_for_yolo_too(project_path: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _propose(project_path)
    assert main(["export", str(project_path), "--format", "yolo", "--out",
                 str(tmp_path / "y"), "--include-proposals", "--images", "b.png", "-q"]) == 0
    assert "1 pending proposal(s) exported as instances, 0 without" in capsys.readouterr().out
    (label_file,) = (tmp_path / "y" / "labels").rglob("b.txt")
    assert len(label_file.read_text().splitlines()) == 1


def test_info_counts_proposals(project_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(project_path)]) == 0
    assert "proposals:" not in capsys.readouterr().out
    _propose(project_path)
    assert main(["info", str(project_path)]) == 0
    assert "proposals:  3 pending, 1 accepted, 1 rejected" in capsys.readouterr().out
    assert main(["info", str(project_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["proposals"] == {
        "pending": 3, "accepted": 1, "rejected": 1}
