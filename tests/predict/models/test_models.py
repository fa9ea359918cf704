"""The model registry and its downloader, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import random
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.cli import main as cli_main
from app.core.errors import Cancelled
from app.core.jobs import CancelToken
from app.predict.base import PredictorError
from app.predict.models.registry import REGISTRY, ModelSpec, download, get_model, list_models

DATA = random.Random(1234).randbytes(3 * 1024 * 1024 + 123)
SHA = hashlib.sha256(DATA).hexdigest()


@dataclass
class Served:
    """What the test server was asked and what it sent back."""

    mode: str = "normal"  # normal | drop_once | wrong | ignore_range | missing
    requests: list[dict] = field(default_factory=list)  # {"range": str|None, "sent": int}


class Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state: Served = self.server.state  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        record = {"range": rng, "sent": 0, "status": 200}
        state.requests.append(record)
        if state.mode == "missing":
            record["status"] = 404
            self.send_error(404)
            return
        body = DATA if state.mode != "wrong" else bytes(b ^ 0xFF for b in DATA)
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if match and state.mode != "ignore_range":
            start = int(match.group(1))
            if start >= len(body):
                record["status"] = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            record["status"] = 206
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if state.mode == "drop_once":
            state.mode = "normal"
            half = payload[: len(payload) // 2]
            self.wfile.write(half)
            self.wfile.flush()
            record["sent"] = len(half)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)
        record["sent"] = len(payload)


@pytest.fixture
def server() -> Iterator[tuple[str, Served]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = Served()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/files/test_model.pt", httpd.state
    finally:
        httpd.shutdown()
        httpd.server_close()


def spec_for(url: str, sha256: str | None = SHA, size: int | None = len(DATA)) -> ModelSpec:
    return ModelSpec("test", "test_model", "configs/none.yaml", url, size, sha256)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_registry_has_the_four_sam21_models_with_sizes_and_checksums() -> None:
    assert list(REGISTRY) == ["tiny", "small", "base_plus", "large"]
    for spec in REGISTRY.values():
        assert spec.url.startswith("https://dl.fbaipublicfiles.com/segment_anything_2/092824/")
        assert spec.filename == f"{spec.model_id}.pt"
        assert spec.config.startswith("configs/sam2.1/")
        assert spec.size_bytes and spec.size_bytes > 100_000_000
        assert spec.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
    assert get_model("sam2.1_hiera_large") is REGISTRY["large"]
    with pytest.raises(KeyError, match="known models"):
        get_model("huge")


def test_configs_exist_in_the_installed_sam2_package() -> None:
    import importlib.util

    sam2_dir = Path(importlib.util.find_spec("sam2").origin).parent  # type: ignore[union-attr]
    for spec in REGISTRY.values():
        assert (sam2_dir / spec.config).is_file(), spec.config


def test_full_download_verifies_checksum(server, tmp_path: Path) -> None:
    url, state = server
    seen: list[tuple[int, int]] = []
    path = download(spec_for(url), tmp_path, progress=lambda d, t, m: seen.append((d, t)))
    assert path == tmp_path / "test_model.pt"
    assert path.read_bytes() == DATA
    assert not (tmp_path / "test_model.pt.part").exists()
    assert [r["range"] for r in state.requests] == [None]
    assert seen[-1] == (len(DATA), len(DATA))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    # already installed: returned without a request
    assert download(spec_for(url), tmp_path) == path
    assert len(state.requests) == 1


def test_interrupted_transfer_resumes_with_range(server, tmp_path: Path) -> None:
    url, state = server
    state.mode = "drop_once"
    with pytest.raises(PredictorError, match="interrupted.*run it again to resume"):
        download(spec_for(url), tmp_path, retries=0)
    part = tmp_path / "test_model.pt.part"
    kept = part.stat().st_size
    assert 0 < kept < len(DATA)
    assert part.read_bytes() == DATA[:kept]
    assert not (tmp_path / "test_model.pt").exists()

    path = download(spec_for(url), tmp_path)
    assert path.read_bytes() == DATA
    second = state.requests[1]
    assert second["range"] == f"bytes={kept}-"
    assert second["status"] == 206
    assert second["sent"] == len(DATA) - kept


def test_dropped_connection_is_resumed_within_one_call(server, tmp_path: Path) -> None:
    url, state = server
    state.mode = "drop_once"
    path = download(spec_for(url), tmp_path)
    assert path.read_bytes() == DATA
    assert len(state.requests) == 2
    assert state.requests[1]["range"] == f"bytes={state.requests[0]['sent']}-"


def test_bad_checksum_deletes_the_file(server, tmp_path: Path) -> None:
    url, state = server
    state.mode = "wrong"
    with pytest.raises(PredictorError, match="checksum mismatch for test_model.pt"):
        download(spec_for(url), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_is_an_error_without_checksum(server, tmp_path: Path) -> None:
    url, _ = server
    with pytest.raises(PredictorError, match="expected"):
        download(spec_for(url, sha256=None, size=len(DATA) - 1), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_size_only_verification_when_sha256_unknown(server, tmp_path: Path) -> None:
    url, state = server
    state.mode = "wrong"  # right size, wrong bytes: cannot be caught without a checksum
    path = download(spec_for(url, sha256=None), tmp_path)
    assert path.stat().st_size == len(DATA)


def test_server_ignoring_range_restarts_from_zero(server, tmp_path: Path) -> None:
    url, state = server
    state.mode = "ignore_range"
    (tmp_path / "test_model.pt.part").write_bytes(b"stale bytes from elsewhere")
    path = download(spec_for(url), tmp_path)
    assert path.read_bytes() == DATA
    assert state.requests[0]["range"] == "bytes=26-"
    assert state.requests[0]["status"] == 200


def test_complete_part_is_verified_without_refetching(server, tmp_path: Path) -> None:
    url, state = server
    (tmp_path / "test_model.pt.part").write_bytes(DATA)
    assert download(spec_for(url), tmp_path).read_bytes() == DATA
    assert state.requests == []


def test_offline_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/test_model.pt"
    with pytest.raises(PredictorError) as info:
        download(spec_for(url), tmp_path, timeout=5)
    message = str(info.value)
    assert message.startswith("cannot reach 127.0.0.1: ")
    assert "--checkpoint PATH" in message and str(tmp_path) in message


def test_http_error_names_the_url(server, tmp_path: Path) -> None:
    url, state = server
    state.mode = "missing"
    with pytest.raises(PredictorError, match=r"HTTP 404"):
        download(spec_for(url), tmp_path)


def test_cancel_keeps_the_part_for_resume(server, tmp_path: Path) -> None:
    url, state = server
    token = CancelToken()

    def progress(done: int, total: int, message: str) -> None:
        if done > 0:
            token.cancel()

    with pytest.raises(Cancelled):
        download(spec_for(url), tmp_path, progress=progress, cancel=token)
    part = tmp_path / "test_model.pt.part"
    kept = part.stat().st_size
    assert 0 < kept < len(DATA)
    assert not (tmp_path / "test_model.pt").exists()
    assert download(spec_for(url), tmp_path).read_bytes() == DATA
    assert state.requests[-1]["range"] == f"bytes={kept}-"


def test_list_models_shows_installed_and_partial(tmp_path: Path) -> None:
    (tmp_path / "sam2.1_hiera_tiny.pt").write_bytes(b"x")
    (tmp_path / "sam2.1_hiera_small.pt.part").write_bytes(b"12345")
    rows = {row.name: row for row in list_models(tmp_path)}
    assert set(rows) == set(REGISTRY)
    assert rows["tiny"].installed and rows["tiny"].path == tmp_path / "sam2.1_hiera_tiny.pt"
    assert not rows["small"].installed and rows["small"].partial_bytes == 5
    assert not rows["large"].installed and rows["large"].size_bytes == 898_083_611


def test_cli_models_list_and_download_error(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MASKLOOP_MODELS_DIR", str(tmp_path))
    (tmp_path / "sam2.1_hiera_base_plus.pt").write_bytes(b"x")
    assert cli_main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"base_plus .* installed", out)
    assert re.search(r"tiny .* not installed", out)
    url = f"http://127.0.0.1:{free_port()}/sam2.1_hiera_tiny.pt"
    assert cli_main(["models", "download", "tiny", "--url", url, "--timeout", "5"]) == 2
    err = capsys.readouterr().err
    assert "maskloop models: error: cannot reach 127.0.0.1" in err
    assert cli_main(["models", "download", "huge"]) == 2
    assert "unknown model 'huge'" in capsys.readouterr().err


def test_cli_download_from_mirror(server, tmp_path: Path, capsys, monkeypatch) -> None:
    """--url with a registry name: the file is fetched, then its size is checked."""
    url, state = server
    monkeypatch.setenv("MASKLOOP_MODELS_DIR", str(tmp_path))
    assert cli_main(["models", "download", "tiny", "--url", url]) == 2
    assert f"is {len(DATA)} bytes, expected 156008466" in capsys.readouterr().err
    assert state.requests[0]["range"] is None
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_a_clear_error(server, tmp_path: Path) -> None:
    url, _ = server
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    with pytest.raises(PredictorError, match="cannot write"):
        download(spec_for(url), blocker / "models")
