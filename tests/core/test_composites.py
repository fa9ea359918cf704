"""Composites for the find-all benchmark, from small photographs with masks written on the fly
(a folder laid out like the GrabCut benchmark), and the scoring of found masks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.composites import (
    CompositeError,
    CompositeSpec,
    build_composites,
    cut_out,
    load_photos,
    split_names,
)
from app.core.evaluation import DatasetError
from app.core.findall_eval import match_found, summarize


def write_dataset(root: Path, count: int = 6) -> Path:
    """``count`` photographs (noise of a colour each) with an ellipse object (255) ringed by
    an ignored band (128), as images/NAME.png and masks/NAME.png."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(5)
    for i in range(count):
        h, w = 120, 160
        image = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
        labels = np.zeros((h, w), np.uint8)
        cv2.ellipse(labels, (80, 60), (30 + 2 * i, 20), 0, 0, 360, 128, -1)
        cv2.ellipse(labels, (80, 60), (28 + 2 * i, 18), 0, 0, 360, 255, -1)
        image[labels == 255] = (40 * i % 255, 200, 255 - 30 * i)
        cv2.imwrite(str(root / "images" / f"photo{i}.png"), image[..., ::-1])
        cv2.imwrite(str(root / "masks" / f"photo{i}.png"), labels)
    return root


def test_split_halves_are_disjoint_seeded_and_complete() -> None:
    names = [f"n{i}" for i in range(11)]
    tune, test = split_names(names, "tune"), split_names(names, "test")
    assert len(tune) == 5 and len(test) == 6 and not set(tune) & set(test)
    assert sorted(tune + test) == sorted(names) == split_names(names, "all")
    assert split_names(list(reversed(names)), "tune") == tune  # the order given is irrelevant
    assert split_names(names, "tune", seed=1) != tune
    with pytest.raises(CompositeError, match="unknown split"):
        split_names(names, "train")


def test_cut_out_crops_to_the_object_with_its_band_half_transparent() -> None:
    labels = np.zeros((10, 12), np.uint8)
    labels[2:6, 3:9] = 128
    labels[3:5, 4:8] = 255
    image = np.full((10, 12, 3), 7, np.uint8)
    cut = cut_out("x", image, labels)
    assert cut.alpha.shape == (4, 6) and cut.rgb.shape == (4, 6, 3)
    assert cut.alpha[1, 1] == 1.0 and cut.alpha[0, 0] == 0.5
    with pytest.raises(CompositeError, match="x: the mask has no object"):
        cut_out("x", image, np.zeros((10, 12), np.uint8))


def test_composites_hold_whole_separate_copies_and_are_reproducible(tmp_path: Path) -> None:
    photos, cuts = load_photos(write_dataset(tmp_path / "ds"))
    assert sorted(photos) == [f"photo{i}" for i in range(6)]
    spec = CompositeSpec(side=200, object_size=(0.2, 0.3), copies=3, distractors=2)
    first = list(build_composites(photos, cuts, 4, spec, seed=3))
    again = list(build_composites(photos, cuts, 4, spec, seed=3))
    assert len(first) == 4
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.image, b.image) and a.background == b.background
    for comp in first:
        assert max(comp.image.shape[:2]) == 200
        assert len(comp.copies) == 3 and len(comp.distractors) == 2
        assert len({p.name for p in comp.copies}) == 1
        names = {comp.background, comp.copies[0].name, *(d.name for d in comp.distractors)}
        assert len(names) == 4  # background, target and distractors: different photographs
        placed = [*comp.copies, *comp.distractors]
        total = np.zeros(comp.image.shape[:2], int)
        for p in placed:
            total += p.mask
            ys, xs = np.nonzero(p.mask)
            assert p.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert total.max() == 1  # no two objects overlap
        assert comp.exemplar is comp.copies[0] and comp.targets == comp.copies[1:]
        # the pasted object's colour is in the composite where its mask is
        target = cuts[comp.copies[0].name]
        colour = target.rgb[target.alpha == 1.0].mean(axis=0)
        assert np.abs(comp.image[comp.copies[1].mask].mean(axis=0) - colour).max() < 25


def test_too_few_photographs_or_too_big_objects_are_errors(tmp_path: Path) -> None:
    photos, cuts = load_photos(write_dataset(tmp_path / "ds", count=3))
    with pytest.raises(CompositeError, match="3 photographs cannot make composites"):
        list(build_composites(photos, cuts, 1, CompositeSpec(distractors=2)))
    with pytest.raises(CompositeError, match="do not fit"):
        list(build_composites(photos, cuts, 1, CompositeSpec(side=100, object_size=(0.9, 0.95),
                                                             distractors=1)))
    with pytest.raises(DatasetError, match="no images/ folder"):
        load_photos(tmp_path)


def square(x0: int, y0: int, size: int = 10, shape: tuple[int, int] = (60, 60)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y0 + size, x0:x0 + size] = True
    return m


def test_matching_counts_each_target_once_and_names_the_false_positives() -> None:
    targets = [square(0, 0), square(20, 0)]
    exemplar, distractor = square(40, 0), square(0, 40)
    shifted = square(21, 0)  # IoU 90/110 with the second target
    found = [targets[0], shifted, square(20, 1), exemplar, distractor, square(40, 40)]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    row = match_found("c", found, scores, targets, exemplar, [distractor], 0.25)
    assert (row.targets, row.found, row.true_positives) == (2, 6, 2)
    assert (row.exemplar_found, row.distractors_found) == (1, 1)
    s = summarize([row, match_found("d", [], [], targets, exemplar, [], 0.75)], "classical",
                  "test", 0)
    assert s.targets == 4 and s.found == 6 and s.true_positives == 2
    assert s.recall == 0.5 and s.precision == pytest.approx(2 / 6)
    assert s.seconds_mean == 0.5 and s.seconds_max == 0.75
    nothing = summarize([match_found("e", [], [], targets, exemplar, [], 0.0)], "x", "all", 0)
    assert nothing.precision == 1.0 and nothing.recall == 0.0
