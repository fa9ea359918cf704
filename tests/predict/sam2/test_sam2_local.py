"""SAM2Predictor on a real tiny SAM2.1 model with random weights, on the CPU.

Encoding runs the real Hiera encoder at 1024x1024 (seconds on a CPU), so the images are
encoded once per module and shared; the module is marked slow.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.cli.backend import add_model_args, predictor_from_args
from app.core.errors import Cancelled
from app.core.images import array_hash
from app.core.jobs import CancelToken
from app.core.types import Box, EmbeddingKey, MaskResult, Point, Prompt
from app.predict.base import EverythingOptions, Predictor, PredictorError
from app.predict.cache.store import EmbeddingCache
from app.predict.sam2.model import guess_config, load_sam2, read_state_dict
from app.predict.sam2.predictor import SAM2Predictor

pytestmark = pytest.mark.slow

SIZES = {"small": (64, 48), "wide": (300, 200)}  # (width, height)


def make_image(width: int, height: int, seed: int) -> np.ndarray:
    """A bright disc on a dark noisy background, (height, width, 3) uint8."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    disc = (xx - width * 0.4) ** 2 + (yy - height * 0.5) ** 2 < (min(width, height) * 0.3) ** 2
    img[disc] = (220, 180, 40)
    return img


class CountingForward:
    """Counts encoder runs and keeps their inputs: a forward pre-hook on Hiera's patch
    embedding, the encoder's first module (the real call, only recorded)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.calls = 0
        self.records: list[tuple[torch.Tensor]] = []
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def __enter__(self) -> CountingForward:
        def counted(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            self.calls += 1
            self.records.append((args[0].clone(),))

        self._handle = self.model.image_encoder.trunk.patch_embed.register_forward_pre_hook(
            counted)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._handle is not None
        self._handle.remove()


@pytest.fixture(scope="module")
def predictor(sam2_tiny_checkpoint: tuple[Path, str], tmp_path_factory) -> SAM2Predictor:
    """Loaded through the real CLI path: --checkpoint PATH --config NAME --device cpu."""
    path, config = sam2_tiny_checkpoint
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    args = parser.parse_args(["--checkpoint", str(path), "--config", config, "--device", "cpu"])
    cache = EmbeddingCache(disk_dir=tmp_path_factory.mktemp("emb"))
    pred = predictor_from_args(args, cache=cache)
    assert isinstance(pred, SAM2Predictor)
    return pred


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    return {name: make_image(w, h, seed=i) for i, (name, (w, h)) in enumerate(SIZES.items())}


@pytest.fixture(scope="module")
def encoder_runs(predictor: SAM2Predictor, images: dict[str, np.ndarray]) -> dict[str, tuple]:
    """Embed every image once: name -> (key, encoder input)."""
    result = {}
    for name, img in images.items():
        with CountingForward(predictor.model) as counter:
            key = predictor.embed(img, image_hash=f"test-{name}")
        assert counter.calls == 1
        result[name] = (key, *counter.records[0])
    return result


@pytest.fixture(scope="module")
def keys(encoder_runs: dict[str, tuple]) -> dict[str, EmbeddingKey]:
    return {name: run[0] for name, run in encoder_runs.items()}


def test_custom_checkpoint_loads_through_cli(predictor: SAM2Predictor) -> None:
    assert isinstance(predictor, Predictor)
    assert predictor.model_id.startswith("custom-") and len(predictor.model_id) == 23
    assert predictor.config == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert predictor.device.type == "cpu"
    assert "on cpu (fp32)" in predictor.description


def test_embedding_is_float16_and_8_mib(predictor, keys, images) -> None:
    for name, key in keys.items():
        assert key == EmbeddingKey(f"test-{name}", predictor.model_id)
        emb = predictor.cache.get(key)
        assert emb is not None
        assert emb.image_size == images[name].shape[:2]
        shapes = {n: a.shape for n, a in emb.arrays.items()}
        assert shapes == {"image_embed": (1, 256, 64, 64),
                          "high_res_feats_0": (1, 32, 256, 256),
                          "high_res_feats_1": (1, 64, 128, 128)}
        assert all(a.dtype == np.float16 for a in emb.arrays.values())
        assert emb.nbytes == 8 * 1024 * 1024
        assert all(np.isfinite(a).all() for a in emb.arrays.values())


@pytest.mark.parametrize("name", list(SIZES))
@pytest.mark.parametrize("multimask", [True, False])
def test_predict_shapes_and_dtypes(predictor, keys, images, name, multimask) -> None:
    h, w = images[name].shape[:2]
    result = predictor.predict(keys[name], Prompt(points=(Point(w / 2, h / 2),),
                                                  multimask=multimask))
    n = 3 if multimask else 1
    assert isinstance(result, MaskResult)
    assert result.masks.shape == (n, h, w) and result.masks.dtype == np.bool_
    assert result.scores.shape == (n,) and result.scores.dtype == np.float32
    assert result.low_res_logits.shape == (n, 256, 256)
    assert result.low_res_logits.dtype == np.float32
    assert np.abs(result.low_res_logits).max() <= 32.0
    assert result.logits_for(result.best).shape == (1, 256, 256)


PROMPTS = {
    "points": Prompt(points=(Point(120.5, 100.5), Point(250.5, 20.5, positive=False))),
    "box": Prompt(box=Box(60, 40, 200, 170)),
    "reversed box": Prompt(box=Box(200, 170, 60, 40)),
    "mixed": Prompt(points=(Point(120.5, 100.5), Point(10.5, 10.5, False)),
                    box=Box(60, 40, 200, 170), multimask=False),
}


@pytest.mark.parametrize("kind", list(PROMPTS))
def test_predict_matches_official_predictor_maths(predictor, keys, kind) -> None:
    """Our lean path vs the official SAM2ImagePredictor.predict code on the same tensors."""
    prompt = PROMPTS[kind]
    ours = predictor.predict(keys["wide"], prompt)
    masks, ious, low_res = predictor.raw_decode(keys["wide"], prompt)
    np.testing.assert_array_equal(ours.masks, masks > 0.5)
    np.testing.assert_allclose(ours.scores, ious, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.low_res_logits, low_res, rtol=0, atol=1e-5)


def test_reversed_box_is_normalised(predictor, keys) -> None:
    a = predictor.predict(keys["wide"], PROMPTS["box"])
    b = predictor.predict(keys["wide"], PROMPTS["reversed box"])
    np.testing.assert_array_equal(a.low_res_logits, b.low_res_logits)


def test_sam2_building_blocks_give_the_same_features_and_logits(predictor, encoder_runs, images):
    """The encoder's input is the image resized (bilinear) and normalised; sam2's own
    ``forward_image`` on it, put through sam2's own calls in the test
    (_prepare_backbone_features, no_mem_embed), gives the stored features; the prompt
    encoder and mask decoder called here give our logits."""
    model = predictor.model
    key, batch = encoder_runs["small"]
    image = images["small"]
    h, w = image.shape[:2]
    # upscaling: bilinear (align_corners=False) equals OpenCV's INTER_LINEAR on float32
    resized = cv2.resize(image.astype(np.float32) / 255, (1024, 1024),
                         interpolation=cv2.INTER_LINEAR)
    expected = (resized - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert batch.shape == (1, 3, 1024, 1024) and batch.dtype == torch.float32
    np.testing.assert_allclose(batch[0].permute(1, 2, 0).numpy(), expected, atol=1e-4)
    with torch.inference_mode():
        backbone_out = model.forward_image(batch)
        _, vision_feats, _, _ = model._prepare_backbone_features(backbone_out)
        vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
        embed = vision_feats[-1].permute(1, 2, 0).reshape(1, 256, 64, 64)
        s0 = vision_feats[0].permute(1, 2, 0).reshape(1, 32, 256, 256)
        s1 = vision_feats[1].permute(1, 2, 0).reshape(1, 64, 128, 128)
        feats = predictor.activate(key)
        for ours, theirs in [(feats.image_embed, embed), (feats.high_res_feats[0], s0),
                             (feats.high_res_feats[1], s1)]:
            assert ours.dtype == torch.float32
            # stored as float16: equal to the float32 features rounded to float16
            torch.testing.assert_close(ours, theirs.half().float(), rtol=0, atol=0)

        point = np.array([[[20.5 * 1024 / w, 30.5 * 1024 / h]]], dtype=np.float32)
        sparse, dense = model.sam_prompt_encoder(
            points=(torch.from_numpy(point), torch.tensor([[1]], dtype=torch.int32)),
            boxes=None, masks=None)
        low_res, iou, _, _ = model.sam_mask_decoder(
            image_embeddings=feats.image_embed, image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=True, repeat_image=False, high_res_features=feats.high_res_feats)
        full = F.interpolate(low_res, (h, w), mode="bilinear", align_corners=False)
    result = predictor.predict(key, Prompt(points=(Point(20.5, 30.5),)))
    np.testing.assert_array_equal(result.masks, (full > 0)[0].numpy())
    np.testing.assert_array_equal(result.scores, iou[0].numpy())
    np.testing.assert_array_equal(result.low_res_logits, low_res.clamp(-32, 32)[0].numpy())


def test_upscale_equals_interpolate_through_one_reused_buffer(predictor) -> None:
    """Full-resolution masks: candidate by candidate through one float32 buffer, equal to
    the official one-shot interpolate + threshold, at any size and after size changes."""
    low_res = torch.randn(3, 256, 256, generator=torch.Generator().manual_seed(4)) * 4
    buffers = []
    for hw in [(37, 53), (200, 300), (37, 53), (37, 53), (3000, 2000), (3000, 2000)]:
        with torch.inference_mode():
            masks = predictor._upscale(low_res, hw)
        expected = F.interpolate(low_res[None], hw, mode="bilinear", align_corners=False) > 0
        assert masks.dtype == np.bool_ and masks.shape == (3, *hw)
        np.testing.assert_array_equal(masks, expected[0].numpy())
        buffers.append(predictor._upscale_buf)
    assert buffers[2] is buffers[3] and buffers[0] is not buffers[1]
    assert buffers[3].shape == (1, 3, 37, 53) and buffers[3].dtype == torch.float32
    # 3 x 6 Mpx: one candidate at a time, never a (3, H, W) float32 temporary in the buffer
    assert buffers[4] is buffers[5] and buffers[5].shape == (1, 1, 3000, 2000)


@pytest.mark.parametrize("kind", ["points", "box", "mixed", "unprompted"])
def test_full_resolution_masks_are_lazy_and_equal_the_eager_ones(predictor, keys, kind):
    """Issue 14: a click upscales only the best candidate (the one shown first); each other
    candidate is upscaled when asked for, on any thread, and equals today's interpolate of
    the raw logits of all candidates at once + threshold."""
    import threading

    key = keys["wide"]
    feats = predictor.activate(key)
    h, w = feats.orig_hw
    with torch.inference_mode():
        if kind == "unprompted":
            low_res, _ = predictor._decode(feats, None, None, None, True)
            result = predictor.predict_unprompted(key)
        else:
            coords, labels = predictor._prompt_points(PROMPTS[kind], feats.orig_hw)
            low_res, _ = predictor._decode(feats, coords, labels, None,
                                           PROMPTS[kind].multimask)
            result = predictor.predict(key, PROMPTS[kind])
        expected = (F.interpolate(low_res.float(), (h, w), mode="bilinear",
                                  align_corners=False) > 0)[0].numpy()
    assert result.size == (h, w) and len(result) == expected.shape[0]
    assert result.made == {result.best}
    order = sorted(range(len(result)), key=lambda i: i == result.best)  # others first
    got: dict[int, np.ndarray] = {}
    other = threading.Thread(target=lambda: got.update({order[0]: result.mask(order[0])}))
    other.start()
    other.join()
    for i in order:
        mask = got.get(i, result.mask(i))
        assert mask.dtype == np.bool_ and mask.shape == (h, w)
        np.testing.assert_array_equal(mask, expected[i])
        assert result.mask(i) is result.mask(i)  # upscaled once
    assert result.made == set(range(len(result)))
    np.testing.assert_array_equal(result.masks, expected)
    np.testing.assert_array_equal(result.mask(-1), expected[-1])


def test_masks_of_an_earlier_click_stay_intact(predictor, keys) -> None:
    first = predictor.predict(keys["wide"], PROMPTS["points"])
    kept = first.masks.copy()
    second = predictor.predict(keys["wide"], PROMPTS["box"])
    assert not np.array_equal(second.masks, kept)
    np.testing.assert_array_equal(first.masks, kept)
    assert not np.shares_memory(first.masks, second.masks)


def test_refinement_with_mask_input_changes_the_result(predictor, keys) -> None:
    key = keys["wide"]
    first = predictor.predict(key, Prompt(points=(Point(120.5, 100.5),)))
    prompt = Prompt(points=(Point(120.5, 100.5), Point(40.5, 150.5, False)), multimask=False)
    plain = predictor.predict(key, prompt)
    refined_prompt = Prompt(points=prompt.points, multimask=False,
                            mask_input=first.logits_for(first.best))
    refined = predictor.predict(key, refined_prompt)
    assert not np.allclose(plain.low_res_logits, refined.low_res_logits)
    _, _, official = predictor.raw_decode(key, refined_prompt)
    np.testing.assert_allclose(refined.low_res_logits, official, rtol=0, atol=1e-5)
    # a (256, 256) mask is accepted too
    flat = Prompt(points=prompt.points, multimask=False, mask_input=first.low_res_logits[0])
    np.testing.assert_array_equal(predictor.predict(key, flat).low_res_logits,
                                  refined.low_res_logits)


def test_cache_hit_skips_encoding_and_equals_fresh_path(predictor, keys, images) -> None:
    key = keys["small"]
    fresh = predictor.predict(key, PROMPTS["mixed"])
    with CountingForward(predictor.model) as counter:
        assert predictor.embed(images["small"], image_hash="test-small") == key  # memory hit
        predictor.activate(keys["wide"])
        assert predictor.embed(images["small"], image_hash="test-small") == key
        assert counter.calls == 0
        # a new predictor (new process: empty memory) on the same disk cache
        reopened = SAM2Predictor.from_model(
            predictor.model, predictor.model_id, EmbeddingCache(disk_dir=predictor.cache.disk_dir))
        assert reopened.embed(images["small"], image_hash="test-small") == key
        assert counter.calls == 0
        assert reopened.cache.stats.disk_hits == 1
    cached = reopened.predict(key, PROMPTS["mixed"])
    np.testing.assert_array_equal(cached.masks, fresh.masks)
    np.testing.assert_array_equal(cached.scores, fresh.scores)
    np.testing.assert_array_equal(cached.low_res_logits, fresh.low_res_logits)


def test_embed_batch_runs_the_encoder_on_batches(predictor, keys, images) -> None:
    extra = make_image(50, 70, seed=11)
    batch = [images["small"], images["wide"], extra]
    hashes = ["batch-small", "test-wide", None]  # the second one is cached already
    with CountingForward(predictor.model) as counter:
        got = predictor.embed_batch(batch, hashes, batch_size=2)
    assert counter.calls == 1 and counter.records[0][0].shape == (2, 3, 1024, 1024)
    assert got == [EmbeddingKey("batch-small", predictor.model_id), keys["wide"],
                   EmbeddingKey(array_hash(extra), predictor.model_id)]
    batched = predictor.cache.get(got[0])
    single = predictor.cache.get(keys["small"])
    assert batched is not None and single is not None
    assert batched.image_size == (48, 64) and predictor.cache.get(got[2]).image_size == (70, 50)
    for name, array in single.arrays.items():
        assert batched.arrays[name].shape == array.shape
        assert batched.arrays[name].base is None  # owns its bytes, not a view of the batch
        np.testing.assert_allclose(batched.arrays[name].astype(np.float32),
                                   array.astype(np.float32), atol=0.05, rtol=0.01)
    with pytest.raises(ValueError):
        predictor.embed_batch(batch, hashes[:2])


def test_predict_errors(predictor, keys) -> None:
    with pytest.raises(PredictorError, match="embed it first"):
        predictor.predict(EmbeddingKey("never-seen", predictor.model_id),
                          Prompt(points=(Point(1, 1),)))
    with pytest.raises(PredictorError, match="made by model"):
        predictor.predict(EmbeddingKey("test-small", "other-model"), Prompt(points=(Point(1, 1),)))
    with pytest.raises(PredictorError, match="empty prompt"):
        predictor.predict(keys["small"], Prompt())
    with pytest.raises(PredictorError, match="mask_input must be"):
        predictor.predict(keys["small"], Prompt(points=(Point(1, 1),),
                                                mask_input=np.zeros((3, 256, 256), np.float32)))
    with pytest.raises(PredictorError, match="RGB"):
        predictor.embed(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(PredictorError, match="uint8"):
        predictor.embed(np.zeros((10, 10, 3), dtype=np.float32))


def test_decode_points_batches(predictor, keys) -> None:
    points = np.array([[10.5, 10.5], [150.5, 100.5], [290.5, 190.5]])
    low_res, iou = predictor.decode_points(keys["wide"], points)
    assert low_res.shape == (3, 3, 256, 256) and iou.shape == (3, 3)
    assert low_res.dtype == torch.float32
    single = predictor.predict(keys["wide"], Prompt(points=(Point(150.5, 100.5),)))
    np.testing.assert_allclose(iou[1].numpy(), single.scores, atol=1e-5)
    np.testing.assert_allclose(low_res[1].clamp(-32, 32).numpy(), single.low_res_logits,
                               atol=1e-4)


def test_segment_everything_on_the_model(predictor, keys, images) -> None:
    h, w = images["wide"].shape[:2]
    calls = []
    loose = EverythingOptions(points_per_side=2, pred_iou_thresh=0.0,
                              stability_score_thresh=0.0, min_mask_region_area=0)
    proposals = predictor.segment_everything(
        keys["wide"], loose, progress=lambda d, t, m: calls.append((d, t)))
    assert calls == [(1, 1)]
    assert proposals, "with no thresholds, some mask survives"
    areas = [int(p.mask.sum()) for p in proposals]
    assert areas == sorted(areas, reverse=True)
    for p in proposals:
        assert p.mask.shape == (h, w) and p.mask.dtype == np.bool_
        ys, xs = np.nonzero(p.mask)
        assert p.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert predictor.points_per_batch == 16  # on a CPU
    calls.clear()
    chunked = predictor.segment_everything(
        keys["wide"], loose, progress=lambda d, t, m: calls.append((d, t)),
        points_per_batch=3)
    assert calls == [(1, 2), (2, 2)]
    assert sorted(p.score for p in chunked) == pytest.approx(
        sorted(p.score for p in proposals), abs=1e-5)
    strict = predictor.segment_everything(keys["wide"], EverythingOptions(
        points_per_side=2, pred_iou_thresh=0.999, stability_score_thresh=0.0))
    assert strict == []
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        predictor.segment_everything(keys["wide"], EverythingOptions(points_per_side=2),
                                     cancel=token)


# -- loading ------------------------------------------------------------------------------


def test_missing_and_corrupt_checkpoints(tmp_path: Path, sam2_tiny_checkpoint) -> None:
    with pytest.raises(PredictorError, match="does not exist"):
        load_sam2(tmp_path / "nope.pt", "tiny", "cpu")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint" * 100)
    with pytest.raises(PredictorError, match=r"garbage\.pt.*not a readable"):
        load_sam2(garbage, "tiny", "cpu")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(sam2_tiny_checkpoint[0].read_bytes()[:100_000])
    with pytest.raises(PredictorError, match=r"truncated\.pt"):
        SAM2Predictor(truncated, "tiny", device="cpu")
    not_sam = tmp_path / "plain.pt"
    torch.save({"weights": {"a": torch.zeros(2)}}, not_sam)
    with pytest.raises(PredictorError, match=r"plain\.pt is not a SAM2 checkpoint"):
        load_sam2(not_sam, "tiny", "cpu")
    with pytest.raises(PredictorError, match="unknown SAM2 config"):
        load_sam2(sam2_tiny_checkpoint[0], "huge", "cpu")


def test_wrong_architecture_names_the_file(tmp_path: Path, sam2_tiny_checkpoint) -> None:
    path, _ = sam2_tiny_checkpoint
    sd = read_state_dict(path)
    assert guess_config(sd) == "configs/sam2.1/sam2.1_hiera_t.yaml"
    extra = dict(sd)
    extra["bogus.weight"] = torch.zeros(1)
    odd = tmp_path / "extra_keys.pt"
    torch.save({"model": extra}, odd)
    with pytest.raises(PredictorError, match=r"extra_keys\.pt does not fit.*unexpected.*bogus"):
        load_sam2(odd, "tiny", "cpu")
    with pytest.raises(PredictorError, match=r"does not fit config configs/sam2.1/sam2.1_hiera_s"):
        load_sam2(path, "small", "cpu")  # 12 Hiera blocks where small has 16
