"""The server's image_id map on disk: it survives a new process, is keyed by model, bounded
by bytes, and a corrupt file is set aside; ``maskloop serve``'s cache options."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from app.cli import build_parser
from app.cli.serve_cmd import settings_from_args
from app.core.types import EmbeddingKey
from app.server.image_ids import FILE_NAME, ImageIds


def test_ids_survive_a_new_process(tmp_path) -> None:
    ids = ImageIds(1 << 20, tmp_path)
    ids.put("team-image-1", EmbeddingKey("a" * 64, "sam2-tiny"))
    # another process, as a restarted server would be (nothing closed or flushed here)
    code = ("import sys; from app.server.image_ids import ImageIds; "
            "k = ImageIds(1 << 20, sys.argv[1]).get('team-image-1', 'sam2-tiny'); "
            "print(k.image_hash if k else None)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "a" * 64
    ids.close()


def test_ids_are_kept_per_model(tmp_path) -> None:
    ids = ImageIds(1 << 20, tmp_path)
    ids.put("x", EmbeddingKey("a" * 64, "model-a"))
    ids.put("x", EmbeddingKey("b" * 64, "model-b"))
    again = ImageIds(1 << 20, tmp_path)
    assert again.get("x", "model-a") == EmbeddingKey("a" * 64, "model-a")
    assert again.get("x", "model-b") == EmbeddingKey("b" * 64, "model-b")
    assert again.get("x", "model-c") is None
    ids.close()
    again.close()


def test_the_file_is_bounded_by_bytes(tmp_path) -> None:
    ids = ImageIds(1 << 20, tmp_path, disk_bytes=20_000)
    for i in range(1000):
        ids.put(f"image-{i:04d}-" + "x" * 50, EmbeddingKey(f"{i:064d}", "m"))
    db = sqlite3.connect(tmp_path / FILE_NAME)
    rows, size = db.execute("SELECT count(*), sum(length(image_id) + length(model_id) + "
                            "length(image_hash) + 64) FROM image_ids").fetchone()
    db.close()
    assert size <= 20_000 and 50 < rows < 1000
    fresh = ImageIds(1 << 20, tmp_path, disk_bytes=20_000)
    assert fresh.get("image-0999-" + "x" * 50, "m") is not None  # the newest are kept
    assert fresh.get("image-0000-" + "x" * 50, "m") is None  # the oldest went first
    ids.close()
    fresh.close()


def test_a_corrupt_file_is_set_aside(tmp_path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"this is not a database" * 100)
    ids = ImageIds(1 << 20, tmp_path)
    ids.put("x", EmbeddingKey("a" * 64, "m"))
    assert ImageIds(1 << 20, tmp_path).get("x", "m") is not None
    assert (tmp_path / (FILE_NAME + ".corrupt")).is_file()
    ids.close()


def test_memory_only_without_a_folder() -> None:
    ids = ImageIds(1 << 20, None)
    ids.put("x", EmbeddingKey("a" * 64, "m"))
    assert ids.get("x", "m") == EmbeddingKey("a" * 64, "m") and ids.path is None


def test_cache_options(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MASKLOOP_CACHE_DIR", str(tmp_path))
    default = settings_from_args(build_parser().parse_args(["serve"]))
    assert default.cache_dir == tmp_path / "server" and default.disk_cache_bytes > 1 << 30
    chosen = settings_from_args(build_parser().parse_args(
        ["serve", "--cache-dir", str(tmp_path / "c"), "--disk-cache-bytes", "5000000"]))
    assert chosen.cache_dir == tmp_path / "c" and chosen.disk_cache_bytes == 5_000_000
    memory = settings_from_args(build_parser().parse_args(["serve", "--disk-cache-bytes", "0"]))
    assert memory.cache_dir is None
