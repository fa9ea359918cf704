"""A team's load on a real server on 127.0.0.1, with a stand-in model whose steps the test
controls (so nothing here depends on the machine's speed): /healthz answers while every
request waits for the model; a click is served between two encoder blocks, not after the
whole encode; the clicks of concurrent clients are decoded in one batch; an encode still
finishes while clicks keep coming. Throughput and latency figures come from the bench
(``maskloop bench --server-load``), not from here."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence

import httpx
import numpy as np
import pytest
from server_helpers import make_image, png_bytes

from app.core.jobs import CancelToken, check
from app.core.types import EmbeddingKey, MaskResult, Prompt


class SteppedModel:
    """A Predictor with an "encoder" of ``blocks`` steps (it checks its CancelToken before
    each, as SAM2's does) and a batched decoder; every step is logged, and both can be held
    at a gate (``encode_gate``, ``decode_gate``) to line up requests."""

    model_id = "stepped"
    description = "a stepped stand-in model"

    def __init__(self, blocks: int = 6, block_s: float = 0.05) -> None:
        self.blocks = blocks
        self.block_s = block_s
        self.log: list[str] = []
        self.batches: list[int] = []
        self.encode_gate = threading.Event()
        self.decode_gate = threading.Event()
        self.encode_gate.set()
        self.decode_gate.set()
        self.decoding = threading.Event()  # set while a decode waits at its gate
        self._lock = threading.Lock()

    def _note(self, what: str) -> None:
        with self._lock:
            self.log.append(what)

    def embed(self, image: np.ndarray, image_hash: str | None = None,
              cancel: CancelToken | None = None) -> EmbeddingKey:
        name = image_hash or hashlib.sha256(image.tobytes()).hexdigest()
        for i in range(self.blocks):
            check(cancel)
            self._note(f"block {i}")
            if i == 0:
                self.encode_gate.wait(30)
            time.sleep(self.block_s)
        check(cancel)
        self._note("encoded")
        return EmbeddingKey(name, self.model_id)

    def _result(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        masks = np.zeros((3, 48, 64), bool)
        masks[:, :10, :10] = True
        return MaskResult(masks, np.array([0.5, 0.9, 0.1], np.float32),
                          np.zeros((3, 256, 256), np.float32))

    def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        return self.predict_batch([(key, prompt)])[0]

    def predict_batch(self, items: Sequence[tuple[EmbeddingKey, Prompt]]) -> list[MaskResult]:
        self.decoding.set()
        self.decode_gate.wait(30)
        self.decoding.clear()
        with self._lock:
            self.batches.append(len(items))
        self._note(f"decode {len(items)}")
        return [self._result(k, p) for k, p in items]

    def segment_everything(self, *args: object, **kwargs: object) -> list:
        return []

    def close(self) -> None:
        pass


def _upload(url: str, seed: int) -> str:
    data = png_bytes(make_image(seed=seed))
    digest = hashlib.sha256(data).hexdigest()
    r = httpx.put(f"{url}/v1/images/{digest}", content=data, timeout=60)
    assert r.status_code == 200, r.text
    return digest


def _click(url: str, digest: str, out: list[int]) -> None:
    r = httpx.post(f"{url}/v1/images/{digest}/predict", json={"points": [[5, 5, 1]]},
                   timeout=60)
    out.append(r.status_code)


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_healthz_answers_while_every_request_waits_for_the_model(serve) -> None:
    model = SteppedModel()
    srv = serve(model)
    digest = _upload(srv.url, 0)
    model.decode_gate.clear()  # the model is now stuck on the first click
    statuses: list[int] = []
    threads = [threading.Thread(target=_click, args=(srv.url, digest, statuses))
               for _ in range(60)]  # more than the 40 threads of Starlette's pool
    try:
        for t in threads:
            t.start()
        _wait_for(model.decoding.is_set)
        time.sleep(1.0)  # let the other 59 requests arrive and wait
        r = httpx.get(f"{srv.url}/healthz", timeout=5.0)
        assert r.status_code == 200 and r.json() == {"status": "healthy"}
        r = httpx.get(f"{srv.url}/info", timeout=5.0)
        assert r.status_code == 200
    finally:
        model.decode_gate.set()
        for t in threads:
            t.join(60)
    assert statuses == [200] * 60


def test_a_click_waits_for_one_encoder_block_not_the_whole_encode(serve) -> None:
    model = SteppedModel(blocks=8, block_s=0.02)
    srv = serve(model)
    known = _upload(srv.url, 0)
    model.log.clear()
    model.encode_gate.clear()  # the next encode stops in its first block
    encoder = threading.Thread(target=_upload, args=(srv.url, 1))
    encoder.start()
    try:
        _wait_for(lambda: "block 0" in model.log)
        statuses: list[int] = []
        clicker = threading.Thread(target=_click, args=(srv.url, known, statuses))
        clicker.start()
        time.sleep(0.5)  # the click is queued behind the block the encoder is in
        model.encode_gate.set()
        clicker.join(30)
        encoder.join(30)
    finally:
        model.encode_gate.set()
    assert statuses == [200]
    log = model.log
    assert log.index("decode 1") == log.index("block 0") + 1, log  # right after that block
    assert log[-1] == "encoded"


def test_concurrent_clicks_are_decoded_in_one_batch(serve) -> None:
    model = SteppedModel()
    srv = serve(model)
    digests = [_upload(srv.url, seed) for seed in range(3)]
    model.decode_gate.clear()
    first: list[int] = []
    blocker = threading.Thread(target=_click, args=(srv.url, digests[0], first))
    blocker.start()
    _wait_for(model.decoding.is_set)  # the decoder is busy with one click
    statuses: list[int] = []
    clickers = [threading.Thread(target=_click, args=(srv.url, digests[i % 3], statuses))
                for i in range(6)]  # six clients on three images
    try:
        for t in clickers:
            t.start()
        time.sleep(1.5)  # all six are queued behind the first
    finally:
        model.decode_gate.set()
        for t in [blocker, *clickers]:
            t.join(30)
    assert first == [200] and statuses == [200] * 6
    assert model.batches[-2:] == [1, 6], model.batches


def test_an_encode_finishes_while_clicks_keep_coming(serve) -> None:
    model = SteppedModel(blocks=10, block_s=0.02)
    srv = serve(model)
    known = _upload(srv.url, 0)
    stop = threading.Event()
    statuses: list[int] = []

    def keep_clicking() -> None:
        while not stop.is_set():
            _click(srv.url, known, statuses)

    clickers = [threading.Thread(target=keep_clicking) for _ in range(4)]
    for t in clickers:
        t.start()
    try:
        _wait_for(lambda: len(statuses) >= 8)
        _upload(srv.url, 1)  # finishes although a click is always waiting
    finally:
        stop.set()
        for t in clickers:
            t.join(30)
    assert set(statuses) == {200}


@pytest.mark.parametrize("route", ["healthz", "info"])
def test_liveness_routes_are_async(route) -> None:
    """/healthz and /info run on the event loop, never in the thread pool that model-bound
    work could fill."""
    import inspect

    from app.server.app import create_app

    app = create_app(SteppedModel())
    endpoint = next(r.endpoint for r in app.routes if getattr(r, "path", "") == f"/{route}")
    assert inspect.iscoroutinefunction(endpoint)
