"""Propagation into the project store (app/predict/track_propagation.py): anchors read from a
real project file, the classical backend (and SAM2's video memory, random weights) run over a
real folder of frames, every frame written as it comes; anchors never overwritten, a cancel
keeping exactly the finished frames, a correction replacing only the frames after it, a lost
track's stale masks cleared."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from app.core.geometry import geometry_to_mask, mask_to_geometry
from app.core.jobs import CancelToken
from app.core.project import Project
from app.core.types import Instance, InstanceOrigin, Source
from app.predict.classical.propagate import ClassicalPropagator
from app.predict.propagation import PropagationRequest
from app.predict.track_propagation import (
    FrameWritten,
    Segment,
    iter_propagate_tracks,
    plan_track,
    propagate_tracks,
    run_end,
)

W, H, FRAMES = 96, 72, 12


def texture(seed: int = 0) -> np.ndarray:
    """A smooth random background with fine grain (optical flow needs something to see)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 150, (H // 8, W // 8, 3)).astype(np.float32)
    ground = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)
    return np.clip(ground + rng.integers(-12, 12, (H, W, 3)), 0, 255).astype(np.uint8)


def disc(t: int, radius: float = 12.0) -> np.ndarray:
    """The red disc of frame ``t``: it moves right by 2 pixels a frame."""
    yy, xx = np.mgrid[:H, :W]
    return np.asarray((xx + 0.5 - (24 + 2 * t)) ** 2 + (yy + 0.5 - 26) ** 2 < radius ** 2)


def block(t: int) -> np.ndarray:
    """The blue rectangle of frame ``t``: it moves left by 2 pixels a frame."""
    m = np.zeros((H, W), bool)
    m[44:62, 70 - 2 * t:94 - 2 * t] = True
    return m


def write_frames(folder: Path, masks: list[list[tuple[np.ndarray, tuple[int, int, int]]]]) -> Path:
    """Frames 00000.png.. of ``folder``: the background with each (mask, colour) painted."""
    folder.mkdir(parents=True)
    ground = texture()
    for i, painted in enumerate(masks):
        f = ground.copy()
        for mask, colour in painted:
            f[mask] = colour
        Image.fromarray(f).save(folder / f"{i:05d}.png")
    return folder


RED, BLUE = (220, 40, 40), (40, 70, 225)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A project with one frame folder: a disc and a rectangle, each a track anchored on
    frame 0 with its true shape."""
    shot = write_frames(tmp_path / "images" / "shot",
                        [[(disc(t), RED), (block(t), BLUE)] for t in range(FRAMES)])
    proj = Project.create(tmp_path / "p.maskloop", tmp_path / "images")
    rec = proj.sequences.add(shot)
    assert rec.id is not None and rec.frame_count == FRAMES
    for label, truth in (("ball", disc), ("box", block)):
        track = proj.sequences.add_track(rec.id, label)
        frame0 = proj.sequences.frame_image(rec.id, 0)
        assert frame0.id is not None and track.id is not None
        proj.add_instance(Instance(frame0.id, label, mask_to_geometry(truth(0)),
                                   track_id=track.id))
    return proj


def stored(project: Project, track: int) -> dict[int, Instance]:
    """Frame -> the track's one instance there."""
    rec = project.sequences.all()[0]
    assert rec.id is not None
    out = {}
    for frame, insts in project.sequences.instances(rec.id, track).items():
        assert len(insts) == 1
        out[frame] = insts[0]
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def ids(project: Project) -> tuple[int, dict[str, int]]:
    rec = project.sequences.all()[0]
    assert rec.id is not None
    return rec.id, {t.label: int(t.id or 0) for t in project.sequences.tracks(rec.id)}


# --- planning ---------------------------------------------------------------------------------


def test_plan_starts_on_an_anchor_or_the_stored_mask() -> None:
    assert plan_track(1, {0}, None, 0, 1, 20) == [Segment(1, 0, 20)]
    seed = Instance(7, "x", mask_to_geometry(disc(0)), id=3)
    assert plan_track(1, {0}, seed, 5, 1, 20) == [Segment(1, 5, 20, seed)]


def test_plan_goes_back_to_the_nearest_anchor_or_on_to_the_first() -> None:
    # no mask on the start frame: from the nearest anchor before it
    assert plan_track(1, {0, 3}, None, 5, 1, 20) == [Segment(1, 3, 20)]
    # none before: from the first anchor inside the range
    assert plan_track(1, {9}, None, 5, 1, 20) == [Segment(1, 9, 20)]
    assert plan_track(1, {30}, None, 5, 1, 20) == (
        "it has no anchor to start from between frames 5 and 20")
    assert plan_track(1, set(), None, 5, 1, 20) == "it has no anchor"


def test_plan_splits_at_later_anchors_in_either_direction() -> None:
    assert plan_track(1, {0, 8, 15}, None, 0, 1, 12) == [Segment(1, 0, 7), Segment(1, 8, 12)]
    assert plan_track(1, {20, 8}, None, 20, -1, 0) == [Segment(1, 20, 9), Segment(1, 8, 0)]


def test_run_end_clips_to_the_sequence() -> None:
    assert run_end(0, 1, None, 10) == 9
    assert run_end(2, 1, 3, 10) == 5
    assert run_end(2, 1, 30, 10) == 9
    assert run_end(4, -1, None, 10) == 0


# --- runs into the store ----------------------------------------------------------------------


def test_propagation_writes_every_frame_and_keeps_the_anchors(project: Project) -> None:
    seq, tracks = ids(project)
    anchors_before = project.sequences.anchors(seq)
    seen: list[tuple[int, int]] = []
    summary = propagate_tracks(project, ClassicalPropagator(), seq, start=0,
                               progress=lambda d, t, _m: seen.append((d, t)))
    assert not summary.cancelled and not summary.lost and not summary.not_started
    for label, truth in (("ball", disc), ("box", block)):
        t = tracks[label]
        assert summary.written[t] == list(range(1, FRAMES))
        assert summary.kept[t] == [0]
        inst = stored(project, t)
        assert sorted(inst) == list(range(FRAMES))
        assert inst[0] == anchors_before[t][0]  # the person's, untouched
        for f in range(1, FRAMES):
            assert inst[f].origin == InstanceOrigin.PROPAGATED
            assert inst[f].source == Source.CLASSICAL and inst[f].label == label
            assert iou(geometry_to_mask(inst[f].geometry, H, W), truth(f)) > 0.9
    assert seen[-1] == (FRAMES, FRAMES) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_cancel_keeps_exactly_the_finished_frames(project: Project) -> None:
    seq, tracks = ids(project)
    token = CancelToken()
    k = 4

    def progress(done: int, _total: int, _message: str) -> None:
        if done == k + 1:  # frame 0 (the anchors) and frames 1..k are done
            token.cancel()

    summary = propagate_tracks(project, ClassicalPropagator(), seq, start=0,
                               progress=progress, cancel=token)
    assert summary.cancelled
    for t in tracks.values():
        assert summary.written[t] == list(range(1, k + 1))
        assert sorted(stored(project, t)) == list(range(k + 1))


def test_one_step_per_frame_and_closing_early_keeps_the_steps_done(project: Project) -> None:
    seq, tracks = ids(project)
    both = tuple(sorted(tracks.values()))
    steps = iter_propagate_tracks(project, ClassicalPropagator(), seq, start=0)
    first, second, third = next(steps), next(steps), next(steps)
    assert first == FrameWritten(0, (), both, (), 1, FRAMES)  # the anchors: left as they are
    assert second == FrameWritten(1, both, (), (), 2, FRAMES)
    assert third.frame == 2 and third.done == 3
    steps.close()  # as the prediction service does on a cancel
    for t in tracks.values():
        assert sorted(stored(project, t)) == [0, 1, 2]
    # the session and the frames were let go: a new run over the same sequence goes on
    summary = propagate_tracks(project, ClassicalPropagator(), seq, start=2)
    assert all(summary.written[t] == list(range(3, FRAMES)) for t in tracks.values())


def test_a_correction_is_followed_and_replaces_only_the_frames_after_it(
        project: Project) -> None:
    seq, tracks = ids(project)
    ball = tracks["ball"]
    propagate_tracks(project, ClassicalPropagator(), seq, start=0, tracks=[ball])
    first = stored(project, ball)
    # the person moves the disc on frame 5 (a wrong propagation, say): it becomes an anchor
    moved = np.roll(disc(5), 6, axis=0)
    assert first[5].id is not None
    project.update_geometry(first[5].id, mask_to_geometry(moved))
    summary = propagate_tracks(project, ClassicalPropagator(), seq, start=5, tracks=[ball])
    assert summary.written[ball] == list(range(6, FRAMES)) and summary.kept[ball] == [5]
    after = stored(project, ball)
    for f in range(0, 5):
        assert after[f] == first[f]  # same id, same geometry, same origin
    assert after[5].origin == InstanceOrigin.ANCHOR
    assert after[5].geometry.equals(mask_to_geometry(moved))
    # followed from the correction: what the backend gives from the corrected mask alone
    frames = project.sequences.open(seq)
    alone = ClassicalPropagator().open(frames)
    alone.add_mask(5, 1, geometry_to_mask(after[5].geometry, H, W))
    direct = {r.frame: r.masks[1] for r in alone.propagate(PropagationRequest(5)).wait().results}
    frames.close()
    for f in range(6, FRAMES):
        assert after[f].id == first[f].id and after[f].origin == InstanceOrigin.PROPAGATED
        assert after[f].geometry.equals(mask_to_geometry(direct[f]))
    assert not after[6].geometry.equals(first[6].geometry)
    # a run from 0 stops before the anchor on 5 and goes on from it: nothing over it
    again = propagate_tracks(project, ClassicalPropagator(), seq, start=0, tracks=[ball])
    assert again.kept[ball] == [0, 5]
    assert again.written[ball] == [f for f in range(1, FRAMES) if f != 5]
    assert stored(project, ball)[5] == after[5]


def test_a_run_goes_on_from_the_stored_mask_on_its_start_frame(project: Project) -> None:
    seq, tracks = ids(project)
    box = tracks["box"]
    propagate_tracks(project, ClassicalPropagator(), seq, start=0, count=5, tracks=[box])
    before = stored(project, box)
    summary = propagate_tracks(project, ClassicalPropagator(), seq, start=5, tracks=[box])
    assert summary.written[box] == list(range(6, FRAMES)) and box not in summary.kept
    after = stored(project, box)
    assert all(after[f] == before[f] for f in range(6))  # the start frame's too
    assert all(iou(geometry_to_mask(after[f].geometry, H, W), block(f)) > 0.9
               for f in range(6, FRAMES))


def test_backward_from_a_later_anchor(project: Project) -> None:
    seq, tracks = ids(project)
    ball = tracks["ball"]
    frame9 = project.sequences.frame_image(seq, 9)
    assert frame9.id is not None
    project.add_instance(Instance(frame9.id, "ball", mask_to_geometry(disc(9)), track_id=ball))
    summary = propagate_tracks(project, ClassicalPropagator(), seq, start=9, direction=-1,
                               tracks=[ball])
    assert summary.written[ball] == list(range(8, 0, -1)) and summary.kept[ball] == [9, 0]
    inst = stored(project, ball)
    assert all(iou(geometry_to_mask(inst[f].geometry, H, W), disc(f)) > 0.9
               for f in range(1, 9))


def test_a_lost_track_leaves_no_stale_masks(tmp_path: Path) -> None:
    # the disc shrinks and is gone from frame 4: the classical backend loses it on frame 6
    def shrinking(t: int) -> np.ndarray:
        return disc(0, radius=max(0.0, 16 - 4 * t))

    shot = write_frames(tmp_path / "images" / "gone", [[(shrinking(t), RED)] for t in range(10)])
    project = Project.create(tmp_path / "p.maskloop", tmp_path / "images")
    rec = project.sequences.add(shot)
    assert rec.id is not None
    track = project.sequences.add_track(rec.id, "ball")
    assert track.id is not None
    frame0 = project.sequences.frame_image(rec.id, 0)
    assert frame0.id is not None
    project.add_instance(Instance(frame0.id, "ball", mask_to_geometry(shrinking(0)),
                                  track_id=track.id))
    # an earlier run's masks (made when the object was still there, say) on frames 3..9
    for f in range(3, 10):
        project.sequences.put_propagated(rec.id, f, track.id, mask_to_geometry(disc(f)), 1.0)
    summary = propagate_tracks(project, ClassicalPropagator(), rec.id, start=0)
    assert summary.lost == {track.id: 6}
    assert summary.written[track.id] == [1, 2, 3, 4, 5]
    assert summary.cleared == 4  # frames 6..9
    assert sorted(project.sequences.instances(rec.id, track.id)) == [0, 1, 2, 3, 4, 5]


def test_unknown_tracks_and_frames_are_refused(project: Project) -> None:
    from app.core.errors import ProjectError

    seq, _tracks = ids(project)
    with pytest.raises(ProjectError, match="no track 999"):
        propagate_tracks(project, ClassicalPropagator(), seq, start=0, tracks=[999])
    with pytest.raises(ProjectError, match="frame 40 is out of range"):
        propagate_tracks(project, ClassicalPropagator(), seq, start=40)
    lonely = project.sequences.add_track(seq, "kite")
    assert lonely.id is not None
    with pytest.raises(ProjectError, match="nothing to propagate.*no anchor"):
        propagate_tracks(project, ClassicalPropagator(), seq, start=0, tracks=[lonely.id])


@pytest.mark.slow
def test_sam2_video_memory_writes_each_frame(project: Project) -> None:
    """SAM2.1 tiny with random weights at a 256-pixel input (its masks are noise): the job
    drives the video session over the project's frames (their embeddings named after the
    sequence's content hash) and writes or clears each frame, never the anchors."""
    import torch
    from sam2.build_sam import build_sam2

    from app.core.types import EmbeddingKey
    from app.predict.cache.store import EmbeddingCache
    from app.predict.propagation import propagator_for
    from app.predict.sam2.predictor import SAM2Predictor

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu",
                           mode="eval", hydra_overrides_extra=["++model.image_size=256"])
    predictor = SAM2Predictor.from_model(model, "sam2.1-tiny-256-random",
                                         EmbeddingCache(disk_dir=None), runtime="torch")
    seq, tracks = ids(project)
    rec = project.sequences.get(seq)
    anchors_before = project.sequences.anchors(seq)
    summary = propagate_tracks(project, propagator_for(predictor), seq, start=0, count=4,
                               stop_when_lost=False)
    for t in tracks.values():
        inst = stored(project, t)
        done = summary.written.get(t, [])
        assert inst[0] == anchors_before[t][0] and summary.kept[t] == [0]
        # each frame 1..4 was written, or its mask was empty and it holds no instance
        assert sorted(done + summary.empty.get(t, [])) == [1, 2, 3, 4]
        assert sorted(set(inst) - {0}) == done
        assert all(inst[f].source == Source.SAM2 for f in done)
    assert summary.masks_written >= 1
    for f in range(5):  # every frame went through the encoder, cached under the frame's name
        key = EmbeddingKey(f"{rec.content_hash}#{f}", predictor.model_id)
        assert predictor.cache.get(key) is not None
