"""SAM2 on a CPU runtime (ONNX Runtime): the random-weight SAM2.1 tiny converted once for the
module (about 40 s on a 2-core CPU: slow), its graphs checked against torch's modules, the
predictor on it against the predictor on torch, the cache of converted graphs (reused, a
damaged one or a failing check falls back to torch with the reason logged), and the
stepwise encode paused and resumed. No mocks: real graphs, real sessions."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli.backend import RUNTIMES as CLI_RUNTIMES
from app.cli.backend import add_model_args
from app.core import threads
from app.core.threads import CoreLoad, available_cores
from app.core.types import Box, Point, Prompt
from app.predict.base import PredictorError
from app.predict.cache.store import EmbeddingCache
from app.predict.sam2 import runtimes
from app.predict.sam2.decoder import TorchMaskDecoder
from app.predict.sam2.encoder import EncodeRun, TorchEncoderSteps, encode_all
from app.predict.sam2.model import inference, precision_for
from app.predict.sam2.predictor import SAM2Predictor
from app.predict.sam2.runtimes.check import TOLERANCE, prompt_cases
from app.predict.sam2.runtimes.steps import OnnxMaskDecoder

pytest.importorskip("onnxruntime")

MODEL_ID = "random-tiny-runtime-test"


def make_image(width: int, height: int, seed: int) -> np.ndarray:
    """A bright disc on a noisy background (something for the decoder to find)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    disc = (yy - height * 0.5) ** 2 + (xx - width * 0.45) ** 2 < (min(width, height) * 0.2) ** 2
    img[disc] = (220, 200, 180)
    return img


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The converted-graph cache of this module ($MASKLOOP_RUNTIME_CACHE_DIR)."""
    path = tmp_path_factory.mktemp("runtimes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(runtimes.CACHE_ENV, str(path))
        yield path


@pytest.fixture(scope="module")
def ort_predictor(sam2_tiny_checkpoint: tuple[Path, str], runtime_dir: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> SAM2Predictor:
    """The tiny checkpoint on ONNX Runtime: the one conversion of this module."""
    path, config = sam2_tiny_checkpoint
    before = runtimes.stats["conversions"]
    p = SAM2Predictor(path, config, MODEL_ID, "cpu",
                      EmbeddingCache(disk_dir=tmp_path_factory.mktemp("emb-ort")),
                      runtime="onnxruntime")
    assert p.runtime.name == "onnxruntime", p.runtime.reason
    assert p.runtime.converted and runtimes.stats["conversions"] == before + 1
    return p


@pytest.fixture(scope="module")
def torch_predictor(ort_predictor: SAM2Predictor,
                    tmp_path_factory: pytest.TempPathFactory) -> SAM2Predictor:
    return SAM2Predictor.from_model(
        ort_predictor.model, MODEL_ID, EmbeddingCache(disk_dir=tmp_path_factory.mktemp("emb-t")),
        runtime="torch")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return make_image(320, 240, seed=3)


# -- choosing a runtime (fast) ----------------------------------------------------------------


def test_the_runtime_is_chosen_by_argument_then_environment(monkeypatch) -> None:
    monkeypatch.delenv(runtimes.RUNTIME_ENV, raising=False)
    assert runtimes.requested_runtime(None) == "auto"
    monkeypatch.setenv(runtimes.RUNTIME_ENV, "torch")
    assert runtimes.requested_runtime(None) == "torch"
    assert runtimes.requested_runtime("onnxruntime") == "onnxruntime"
    monkeypatch.setenv(runtimes.RUNTIME_ENV, "tensorflow")
    with pytest.raises(PredictorError, match="unknown runtime"):
        runtimes.requested_runtime(None)
    assert CLI_RUNTIMES == runtimes.RUNTIMES
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    assert parser.parse_args(["--runtime", "onnxruntime"]).runtime == "onnxruntime"
    assert parser.parse_args([]).runtime is None


def test_torch_runtime_uses_the_sam2_modules() -> None:
    from app.predict.sam2.model import random_weight_sam2

    rt = runtimes.load_runtime(random_weight_sam2("tiny"), "x", "torch")
    assert rt.name == "torch" and rt.reason is None
    assert isinstance(rt.encoder, TorchEncoderSteps)
    assert isinstance(rt.decoder, TorchMaskDecoder)


# -- the converted model (slow: one conversion for the module) --------------------------------


@pytest.mark.slow
def test_every_graph_is_within_tolerance_of_torch(ort_predictor: SAM2Predictor) -> None:
    rt = ort_predictor.runtime
    n = ort_predictor.encoder.n_blocks
    assert rt.folder is not None and (rt.folder / "manifest.json").is_file()
    expected = {"stem", "image_embed", "high_res_feats_0", "high_res_feats_1",
                *(f"block_{i:02d}" for i in range(n))}
    assert expected <= set(rt.deviations)
    decoder_checks = [k for k in rt.deviations if k.startswith("decoder")]
    for case in ("one point", "several points", "box", "mask input", "batch of prompts"):
        for kind in ("multimask", "single mask"):
            assert f"decoder {case}, {kind}: logits" in decoder_checks
    assert rt.max_deviation <= TOLERANCE
    assert "onnxruntime" in ort_predictor.description
    assert ort_predictor.capabilities.thread_control


@pytest.mark.slow
def test_stepwise_encode_matches_torch(ort_predictor: SAM2Predictor, image: np.ndarray) -> None:
    model = ort_predictor.model
    precision = precision_for(torch.device("cpu"))
    with inference(precision):
        want = encode_all(EncodeRun(TorchEncoderSteps(model), [image], model.image_size,
                                    torch.device("cpu")))
        run = EncodeRun(ort_predictor.encoder, [image], model.image_size, torch.device("cpu"))
        assert run.total == model.image_encoder.trunk.blocks.__len__() + 2
        got = encode_all(run)
    for a, b in zip([got[0], *got[1]], [want[0], *want[1]], strict=True):
        assert a.shape == b.shape
        assert float((a - b).abs().max()) <= TOLERANCE


@pytest.mark.slow
def test_decoder_prompt_variants_match_torch(ort_predictor: SAM2Predictor,
                                             image: np.ndarray) -> None:
    key = ort_predictor.embed(image)
    feats = ort_predictor.activate(key)
    reference = TorchMaskDecoder(ort_predictor.model)
    with inference(ort_predictor.precision):
        for name, coords, labels, mask in prompt_cases(1024, 256, seed=7):
            for multimask in (True, False):
                repeat = coords.shape[0] > 1
                want = reference.decode(feats.image_embed, feats.high_res_feats, coords, labels,
                                        mask, multimask, repeat)
                got = ort_predictor.decoder.decode(feats.image_embed, feats.high_res_feats,
                                                   coords, labels, mask, multimask, repeat)
                assert got[0].shape == want[0].shape, name
                assert float((got[0] - want[0]).abs().max()) <= TOLERANCE, name
                assert float((got[1] - want[1]).abs().max()) <= TOLERANCE, name


def _same_result(a, b) -> None:
    np.testing.assert_allclose(a.scores, b.scores, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(a.low_res_logits, b.low_res_logits, atol=TOLERANCE, rtol=0)
    for i in range(len(a.scores)):
        differ = np.count_nonzero(a.mask(i) != b.mask(i))
        assert differ <= a.mask(i).size * 1e-4  # only pixels whose logit is ~0 may flip


@pytest.mark.slow
def test_predictor_on_the_runtime_gives_torchs_masks(
        ort_predictor: SAM2Predictor, torch_predictor: SAM2Predictor, image: np.ndarray) -> None:
    k1 = ort_predictor.embed(image)
    k2 = torch_predictor.embed(image)
    assert k1 == k2
    e1, e2 = ort_predictor.cache.get(k1), torch_predictor.cache.get(k2)
    assert e1 is not None and e2 is not None
    for name, arr in e1.arrays.items():  # the same float16 embedding format
        assert arr.dtype == np.float16 and arr.shape == e2.arrays[name].shape
        np.testing.assert_allclose(arr.astype(np.float32), e2.arrays[name].astype(np.float32),
                                   atol=2e-3, rtol=2e-3)
    # decode the same features on both (the torch predictor's embedding)
    ort_predictor.cache.put(k1, e2)
    ort_predictor.close()
    first = ort_predictor.predict(k1, Prompt(points=(Point(150, 120, True),)))
    prompts = [
        Prompt(points=(Point(150, 120, True),)),
        Prompt(points=(Point(150, 120, True),), multimask=False),
        Prompt(points=(Point(150, 120, True), Point(40, 30, False), Point(200, 100, True))),
        Prompt(box=Box(90, 60, 230, 190)),
        Prompt(points=(Point(150, 120, True),), box=Box(90, 60, 230, 190), multimask=False),
        Prompt(points=(Point(150, 120, True),), mask_input=first.low_res_logits[:1]),
    ]
    for prompt in prompts:
        _same_result(ort_predictor.predict(k1, prompt), torch_predictor.predict(k2, prompt))
    batch = [(k1, p) for p in prompts]
    for a, b in zip(ort_predictor.predict_batch(batch), torch_predictor.predict_batch(batch),
                    strict=True):
        _same_result(a, b)
    points = np.array([[40, 40], [150, 120], [300, 200]], np.float32)
    la, ia = ort_predictor.decode_points(k1, points)
    lb, ib = torch_predictor.decode_points(k2, points)
    assert float((la - lb).abs().max()) <= TOLERANCE and float((ia - ib).abs().max()) <= TOLERANCE


@pytest.mark.slow
def test_set_threads_loads_graphs_for_that_many_threads(ort_predictor: SAM2Predictor,
                                                        image: np.ndarray) -> None:
    before = torch.get_num_threads()
    graphs = ort_predictor.runtime.graphs
    assert graphs is not None
    try:
        ort_predictor.set_threads(1)
        key = ort_predictor.embed(image[:, ::-1].copy())
        ort_predictor.predict(key, Prompt(points=(Point(10, 10, True),)))
        assert {("stem.onnx", 1), ("head.onnx", 1), ("decoder_image.onnx", 1),
                ("decoder.onnx", 1)} <= set(graphs._graphs)
    finally:
        ort_predictor.set_threads(before)


@pytest.mark.slow
def test_the_decoders_image_part_is_computed_once_per_image(
        ort_predictor: SAM2Predictor, torch_predictor: SAM2Predictor, image: np.ndarray) -> None:
    decoder = ort_predictor.decoder
    assert isinstance(decoder, OnnxMaskDecoder)
    keys = [ort_predictor.embed(im) for im in (image, make_image(300, 200, seed=21))]
    for key in keys:  # both runtimes decode the same features
        emb = ort_predictor.cache.get(key)
        assert emb is not None
        torch_predictor.cache.put(key, emb)
    first = torch_predictor.predict(keys[0], Prompt(points=(Point(150, 120, True),)))
    prompts = [
        Prompt(points=(Point(150, 120, True),)),
        Prompt(points=(Point(60, 50, True), Point(100, 90, False)), multimask=False),
        Prompt(points=(Point(150, 120, True),), mask_input=first.low_res_logits[:1]),
        Prompt(box=Box(90, 60, 230, 190), mask_input=first.low_res_logits[1:2]),
    ]
    ort_predictor.close()  # the images' features converted anew: their parts computed anew
    before = decoder.prepared
    for _ in range(2):  # image after image: each image's part is kept
        for key in keys:
            for prompt in prompts:
                _same_result(ort_predictor.predict(key, prompt),
                             torch_predictor.predict(key, prompt))
    assert decoder.prepared == before + 2
    batch = [(k, p) for p in prompts for k in keys]  # both images in one batched call
    for a, b in zip(ort_predictor.predict_batch(batch), torch_predictor.predict_batch(batch),
                    strict=True):
        _same_result(a, b)
    assert decoder.prepared == before + 2
    ort_predictor.close()  # new feature tensors: a part kept for the old ones is not used
    _same_result(ort_predictor.predict(keys[1], prompts[0]),
                 torch_predictor.predict(keys[1], prompts[0]))
    assert decoder.prepared == before + 3


@pytest.mark.slow
def test_prepare_does_the_first_clicks_work_before_it(ort_predictor: SAM2Predictor,
                                                       torch_predictor: SAM2Predictor) -> None:
    """``prepare`` (called by the service when an image becomes current): the decoder's
    per-image part is computed then, not by the first click, and the click's masks are
    unchanged; through the real service too."""
    from app.predict.service.service import PredictionService

    decoder = ort_predictor.decoder
    assert isinstance(decoder, OnnxMaskDecoder)
    im = make_image(320, 240, seed=31)
    key = ort_predictor.embed(im)
    emb = ort_predictor.cache.get(key)
    assert emb is not None
    torch_predictor.cache.put(key, emb)
    ort_predictor.close()  # features converted anew: nothing kept for this image
    before = decoder.prepared
    ort_predictor.prepare(key)
    assert decoder.prepared == before + 1
    click = Prompt(points=(Point(150, 120, True),))
    _same_result(ort_predictor.predict(key, click), torch_predictor.predict(key, click))
    assert decoder.prepared == before + 1  # the click reused it
    ort_predictor.close()
    service = PredictionService(ort_predictor)
    try:
        service.set_current_image(key.image_hash, lambda: im)  # cached: no encode
        assert service.wait_idle(300.0)
        assert service.stats.prepared == 1 and decoder.prepared == before + 2
    finally:
        assert service.shutdown(60.0)
    _same_result(ort_predictor.predict(key, click), torch_predictor.predict(key, click))
    assert decoder.prepared == before + 2


@pytest.mark.slow
@pytest.mark.skipif(available_cores() < 2, reason="on one core a click has no idle core to move to")
def test_a_click_runs_on_the_cores_other_processes_leave_idle(
        ort_predictor: SAM2Predictor, image: np.ndarray, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    graphs = ort_predictor.runtime.graphs
    assert graphs is not None
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    before = torch.get_num_threads()
    try:
        ort_predictor.set_threads(2)
        key = ort_predictor.embed(image)
        graphs.drop(keep_threads=2)
        stat = tmp_path / "stat"
        n = available_cores()
        stat.write_text("".join(f"cpu{i} 100 0 0 900 0 0 0 0 0 0\n" for i in range(n)))
        load = CoreLoad(range(n), stat_path=str(stat), interval=0.0)
        load.free_cores()
        hz = os.sysconf("SC_CLK_TCK")  # then a second of others busy on all cores but one
        busy = [f"cpu{i} {100 + hz * (i > 0)} 0 0 {900 + hz * (i == 0)} 0 0 0 0 0 0\n"
                for i in range(n)]
        stat.write_text("".join(busy))
        monkeypatch.setattr(threads, "_load", load)
        ort_predictor.predict(key, Prompt(points=(Point(150, 120, True),)))
        assert ("decoder.onnx", 1) in graphs._graphs  # one thread: the others are taken
        assert torch.get_num_threads() == 2  # the job's threads again after the click
        monkeypatch.setenv(threads.THREADS_ENV, "2")  # the override wins
        graphs.drop(keep_threads=1)
        ort_predictor.predict(key, Prompt(points=(Point(100, 100, True),)))
        assert ("decoder.onnx", 2) in graphs._graphs
    finally:
        ort_predictor.set_threads(before)


@pytest.mark.slow
def test_a_second_load_reuses_the_cached_graphs(ort_predictor: SAM2Predictor) -> None:
    before = runtimes.stats["conversions"]
    rt = runtimes.load_runtime(ort_predictor.model, MODEL_ID, "onnxruntime")
    assert rt.name == "onnxruntime" and not rt.converted
    assert runtimes.stats["conversions"] == before
    assert rt.folder == ort_predictor.runtime.folder


def _copy_cache(ort_predictor: SAM2Predictor, target: Path) -> Path:
    """The module's converted graphs copied into ``target`` (a cache dir of their own)."""
    folder = ort_predictor.runtime.folder
    assert folder is not None
    copy = target / folder.parent.name / folder.name
    shutil.copytree(folder, copy)
    return copy


@pytest.mark.slow
def test_a_damaged_cached_graph_falls_back_to_torch(
        ort_predictor: SAM2Predictor, tmp_path: Path, caplog) -> None:
    copy = _copy_cache(ort_predictor, tmp_path)
    block = copy / "block_03.onnx"
    data = bytearray(block.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in a weight: loads, but computes wrong
    block.write_bytes(bytes(data))
    before = runtimes.stats["conversions"]
    with caplog.at_level(logging.WARNING, logger="app.predict.sam2.runtimes"):
        rt = runtimes.load_runtime(ort_predictor.model, MODEL_ID, "onnxruntime",
                                   cache_dir=tmp_path)
    assert rt.name == "torch" and isinstance(rt.encoder, TorchEncoderSteps)
    assert rt.reason is not None and "block_03.onnx" in rt.reason and "damaged" in rt.reason
    assert rt.reason in caplog.text
    assert not copy.exists()  # removed: the next load converts again
    assert runtimes.stats["conversions"] == before


@pytest.mark.slow
def test_a_graph_the_runtime_cannot_load_falls_back_to_torch(
        ort_predictor: SAM2Predictor, tmp_path: Path, caplog) -> None:
    import json

    copy = _copy_cache(ort_predictor, tmp_path)
    (copy / "decoder.onnx").write_bytes(b"not an onnx graph")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["decoder.onnx"] = runtimes._sha256(copy / "decoder.onnx")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="app.predict.sam2.runtimes"):
        rt = runtimes.load_runtime(ort_predictor.model, MODEL_ID, "onnxruntime",
                                   cache_dir=tmp_path)
    assert rt.name == "torch" and rt.reason is not None and "cannot be loaded" in rt.reason
    assert "SAM2 runs on torch" in caplog.text


@pytest.mark.slow
def test_a_failing_check_falls_back_to_torch(ort_predictor: SAM2Predictor, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="app.predict.sam2.runtimes"):
        rt = runtimes.load_runtime(ort_predictor.model, MODEL_ID, "onnxruntime",
                                   tolerance=0.0)
    assert rt.name == "torch"
    assert rt.reason is not None and "differs from torch" in rt.reason
    assert rt.reason in caplog.text


@pytest.mark.slow
def test_stepwise_encode_on_the_runtime_pauses_and_resumes(
        ort_predictor: SAM2Predictor, torch_predictor: SAM2Predictor) -> None:
    other = make_image(200, 150, seed=11)
    other_key = ort_predictor.embed(other)
    img = make_image(256, 192, seed=12)
    job = ort_predictor.start_embed(img)
    assert job.total == ort_predictor.encoder.n_blocks + 2
    for _ in range(5):  # the stem and four blocks
        assert not job.step()
    assert job.done == 5 and not ort_predictor.cache.contains(job.key)
    # paused: the same thread decodes a click on another image, then the encode resumes
    ort_predictor.predict(other_key, Prompt(points=(Point(100, 75, True),)))
    while not job.step():
        pass
    assert job.done == job.total
    got = ort_predictor.cache.get(job.key)
    want = torch_predictor.cache.get(torch_predictor.embed(img))
    assert got is not None and want is not None
    for name, arr in got.arrays.items():
        np.testing.assert_allclose(arr.astype(np.float32),
                                   want.arrays[name].astype(np.float32), atol=2e-3, rtol=2e-3)


@pytest.mark.slow
def test_the_cli_runtime_option_reaches_the_predictor(sam2_tiny_checkpoint: tuple[Path, str],
                                                      monkeypatch) -> None:
    from app.cli.backend import predictor_from_args

    monkeypatch.setenv(runtimes.RUNTIME_ENV, "onnxruntime")  # the option wins over it
    path, config = sam2_tiny_checkpoint
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    args = parser.parse_args(["--checkpoint", str(path), "--config", config, "--device", "cpu",
                              "--runtime", "torch"])
    pred = predictor_from_args(args, cache=EmbeddingCache(disk_dir=None))
    assert isinstance(pred, SAM2Predictor)
    assert pred.runtime.name == "torch" and pred.runtime.requested == "torch"
    assert pred.description.endswith("(fp32)")
