"""Which runtime does SAM2's arithmetic on a CPU: torch, or the model converted to ONNX graphs
and run by ONNX Runtime (the default on a CPU) or OpenVINO.

``load_runtime(model, model_id, "auto")`` converts the loaded model once (``graphs.py``: one
graph per encoder step, so the encode still pauses between blocks, and one decoder graph),
checks on a fixed input that every graph's outputs are within ``TOLERANCE`` of torch's
(``check.py``), and keeps the graphs in the user cache dir beside the embeddings
(``<cache>/runtimes/<model_id>/<runtime>-<version>_torch-..._sam2-..._<weights digest>/``,
``manifest.json`` written last, with each file's sha256 and the check's deviations). A later
load reuses them after checking the files' checksums. Whenever something fails (the runtime
is not installed, the export or the check fails, a cached graph is damaged) it logs why and
returns torch's steps; a damaged cache entry is removed, so the next load converts again.

Embeddings do not depend on the runtime: the same float16 arrays go to the same cache.
On CUDA and MPS torch always runs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from sam2.modeling.sam2_base import SAM2Base

from app.predict.base import PredictorError
from app.predict.sam2.decoder import MaskDecoder, TorchMaskDecoder
from app.predict.sam2.encoder import EncoderSteps, TorchEncoderSteps
from app.predict.sam2.runtimes.check import TOLERANCE, check_runtime
from app.predict.sam2.runtimes.engines import ENGINES, Engine, engine, installed
from app.predict.sam2.runtimes.graphs import export_graphs
from app.predict.sam2.runtimes.steps import GraphSet, OnnxEncoderSteps, OnnxMaskDecoder

__all__ = ["DEFAULT_CPU_RUNTIME", "RUNTIMES", "RUNTIME_ENV", "TOLERANCE", "LoadedRuntime",
           "load_runtime", "requested_runtime", "runtime_cache_dir", "stats"]

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", *ENGINES)
RUNTIME_ENV = "MASKLOOP_RUNTIME"
CACHE_ENV = "MASKLOOP_RUNTIME_CACHE_DIR"
# "auto" on a CPU: ONNX Runtime (issue 14: the fastest decode, encode faster than torch's,
# small enough for the bundle); torch where it is not installed.
DEFAULT_CPU_RUNTIME = "onnxruntime"
EXPORT_VERSION = 2  # bump when graphs.py changes what it exports
MANIFEST = "manifest.json"

stats = {"conversions": 0}  # conversions run in this process (tests count them)


@dataclass
class LoadedRuntime:
    """The runtime a predictor uses: its encoder steps and decoder. ``name`` is what runs
    ("torch" after a fallback, with ``reason`` saying why)."""

    name: str
    encoder: EncoderSteps
    decoder: MaskDecoder
    requested: str = "auto"
    reason: str | None = None
    converted: bool = False
    folder: Path | None = None
    deviations: dict[str, float] = field(default_factory=dict)
    graphs: GraphSet | None = None

    @property
    def max_deviation(self) -> float:
        return max(self.deviations.values(), default=0.0)


def requested_runtime(value: str | None = None) -> str:
    """``value``, else $MASKLOOP_RUNTIME, else "auto"; PredictorError if unknown."""
    name = (value or os.environ.get(RUNTIME_ENV, "") or "auto").strip().lower()
    if name not in RUNTIMES:
        raise PredictorError(f"unknown runtime {name!r}; use one of: {', '.join(RUNTIMES)}")
    return name


def runtime_cache_dir() -> Path:
    """Where converted models are kept: $MASKLOOP_RUNTIME_CACHE_DIR, else ``runtimes`` beside
    the embedding cache dir."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    from app.predict.cache.store import default_cache_dir

    return default_cache_dir().parent / "runtimes"


def torch_runtime(model: SAM2Base, requested: str = "torch", reason: str | None = None
                  ) -> LoadedRuntime:
    return LoadedRuntime("torch", TorchEncoderSteps(model), TorchMaskDecoder(model),
                         requested, reason)


def load_runtime(
    model: SAM2Base,
    model_id: str,
    runtime: str | None = "auto",
    *,
    cache_dir: Path | None = None,
    tolerance: float = TOLERANCE,
) -> LoadedRuntime:
    """The runtime for ``model`` (see the module docstring); never raises for a runtime that
    cannot run: it falls back to torch and says why in ``reason`` (logged)."""
    requested = requested_runtime(runtime)
    device = next(model.parameters()).device
    if requested == "torch":
        return torch_runtime(model)
    if device.type != "cpu":
        if requested != "auto":
            log.info("runtime %s is for the CPU; %s runs torch", requested, device.type)
        return torch_runtime(model, requested)
    name = DEFAULT_CPU_RUNTIME if requested == "auto" else requested
    if not installed(name):
        return _fallback(model, requested, f"{name} is not installed")
    try:
        eng = engine(name)
    except Exception as exc:  # a broken installation raises anything on import
        return _fallback(model, requested, f"{name} cannot be loaded ({_short(exc)})")
    folder = (cache_dir or runtime_cache_dir()) / _safe(model_id) / _key(eng, model)
    converted = False
    try:
        manifest = _read_manifest(folder)
        if manifest is None:
            manifest = _convert(model, eng, folder)
            converted = True
        else:
            _verify(folder, manifest)
        graphs = GraphSet(eng, folder)
        encoder = OnnxEncoderSteps(model, graphs)
        decoder = OnnxMaskDecoder(model, graphs)
        for file in manifest["files"]:  # load now: a damaged graph shows here, not mid-encode
            graphs.get(file)
    except _Damaged as exc:
        shutil.rmtree(folder, ignore_errors=True)
        return _fallback(model, requested, f"the cached {name} graphs are damaged ({exc}); "
                         "removed, the next load converts again")
    except Exception as exc:  # the exporter and the runtimes raise many kinds
        if converted:
            return _fallback(model, requested, f"{name} conversion failed ({_short(exc)})")
        shutil.rmtree(folder, ignore_errors=True)
        return _fallback(model, requested, f"the cached {name} graphs cannot be loaded "
                         f"({_short(exc)}); removed, the next load converts again")
    deviations = {k: float(v) for k, v in manifest["deviations"].items()}
    worst = max(deviations, key=lambda k: deviations[k])
    if not deviations[worst] <= tolerance:
        return _fallback(model, requested, f"{name} differs from torch: {worst} by "
                         f"{deviations[worst]:.2e} > {tolerance:.0e}")
    log.info("SAM2 %s runs on %s (graphs in %s, max deviation %.1e)", model_id, name, folder,
             deviations[worst])
    return LoadedRuntime(name, encoder, decoder, requested, None, converted, folder,
                         deviations, graphs)


class _Damaged(Exception):
    pass


def _fallback(model: SAM2Base, requested: str, reason: str) -> LoadedRuntime:
    log.warning("SAM2 runs on torch: %s", reason)
    return torch_runtime(model, requested, reason)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "model"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def weights_digest(model: SAM2Base) -> str:
    """A digest of the model's parameters and buffers (names, shapes, values)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(int(model.image_size)).encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}{tuple(tensor.shape)}{t.dtype}".encode())
        if t.numel():
            digest.update(t.view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _key(eng: Engine, model: SAM2Base) -> str:
    return _safe(f"{eng.name}-{eng.version}_torch-{torch.__version__}_sam2-{_version('sam2')}"
                 f"_x{EXPORT_VERSION}_{weights_digest(model)}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest.get("files"), dict) or not isinstance(
                manifest.get("deviations"), dict):
            raise ValueError("missing fields")
    except (OSError, ValueError) as exc:
        raise _Damaged(f"{MANIFEST}: {_short(exc)}") from exc
    return manifest


def _verify(folder: Path, manifest: dict) -> None:
    for file, digest in manifest["files"].items():
        path = folder / file
        if not path.is_file():
            raise _Damaged(f"{file} is missing")
        if _sha256(path) != digest:
            raise _Damaged(f"{file} does not match its checksum")


def _convert(model: SAM2Base, eng: Engine, folder: Path) -> dict:
    """Export, check and store the graphs in ``folder`` (written under a temporary name,
    renamed when complete); returns the manifest."""
    start = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        stats["conversions"] += 1
        files = export_graphs(model, tmp)
        graphs = GraphSet(eng, tmp)
        deviations = check_runtime(model, OnnxEncoderSteps(model, graphs),
                                   OnnxMaskDecoder(model, graphs))
        manifest = {
            "runtime": eng.name, "runtime_version": eng.version, "torch": torch.__version__,
            "sam2": _version("sam2"), "export_version": EXPORT_VERSION,
            "seconds": round(time.perf_counter() - start, 2),
            "files": {f: _sha256(tmp / f) for f in files},
            "deviations": deviations,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        del graphs  # the sessions (their files stay open on Windows)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first: use its graphs
            shutil.rmtree(tmp, ignore_errors=True)
            theirs = _read_manifest(folder)
            if theirs is None:
                raise
            return theirs
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("converted SAM2 to %s in %.1f s (%s)", eng.name, manifest["seconds"], folder)
    return manifest
