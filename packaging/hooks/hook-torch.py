"""torch, trimmed: pyinstaller-hooks-contrib's hook (kept for its CUDA and MKL handling), minus
what MaskLoop never loads: test binaries and programs, C++ headers, the compiler stack
(dynamo/inductor) and torch's own test suite. ``torch.onnx`` stays: the CPU runtime converts
the model with its TorchScript exporter (app/predict/sam2/runtimes). CUDA libraries stay when the
installed torch is a CUDA build: that is how a GPU bundle is made."""

from __future__ import annotations

import runpy
from pathlib import Path, PurePosixPath
from typing import Any

import _pyinstaller_hooks_contrib
import PyInstaller.utils.hooks as pyi_hooks

# Submodules never imported by the app (checked against sys.modules after a self-test).
SKIPPED_PACKAGES = (
    "torch._dynamo", "torch._inductor", "torch.testing._internal.",
    "torch.utils.benchmark", "torch.utils.tensorboard", "torch.utils.bottleneck",
    "torch.utils.cpp_extension", "torch.utils.hipify", "torch._numpy", "torch.contrib",
    "torch.distributed.elastic", "torch.distributed.checkpoint", "torch.distributed.fsdp",
    "torch.distributed.pipelining", "torch.distributed.tensor", "torch.distributed._tools",
    "torch.cuda._sanitizer", "torch.backends._coreml", "torch._export.serde",
    "torch._vendor.quack",
)
# Data folders and files never read at run time (relative to the torch package).
SKIPPED_DATA = (
    "test/", "bin/protoc", "bin/test", "bin/FileStore", "bin/HashStore", "bin/TCPStore",
    "bin/script_module", "bin/upgrader_models", "include/", "share/", "_inductor/", "_dynamo/",
    "testing/", "utils/benchmark/", "utils/hipify/",
)
SKIPPED_LIBS = ("libjitbackend_test", "libtorchbind_test", "libbackend_with_compiler",
                "libaoti_custom_ops")


def _skip_module(name: str) -> bool:
    return any(name == p.rstrip(".") or name.startswith(p.rstrip(".") + ".")
               for p in SKIPPED_PACKAGES)


def _torch_relative(dest: str) -> str:
    parts = PurePosixPath(dest.replace("\\", "/")).parts
    return "/".join(parts[1:]) + "/" if parts and parts[0] == "torch" else ""


def _keep_data(entry: tuple[str, str]) -> bool:
    src, dest = entry
    rel = _torch_relative(dest) + Path(src).name
    return not rel.startswith(SKIPPED_DATA) and not src.endswith((".pyi", ".h", ".hpp"))


def _keep_binary(entry: tuple[str, str]) -> bool:
    src, dest = entry
    name = Path(src).name
    return not name.startswith(SKIPPED_LIBS) and not (_torch_relative(dest) + name).startswith(
        SKIPPED_DATA)


def _run_contrib_hook() -> dict[str, Any]:
    """Run the contrib hook with ``collect_submodules`` skipping SKIPPED_PACKAGES (walking
    them would import all of them: slow)."""
    original = pyi_hooks.collect_submodules

    def collect_submodules(package: str, filter: Any = None, **kwargs: Any) -> list[str]:
        def keep(name: str) -> bool:
            return not _skip_module(name) and (filter is None or filter(name))

        return original(package, filter=keep, **kwargs)

    path = Path(_pyinstaller_hooks_contrib.__file__).parent / "stdhooks" / "hook-torch.py"
    pyi_hooks.collect_submodules = collect_submodules
    try:
        return runpy.run_path(str(path), run_name="hook-torch")
    finally:
        pyi_hooks.collect_submodules = original


_hook = _run_contrib_hook()
hiddenimports = [m for m in _hook.get("hiddenimports", []) if not _skip_module(m)]
datas = [d for d in _hook.get("datas", []) if _keep_data(d)]
binaries = [b for b in _hook.get("binaries", []) if _keep_binary(b)]
module_collection_mode = _hook.get("module_collection_mode", "pyz+py")
warn_on_missing_hiddenimports = False
if "bindepend_symlink_suppression" in _hook:
    bindepend_symlink_suppression = _hook["bindepend_symlink_suppression"]
