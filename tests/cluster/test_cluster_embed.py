"""``maskloop embed SOURCE --ray`` on a local Ray (2 CPUs): the same cache files as the
single-process path, skips what is cached, survives a killed worker and a killed driver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cluster_helpers import write_images

from app.cluster.embed_job import embed_on_ray
from app.cluster.worker_model import WorkerModel
from app.predict.cache.file_format import SUFFIX

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def cache_files(cache_dir: Path) -> dict[str, int]:
    """Cache file name -> its modification time (ns): a rewritten file shows a new time."""
    return {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("*" + SUFFIX)}


def model_args(model: WorkerModel) -> list[str]:
    return ["--checkpoint", model.checkpoint, "--config", str(model.config), "--device", "cpu",
            "--runtime", "torch"]


def test_cluster_files_equal_the_single_process_ones_and_reruns_skip(
        local_ray: str, tiny_model: WorkerModel, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main
    from app.cli.embed_cmd import embed_folder
    from app.core.images import list_images
    from app.predict.cache.store import EmbeddingCache

    folder = tmp_path / "images"
    write_images(folder, ["a.png", "b.jpg"])
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cache_dir = tmp_path / "cluster-cache"
    code = main(["embed", str(folder), "--ray", "--workers", "2", "--cache-dir",
                 str(cache_dir), *model_args(tiny_model)])
    out, err = capsys.readouterr()
    assert code == 1  # the broken file
    assert "2 embedded" in out and "1 unreadable" in out and "on 2 workers" in out
    assert "broken.jpg" in err
    made = cache_files(cache_dir)
    assert len(made) == 2

    # the single-process path with the workers' thread count writes the same bytes
    monkeypatch.setenv("MASKLOOP_THREADS", "1")
    reference_dir = tmp_path / "reference-cache"
    reference = EmbeddingCache(memory_bytes=0, disk_dir=reference_dir)
    predictor = tiny_model.build(cache=reference)
    try:
        embed_folder(predictor, reference, list_images(folder))
    finally:
        predictor.close()
    assert sorted(cache_files(reference_dir)) == sorted(made)
    for name in made:
        assert (cache_dir / name).read_bytes() == (reference_dir / name).read_bytes(), name

    # the same images as a file:// URI: all cached, nothing rewritten
    report = embed_on_ray([u for u in _uris(folder)], tiny_model, cache_dir, workers=2)
    assert (report.embedded, report.cached, len(report.failed)) == (0, 2, 1)
    assert cache_files(cache_dir) == made


def _uris(folder: Path) -> list[str]:
    from app.cluster.sources import list_source

    return list_source(folder.as_uri())


def _encoder_pids() -> list[int]:
    """Processes of the embed job's model actors (Ray names them in their title)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"EncodeActor" in cmdline:
                pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker through /proc")
def test_a_worker_killed_mid_job_is_replaced_and_the_job_completes(
        local_ray: str, tiny_model: WorkerModel, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    paths = write_images(folder, ["a.png", "b.png", "c.png"], seed=4)
    cache_dir = tmp_path / "cache"
    results: list[object] = []
    job = threading.Thread(target=lambda: results.append(embed_on_ray(
        [str(p) for p in paths], tiny_model, cache_dir, workers=2)))
    job.start()
    deadline = time.monotonic() + 180
    pids: list[int] = []
    while not pids and time.monotonic() < deadline:  # both actors up, one encoding
        pids = _encoder_pids() if len(_encoder_pids()) >= 2 else []
        time.sleep(0.5)
    assert pids, "the model actors did not start"
    time.sleep(2.0)  # into the first encode
    os.kill(pids[0], signal.SIGKILL)
    job.join(timeout=300)
    assert not job.is_alive()
    (report,) = results
    assert report.failed == [] and report.embedded + report.cached == 3  # type: ignore[attr-defined]
    assert len(cache_files(cache_dir)) == 3
    assert pids[0] not in _encoder_pids()


def test_a_killed_driver_resumes_without_recomputing(
        local_ray: str, tiny_model: WorkerModel, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    write_images(folder, ["a.png", "b.png"], seed=5)
    cache_dir = tmp_path / "cache"
    cmd = [sys.executable, "-m", "app", "embed", str(folder), "--ray", local_ray,
           "--workers", "1", "--cache-dir", str(cache_dir), *model_args(tiny_model)]
    driver = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not cache_files(cache_dir) and time.monotonic() < deadline:
            assert driver.poll() is None, "the driver ended before it was killed"
            time.sleep(0.2)
        driver.kill()  # SIGKILL: no clean-up at all
        driver.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
    time.sleep(3.0)  # Ray stops the dead driver's actors; a write under way finishes or not
    before = cache_files(cache_dir)
    assert 1 <= len(before) <= 2
    report = embed_on_ray([str(p) for p in sorted(folder.iterdir())], tiny_model, cache_dir,
                          workers=1)
    assert (report.cached, report.embedded) == (len(before), 2 - len(before))
    after = cache_files(cache_dir)
    assert len(after) == 2
    assert all(after[name] == when for name, when in before.items())  # none recomputed
