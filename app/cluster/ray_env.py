"""Connecting to Ray: a lazy import with a clear message when the extra is missing, and
``connect`` (an existing cluster by address, or a local one on this machine's cores)."""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

from app.core.errors import MaskLoopError
from app.core.threads import available_cores

log = logging.getLogger(__name__)

INSTALL_HINT = "install maskloop[cluster] (pip install 'maskloop[cluster]') to use --ray"


class ClusterError(MaskLoopError):
    """Ray is missing, a cluster cannot be reached, or a cluster job failed."""


def require_ray() -> ModuleType:
    """The ``ray`` module, or ClusterError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(f"Ray is not installed: {INSTALL_HINT} ({exc})") from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` (``auto``, ``ray://host:10001``, ``host:6379``), or
    start a local Ray on ``num_cpus`` cores (default: the cores this process may use).

    Returns True when this call started (or joined) Ray and so should ``disconnect``; False
    when Ray was already initialised by the caller (tests, notebooks)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                              "configure_logging": False}
    try:
        if address:
            if address.split("://")[-1].startswith(("127.0.0.1:", "localhost:")):
                kwargs["_node_ip_address"] = "127.0.0.1"  # a local Ray started on loopback
            ray.init(address=address, **kwargs)
        else:
            # a local Ray talks to itself on the loopback only, never on the machine's
            # network address
            ray.init(num_cpus=num_cpus or available_cores(), _node_ip_address="127.0.0.1",
                     **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local Ray"
        raise ClusterError(f"cannot start or reach Ray at {where}: {exc}") from None
    return True


def disconnect(started: bool) -> None:
    """``ray.shutdown()`` when ``connect`` started Ray (see its return value)."""
    if started:
        require_ray().shutdown()


def cluster_gpus() -> int:
    """Whole GPUs the connected cluster has (0 on a CPU-only cluster)."""
    ray = require_ray()
    return int(ray.cluster_resources().get("GPU", 0))


def cluster_cpus() -> int:
    """CPUs the connected cluster has (at least 1)."""
    ray = require_ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
