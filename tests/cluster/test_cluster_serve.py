"""``maskloop serve --ray``: the FastAPI app as a Ray Serve app of 2 replicas on a local Ray
(2 CPUs); the desktop client (RemotePredictor) unchanged against it, 20 concurrent clients
spread over both replicas, a replica killed under load replaced while clients only retry,
and the killed replica's images answered from the shared cache without a new upload."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from app.cluster.image_router import rendezvous
from app.cluster.serve_app import APP_NAME, REPLICA_HEADER, serve_application
from app.cluster.worker_model import WorkerModel
from app.core.types import Point, Prompt
from app.predict.base import PredictorError
from app.predict.hosted.common import encode_image
from app.predict.remote.predictor import RemotePredictor
from app.server.settings import ServerSettings

pytestmark = pytest.mark.slow

KEY = "cluster-test-key"
CLICK = Prompt(points=(Point(40.5, 20.5),))


class Recorder(httpx.HTTPTransport):
    """A real transport that notes which replica answered and every retryable answer."""

    def __init__(self) -> None:
        super().__init__()
        self.replicas: Counter[str] = Counter()
        self.retryable = 0
        self.not_found = 0  # clicks on an image the replica did not know (then re-uploaded)
        self.lock = threading.Lock()

    def close(self) -> None:
        """Every client shares this transport: a client closing its session must not close
        the others' connections (they saw EBADF); ``shut`` closes it once, at the end."""

    def shut(self) -> None:
        super().close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = super().handle_request(request)
        except httpx.TransportError:
            with self.lock:
                self.retryable += 1
            raise
        with self.lock:
            if response.status_code >= 500:
                self.retryable += 1
            if response.status_code == 404 and request.url.path.endswith("/predict"):
                self.not_found += 1
            replica = response.headers.get(REPLICA_HEADER)
            if replica and request.url.path.endswith("/predict") and \
                    response.status_code == 200:
                self.replicas[replica] += 1
        return response


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(local_ray: str, tiny_model: WorkerModel,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Serve app (2 replicas, a shared cache folder) on a free port; its URL."""
    from ray import serve

    port = free_port()
    settings = ServerSettings(api_key=KEY, cache_dir=tmp_path_factory.mktemp("shared-cache"))
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(serve_application(tiny_model, settings, 2), name=APP_NAME, route_prefix="/")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


def replicas_seen(url: str, tries: int = 40) -> set[str]:
    """The replicas answering requests that name no image (spread by load)."""
    return {httpx.get(url + "/healthz").headers[REPLICA_HEADER] for _ in range(tries)}


def image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (40, 56, 3), dtype=np.uint8)
    pixels[10:30, 20:45] = (220, 180, 40)
    return pixels


def server_hash(pixels: np.ndarray) -> str:
    """The hash the client uploads an image under (sha256 of its PNG)."""
    return hashlib.sha256(encode_image(pixels, "png")).hexdigest()


def test_the_desktop_client_works_unchanged(served: str, tiny_model: WorkerModel) -> None:
    from app.predict.cache.store import EmbeddingCache

    local = tiny_model.build(cache=EmbeddingCache(disk_dir=None))
    rp = RemotePredictor(served, KEY, "server", backoff=0.05)
    try:
        assert rp.model_id == tiny_model.model_id
        pixels = image(0)
        key = rp.embed(pixels)
        result = rp.predict(key, CLICK)
        reference = local.predict(local.embed(pixels), CLICK)
        np.testing.assert_allclose(result.scores, reference.scores, atol=1e-4)
        assert (result.masks != reference.masks).mean() < 1e-3
        # refinement by the replica's result id: the image's requests go to one replica
        before = rp.stats.snapshot()
        refined = rp.predict(key, Prompt(points=(*CLICK.points, Point(5, 5, False)),
                                         mask_input=result.logits_for(result.best)))
        assert len(refined) == 3 and rp.stats.since(before).bytes_sent < 1000
        # a second session finds the image on the cluster by its hash: no upload
        again = RemotePredictor(served, KEY)
        again.embed(pixels)
        assert again.stats.bytes_sent < 3000
        again.close()
        # hybrid mode fetches the float16 embedding and decodes here
        hybrid = RemotePredictor(served, KEY, "hybrid", decoder=local)
        there = hybrid.predict(hybrid.embed(pixels), CLICK)
        np.testing.assert_allclose(there.scores, result.scores, atol=1e-2)
        with pytest.raises(PredictorError, match="rejected the API key"):
            RemotePredictor(served, "wrong-key", backoff=0.01)
    finally:
        rp.close()
        local.close()


def replica_states() -> str:
    """The replica states Serve reports for the app, e.g. ``RUNNING 1, STARTING 1``."""
    from ray import serve

    app = serve.status().applications.get(APP_NAME)
    if app is None:
        return "no application"
    said = []
    for d in app.deployments.values():
        states = ", ".join(f"{state} {n}" for state, n in d.replica_states.items())
        said.append(f"{states} ({d.message})" if d.message else states)
    return "; ".join(said)


def memory_available() -> str:
    """The memory the kernel says is available (Ray's monitor kills the newest worker near
    95% use), for the failure message."""
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
    except OSError:
        return "memory unknown"
    return f"{int(fields['MemAvailable'].split()[0]) / 2**20:.1f} GiB available"


def images_for_each_replica(url: str) -> list[np.ndarray]:
    """One image that the router sends to each replica (by the same rendezvous hash)."""
    replicas = sorted(replicas_seen(url))
    assert len(replicas) == 2
    chosen: dict[str, np.ndarray] = {}
    seed = 100
    while len(chosen) < 2:
        pixels = image(seed)
        chosen.setdefault(replicas[rendezvous(server_hash(pixels), replicas)[0]], pixels)
        seed += 1
    return list(chosen.values())


def click_concurrently(url: str, images: list[np.ndarray], clients: int, clicks: int,
                       during: threading.Event | None = None) -> tuple[Recorder, list[str]]:
    """``clients`` threads, each its own RemotePredictor, clicking on the images in turn
    (``clicks`` each, or until ``during`` is set); returns the recorder and the errors."""
    recorder = Recorder()
    errors: list[str] = []
    start = threading.Barrier(clients)

    def client(i: int) -> None:
        try:
            rp = RemotePredictor(url, KEY, transport=recorder, retries=6, backoff=0.5)
            keys = [rp.embed(pixels) for pixels in images]
            start.wait()
            n = 0
            while (n < clicks) if during is None else not during.is_set():
                x = 10.5 + (i + n) % 40
                result = rp.predict(keys[(i + n) % len(keys)], Prompt(points=(Point(x, 20.5),)))
                assert len(result) == 3
                n += 1
            rp.close()
        except Exception as exc:  # every failure a client sees is the test's to report
            errors.append(f"client {i}: {exc}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    recorder.shut()
    return recorder, errors


def test_twenty_clients_spread_over_both_replicas(served: str) -> None:
    pictures = images_for_each_replica(served)
    recorder, errors = click_concurrently(served, pictures, clients=20, clicks=3)
    print(f"clicks per replica {dict(recorder.replicas)}")
    assert errors == []
    assert sum(recorder.replicas.values()) == 60
    assert len(recorder.replicas) == 2 and min(recorder.replicas.values()) >= 20


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kills a replica with SIGKILL")
def test_a_replica_killed_under_load_is_replaced_and_clients_only_retry(served: str) -> None:
    import ray

    pictures = images_for_each_replica(served)
    before = replicas_seen(served)
    names = [n for n in ray.util.list_named_actors(all_namespaces=True)
             if n["name"].startswith("SERVE_REPLICA::")]
    assert len(names) == 2 and len(before) == 2
    victim = ray.get_actor(names[0]["name"], namespace=names[0]["namespace"])
    pid: Any = ray.get(victim.__ray_call__.remote(lambda self: os.getpid()))
    stop = threading.Event()
    outcome: list[tuple[Recorder, list[str]]] = []
    load = threading.Thread(target=lambda: outcome.append(
        click_concurrently(served, pictures, clients=8, clicks=0, during=stop)))
    load.start()
    time.sleep(5.0)  # clicks flowing to both replicas
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    trace: list[str] = []  # what Serve said after the kill, for the failure message
    replaced = False
    while not replaced and time.monotonic() < killed + 300:
        time.sleep(2.0)
        alive = [n["name"] for n in ray.util.list_named_actors(all_namespaces=True)
                 if n["name"].startswith("SERVE_REPLICA::")]
        # requests naming no image go to the less busy of two replicas, so an idle new
        # replica takes them all while the survivor works: it is enough that it answers
        new = replicas_seen(served, 20) - before
        trace.append(f"{time.monotonic() - killed:.0f}s: {len(alive)} alive, victim "
                     f"{'listed' if names[0]['name'] in alive else 'gone'}, "
                     f"{'a new one' if new else 'no new one'} answering, {replica_states()}, "
                     f"{memory_available()}")
        replaced = len(alive) == 2 and names[0]["name"] not in alive and bool(new)
    print("\n".join(trace))
    time.sleep(3.0)  # clicks on the new replica too
    stop.set()
    load.join(600)
    recorder, errors = outcome[0]
    assert replaced, "Serve did not replace the killed replica:\n" + "\n".join(trace)
    assert errors == []
    # the survivor (and the new replica) took the victim's images from the shared cache
    assert recorder.not_found == 0
    print(f"clicks per replica {dict(recorder.replicas)}, retried answers {recorder.retryable}")
