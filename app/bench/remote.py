"""``maskloop bench --remote URL``: click latency and bytes on the wire through a MaskLoop
server, per mode (server: the server decodes; hybrid: the embedding is fetched once and
clicks are decoded here).

Per mode: the connection check; per image the upload (or hash-only check) plus encoding, and
in hybrid mode the embedding download; per click the request and response bytes (request
line, headers and bodies, counted by an httpx event hook) and the latency. Prompts cycle
through a click, a click plus a negative click refining the previous best candidate, and a
box with a click. Images are synthetic and new to the server on each run (their seed mixes
in the time), so the upload is measured; a second session on the same image measures the
hash-only path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.bench.local import synthetic_image
from app.bench.timing import summary_ms
from app.core.jobs import Progress
from app.core.types import Box, MaskResult, Point, Prompt
from app.predict.hosted.common import encode_image
from app.predict.remote.predictor import RemotePredictor

MODES = ("server", "hybrid")


@dataclass(frozen=True)
class RemoteBenchOptions:
    url: str
    api_key: str | None = None
    modes: tuple[str, ...] = MODES
    image_size: tuple[int, int] = (1024, 768)  # (width, height)
    images: int = 2
    clicks: int = 30
    warmup: int = 2
    decoder: str | None = None  # hybrid: a checkpoint path (None: the registry model)
    seed: int | None = None  # None: mixed with the time so images are new to the server


def next_prompt(i: int, rng: np.random.Generator, w: int, h: int,
                previous: MaskResult | None) -> Prompt:
    x, y = float(rng.uniform(0.1 * w, 0.9 * w)), float(rng.uniform(0.1 * h, 0.9 * h))
    kind = i % 3
    if kind == 1 and previous is not None:
        x2, y2 = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        return Prompt(points=(Point(x, y), Point(x2, y2, False)),
                      mask_input=previous.logits_for(previous.best))
    if kind == 2:
        bw, bh = 0.3 * w, 0.3 * h
        return Prompt(points=(Point(x, y),), box=Box(max(0.0, x - bw / 2), max(0.0, y - bh / 2),
                                                    min(w, x + bw / 2), min(h, y + bh / 2)))
    return Prompt(points=(Point(x, y),))


def bench_mode(options: RemoteBenchOptions, mode: str, seed: int,
               say: Progress) -> dict[str, Any]:
    """One mode's figures (see the module docstring)."""
    w, h = options.image_size
    t0 = time.perf_counter()
    rp = RemotePredictor(options.url, options.api_key, mode, decoder=options.decoder)
    connect_s = time.perf_counter() - t0
    out: dict[str, Any] = {"mode": mode, "model_id": rp.model_id, "description": rp.description,
                           "connect": {"ms": round(connect_s * 1000, 3),
                                       "bytes": rp.stats.total}}
    try:
        embeds, sent, received = [], [], []
        key = None
        images = [synthetic_image(w, h, seed + i) for i in range(options.images)]
        for i, image in enumerate(images):
            say(i, options.images, f"{mode}: embedding image {i + 1}/{options.images}")
            before = rp.stats.snapshot()
            t0 = time.perf_counter()
            key = rp.embed(image)
            embeds.append(time.perf_counter() - t0)
            delta = rp.stats.since(before)
            sent.append(delta.bytes_sent)
            received.append(delta.bytes_received)
        assert key is not None
        out["image"] = {"embed": summary_ms(embeds), "bytes_sent": sent,
                        "bytes_received": received, "pixels": [w, h]}
        again = RemotePredictor(options.url, options.api_key, "server")
        before = again.stats.snapshot()
        again.embed(images[0])
        delta = again.stats.since(before)
        out["image"]["known_image_bytes"] = delta.total  # a new session: hash only
        # what embed_file() would upload for the same image kept as a JPEG (quality 95)
        out["image"]["jpeg_file_bytes"] = len(encode_image(images[0], "jpeg"))
        again.close()

        rng = np.random.default_rng(seed + 7)
        previous: MaskResult | None = None
        for i in range(options.warmup):
            previous = rp.predict(key, next_prompt(i, rng, w, h, previous))
        times, server, click_sent, click_received, requests = [], [], [], [], []
        for i in range(options.clicks):
            prompt = next_prompt(i, rng, w, h, previous)
            before = rp.stats.snapshot()
            t0 = time.perf_counter()
            previous = rp.predict(key, prompt)
            times.append(time.perf_counter() - t0)
            server.append(rp.last_server_time if mode == "server" else 0.0)
            delta = rp.stats.since(before)
            click_sent.append(delta.bytes_sent)
            click_received.append(delta.bytes_received)
            requests.append(delta.requests)
        out["click"] = {
            "latency": summary_ms(times),
            # latency minus the server's own decode time: network + (de)serialisation
            "overhead": summary_ms([t - s for t, s in zip(times, server, strict=True)]),
            "bytes_sent_mean": round(float(np.mean(click_sent)), 1),
            "bytes_received_mean": round(float(np.mean(click_received)), 1),
            "bytes_mean": round(float(np.mean(click_sent) + np.mean(click_received)), 1),
            "bytes_max": int(max(s + r for s, r in zip(click_sent, click_received,
                                                       strict=True))),
            "requests_per_click": round(float(np.mean(requests)), 3),
        }
    finally:
        rp.close()
    return out


def run_remote_bench(options: RemoteBenchOptions,
                     progress: Progress | None = None) -> dict[str, Any]:
    """Every mode asked for, one after the other: {"url", "modes": {mode: figures}}."""
    say: Progress = progress or (lambda done, total, message: None)
    seed = options.seed if options.seed is not None else int(time.time() * 1000) % 2**31
    result: dict[str, Any] = {"url": options.url, "image_size": list(options.image_size),
                              "clicks": options.clicks, "modes": {}}
    for i, mode in enumerate(options.modes):  # new images per mode: uploads are measured
        result["modes"][mode] = bench_mode(options, mode, seed + 1000 * i, say)
    result["object_like_click_bytes"] = object_like_rle_bytes(*options.image_size, seed)
    return result


def object_like_rle_bytes(width: int, height: int, seed: int) -> int:
    """The mask bytes of one click's reply (3 candidates as COCO RLE) for object-like masks
    (the ellipses of the synthetic scene): random weights give noise-like masks whose RLE is
    far larger than a trained model's."""
    from app.bench.local import synthetic_scene
    from app.core import rle

    masks = synthetic_scene(width, height, seed)[1][:3]
    return int(sum(len(rle.encode_json(m)["counts"]) for m in masks))


def format_remote_report(result: dict[str, Any]) -> str:
    """A few readable lines per mode."""
    lines = [f"remote bench against {result['url']} ({result['image_size'][0]}x"
             f"{result['image_size'][1]} images, {result['clicks']} clicks)"]
    for mode, r in result["modes"].items():
        img, click = r["image"], r["click"]
        lat = click["latency"]
        lines += [
            f"{mode}: {r['description']}",
            f"  per image: embed p50 {img['embed']['p50']:.0f} ms, sent "
            f"{_kib(img['bytes_sent'][0])}, received {_kib(img['bytes_received'][0])}; "
            f"known image (hash only): {img['known_image_bytes']} B; as a JPEG file: "
            f"{_kib(img['jpeg_file_bytes'])}",
            f"  per click: p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, "
            f"{click['bytes_sent_mean']:.0f} B sent + {click['bytes_received_mean']:.0f} B "
            f"received, {click['requests_per_click']:.2f} requests; overhead beyond the "
            f"server's decode p50 {click['overhead']['p50']:.1f} ms",
        ]
    if "object_like_click_bytes" in result:
        lines.append(f"(masks of an object-like shape: {result['object_like_click_bytes']} B "
                     "of RLE per click for 3 candidates)")
    return "\n".join(lines)


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"
