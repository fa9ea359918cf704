"""``maskloop bench --server-load``: a team's load on a real ``maskloop serve``.

Starts the server as a subprocess on 127.0.0.1 (a free port) over a random-weight SAM2
checkpoint (``save_random_checkpoint``, loaded as a user's ``--checkpoint``), embeds
``images`` synthetic images, then (after 3 s of warm-up) runs three phases of
``duration_s`` each, driven by httpx clients on threads of this process:

1. ``clickers``: ``clickers`` clients click in a closed loop (one click in flight each) on the
   pre-embedded images (client i on image i mod ``images``), through ``route`` (``v1``:
   ``POST /v1/images/{hash}/predict``, the app's route; ``sam2``: ``POST
   /sam2/segment_image`` by ``image_id``, as Roboflow's clients do);
2. ``clickers_encoders``: the same, while ``encoders`` clients upload new images in a loop
   (``PUT /v1/images/{hash}``: decode + encode on the server);
3. ``crowd``: ``crowd`` clickers (more than the 40 threads of Starlette's pool).

In each a prober asks ``GET /healthz`` every ``probe_interval_s``. Figures per phase: clicks
per second (answered clicks / the phase's length), click latency p50 / p95 / max, errors,
/healthz latency, the CPU the server process and this one (the clients) used per answered
click over the phase (``server_cpu_ms_per_click``, ``client_cpu_ms_per_click``, the encodes'
CPU included in phase 2: what a click costs, steadier on a shared machine than clicks/s;
Linux only, else null), and in
phase 2 the encodes finished and their latency. Bounded: the
clients stop at the phase's end and the last answers are awaited at most ``grace_s``.
Timings only: random weights make noise-like masks.

``floor``: after the phases, the least CPU time a click's decode can take on this machine
(``roofline.py``: the decoder's operations per click at the fp32 GEMM peak of all its cores)
and the clicks per second that allows with nothing else done per click (no HTTP, no
upscaling, no RLE): the ceiling of any server on this CPU.

``server_source`` runs the server of another source tree (``PYTHONPATH``), so the same
clients measure an older version of the server (``git archive HEAD | tar -x -C DIR``; then
``maskloop bench --server-load --server-source DIR``).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.bench.local import synthetic_image
from app.bench.timing import summary_ms
from app.core.jobs import Progress
from app.server.process import TINY_CONFIG, ServerProcess, source_root

ROUTES = ("v1", "sam2")


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass(frozen=True)
class LoadBenchOptions:
    clickers: int = 20
    encoders: int = 2
    crowd: int = 50  # clickers of phase 3 (/healthz under a crowd); 0: no phase 3
    images: int = 5  # pre-embedded images the clickers share
    image_size: tuple[int, int] = (1024, 768)  # (width, height)
    duration_s: float = 20.0  # per phase
    route: str = "v1"
    probe_interval_s: float = 0.1
    grace_s: float = 60.0  # waiting for the last answers after a phase's end
    seed: int = 0
    server_source: str | None = None  # a source tree whose server to run (default: this one)
    server_args: tuple[str, ...] = ()  # more ``maskloop serve`` options
    floor: bool = True  # count the click's arithmetic and measure the GEMM peak afterwards


@dataclass
class _Record:
    latencies: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)  # perf_counter of each answer
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, started: float) -> None:
        now = time.perf_counter()
        with self.lock:
            self.latencies.append(now - started)
            self.finished.append(now)

    def error(self, what: str) -> None:
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1


def _timed(record: _Record, call: Callable[[], httpx.Response]) -> None:
    """Time one request: an answer 200 is recorded with its latency, anything else (another
    status, a connection error) as an error by its kind."""
    t0 = time.perf_counter()
    try:
        r = call()
    except httpx.HTTPError as exc:
        record.error(type(exc).__name__)
        return
    if r.status_code == 200:
        record.ok(t0)
    else:
        record.error(f"HTTP {r.status_code}")


class _Load:
    """The clients of one bench run against ``url``."""

    def __init__(self, url: str, options: LoadBenchOptions,
                 images: list[tuple[str, str, tuple[int, int]]],
                 server_pid: int | None = None) -> None:
        self.url = url
        self.server_pid = server_pid
        self.o = options
        self.images = images  # (sha256, roboflow image_id, (w, h))
        self.stop = threading.Event()

    def click_loop(self, i: int, record: _Record) -> None:
        rng = np.random.default_rng(self.o.seed * 1000 + i)
        digest, image_id, (w, h) = self.images[i % len(self.images)]
        with httpx.Client(base_url=self.url, timeout=self.o.grace_s + 120) as client:
            while not self.stop.is_set():
                x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
                if self.o.route == "v1":
                    _timed(record, partial(client.post, f"/v1/images/{digest}/predict",
                                           json={"points": [[x, y, 1]]}))
                else:
                    _timed(record, partial(client.post, "/sam2/segment_image", json={
                        "image_id": image_id, "format": "rle",
                        "prompts": {"prompts": [{"points": [
                            {"x": x, "y": y, "positive": True}]}]}}))

    def encode_loop(self, i: int, record: _Record) -> None:
        w, h = self.o.image_size
        n = 0
        with httpx.Client(base_url=self.url, timeout=self.o.grace_s + 300) as client:
            while not self.stop.is_set():
                seed = (self.o.seed + 1) * 1_000_003 + i * 10_007 + n + int(time.time())
                n += 1
                data = png_bytes(synthetic_image(w, h, seed % 2**31))
                digest = hashlib.sha256(data).hexdigest()
                _timed(record, partial(client.put, f"/v1/images/{digest}", content=data,
                                       headers={"Content-Type": "image/png"}))

    def probe_loop(self, record: _Record) -> None:
        with httpx.Client(base_url=self.url, timeout=self.o.grace_s + 120) as client:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    r = client.get("/healthz")
                except httpx.HTTPError as exc:
                    record.error(type(exc).__name__)
                else:
                    if r.status_code == 200:
                        record.ok(t0)
                    else:
                        record.error(f"HTTP {r.status_code}")
                self.stop.wait(self.o.probe_interval_s)

    def phase(self, clickers: int, encoders: int, duration_s: float) -> dict[str, Any]:
        self.stop.clear()
        clicks, encodes, probes = _Record(), _Record(), _Record()
        threads = [threading.Thread(target=self.click_loop, args=(i, clicks), daemon=True)
                   for i in range(clickers)]
        threads += [threading.Thread(target=self.encode_loop, args=(i, encodes), daemon=True)
                    for i in range(encoders)]
        threads.append(threading.Thread(target=self.probe_loop, args=(probes,), daemon=True))
        cpu_before = (process_cpu_s(self.server_pid), time.process_time())
        start = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(duration_s)
        self.stop.set()
        end = start + duration_s
        cpu_after = (process_cpu_s(self.server_pid), time.process_time())
        for t in threads:
            t.join(max(0.0, end + self.o.grace_s - time.perf_counter()))
        in_time = [f for f in clicks.finished if f <= end]
        server_cpu = (None if cpu_before[0] is None or cpu_after[0] is None
                      else cpu_after[0] - cpu_before[0])
        out: dict[str, Any] = {
            "clickers": clickers, "encoders": encoders,
            "duration_s": duration_s,
            "clicks": len(clicks.latencies),
            "clicks_per_s": round(len(in_time) / duration_s, 3),
            "click_ms": summary_ms(clicks.latencies),
            "click_errors": clicks.errors,
            "server_cpu_ms_per_click": _per_click_ms(server_cpu, len(in_time)),
            "client_cpu_ms_per_click": _per_click_ms(cpu_after[1] - cpu_before[1],
                                                     len(in_time)),
            "healthz_ms": summary_ms(probes.latencies),
            "healthz_errors": probes.errors,
            "unfinished_clients": sum(t.is_alive() for t in threads),
        }
        if encoders:
            out["encodes"] = len(encodes.latencies)
            out["encode_ms"] = summary_ms(encodes.latencies)
            out["encode_errors"] = encodes.errors
        return out


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds process ``pid`` has used (all its threads), from Linux's
    /proc; None elsewhere or when it is gone."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_click_ms(cpu_s: float | None, clicks: int) -> float | None:
    return None if cpu_s is None or not clicks else round(1000 * cpu_s / clicks, 2)


def _embed_images(url: str, options: LoadBenchOptions,
                  say: Progress) -> list[tuple[str, str, tuple[int, int]]]:
    w, h = options.image_size
    out = []
    with httpx.Client(base_url=url, timeout=600) as client:
        for i in range(options.images):
            say(i, options.images, f"embedding image {i + 1}/{options.images}")
            data = png_bytes(synthetic_image(w, h, options.seed * 100 + i))
            digest = hashlib.sha256(data).hexdigest()
            client.put(f"/v1/images/{digest}", content=data).raise_for_status()
            if options.route == "sam2":  # the Roboflow route knows images by image_id
                import base64

                r = client.post("/sam2/embed_image", json={
                    "image": {"type": "base64", "value": base64.b64encode(data).decode()},
                    "image_id": f"bench-{digest[:16]}"})
                r.raise_for_status()
            out.append((digest, f"bench-{digest[:16]}", (w, h)))
    return out


def run_load_bench(options: LoadBenchOptions,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Every phase against a fresh server with an empty cache (see the module docstring)."""
    if options.route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}")
    say: Progress = progress or (lambda done, total, message: None)
    from app.predict.sam2.model import save_random_checkpoint

    source = Path(options.server_source or source_root()).resolve()
    with tempfile.TemporaryDirectory(prefix="maskloop-load-") as tmp:
        checkpoint = save_random_checkpoint(Path(tmp) / "sam2.1_hiera_tiny_random.pt",
                                            TINY_CONFIG, seed=options.seed)
        say(0, 1, f"starting the server of {source}")
        server = ServerProcess(checkpoint, Path(tmp) / "cache", source, options.server_args)
        try:
            server.wait_ready()
            images = _embed_images(server.url, options, say)
            load = _Load(server.url, options, images, server.proc.pid)
            say(0, 3, "warming up (clickers for 3 s, not counted)")
            load.phase(options.clickers, 0, min(3.0, options.duration_s))
            say(1, 3, f"{options.clickers} clickers for {options.duration_s:g} s")
            phases = {"clickers": load.phase(options.clickers, 0, options.duration_s)}
            say(2, 3, f"{options.clickers} clickers and {options.encoders} encoders for "
                      f"{options.duration_s:g} s")
            phases["clickers_encoders"] = load.phase(options.clickers, options.encoders,
                                                     options.duration_s)
            if options.crowd:
                say(3, 3, f"a crowd of {options.crowd} clickers for {options.duration_s:g} s")
                phases["crowd"] = load.phase(options.crowd, 0, options.duration_s)
        finally:
            server.stop()
    ratio = None
    floor = click_floor() if options.floor else None
    alone, mixed = phases["clickers"]["click_ms"]["p95"], phases["clickers_encoders"][
        "click_ms"]["p95"]
    if alone and mixed:
        ratio = round(mixed / alone, 3)
    return {
        "options": asdict(options), "server_source": str(source),
        "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
        "phases": phases,
        "click_p95_with_encoders_over_alone": ratio,
        "floor": floor,
    }


def click_floor() -> dict[str, Any]:
    """The decoder's arithmetic per click and what this CPU's cores allow (see the module
    docstring); counted on the same random-weight SAM2.1 tiny the server runs."""
    from app.bench.roofline import count_flops, gemm_peak_gflops
    from app.predict.sam2.model import random_weight_sam2

    flops = count_flops(random_weight_sam2("tiny", "cpu"))
    cores = os.cpu_count() or 1
    one, every = gemm_peak_gflops(1)["peak"], gemm_peak_gflops(cores)["peak"]
    return {"click_gflop": flops.click, "decoder_image_gflop": flops.decoder_image,
            "cores": cores, "gemm_gflops_one_core": one, "gemm_gflops_all_cores": every,
            "click_cpu_ms_at_peak": round(1000.0 * flops.click / one, 1),
            "clicks_per_s_at_peak": round(every / flops.click, 1)}
