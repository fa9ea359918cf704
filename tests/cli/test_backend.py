"""Choosing the backend from --model / --checkpoint / --config / --device."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from app.cli.backend import add_model_args, predictor_from_args
from app.predict.base import PredictorError
from app.predict.models.registry import get_model


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="maskloop test")
    add_model_args(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    monkeypatch.setenv("MASKLOOP_MODELS_DIR", str(path))
    return path


def test_options_parse() -> None:
    args = parse("--model", "small", "--device", "cpu")
    assert (args.model, args.checkpoint, args.config, args.device) == ("small", None, None, "cpu")
    args = parse("--checkpoint", "x.pt", "--config", "tiny")
    assert args.checkpoint == Path("x.pt") and args.config == "tiny" and args.device == "auto"
    with pytest.raises(SystemExit):
        parse("--model", "tiny", "--checkpoint", "x.pt")
    with pytest.raises(SystemExit):
        parse("--model", "gigantic")
    with pytest.raises(SystemExit):
        parse("--device", "tpu")


def test_missing_registry_model_says_how_to_get_it(models_dir: Path) -> None:
    with pytest.raises(PredictorError, match="maskloop models download tiny.*--checkpoint"):
        predictor_from_args(parse("--model", "tiny"))


def test_without_models_the_default_is_classical(models_dir: Path) -> None:
    from app.predict.classical.predictor import ClassicalPredictor

    assert isinstance(predictor_from_args(parse()), ClassicalPredictor)
    assert isinstance(predictor_from_args(parse(), backend="classical"), ClassicalPredictor)
    with pytest.raises(PredictorError, match="no SAM2 model is installed"):
        predictor_from_args(parse(), backend="sam2")


def test_inconsistent_options(models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PredictorError, match="--config goes with --checkpoint"):
        predictor_from_args(parse("--config", "tiny"))
    with pytest.raises(PredictorError, match="need the sam2 backend"):
        predictor_from_args(parse("--model", "tiny"), backend="classical")
    with pytest.raises(PredictorError, match="unknown backend"):
        predictor_from_args(parse(), backend="magic")
    with pytest.raises(PredictorError, match="does not exist"):
        predictor_from_args(parse("--checkpoint", str(tmp_path / "missing.pt")))


@pytest.mark.slow
def test_installed_model_is_picked(models_dir: Path, sam2_tiny_checkpoint) -> None:
    from app.predict.cache.store import EmbeddingCache
    from app.predict.sam2.predictor import SAM2Predictor

    spec = get_model("tiny")
    (models_dir / spec.filename).symlink_to(sam2_tiny_checkpoint[0])
    cache = EmbeddingCache(disk_dir=None)
    pred = predictor_from_args(parse("--device", "cpu"), cache=cache)
    assert isinstance(pred, SAM2Predictor)
    assert pred.model_id == "sam2.1_hiera_tiny"
    assert pred.description == "SAM2.1 tiny on cpu (fp32)"
    assert pred.cache is cache


@pytest.mark.slow
def test_checkpoint_config_is_guessed(sam2_tiny_checkpoint) -> None:
    from app.predict.sam2.predictor import SAM2Predictor

    pred = predictor_from_args(parse("--checkpoint", str(sam2_tiny_checkpoint[0]),
                                     "--device", "cpu"), backend="sam2")
    assert isinstance(pred, SAM2Predictor)
    assert pred.config == sam2_tiny_checkpoint[1]
    assert pred.model_id.startswith("custom-")
