"""Map a per-image function over images on Ray actors that each hold a predictor built
once, streaming the results back to the driver as they finish.

The seam for ``maskloop autolabel --ray``: its map step (``app.cli.autolabel_work.MapStep``)
becomes ``map_on_ray(tasks, per_image, build, context=job)``, and the driver alone keeps
writing the results into the project file (SQLite has one writer). Nothing here knows about
autolabel: ``per_image(predictor, item, context)`` is any picklable function, ``build`` any
picklable zero-argument callable that makes the predictor in the actor (``WorkerModel.build``).

An actor killed mid-call is restarted by Ray and the call retried (``max_restarts=-1``,
``max_task_retries`` times: a bad image that kills its worker every time fails alone); an
exception in ``per_image`` comes back as that item's error message. Ctrl-C or the cancel
token stops the job after the results already received; the actors are released.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from app.cluster.ray_env import cluster_cpus, cluster_gpus, require_ray
from app.core.jobs import CancelToken, check

T = TypeVar("T")
R = TypeVar("R")

PerImage = Callable[[Any, T, Any], R]  # (predictor, item, context) -> result
TASK_RETRIES = 3  # retries of one call whose actor died (then the item fails alone)


class PredictorActor:
    """Holds one predictor (built once) and runs the per-image function on it."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self.predictor = build()

    def run(self, per_image: PerImage[Any, Any], item: Any, context: Any) -> Any:
        return per_image(self.predictor, item, context)


def map_on_ray(
    items: Sequence[T],
    per_image: PerImage[T, R],
    build: Callable[[], Any],
    *,
    context: Any = None,
    workers: int | None = None,
    gpus: bool | None = None,
    cancel: CancelToken | None = None,
) -> Iterator[tuple[T, R | str]]:
    """``(item, per_image(predictor, item, context))`` for every item, in the order they
    finish, from ``workers`` actors (default: one per GPU, else one per CPU) on the connected
    Ray; a failed item yields ``(item, message)`` instead. ``gpus`` None uses GPUs when the
    cluster has some."""
    ray = require_ray()
    if not items:
        return
    use_gpus = cluster_gpus() > 0 if gpus is None else gpus
    count = max(1, min(len(items), workers or (cluster_gpus() if use_gpus else cluster_cpus())))
    options: dict[str, Any] = {"max_restarts": -1, "max_task_retries": TASK_RETRIES,
                               "num_cpus": 1}
    if use_gpus:
        options["num_gpus"] = 1
    actor_class = ray.remote(PredictorActor).options(**options)
    actors = [actor_class.remote(build) for _ in range(count)]
    shared = ray.put(context)
    fn = ray.put(per_image)
    todo = list(enumerate(items))
    running: dict[Any, tuple[int, Any]] = {}  # object ref -> (item index, actor)
    try:
        idle = list(actors)
        while todo or running:
            check(cancel)
            while idle and todo:
                index, item = todo.pop(0)
                actor = idle.pop()
                running[actor.run.remote(fn, item, shared)] = (index, actor)
            done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in done:
                index, actor = running.pop(ref)
                idle.append(actor)
                try:
                    yield items[index], ray.get(ref)
                except ray.exceptions.RayError as exc:
                    yield items[index], _message(exc)
    finally:
        for actor in actors:
            ray.kill(actor)


def _message(exc: Exception) -> str:
    """The user's part of a Ray error: the per-image function's own exception when there is
    one, else what happened to the worker."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, Exception):
        return str(cause) or type(cause).__name__
    return f"the worker failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
