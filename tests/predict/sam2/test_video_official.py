"""The video path (app/predict/sam2/video.py) against sam2's own ``SAM2VideoPredictor`` on the
same random weights and the same frame features: the same masks for a click anchor and a
mask anchor, forward and backward.

sam2's predictor is given the frames' features through its ``cached_features`` (its
``load_video_frames`` would read JPEG files with its own resize); everything after the
features, the memory bank included, is its own code.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import torch
from sam2.build_sam import build_sam2_video_predictor
from video_shots import FRAMES, TINY_CONFIG, shot, small_sam2

from app.core.types import Point, Prompt
from app.predict.cache.store import EmbeddingCache
from app.predict.propagation import PropagationRequest
from app.predict.sam2.predictor import SAM2Predictor
from app.predict.sam2.video import SAM2Propagator, SAM2VideoSession

pytestmark = pytest.mark.slow


def official_predictor(state_dict: dict[str, torch.Tensor], image_size: int) -> Any:
    """sam2's video predictor with ``build_sam2_video_predictor``'s settings, except hole
    filling (it needs sam2's CUDA extension)."""
    model = build_sam2_video_predictor(
        TINY_CONFIG, ckpt_path=None, device="cpu", mode="eval", apply_postprocessing=False,
        hydra_overrides_extra=[
            f"++model.image_size={image_size}",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
            "++model.binarize_mask_from_pts_for_mem_enc=true",
        ])
    model.load_state_dict(state_dict)
    return model.eval()


def official_state(session: SAM2VideoSession) -> dict[str, Any]:
    """``init_state``'s dict, with every frame's features in ``cached_features``."""
    h, w = session.hw
    dummy = torch.zeros(1, 3, 1, 1)  # the image itself is not read once features exist
    state: dict[str, Any] = {
        "images": None, "num_frames": session.length, "offload_video_to_cpu": False,
        "offload_state_to_cpu": False, "video_height": h, "video_width": w,
        "device": torch.device("cpu"), "storage_device": torch.device("cpu"),
        "point_inputs_per_obj": {}, "mask_inputs_per_obj": {},
        "cached_features": {i: (dummy, session.features(i)) for i in range(session.length)},
        "constants": {}, "obj_id_to_idx": OrderedDict(), "obj_idx_to_id": OrderedDict(),
        "obj_ids": [], "output_dict_per_obj": {}, "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }
    return state




def test_same_masks_as_sam2_video_predictor() -> None:
    model = small_sam2()
    pred = SAM2Predictor.from_model(model, "sam2.1-tiny-256-official",
                                    EmbeddingCache(disk_dir=None), runtime="torch")
    official = official_predictor(model.state_dict(), model.image_size)
    seq, gts = shot()
    # both sides read the same features: the cached (float16) embeddings of every frame
    pred.embed_batch([seq.frame(i) for i in range(FRAMES)])
    point = Point(30, 24)

    ours = SAM2Propagator(pred).open(seq)
    ours.add_prompt(0, 1, Prompt(points=(point,)))
    ours.add_mask(0, 2, gts[0])
    fwd = ours.propagate(PropagationRequest(0)).wait()
    assert ours.encoded == 0

    state = official_state(ours)
    with torch.inference_mode():
        official.add_new_points_or_box(state, 0, 1, points=np.array([[point.x, point.y]]),
                                       labels=np.array([1]))
        official.add_new_mask(state, 0, 2, gts[0])
        theirs = {f: (ids, (m > 0).cpu().numpy())
                  for f, ids, m in official.propagate_in_video(state)}
    assert sorted(theirs) == fwd.frames_done == list(range(FRAMES))
    for r in fwd.results:
        ids, masks = theirs[r.frame]
        assert ids == [1, 2]
        for k, track in enumerate(ids):
            assert np.array_equal(r.masks[track], masks[k, 0]), (r.frame, track)

    # backward from the last frame, each side from a fresh state
    back = SAM2Propagator(pred).open(seq)
    back.add_mask(FRAMES - 1, 1, gts[-1])
    ours_back = back.propagate(PropagationRequest(FRAMES - 1, direction=-1)).wait()
    state = official_state(back)
    with torch.inference_mode():
        official.add_new_mask(state, FRAMES - 1, 1, gts[-1])
        theirs = {f: (m > 0).cpu().numpy()
                  for f, _ids, m in official.propagate_in_video(state, reverse=True)}
    assert ours_back.frames_done == list(range(FRAMES - 1, -1, -1)) == list(theirs)
    for r in ours_back.results:
        assert np.array_equal(r.masks[1], theirs[r.frame][0, 0]), r.frame
