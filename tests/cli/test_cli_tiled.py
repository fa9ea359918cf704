"""``--tiled`` and the setting "Full-resolution tiles on large images": the composition root
wraps the local backend in ``TiledPredictor`` (a Predictor whose capabilities are the
inner one's, less batched decode and stepped encode); off by default; refused with a remote
backend."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from app.cli.backend import add_model_args, add_tiled_arg, predictor_from_args
from app.cli.gui_cmd import build_parser, make_predictor, predictor_for_settings, startup_predictor
from app.core.errors import MaskLoopError
from app.core.types import Point, Prompt
from app.predict.base import Predictor, PredictorError, SourceKind
from app.predict.classical.predictor import ClassicalPredictor
from app.predict.tiles.predictor import TiledMaskResult, TiledPredictor
from app.ui.settings import GuiSettings


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="maskloop test")
    add_model_args(parser)
    add_tiled_arg(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(autouse=True)
def _private_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GUI settings (read by ``make_predictor``) in a per-test dir."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def same_but_batching(tiled: Predictor, inner: Predictor) -> bool:
    """The tiled capabilities are the inner ones, with no batched decode or stepped encode."""
    want = dataclasses.replace(inner.capabilities, batched_decode=False, resumable_encode=False)
    return tiled.capabilities == want


def test_tiled_wraps_the_classical_backend() -> None:
    pred = predictor_from_args(parse("--tiled"), backend="classical")
    try:
        assert isinstance(pred, TiledPredictor) and isinstance(pred, Predictor)
        assert isinstance(pred.inner, ClassicalPredictor)
        assert same_but_batching(pred, pred.inner)
        assert pred.model_id == pred.inner.model_id and "tiled" in pred.description
        # a large image is tiled: a click comes back as a result in a crop
        rng = np.random.default_rng(0)
        image = rng.integers(0, 40, (1200, 1300, 3), dtype=np.uint8)
        image[500:700, 550:800] = (230, 200, 40)
        key = pred.embed(image)
        result = pred.predict(key, Prompt(points=(Point(600, 600),)))
        assert isinstance(result, TiledMaskResult)
        mask, x0, y0 = result.crop(result.best)
        assert 0.8 * 200 * 250 < mask.sum() < 1.2 * 200 * 250 and x0 > 0 and y0 > 0
    finally:
        pred.close()
    plain = predictor_from_args(parse(), backend="classical")
    assert isinstance(plain, ClassicalPredictor)  # off by default


def test_the_app_options_and_the_setting() -> None:
    args = build_parser().parse_args(["--tiled", "--backend", "classical"])
    assert args.tiled
    assert isinstance(make_predictor(args), TiledPredictor)
    args = build_parser().parse_args(["--backend", "classical"])
    assert not args.tiled and isinstance(make_predictor(args), ClassicalPredictor)
    assert not GuiSettings().tiled  # default off
    GuiSettings(backend="classical", tiled=True).save()
    pred = make_predictor(build_parser().parse_args([]))
    assert isinstance(pred, TiledPredictor) and isinstance(pred.inner, ClassicalPredictor)
    on = predictor_for_settings(GuiSettings(backend="classical", tiled=True))
    off = predictor_for_settings(GuiSettings(backend="classical"))
    assert isinstance(on, TiledPredictor) and isinstance(off, ClassicalPredictor)
    # the argument overrides the setting for one build (the Launcher's switch uses it)
    assert isinstance(predictor_for_settings(GuiSettings(backend="classical"), tiled=True),
                      TiledPredictor)


def test_tiled_with_a_remote_backend_is_refused_before_connecting() -> None:
    args = build_parser().parse_args(["--tiled", "--server", "http://127.0.0.1:9"])
    with pytest.raises(MaskLoopError, match="--tiled works with the local backends"):
        startup_predictor(args)
    with pytest.raises(PredictorError, match="not with --server or --hosted"):
        predictor_from_args(argparse.Namespace(tiled=True, server="http://127.0.0.1:9",
                                               hosted=None))


@pytest.mark.slow
def test_tiled_wraps_sam2(sam2_tiny_checkpoint: tuple[Path, str]) -> None:
    path, _ = sam2_tiny_checkpoint
    pred = predictor_from_args(parse("--tiled", "--checkpoint", str(path), "--device", "cpu"))
    try:
        assert isinstance(pred, TiledPredictor) and isinstance(pred, Predictor)
        assert pred.capabilities.kind == SourceKind.SAM2
        assert same_but_batching(pred, pred.inner)
        assert pred.side == 1024 and pred.cutover == 2048  # SAM2's input side
    finally:
        pred.close()
