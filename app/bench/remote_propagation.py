"""Benchmark of propagation through MaskLoop's server against the same propagation here.

``python -m app.bench.remote_propagation [--frames 60] [--width 854 --height 480]
[--tracks 1]`` starts a server over the classical backend on 127.0.0.1 (a thread of this
process: the loopback's cost, not a network's), films the synthetic shot of
``app.bench.video_propagation`` and propagates frame 0's masks forward three times: here,
through the server with every frame uploaded on the way (cold), and again (warm: the server
has the files). Prints one JSON object: seconds per frame of each, bytes sent and received,
and whether the remote masks equal the local ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from app.bench.video_propagation import shot
from app.predict.classical.predictor import ClassicalPredictor
from app.predict.classical.propagate import ClassicalPropagator
from app.predict.propagation import FrameResult, PropagationRequest, Propagator
from app.predict.remote.predictor import RemotePredictor
from app.predict.remote.propagation import RemotePropagator
from app.server.app import create_app, start_in_thread


def _run(propagator: Propagator, seq: Any, firsts: list[np.ndarray]
         ) -> tuple[float, list[FrameResult]]:
    session = propagator.open(seq)
    for track, mask in enumerate(firsts, start=1):
        session.add_mask(0, track, mask)
    t0 = time.perf_counter()
    run = session.propagate(PropagationRequest(0)).wait()
    seconds = time.perf_counter() - t0
    session.close()
    return seconds / max(1, len(run.results)), run.results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--tracks", type=int, default=1)
    args = parser.parse_args(argv)
    seq, firsts = shot(args.width, args.height, args.frames, args.tracks)
    server = start_in_thread(create_app(ClassicalPredictor()))
    remote = RemotePredictor(server.url)
    try:
        local_s, local = _run(ClassicalPropagator(), seq, firsts)
        before = remote.stats.snapshot()
        cold_s, cold = _run(RemotePropagator(remote), seq, firsts)
        wire = remote.stats.since(before)
        warm_s, warm = _run(RemotePropagator(remote), seq, firsts)
    finally:
        remote.close()
        server.stop()
    same = all(a.frame == b.frame and all(np.array_equal(a.masks[t], b.masks[t])
                                          for t in a.masks)
               for runs in (cold, warm) for a, b in zip(local, runs, strict=True))
    print(json.dumps({
        "frames": len(local), "size": [args.width, args.height], "tracks": args.tracks,
        "local_s_per_frame": round(local_s, 4), "remote_cold_s_per_frame": round(cold_s, 4),
        "remote_warm_s_per_frame": round(warm_s, 4),
        "cold_bytes_sent": wire.bytes_sent, "cold_bytes_received": wire.bytes_received,
        "masks_equal": same,
    }))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
