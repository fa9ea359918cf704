"""Measure ``embed --ray``: throughput with 1 and 2 (or more) workers on the same images, and
whether their cache files equal the single-process path's, byte for byte. Prints JSON.

    python -m app.cluster.bench_embed FOLDER --checkpoint PT [--config tiny] [--workers 1 2]
        [--reference N] [--out DIR]

Each run starts from an empty cache folder under ``--out``; the load average of the machine
before and after each run is reported with it (others may share the cores). The reference is
``maskloop embed``'s own loop with the workers' thread count, on the first N images.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from app.cluster import embed_job, ray_env, sources, worker_model
from app.predict.cache.file_format import SUFFIX


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.glob("*" + SUFFIX)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--config", default=None)
    parser.add_argument("--runtime", default="torch")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reference", type=int, default=0,
                        help="images embedded by the single-process path to compare (0: all)")
    parser.add_argument("--out", type=Path, default=Path("bench-embed-ray"))
    args = parser.parse_args(argv)
    model = worker_model.worker_model(checkpoint=args.checkpoint, config=args.config,
                                      device="cpu", runtime=args.runtime)
    locations = sources.list_source(args.folder)
    result: dict[str, object] = {"images": len(locations), "model_id": model.model_id,
                                 "runtime": args.runtime, "cores": os.cpu_count(), "runs": {}}
    runs: dict[str, dict[str, object]] = {}
    started = ray_env.connect(None, num_cpus=max(args.workers))
    try:
        for n in args.workers:
            cache_dir = args.out / f"workers-{n}"
            shutil.rmtree(cache_dir, ignore_errors=True)
            load_before = os.getloadavg()
            report = embed_job.embed_on_ray(locations, model, cache_dir, workers=n)
            if report.interrupted:
                raise KeyboardInterrupt
            runs[str(n)] = {"seconds": round(report.seconds, 2), "embedded": report.embedded,
                            "failed": len(report.failed),
                            "images_per_s": round(report.embedded / report.seconds, 4),
                            "load_before": load_before, "load_after": os.getloadavg()}
            print(json.dumps({"workers": n, **runs[str(n)]}), file=sys.stderr, flush=True)
    finally:
        ray_env.disconnect(started)
    result["runs"] = runs
    first, *rest = [str(n) for n in args.workers]
    for n in rest:
        result[f"ratio_{n}_over_{first}"] = round(
            float(runs[n]["images_per_s"]) / float(runs[first]["images_per_s"]), 3)  # type: ignore[arg-type]
    files = {n: _files(args.out / f"workers-{n}") for n in runs}
    result["workers_identical"] = all(files[n] == files[first] for n in files)
    result["reference"] = _reference(args, model, locations, files[first])
    print(json.dumps(result, indent=1))
    return 0


def _reference(args: argparse.Namespace, model: worker_model.WorkerModel, locations: list[str],
               cluster: dict[str, bytes]) -> dict[str, object]:
    """The single-process path (what ``embed_folder`` does per image: load, hash, embed)
    with the workers' thread count, on the first N images."""
    from app.core.images import content_hash, load_image
    from app.predict.cache.store import EmbeddingCache

    os.environ["MASKLOOP_THREADS"] = str(model.threads)
    cache_dir = args.out / "single-process"
    shutil.rmtree(cache_dir, ignore_errors=True)
    cache = EmbeddingCache(memory_bytes=0, disk_dir=cache_dir)
    predictor = model.build(cache=cache)
    chosen = locations[:args.reference] if args.reference else locations
    t0 = time.perf_counter()
    try:
        for path in chosen:
            predictor.embed(load_image(path), image_hash=content_hash(path))
    finally:
        predictor.close()
    seconds = time.perf_counter() - t0
    single = _files(cache_dir)
    same = sum(cluster.get(name) == data for name, data in single.items())
    return {"images": len(single), "identical_to_cluster": same, "seconds": round(seconds, 2),
            "images_per_s": round(len(single) / seconds, 4)}


if __name__ == "__main__":
    sys.exit(main())
