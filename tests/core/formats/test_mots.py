"""MOTS export judged by TrackEval's MOTSChallenge dataset, overlaps, and reading back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from video_tracks_data import FRAMES, HEIGHT, WIDTH, evaluate, sample_video, tracker_folder

from app.core.errors import FormatError
from app.core.formats.mots import (
    class_ids,
    read_class_map,
    read_mots,
    write_mots,
    write_mots_results,
)
from app.core.formats.video_tracks import VideoAnnotations, VideoTrack, frame_file_names


def _trackeval_scores(tmp_path: Path, truth: VideoAnnotations,
                      tracked: VideoAnnotations) -> dict[str, float]:
    trackeval = pytest.importorskip("trackeval", reason="trackeval is not installed "
                                    "(make's dev install adds it: pip install --no-deps "
                                    "trackeval==1.3.0)")
    write_mots([truth], tmp_path / "gt")
    write_mots_results([tracked], tracker_folder(tmp_path, "trackers", "ours", "data"))
    dataset = trackeval.datasets.MOTSChallenge({
        "GT_FOLDER": str(tmp_path / "gt"), "TRACKERS_FOLDER": str(tmp_path / "trackers"),
        "OUTPUT_FOLDER": str(tmp_path / "out"), "SKIP_SPLIT_FOL": True,
        "SPLIT_TO_EVAL": "train", "PRINT_CONFIG": False})
    return evaluate(dataset)


def test_trackeval_scores_the_export_against_itself_perfectly(tmp_path: Path) -> None:
    video = sample_video()
    scores = _trackeval_scores(tmp_path, video, video)
    assert scores == pytest.approx({"HOTA": 1.0, "MOTA": 1.0, "IDF1": 1.0})  # MOTA = MOTSA


def test_trackeval_scores_a_shifted_track_lower(tmp_path: Path) -> None:
    scores = _trackeval_scores(tmp_path, sample_video(), sample_video(shift=8))
    assert scores["HOTA"] < 0.9
    assert scores["MOTA"] < 1.0


def test_lines_decode_exactly_with_ids_and_frames_from_one(tmp_path: Path) -> None:
    video = sample_video(("pedestrian", "dog"))
    report = write_mots([video], tmp_path)
    assert report.overlap_pixels == 0 and report.emptied == 0
    lines = (tmp_path / "walk" / "gt" / "gt.txt").read_text().splitlines()
    assert len(lines) == FRAMES + 4
    seen = set()
    for line in lines:
        frame, obj, cls, height, width, counts = line.split()
        assert (int(height), int(width)) == (HEIGHT, WIDTH)
        track = video.tracks[0] if int(obj) == 2001 else video.tracks[1]
        assert int(obj) in (2001, 1001) and int(obj) // 1000 == int(cls)
        mask = mask_utils.decode({"size": [HEIGHT, WIDTH], "counts": counts.encode()})
        np.testing.assert_array_equal(mask.astype(bool), track.masks[int(frame) - 1])
        seen.add((int(frame), int(obj)))
    assert min(f for f, _ in seen) == 1 and max(f for f, _ in seen) == FRAMES
    assert read_class_map(tmp_path / "classes.txt") == {1: "dog", 2: "pedestrian"}
    assert "seqLength=8" in (tmp_path / "walk" / "seqinfo.ini").read_text()
    assert (tmp_path / "seqmaps" / "MOTS-train.txt").read_text() == "name\nwalk\n"


def test_class_ids_keep_mots_names_and_skip_ignore() -> None:
    names = ["Car", "a", "b", "pedestrian", "c", "d", "e", "f", "g", "h", "i", "j"]
    ids = class_ids(names)
    assert ids["Car"] == 1 and ids["pedestrian"] == 2
    assert sorted(ids.values()) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13]


def test_overlaps_go_to_the_earlier_track_and_are_counted(tmp_path: Path) -> None:
    a = np.zeros((10, 10), dtype=bool)
    a[2:6, 2:6] = True
    b = np.zeros((10, 10), dtype=bool)
    b[4:8, 4:8] = True
    inside = np.zeros((10, 10), dtype=bool)
    inside[3:5, 3:5] = True
    video = VideoAnnotations("v", 10, 10, frame_file_names(1), [
        VideoTrack(1, "pedestrian", {0: a}), VideoTrack(2, "pedestrian", {0: b}),
        VideoTrack(3, "pedestrian", {0: inside})])
    report = write_mots([video], tmp_path)
    assert report.overlap_pixels == 4 + 4 and report.emptied == 1
    (back,) = read_mots(tmp_path)
    assert [t.track_id for t in back.tracks] == [2001, 2002]
    np.testing.assert_array_equal(back.tracks[0].masks[0], a)
    np.testing.assert_array_equal(back.tracks[1].masks[0], b & ~a)


def test_reader_reads_what_the_writer_wrote(tmp_path: Path) -> None:
    video = sample_video(("pedestrian", "dog"))
    write_mots([video], tmp_path / "gt")
    write_mots_results([video], tmp_path / "res", first_frame=0)  # KITTI MOTS numbering
    for src in (tmp_path / "gt", tmp_path / "res", tmp_path / "res" / "walk.txt"):
        (back,) = read_mots(src)
        assert (back.name, back.width, back.height, back.length) == ("walk", WIDTH, HEIGHT,
                                                                     FRAMES)
        assert [(t.category, sorted(t.masks)) for t in back.tracks] == \
            [(t.category, sorted(t.masks)) for t in video.tracks]
        for a, b in zip(back.tracks, video.tracks, strict=True):
            for frame, mask in b.masks.items():
                np.testing.assert_array_equal(a.masks[frame], mask)


def test_reader_reads_a_file_written_by_hand(tmp_path: Path) -> None:
    # MOTSChallenge's layout: frames from 1, a pedestrian, an ignore region, no class map
    seq = tmp_path / "MOTS20-02"
    (seq / "gt").mkdir(parents=True)
    (seq / "seqinfo.ini").write_text("[Sequence]\nname=MOTS20-02\nimDir=img1\nframeRate=30\n"
                                     "seqLength=3\nimWidth=3\nimHeight=2\nimExt=.jpg\n")
    (seq / "gt" / "gt.txt").write_text("1 2005 2 2 3 2111\n"
                                       "1 10000 10 2 3 51\n"
                                       "3 2005 2 2 3 111000\n")
    (video,) = read_mots(tmp_path)
    assert (video.name, video.width, video.height, video.length) == ("MOTS20-02", 3, 2, 3)
    assert video.frame_files[0] == "000001.jpg"
    (track,) = video.tracks
    assert (track.track_id, track.category, sorted(track.masks)) == (2005, "pedestrian", [0, 2])
    np.testing.assert_array_equal(track.masks[0], [[False, True, True], [False, False, True]])
    np.testing.assert_array_equal(track.masks[2], [[False, False, False], [True, True, True]])


def test_reader_names_the_file_and_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "seq.txt"
    bad.write_text("1 2001 2 2 3 2111\n2 2001 2 2 3\n")
    with pytest.raises(FormatError, match=r"seq\.txt, line 2: 5 fields"):
        read_mots(bad)
    bad.write_text("1 2001 2 2 3 2111\n1 2001 2 2 3 111000\n")
    with pytest.raises(FormatError, match="object 2001 twice on frame 1"):
        read_mots(bad)


def test_kitti_mots_reads_frames_from_zero_and_both_classes(tmp_path: Path) -> None:
    trackeval = pytest.importorskip("trackeval", reason="trackeval is not installed")
    truth, shifted = sample_video(("car", "pedestrian")), sample_video(("car", "pedestrian"), 8)
    write_mots_results([truth], tmp_path / "gt", first_frame=0)
    write_mots_results([shifted], tracker_folder(tmp_path, "trackers", "ours", "data"),
                       first_frame=0)
    lines = (tmp_path / "gt" / "walk.txt").read_text().splitlines()
    assert lines[0].startswith("0 1001 1 ") and any(" 2001 2 " in line for line in lines)
    config = {"GT_FOLDER": str(tmp_path / "gt"), "TRACKERS_FOLDER": str(tmp_path / "trackers"),
              "OUTPUT_FOLDER": str(tmp_path / "out"), "SEQ_INFO": {"walk": FRAMES},
              "GT_LOC_FORMAT": "{gt_folder}/{seq}.txt", "PRINT_CONFIG": False}
    dataset = trackeval.datasets.KittiMOTS(config)
    assert evaluate(dataset, "car")["HOTA"] < 0.9  # the shifted track
    assert evaluate(dataset, "pedestrian") == pytest.approx({"HOTA": 1.0, "MOTA": 1.0,
                                                             "IDF1": 1.0})
    (tmp_path / "trackers" / "ours" / "data" / "walk.txt").write_text(
        (tmp_path / "gt" / "walk.txt").read_text())
    for cls in ("car", "pedestrian"):
        one = evaluate(trackeval.datasets.KittiMOTS({**config, "CLASSES_TO_EVAL": [cls]}))
        assert one == pytest.approx({"HOTA": 1.0, "MOTA": 1.0, "IDF1": 1.0})
