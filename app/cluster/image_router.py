"""Ray Serve request routing by image: requests about one image (``/v1/images/<sha256>``)
go to the same replica while it lives, so that its embedding stays in that replica's memory
and its result ids stay valid for refinement. Loaded by Serve (by its import path) only
where Ray is installed."""

from __future__ import annotations

import hashlib
import pickle
import random
import re
from typing import Any

from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica

_IMAGE_PATH = re.compile(r"/v1/images/([0-9a-f]{64})")


def image_hash_of(pending_request: PendingRequest | None) -> str | None:
    """The image sha256 in an HTTP request's path, if the request names one."""
    if pending_request is None:
        return None
    for arg in pending_request.args or ():
        if isinstance(arg, bytes):  # Serve's own proxy pickles the request (trusted bytes)
            try:
                arg = pickle.loads(arg)  # noqa: S301
            except Exception:  # noqa: BLE001 (not a request this router understands)
                return None
        scope = getattr(arg, "asgi_scope", None) or getattr(arg, "_asgi_scope", None)
        if isinstance(scope, dict):
            found = _IMAGE_PATH.match(str(scope.get("path", "")))
            return found.group(1) if found else None
    return None


def rendezvous(key: str, names: list[str]) -> list[int]:
    """Indexes of ``names`` ranked for ``key`` by rendezvous (highest random weight) hashing:
    a key keeps its first choice while that name lives, and a lost name's keys spread evenly
    over the others (a dozen lines: no library needed for it)."""
    weights = [hashlib.blake2b(f"{key}|{n}".encode(), digest_size=8).digest() for n in names]
    return sorted(range(len(names)), key=lambda i: weights[i], reverse=True)


class ImageHashRouter(RequestRouter):  # type: ignore[misc]
    """A request about an image goes to the replica its hash ranks first among the live
    ones; any other request to the less busy of two random replicas."""

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None
                              ) -> list[list[RunningReplica]]:
        if not candidate_replicas:
            return []
        image = image_hash_of(pending_request)
        if image is None:
            return [random.sample(candidate_replicas, min(2, len(candidate_replicas)))]
        # only the first choice: a busy replica (or a slow answer to Serve's queue-length
        # probe) makes the request wait for it rather than move to a replica that does not
        # hold the image's results; a dead replica leaves the candidates, and its images
        # move to the next in rendezvous order
        names = [str(r.replica_id.unique_id) for r in candidate_replicas]
        first: list[list[Any]] = [[candidate_replicas[rendezvous(image, names)[0]]]]
        return first
