"""``maskloop serve --ray``: the same FastAPI app (``app.server.app.create_app``) as a Ray
Serve application of N replicas, one model each.

Every replica builds its own predictor and app at start; embeddings live in the shared cache
folder (``settings.cache_dir``, the app's disk format), so any replica answers any image (a
disk read the first time). Clicks that reach one replica together are decoded in one batch
by the server's own model worker (``app.server.worker``), so a replica takes up to
``max_ongoing`` requests at once. Requests about one image (``/v1/images/<sha256>/...``) go
to the same replica while it lives (``image_router``: rendezvous hashing), which keeps its
embedding in memory and its result ids valid for refinement; other requests go to the less
busy of two replicas. A replica that dies is replaced by Serve; meanwhile the other replicas
take its images (the client retries connection errors and 5xx).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from app.cluster.ray_env import require_ray
from app.cluster.worker_model import WorkerModel
from app.server.settings import ServerSettings

APP_NAME = "maskloop"
REPLICA_HEADER = "x-maskloop-replica"  # which replica answered (load spread, debugging)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


class ReplicaHeader:
    """ASGI middleware: names the replica in every HTTP answer (``REPLICA_HEADER``)."""

    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self.replica = replica.encode()

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return

        async def named(message: Message) -> None:
            if message.get("type") == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (REPLICA_HEADER.encode(), self.replica)]
            await send(message)

        await self.app(scope, receive, named)


class MaskLoopReplica:
    """One Serve replica: the predictor and the FastAPI app, built once in the replica."""

    def __init__(self, model: WorkerModel, settings: ServerSettings) -> None:
        from ray import serve

        from app.predict.cache.store import EmbeddingCache
        from app.server.app import create_app

        cache = EmbeddingCache(memory_bytes=settings.cache_bytes, disk_dir=settings.cache_dir,
                               disk_bytes=settings.disk_cache_bytes)
        self.predictor = model.build(cache=cache)
        replica = serve.get_replica_context().replica_id.unique_id
        self.asgi = create_app(self.predictor, settings)
        self.asgi.add_middleware(ReplicaHeader, replica=replica)  # type: ignore[arg-type]

    def __serve_build_asgi_app__(self) -> Any:
        """Serve's hook (``serve.ingress()`` without an app): the app built above."""
        return self.asgi

    def __del__(self) -> None:
        predictor = getattr(self, "predictor", None)
        if predictor is not None:
            predictor.close()


def serve_application(model: WorkerModel, settings: ServerSettings, replicas: int, *,
                      gpus: bool = False, max_ongoing: int = 64) -> Any:
    """The Serve application (``serve.run`` it): ``replicas`` replicas of MaskLoopReplica,
    each on one GPU when ``gpus``, else on one CPU with the threads ``model`` says."""
    require_ray()
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    actor: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 1}
    deployment: Any = serve.deployment(
        serve.ingress()(MaskLoopReplica),
        name="MaskLoopServer",
        num_replicas=replicas,
        ray_actor_options=actor,
        max_ongoing_requests=max_ongoing,
        health_check_period_s=2.0,
        request_router_config=RequestRouterConfig(
            request_router_class="app.cluster.image_router:ImageHashRouter",  # type: ignore[arg-type]
        ),
    )
    return deployment.bind(model, settings)
