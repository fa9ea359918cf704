"""Building and loading SAM2 models without torchvision; device and precision choice.

Only loaded by the SAM2 backend, so it imports torch and sam2 at module level. It never
imports ``sam2.sam2_image_predictor``, ``sam2.automatic_mask_generator`` or
``sam2.utils.transforms`` (they import torchvision).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sam2.build_sam import build_sam2
from sam2.modeling.sam2_base import SAM2Base

from app.core.types import MaskResult
from app.predict.base import PredictorError
from app.predict.models.registry import REGISTRY

# (trunk embed dim, number of Hiera blocks) -> registry name; used to guess a config.
_ARCHITECTURES = {(96, 12): "tiny", (96, 16): "small", (112, 24): "base_plus", (144, 48): "large"}
_UPSCALE_AT_ONCE = 1 << 24  # full-resolution logits upscaled in one call (64 MiB float32)
_SAM2_0_CONFIGS = {
    "tiny": "configs/sam2/sam2_hiera_t.yaml",
    "small": "configs/sam2/sam2_hiera_s.yaml",
    "base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "large": "configs/sam2/sam2_hiera_l.yaml",
}


@dataclass(frozen=True)
class Precision:
    """How the model runs on a device: autocast dtype (None: plain float32)."""

    device: torch.device
    autocast_dtype: torch.dtype | None

    @property
    def label(self) -> str:
        return "bf16" if self.autocast_dtype == torch.bfloat16 else "fp32"

    def context(self) -> contextlib.AbstractContextManager[Any]:
        """The autocast context for this device (a no-op off CUDA)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA, then MPS, then CPU; ``device`` ("auto", "cpu", "cuda", "mps"...) overrides.

    Raises PredictorError when the requested device is not available.
    """
    name = str(device) if device is not None else "auto"
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise PredictorError(f"unknown device {name!r}: use auto, cpu, cuda or mps") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PredictorError("device 'cuda' requested but CUDA is not available")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise PredictorError("device 'mps' requested but MPS is not available")
    return dev


def precision_for(device: torch.device) -> Precision:
    """bfloat16 autocast on CUDA (and TF32 matmuls on Ampere or newer), float32 elsewhere."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        if torch.cuda.get_device_properties(index).major >= 8:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        return Precision(device, torch.bfloat16)
    return Precision(device, None)


def resolve_config(name: str) -> str:
    """A sam2 config name from a registry name ("tiny") or a config name (with or without
    the "configs/" prefix or ".yaml" suffix). Raises PredictorError if unknown."""
    if name in REGISTRY:
        return REGISTRY[name].config
    for spec in REGISTRY.values():
        if name == spec.model_id:
            return spec.config
    candidate = name if name.endswith(".yaml") else name + ".yaml"
    if not candidate.startswith("configs/"):
        candidate = "configs/" + candidate
    import sam2

    if (Path(sam2.__path__[0]) / candidate).is_file():
        return candidate
    known = ", ".join(list(REGISTRY) + [s.config for s in REGISTRY.values()])
    raise PredictorError(f"unknown SAM2 config {name!r}; use one of: {known}")


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes (used as the model id of a custom checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The ``"model"`` state dict of a SAM2 checkpoint, or PredictorError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise PredictorError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many kinds on a damaged file
        raise PredictorError(
            f"checkpoint {path} is not a readable PyTorch checkpoint ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no details'})"
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise PredictorError(
            f"checkpoint {path} is not a SAM2 checkpoint (expected a dict with a 'model' "
            "state dict)"
        )
    return data["model"]


def guess_config(state_dict: dict[str, torch.Tensor]) -> str | None:
    """The sam2 config matching a state dict's architecture, or None if unrecognised."""
    patch = state_dict.get("image_encoder.trunk.patch_embed.proj.weight")
    if patch is None:
        return None
    blocks = {
        int(k.split(".")[3]) for k in state_dict if k.startswith("image_encoder.trunk.blocks.")
    }
    name = _ARCHITECTURES.get((int(patch.shape[0]), len(blocks)))
    if name is None:
        return None
    if "no_obj_embed_spatial" in state_dict:
        return REGISTRY[name].config
    return _SAM2_0_CONFIGS[name]


def build_model(config: str, device: torch.device, image_size: int | None = None) -> SAM2Base:
    """A SAM2 model of ``config`` with random weights on ``device``, in eval mode;
    ``image_size``: another input size than the config's (benchmarks of memory over long runs)."""
    extra = [] if image_size is None else [f"++model.image_size={int(image_size)}"]
    try:
        return build_sam2(resolve_config(config), ckpt_path=None, device=device, mode="eval",
                          hydra_overrides_extra=extra)
    except PredictorError:
        raise
    except Exception as exc:  # Hydra raises many kinds
        raise PredictorError(f"cannot build SAM2 model from config {config!r}: {exc}") from exc


def load_sam2(
    checkpoint: Path | str, config: str | None = None, device: str | torch.device | None = None
) -> tuple[SAM2Base, str]:
    """Build the model of ``config`` (guessed from the checkpoint when None), load the
    checkpoint's weights and move it to ``device``; returns (model, config name).

    Raises PredictorError naming the file when it is missing, not a checkpoint, or does not
    fit the config (missing or unexpected keys, wrong shapes).
    """
    path = Path(checkpoint)
    dev = choose_device(device)
    state_dict = read_state_dict(path)
    if config is None:
        config = guess_config(state_dict)
        if config is None:
            raise PredictorError(
                f"checkpoint {path}: cannot tell which SAM2 architecture it is; pass --config"
            )
    config = resolve_config(config)
    model = build_model(config, torch.device("cpu"))
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # shape mismatch
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise PredictorError(
            f"checkpoint {path} does not fit config {config}: {detail}"
        ) from exc
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        raise PredictorError(
            f"checkpoint {path} does not fit config {config}: {'; '.join(parts)}"
        )
    return model.to(dev).eval(), config


def random_weight_sam2(
    config: str = "tiny", device: str | torch.device | None = "cpu", seed: int = 0,
    image_size: int | None = None,
) -> SAM2Base:
    """A SAM2 model with seeded random weights (tests and benchmarks: no download)."""
    dev = choose_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(config, torch.device("cpu"), image_size)
    return model.to(dev).eval()


def save_random_checkpoint(path: Path | str, config: str = "tiny", seed: int = 0) -> Path:
    """Write a seeded random-weight checkpoint ({"model": state_dict}) of ``config``."""
    path = Path(path)
    model = random_weight_sam2(config, "cpu", seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, path)
    return path


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch on ``n`` intra-op threads on this thread (restored after; None: unchanged).
    A converted model's runtime follows (``runtimes.steps.GraphSet``: a session per count)."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def inference(precision: Precision) -> Iterator[None]:
    """torch.inference_mode plus the device's autocast."""
    with torch.inference_mode(), precision.context():
        yield


def upscale_masks(
    low_res: torch.Tensor, hw: tuple[int, int], buffer: torch.Tensor | None = None
) -> tuple[np.ndarray, torch.Tensor]:
    """(C, 256, 256) float32 logits -> ((C, H, W) bool masks, the float32 buffer to pass next
    time): logits > 0 after the official bilinear upscale (align_corners=False), computed in
    ``buffer`` (reused when its shape fits) and thresholded straight into the result. All
    candidates at once up to _UPSCALE_AT_ONCE elements (fewer kernel calls), else one at a
    time (no (C, H, W) float32 temporary for big images)."""
    h, w = hw
    n = low_res.shape[0]
    step = n if n * h * w <= _UPSCALE_AT_ONCE else 1
    if buffer is None or tuple(buffer.shape) != (1, step, h, w) or buffer.device != low_res.device:
        buffer = torch.empty((1, step, h, w), dtype=torch.float32, device=low_res.device)
    on_cpu = low_res.device.type == "cpu"
    out = np.empty((n, h, w), dtype=bool)
    target = torch.from_numpy(out) if on_cpu else torch.empty(
        out.shape, dtype=torch.bool, device=low_res.device)
    for i in range(0, n, step):
        _upsample_into(low_res[None, i:i + step], buffer)
        torch.gt(buffer[0], 0.0, out=target[i:i + step])
    if not on_cpu:
        out = target.cpu().numpy()
    return out, buffer


def lazy_masks(low_res: torch.Tensor, scores: np.ndarray, hw: tuple[int, int],
               upscale_best: Callable[[torch.Tensor], np.ndarray] | None = None) -> MaskResult:
    """(C, 256, 256) float32 logits and (C,) scores -> a MaskResult whose full-resolution
    masks are lazy: only the best candidate (the one shown, or the one a route returns) is
    upscaled now, through ``upscale_best`` ((1, 256, 256) -> (1, H, W); default
    ``upscale_masks``); the others when asked for (``mask(i)``, on whichever thread asks).
    Each equals the interpolate + threshold of all candidates at once. Issue 14: at
    4000 x 3000 upscaling all 3 candidates cost 48.6 ms per click; issue 12: a server click
    upscaled three and returned one."""
    best = int(np.argmax(scores)) if scores.size else 0

    def upscale(index: int) -> np.ndarray:
        with torch.inference_mode():
            masks, _ = upscale_masks(low_res[index:index + 1], hw)
        return masks[0]

    first = upscale_best or (lambda logits: upscale_masks(logits, hw)[0])
    ready = {best: first(low_res[best:best + 1])[0]} if scores.size else {}
    return MaskResult(None, scores, low_res.clamp(-32.0, 32.0).cpu().numpy(),
                      size=hw, upscale=upscale, ready=ready)


def _upsample_into(x: torch.Tensor, out: torch.Tensor) -> None:
    """``F.interpolate(x, out.shape[-2:], mode="bilinear", align_corners=False)`` written into
    ``out`` (the same kernel, through its out= variant)."""
    size = [int(out.shape[-2]), int(out.shape[-1])]
    try:
        torch.ops.aten.upsample_bilinear2d.out(x, size, False, None, None, out=out)
    except (AttributeError, RuntimeError, NotImplementedError):  # a backend without out=
        out.copy_(F.interpolate(x, size, mode="bilinear", align_corners=False))
