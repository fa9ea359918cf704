"""``maskloop embed``: a real random-weight SAM2 tiny checkpoint on a folder of small images."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.core.images import content_hash
from app.core.types import EmbeddingKey
from app.predict.cache.file_format import SUFFIX, read_embedding
from app.predict.cache.store import EmbeddingCache

REPO = Path(__file__).resolve().parents[2]


def write_images(folder: Path, names: list[str], seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for name in names:
        pixels = rng.integers(0, 255, (24 + len(paths), 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
        paths.append(folder / name)
    return paths


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def model_args(checkpoint: tuple[Path, str]) -> list[str]:
    path, config = checkpoint
    return ["--checkpoint", str(path), "--config", config, "--device", "cpu"]


def cache_files(cache_dir: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("*" + SUFFIX)}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, sam2_tiny_checkpoint):
    """A folder of 3 good images and a corrupt one, embedded once with --batch 2."""
    base = tmp_path_factory.mktemp("embed")
    folder = base / "images"
    good = write_images(folder, ["a.png", "b.jpg", "c.png"])
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    cache_dir = base / "cache"
    result = run_cli("embed", str(folder), *model_args(sam2_tiny_checkpoint), "--batch", "2",
                     "--cache-dir", str(cache_dir))
    return folder, good, cache_dir, result


@pytest.mark.slow
def test_embed_folder_writes_one_file_per_image_and_warns_on_corrupt(
    embedded, sam2_tiny_checkpoint
) -> None:
    folder, good, cache_dir, (code, out, err) = embedded
    assert code == 1  # some images could not be read
    assert "warning" in err and "broken.jpg" in err
    assert "3 embedded" in out and "0 already cached" in out and "1 unreadable" in out
    assert "images/s" in out
    files = cache_files(cache_dir)
    assert len(files) == 3
    # every file is a valid embedding of its image under the checkpoint's model id
    cache = EmbeddingCache(disk_dir=cache_dir)
    model_ids = {name.split("-", 1)[1].removesuffix(SUFFIX) for name in files}
    assert len(model_ids) == 1
    model_id = model_ids.pop()
    for path in good:
        emb = cache.get(EmbeddingKey(content_hash(path), model_id))
        assert emb is not None
        assert all(a.dtype == np.float16 for a in emb.arrays.values())
        with Image.open(path) as im:
            assert emb.image_size == (im.height, im.width)
        assert emb.nbytes <= 8 * 2**20
    assert cache.stats.disk_errors == 0


@pytest.mark.slow
def test_second_run_skips_everything(embedded, sam2_tiny_checkpoint) -> None:
    folder, _, cache_dir, _ = embedded
    before = cache_files(cache_dir)
    code, out, _ = run_cli("embed", str(folder), *model_args(sam2_tiny_checkpoint),
                           "--cache-dir", str(cache_dir))
    assert code == 1
    assert "0 embedded" in out and "3 already cached" in out
    assert cache_files(cache_dir) == before  # nothing rewritten


@pytest.mark.slow
def test_a_new_process_sees_the_disk_cache(embedded, sam2_tiny_checkpoint) -> None:
    folder, _, cache_dir, _ = embedded
    before = cache_files(cache_dir)
    env = {**os.environ, "MASKLOOP_CACHE_DIR": str(cache_dir)}  # the default dir, this time
    proc = subprocess.run(
        [sys.executable, "-m", "app", "embed", str(folder), *model_args(sam2_tiny_checkpoint)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "0 embedded" in proc.stdout and "3 already cached" in proc.stdout
    assert cache_files(cache_dir) == before


@pytest.mark.slow
def test_new_image_is_embedded_alone_and_corrupt_cache_file_rebuilt(
    embedded, sam2_tiny_checkpoint
) -> None:
    folder, good, cache_dir, _ = embedded
    (folder / "broken.jpg").unlink()
    write_images(folder, ["d.png"], seed=1)
    victim = sorted(cache_dir.glob("*" + SUFFIX))[0]
    victim.write_bytes(victim.read_bytes()[:1000])  # a truncated file
    cache = EmbeddingCache(disk_dir=cache_dir)
    image_hash, model_id = victim.name.removesuffix(SUFFIX).split("-", 1)
    assert cache.get(EmbeddingKey(image_hash, model_id)) is None  # ignored and deleted
    assert not victim.exists()
    code, out, err = run_cli("embed", str(folder), *model_args(sam2_tiny_checkpoint),
                             "--batch", "1", "--cache-dir", str(cache_dir))
    assert code == 0, err
    assert "2 embedded" in out and "2 already cached" in out and "0 unreadable" in out
    assert len(cache_files(cache_dir)) == 4
    assert cache.get(EmbeddingKey(image_hash, model_id)) is not None  # rebuilt


def test_classical_backend_has_nothing_to_precompute(tmp_path: Path) -> None:
    write_images(tmp_path / "images", ["a.png"])
    code, out, _ = run_cli("embed", str(tmp_path / "images"), "--cache-dir",
                           str(tmp_path / "cache"))
    assert code == 0
    assert "nothing to precompute" in out and "--model" in out
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_embed_errors(tmp_path: Path) -> None:
    code, _, err = run_cli("embed", str(tmp_path / "missing"))
    assert code == 2 and "maskloop embed: error:" in err and "missing" in err
    (tmp_path / "empty").mkdir()
    code, out, _ = run_cli("embed", str(tmp_path / "empty"))
    assert code == 0 and "no images found" in out
    write_images(tmp_path / "one", ["a.png"])
    code, _, err = run_cli("embed", str(tmp_path / "one"), "--model", "tiny")
    assert code == 2 and "not installed" in err  # the test models dir is empty


def test_recursive_flag(tmp_path: Path) -> None:
    write_images(tmp_path / "images" / "sub", ["a.png"])
    code, out, _ = run_cli("embed", str(tmp_path / "images"))
    assert code == 0 and "no images found" in out and "--recursive" in out
    code, out, _ = run_cli("embed", str(tmp_path / "images"), "--recursive")
    assert code == 0 and "nothing to precompute" in out


@pytest.mark.slow
def test_ctrl_c_leaves_a_consistent_cache(tmp_path: Path, sam2_tiny_checkpoint) -> None:
    """SIGINT once the first embedding is on disk: exit 130, every file whole, and the next
    run embeds only the rest."""
    folder, cache_dir = tmp_path / "images", tmp_path / "cache"
    write_images(folder, ["a.png", "b.png", "c.png", "d.png"], seed=2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "embed", str(folder), *model_args(sam2_tiny_checkpoint),
         "--cache-dir", str(cache_dir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        for _ in range(6000):  # at most 10 minutes, in steps of 0.1 s
            if list(cache_dir.glob("*" + SUFFIX)) or proc.poll() is not None:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in out and "resume" in err
    done = sorted(cache_dir.glob("*" + SUFFIX))
    assert 1 <= len(done) < 4
    for path in done:
        read_embedding(path)  # raises if a file is partial
    code, out, _ = run_cli("embed", str(folder), *model_args(sam2_tiny_checkpoint),
                           "--cache-dir", str(cache_dir))
    assert code == 0
    assert f"{4 - len(done)} embedded" in out and f"{len(done)} already cached" in out
    assert len(list(cache_dir.glob("*" + SUFFIX))) == 4
