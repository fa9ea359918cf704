"""``maskloop bench --scenario``: a person labelling, played through the REAL prediction
service (``PredictionService``) with a random-weight SAM2 (issue 14).

1. Clicking while prefetching: the current image is encoded, then a click every
   ``interval`` s on it while the next ``prefetch`` images are prefetched, against the same
   clicks without prefetch; quiet, then with another process busy on one core. Reports the
   click waits (p50/p95) and the seconds of encoder work thrown away.
2. Closed loop: ``images`` images x ``clicks`` clicks, each click ``interval`` s after the
   previous answer (or after the image is shown), moving to the next image after the last
   click, with and without prefetch: the median and p95 click, the session's length and the
   encoder time thrown away.

The goals: with prefetch, the click p95 at most 2x the one without and nothing discarded;
in the closed loop the median click no slower than without prefetch and the session shorter;
with a neighbour busy on one core, the click p95 at most 1.5x the quiet one.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.bench.timing import summary_ms
from app.core.jobs import Progress
from app.core.types import Point, Prompt

__all__ = ["ScenarioOptions", "format_scenario", "run_scenario"]

WAIT_GOAL = 2.0  # click p95 with prefetch <= 2x without
LOADED_GOAL = 1.5  # click p95 with a busy neighbour <= 1.5x quiet
BUSY_LOOP = (
    "import numpy as np\n"
    "a = np.random.rand(256, 256)\n"
    "while True:\n"
    "    a = (a @ a) / 256.0\n"
)


@dataclass(frozen=True)
class ScenarioOptions:
    model: str = "tiny"
    image_size: tuple[int, int] = (1024, 768)
    interval_s: float = 1.5  # between two clicks
    open_clicks: int = 8  # clicks of part 1, per run
    prefetch: int = 2  # next images prefetched
    images: int = 6  # part 2
    clicks: int = 4  # part 2, per image
    loaded: bool = True  # part 1 also with a busy neighbour process
    seed: int = 0


class _Answers:
    """The service's callbacks: each click's latency, the embeddings made ready."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.latencies: dict[int, float] = {}
        self.ready: set[str] = set()
        self.errors: list[str] = []

    def mask(self, result: object, prompt: object, generation: int, latency_ms: float) -> None:
        with self.cond:
            self.latencies[generation] = latency_ms / 1000.0
            self.cond.notify_all()

    def embedded(self, key: Any, seconds: float) -> None:
        with self.cond:
            self.ready.add(key.image_hash)
            self.cond.notify_all()

    def error(self, exc: BaseException, job: object) -> None:
        with self.cond:
            self.errors.append(f"{job}: {exc}")
            self.cond.notify_all()

    def wait_answer(self, generation: int) -> bool:
        return self.wait(lambda: generation in self.latencies or bool(self.errors))

    def wait(self, pred: Callable[[], bool], timeout: float = 600.0) -> bool:
        with self.cond:
            return self.cond.wait_for(pred, timeout)


def _image(options: ScenarioOptions, seed: int) -> np.ndarray:
    from app.bench.local import synthetic_image

    w, h = options.image_size
    return synthetic_image(w, h, seed)


def _prompt(options: ScenarioOptions, n: int) -> Prompt:
    w, h = options.image_size
    rng = np.random.default_rng(n)
    return Prompt(points=(Point(float(rng.uniform(0.2, 0.8) * w),
                                float(rng.uniform(0.2, 0.8) * h)),))


class _Busy:
    """Another process spinning a numpy loop on one core (a browser, a build...)."""

    def __init__(self, on: bool) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        if on:
            env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            import os

            self.proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP],
                                         env={**os.environ, **env})
            time.sleep(0.5)

    def __enter__(self) -> _Busy:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def _loader(images: dict[str, np.ndarray], image_hash: str) -> Callable[[], np.ndarray]:
    return lambda: images[image_hash]


def _quiet(done: int, total: int, message: str = "") -> None:
    pass


def _service(predictor: Any, answers: _Answers) -> Any:
    from app.predict.service.service import PredictionService
    from app.predict.service.types import ServiceCallbacks

    return PredictionService(predictor, ServiceCallbacks(
        on_mask=answers.mask, on_embedding_ready=answers.embedded, on_error=answers.error))


def _clicking_while_prefetching(predictor: Any, options: ScenarioOptions, tag: str,
                                prefetch: bool) -> dict[str, Any]:
    answers = _Answers()
    service = _service(predictor, answers)
    try:
        images = {f"{tag}-{i}": _image(options, 100 + i) for i in range(1 + options.prefetch)}
        names = list(images)
        nexts = [(h, _loader(images, h)) for h in names[1:]] if prefetch else []
        service.set_current_image(names[0], lambda: images[names[0]], nexts)
        answers.wait(lambda: names[0] in answers.ready)
        t0 = time.perf_counter()
        for n in range(1, options.open_clicks + 1):
            due = t0 + (n - 1) * options.interval_s
            time.sleep(max(0.0, due - time.perf_counter()))
            service.request_mask(_prompt(options, n), n, names[0])
            answers.wait_answer(n)
        service.wait_idle(600.0)
        return _figures(answers, service.stats)
    finally:
        service.shutdown(60.0)


def _figures(answers: _Answers, stats: Any, **extra: float) -> dict[str, Any]:
    """One run's figures: click latencies, what was prefetched and thrown away, errors."""
    return {"click_ms": summary_ms(list(answers.latencies.values())), **extra,
            "prefetched": stats.prefetched,
            "beside_encode": stats.masks_beside_encode,  # clicks the click lane decoded
            "discarded_s": round(stats.encode_seconds_discarded, 3),
            "discarded_steps": stats.encode_steps_discarded,
            "errors": answers.errors}


def _closed_loop(predictor: Any, options: ScenarioOptions, tag: str,
                 prefetch: bool) -> dict[str, Any]:
    answers = _Answers()
    service = _service(predictor, answers)
    try:
        names = [f"{tag}-{i}" for i in range(options.images)]
        images = {h: _image(options, 200 + i) for i, h in enumerate(names)}
        t0 = time.perf_counter()
        gen = 0
        for i, name in enumerate(names):
            nexts = ([(h, _loader(images, h)) for h in names[i + 1:i + 1 + options.prefetch]]
                     if prefetch else [])
            service.set_current_image(name, _loader(images, name), nexts)
            for _ in range(options.clicks):
                time.sleep(options.interval_s)
                gen += 1
                service.request_mask(_prompt(options, gen), gen, name)
                answers.wait_answer(gen)
        session = time.perf_counter() - t0
        service.wait_idle(600.0)
        return _figures(answers, service.stats, session_s=round(session, 2))
    finally:
        service.shutdown(60.0)


def run_scenario(options: ScenarioOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run both parts; returns a JSON-able dict with the goals marked."""
    import torch

    from app.core.threads import worker_threads
    from app.predict.cache.store import EmbeddingCache
    from app.predict.models.registry import get_model
    from app.predict.sam2.model import random_weight_sam2
    from app.predict.sam2.predictor import SAM2Predictor

    say: Progress = progress or _quiet
    spec = get_model(options.model)
    run_tag = f"{time.time_ns():x}"
    predictor = SAM2Predictor.from_model(
        random_weight_sam2(spec.config, "cpu", options.seed), f"scenario-{run_tag}",
        EmbeddingCache(disk_dir=None))
    # warm up: one encode and one click, untimed
    warm = _Answers()
    service = _service(predictor, warm)
    service.set_current_image("warm", lambda: _image(options, 1))
    service.request_mask(_prompt(options, 0), 1, "warm")
    warm.wait_answer(1)
    service.shutdown(60.0)
    t0 = time.perf_counter()
    predictor.embed(_image(options, 2), image_hash=f"timing-{run_tag}")
    encode_s = time.perf_counter() - t0

    runs = [(load, pf) for load in ((False, True) if options.loaded else (False,))
            for pf in (False, True)]
    total = len(runs) + 2
    part1: dict[str, Any] = {}
    for k, (load, pf) in enumerate(runs):
        name = f"{'loaded' if load else 'quiet'}_{'prefetch' if pf else 'no_prefetch'}"
        say(k, total, f"clicking while prefetching: {name}")
        with _Busy(load):
            part1[name] = _clicking_while_prefetching(predictor, options, f"{run_tag}-{name}", pf)
    part2: dict[str, Any] = {}
    for k, pf in enumerate((False, True)):
        name = "prefetch" if pf else "no_prefetch"
        say(len(runs) + k, total, f"closed loop: {name}")
        part2[name] = _closed_loop(predictor, options, f"{run_tag}-loop-{name}", pf)
    say(total, total, "done")

    def p95(d: dict[str, Any]) -> float:
        return float(d["click_ms"]["p95"] or 0.0)

    goals: dict[str, bool] = {
        "wait_p95_with_prefetch_within_2x": p95(part1["quiet_prefetch"])
        <= WAIT_GOAL * p95(part1["quiet_no_prefetch"]),
        "nothing_discarded": all(r["discarded_s"] == 0 for r in [*part1.values(),
                                                                 *part2.values()]),
        "closed_loop_median_no_slower": part2["prefetch"]["click_ms"]["p50"]
        <= part2["no_prefetch"]["click_ms"]["p50"],
        "closed_loop_session_shorter": part2["prefetch"]["session_s"]
        < part2["no_prefetch"]["session_s"],
    }
    if options.loaded:
        goals["loaded_p95_within_1.5x_quiet"] = p95(part1["loaded_prefetch"]) \
            <= LOADED_GOAL * p95(part1["quiet_prefetch"])
    return {
        "model": spec.name, "image_size": list(options.image_size),
        "torch_threads": torch.get_num_threads(), "worker_threads": worker_threads(),
        "encode_s": round(encode_s, 3), "interval_s": options.interval_s,
        "prefetch": options.prefetch, "open_clicks": options.open_clicks,
        "images": options.images, "clicks": options.clicks,
        "clicking_while_prefetching": part1, "closed_loop": part2, "goals": goals,
    }


def format_scenario(result: dict[str, Any]) -> str:
    """The result as a table with each goal marked met / NOT met."""

    def row(name: str, d: dict[str, Any]) -> str:
        c = d["click_ms"]
        extra = f"  session {d['session_s']:.1f} s" if "session_s" in d else ""
        return (f"  {name:<22} click p50 {c['p50']:7.0f} ms  p95 {c['p95']:7.0f} ms  "
                f"(n={c['n']}){extra}  discarded {d['discarded_s']:.2f} s  "
                f"prefetched {d['prefetched']}  beside an encode {d['beside_encode']}")

    w, h = result["image_size"]
    lines = [f"maskloop bench --scenario: SAM2 {result['model']} (random weights), {w}x{h}, "
             f"encode {result['encode_s']:.2f} s, {result['worker_threads']} worker threads, "
             f"a click every {result['interval_s']} s",
             f"clicking while prefetching ({result['open_clicks']} clicks, "
             f"{result['prefetch']} next images):"]
    lines += [row(k, v) for k, v in result["clicking_while_prefetching"].items()]
    lines.append(f"closed loop ({result['images']} images x {result['clicks']} clicks):")
    lines += [row(k, v) for k, v in result["closed_loop"].items()]
    lines.append("goals: " + ", ".join(f"{k} {'met' if ok else 'NOT met'}"
                                       for k, ok in result["goals"].items()))
    return "\n".join(lines)
