"""The CPU runtimes that run the exported ONNX graphs: ONNX Runtime and OpenVINO.

An ``Engine`` loads one graph for a number of threads as a ``Graph`` (named numpy inputs ->
numpy outputs, in the graph's output order). Both wait passively: ONNX Runtime's intra-op
threads do not spin (``session.intra_op.allow_spinning`` 0, as torch's OpenMP threads sleep
with ``OMP_WAIT_POLICY=PASSIVE``), so a busy neighbour process does not stall them.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

ENGINES = ("onnxruntime", "openvino")


class Graph(Protocol):
    def run(self, feeds: dict[str, np.ndarray], release: bool = False) -> list[np.ndarray]:
        """The outputs; ``release``: give the memory of the activations back afterwards
        (the last step of an encode)."""
        ...


class Engine(Protocol):
    name: str

    @property
    def version(self) -> str: ...

    def load(self, path: Path, threads: int) -> Graph: ...


def installed(name: str) -> bool:
    """True if the runtime's package can be imported (without importing it)."""
    return importlib.util.find_spec(name) is not None


def engine(name: str) -> Engine:
    """The engine called ``name`` (ImportError if its package is not installed)."""
    if name == "onnxruntime":
        return OnnxRuntimeEngine()
    if name == "openvino":
        return OpenVinoEngine()
    raise ValueError(f"unknown runtime {name!r}; use one of: {', '.join(ENGINES)}")


class _OrtGraph:
    def __init__(self, session: Any, release: Any) -> None:
        self.session = session
        self._release = release

    def run(self, feeds: dict[str, np.ndarray], release: bool = False) -> list[np.ndarray]:
        out: list[np.ndarray] = self.session.run(None, feeds,
                                                 self._release if release else None)
        return out


class OnnxRuntimeEngine:
    name = "onnxruntime"

    _arena_lock = threading.Lock()
    _arena_registered = False

    def __init__(self) -> None:
        import onnxruntime

        self._ort = onnxruntime
        with self._arena_lock:
            if not OnnxRuntimeEngine._arena_registered:
                ort = onnxruntime
                info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                         ort.OrtMemType.DEFAULT)
                ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))
                OnnxRuntimeEngine._arena_registered = True

    @property
    def version(self) -> str:
        return str(self._ort.__version__)

    def load(self, path: Path, threads: int) -> Graph:
        ort = self._ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3
        # one arena for every session (registered once per process): an arena of each
        # session's own would keep that graph's largest activations for good (5.6 GB for
        # SAM2.1 tiny's 15 graphs after two encodes, against ~0.4 GB shared)
        options.add_session_config_entry("session.use_env_allocators", "1")
        release = ort.RunOptions()  # shrink the shared arena after the run
        release.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        return _OrtGraph(ort.InferenceSession(str(path), options,
                                              providers=["CPUExecutionProvider"]), release)


class _OvGraph:
    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled

    def run(self, feeds: dict[str, np.ndarray], release: bool = False) -> list[np.ndarray]:
        # a request per call: requests are not thread-safe (the batched decode runs several
        # at once); share_outputs=False (the default) gives arrays of their own
        result = self.compiled.create_infer_request().infer(feeds)
        return [np.asarray(result[out]) for out in self.compiled.outputs]


class OpenVinoEngine:
    name = "openvino"

    def __init__(self) -> None:
        import openvino

        self._ov = openvino
        self._core = openvino.Core()

    @property
    def version(self) -> str:
        return str(self._ov.get_version()).split("-")[0]

    def load(self, path: Path, threads: int) -> Graph:
        # f32 inference: on CPUs with bf16/AMX units OpenVINO would otherwise compute in bf16
        config = {"INFERENCE_NUM_THREADS": max(1, threads), "INFERENCE_PRECISION_HINT": "f32",
                  "PERFORMANCE_HINT": "LATENCY"}
        return _OvGraph(self._core.compile_model(str(path), "CPU", config))
