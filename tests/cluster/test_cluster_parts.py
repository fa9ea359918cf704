"""The parts of app/cluster that need no running Ray: sources (local folders and fsspec
URIs), the image-hash routing, the recipe of a worker's model, the message without Ray."""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from cluster_helpers import write_images

from app.cluster import sources
from app.cluster.ray_env import ClusterError, require_ray
from app.cluster.worker_model import worker_model
from app.core.errors import ImageError
from app.predict.base import PredictorError

ROOT = Path(__file__).resolve().parents[2]


def test_local_folder_and_file_uri_list_the_same_images(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", ["b.png", "a.jpg"])
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    (tmp_path / "imgs" / "sub").mkdir()
    write_images(tmp_path / "imgs" / "sub", ["c.png"])
    local = sources.list_source(str(tmp_path / "imgs"))
    uri = sources.list_source((tmp_path / "imgs").as_uri())
    assert [Path(p).name for p in local] == ["a.jpg", "b.png", "c.png"]
    assert [u.rsplit("/", 1)[1] for u in uri] == ["a.jpg", "b.png", "c.png"]
    assert all(u.startswith("file://") for u in uri)
    flat = sources.list_source((tmp_path / "imgs").as_uri(), recursive=False)
    assert [u.rsplit("/", 1)[1] for u in flat] == ["a.jpg", "b.png"]
    for path, url in zip(local, uri, strict=True):
        assert sources.read_bytes(url) == Path(path).read_bytes()


def test_memory_filesystem_source(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    (image,) = write_images(tmp_path, ["x.png"])
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/set/x.png", image.read_bytes())
    fs.pipe("/bucket/set/readme.md", b"# no image")
    try:
        (found,) = sources.list_source("memory://bucket/set")
        assert found.endswith("x.png")
        assert hashlib.sha256(sources.read_bytes(found)).hexdigest() == \
            hashlib.sha256(image.read_bytes()).hexdigest()
    finally:
        fs.rm("/bucket", recursive=True)


def test_bad_sources_name_the_source(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="missing"):
        sources.list_source(str(tmp_path / "missing"))
    with pytest.raises(ImageError, match="not a folder"):
        sources.list_source((tmp_path / "missing").as_uri())
    with pytest.raises(ImageError, match="gone.png"):
        sources.read_bytes((tmp_path / "gone.png").as_uri())
    with pytest.raises(ImageError, match="nosuchproto"):
        sources.list_source("nosuchproto://bucket/images")


def test_rendezvous_keeps_an_images_replica_and_spreads_a_lost_ones() -> None:
    from app.cluster.image_router import rendezvous

    names = ["r1", "r2", "r3"]
    keys = [f"{i:064x}" for i in range(300)]
    first = {k: names[rendezvous(k, names)[0]] for k in keys}
    counts = {n: sum(v == n for v in first.values()) for n in names}
    assert min(counts.values()) > 60  # about a third each
    survivors = ["r1", "r3"]
    for k in keys:
        now = survivors[rendezvous(k, survivors)[0]]
        if first[k] != "r2":
            assert now == first[k]  # only the lost replica's images move


def test_image_hash_is_read_from_the_request_path() -> None:
    from ray.serve._private.common import RequestMetadata, StreamingHTTPRequest
    from ray.serve.request_router import PendingRequest

    from app.cluster.image_router import image_hash_of

    digest = "ab" * 32

    def pending(path: str) -> PendingRequest:
        request = StreamingHTTPRequest({"type": "http", "path": path},
                                       proxy_actor_name="proxy")
        return PendingRequest([request], {}, RequestMetadata("id", "internal-id"))

    assert image_hash_of(pending(f"/v1/images/{digest}/predict")) == digest
    # what Serve's HTTP proxy sends: the request pickled to bytes
    pickled = pickle.dumps(StreamingHTTPRequest({"type": "http", "path": f"/v1/images/{digest}"},
                                                proxy_actor_name="proxy"))
    assert image_hash_of(PendingRequest([pickled], {}, RequestMetadata("i", "j"))) == digest
    assert image_hash_of(pending(f"/v1/images/{digest}")) == digest
    assert image_hash_of(pending("/sam2/segment_image")) is None
    assert image_hash_of(None) is None


def test_worker_model_recipe(sam2_tiny_checkpoint: tuple[Path, str], tmp_path: Path) -> None:
    checkpoint, config = sam2_tiny_checkpoint
    recipe = worker_model(checkpoint=checkpoint, config=config, device="cpu")
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert recipe.model_id == f"custom-{digest[:16]}" and recipe.threads == 1
    with pytest.raises(PredictorError, match="not found"):
        worker_model(checkpoint=tmp_path / "none.pt")
    with pytest.raises(PredictorError, match="--config goes with --checkpoint"):
        worker_model(config="tiny")
    with pytest.raises(PredictorError, match="not installed"):
        worker_model(model="large")


def test_without_ray_the_message_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra sees
    with pytest.raises(ClusterError, match=r"install maskloop\[cluster\]"):
        require_ray()


@pytest.mark.slow
def test_commands_without_ray_never_import_it(tmp_path: Path) -> None:
    """``embed`` without --ray and every --help work where Ray cannot be imported; with
    --ray the user is told which extra to install."""
    script = (
        "import sys; sys.modules['ray'] = None\n"
        "from app.cli import main\n"
        "assert main(['embed', sys.argv[1], '--workers', '2']) == 2\n"
        "code = main(['embed', sys.argv[1], '--ray'])\n"
        "assert code == 2, code\n"
        "assert 'ray' not in [m.split('.')[0] for m in sys.modules if sys.modules[m]]\n"
    )
    write_images(tmp_path / "imgs", ["a.png"])
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "imgs")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "install maskloop[cluster]" in result.stderr
    assert "--workers goes with --ray" in result.stderr
