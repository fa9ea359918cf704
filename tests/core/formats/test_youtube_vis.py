"""YouTube-VIS export judged by TrackEval's YouTubeVIS dataset, and read back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from video_tracks_data import FRAMES, HEIGHT, WIDTH, evaluate, sample_video, tracker_folder

from app.core.errors import FormatError
from app.core.formats.video_tracks import VideoAnnotations
from app.core.formats.youtube_vis import (
    read_youtube_vis,
    uncompressed_rle,
    write_youtube_vis,
    write_youtube_vis_results,
)

LABELS = ("person", "car")


def _trackeval_scores(tmp_path: Path, truth: VideoAnnotations,
                      tracked: VideoAnnotations) -> dict[str, float]:
    trackeval = pytest.importorskip("trackeval", reason="trackeval is not installed "
                                    "(make's dev install adds it: pip install --no-deps "
                                    "trackeval==1.3.0)")
    gt = tracker_folder(tmp_path, "gt", "youtube_vis_test")
    write_youtube_vis([truth], gt / "instances.json")
    data = tracker_folder(tmp_path, "trackers", "youtube_vis_test", "ours", "data")
    write_youtube_vis_results([tracked], data / "results.json", categories=list(LABELS))
    dataset = trackeval.datasets.YouTubeVIS({
        "GT_FOLDER": f"{tmp_path / 'gt'}/", "TRACKERS_FOLDER": f"{tmp_path / 'trackers'}/",
        "OUTPUT_FOLDER": str(tmp_path / "out"), "SPLIT_TO_EVAL": "test",
        "PRINT_CONFIG": False})
    return evaluate(dataset)


def test_trackeval_scores_the_export_against_itself_perfectly(tmp_path: Path) -> None:
    video = sample_video(LABELS)
    scores = _trackeval_scores(tmp_path, video, video)
    assert scores == pytest.approx({"HOTA": 1.0, "MOTA": 1.0, "IDF1": 1.0})


def test_trackeval_scores_a_shifted_track_lower(tmp_path: Path) -> None:
    scores = _trackeval_scores(tmp_path, sample_video(LABELS), sample_video(LABELS, shift=8))
    assert scores["HOTA"] < 0.9
    assert scores["MOTA"] < 1.0


def test_pycocotools_decodes_every_mask_exactly(tmp_path: Path) -> None:
    video = sample_video(LABELS)
    write_youtube_vis([video], tmp_path / "gt.json")
    write_youtube_vis_results([video], tmp_path / "res.json")
    doc = json.loads((tmp_path / "gt.json").read_text())
    results = json.loads((tmp_path / "res.json").read_text())
    assert doc["videos"][0]["file_names"][0] == "walk/00000.jpg"
    assert doc["videos"][0]["length"] == FRAMES
    for ann, res, track in zip(doc["annotations"], results, video.tracks, strict=True):
        assert ann["id"] == track.track_id and ann["iscrowd"] == 0
        assert res["score"] == pytest.approx(track.score())
        for frame in range(FRAMES):
            seg, compressed = ann["segmentations"][frame], res["segmentations"][frame]
            if frame not in track.masks:
                assert seg is None and compressed is None and ann["areas"][frame] is None
                continue
            assert isinstance(seg["counts"], list) and isinstance(compressed["counts"], str)
            expected = track.masks[frame]
            decoded = mask_utils.decode(mask_utils.frPyObjects(seg, HEIGHT, WIDTH))
            np.testing.assert_array_equal(decoded.astype(bool), expected)
            np.testing.assert_array_equal(mask_utils.decode(compressed).astype(bool), expected)
            assert ann["areas"][frame] == int(expected.sum())
            x, y, w, h = ann["bboxes"][frame]
            assert expected[int(y):int(y + h), int(x):int(x + w)].sum() == expected.sum()


def test_uncompressed_rle_of_a_mask_starting_with_ones() -> None:
    mask = np.zeros((3, 4), dtype=bool)
    mask[0, 0] = mask[2, 3] = True
    rle = uncompressed_rle(mask)
    assert rle["counts"][0] == 0
    decoded = mask_utils.decode(mask_utils.frPyObjects(rle, 3, 4)).astype(bool)
    np.testing.assert_array_equal(decoded, mask)


def test_reader_reads_what_the_writer_wrote(tmp_path: Path) -> None:
    video = sample_video(LABELS)
    write_youtube_vis([video], tmp_path / "gt.json")
    (back,) = read_youtube_vis(tmp_path / "gt.json")
    assert (back.name, back.width, back.height, back.frame_files) == \
        (video.name, video.width, video.height, video.frame_files)
    assert [(t.track_id, t.category, sorted(t.masks)) for t in back.tracks] == \
        [(t.track_id, t.category, sorted(t.masks)) for t in video.tracks]
    for a, b in zip(back.tracks, video.tracks, strict=True):
        for frame, mask in b.masks.items():
            np.testing.assert_array_equal(a.masks[frame], mask)


def test_reader_reads_a_file_written_by_hand(tmp_path: Path) -> None:
    # the dataset's layout: uncompressed RLE, a compressed one and a polygon, null frames
    doc = {
        "info": {}, "licenses": [],
        "videos": [{"id": 7, "width": 3, "height": 2, "length": 3,
                    "file_names": ["cat_video/a.jpg", "cat_video/b.jpg", "cat_video/c.jpg"]}],
        "categories": [{"id": 4, "name": "cat", "supercategory": "animal"}],
        "annotations": [{
            "id": 11, "video_id": 7, "category_id": 4, "iscrowd": 0, "height": 2, "width": 3,
            "length": 3, "areas": [2, None, 3], "bboxes": [None, None, None],
            "segmentations": [{"size": [2, 3], "counts": [1, 2, 3]}, None,
                              {"size": [2, 3], "counts": "2111"}]}],
    }
    path = tmp_path / "hand.json"
    path.write_text(json.dumps(doc))
    (video,) = read_youtube_vis(path)
    assert (video.name, video.width, video.height) == ("cat_video", 3, 2)
    assert video.frame_files == ["a.jpg", "b.jpg", "c.jpg"]
    (track,) = video.tracks
    assert (track.track_id, track.category, sorted(track.masks)) == (11, "cat", [0, 2])
    np.testing.assert_array_equal(track.masks[0], [[False, True, False], [True, False, False]])
    np.testing.assert_array_equal(track.masks[2], [[False, True, True], [False, False, True]])


def test_reader_names_the_file_and_the_problem(tmp_path: Path) -> None:
    video = sample_video(LABELS)
    write_youtube_vis([video], tmp_path / "gt.json")
    doc = json.loads((tmp_path / "gt.json").read_text())
    doc["annotations"][1]["segmentations"] = doc["annotations"][1]["segmentations"][:3]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=r"bad\.json: annotation 2: 3 segmentations"):
        read_youtube_vis(tmp_path / "bad.json")
    shutil.copy(tmp_path / "gt.json", tmp_path / "list.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(FormatError, match="results list"):
        read_youtube_vis(tmp_path / "list.json")
