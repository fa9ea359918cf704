"""``maskloop serve``: its options, and the real command in a second process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.cli import build_parser
from app.cli.serve_cmd import settings_from_args
from app.core.errors import MaskLoopError


def test_options_become_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASKLOOP_API_KEY", raising=False)
    args = build_parser().parse_args([
        "serve", "--port", "9100", "--api-key", "k", "--allow-private-urls",
        "--max-image-pixels", "1000", "--max-request-bytes", "2000", "--cache-bytes", "3000",
        "--timeout", "5", "--model", "tiny"])
    s = settings_from_args(args)
    assert (s.api_key, s.allow_private_urls, s.max_image_pixels, s.max_request_bytes,
            s.cache_bytes, s.request_timeout_s) == ("k", True, 1000, 2000, 3000, 5.0)
    assert args.port == 9100 and args.host == "127.0.0.1" and args.model == "tiny"
    default = settings_from_args(build_parser().parse_args(["serve"]))
    assert default.api_key is None and not default.allow_private_urls
    assert (default.max_prompts, default.max_points, default.header_timeout_s,
            default.body_timeout_s, default.url_timeout_s) == (64, 64, 10.0, 60.0, 15.0)
    with pytest.raises(MaskLoopError, match="--max-image-pixels"):
        settings_from_args(build_parser().parse_args(["serve", "--max-image-pixels", "0"]))


def test_limit_options_become_settings() -> None:
    args = build_parser().parse_args([
        "serve", "--max-prompts", "8", "--max-points", "16", "--header-timeout", "2",
        "--body-timeout", "3", "--url-timeout", "4"])
    s = settings_from_args(args)
    assert (s.max_prompts, s.max_points, s.header_timeout_s, s.body_timeout_s,
            s.url_timeout_s) == (8, 16, 2.0, 3.0, 4.0)
    for option in ("--max-prompts", "--max-points", "--body-timeout"):
        with pytest.raises(MaskLoopError, match=option):
            settings_from_args(build_parser().parse_args(["serve", option, "0"]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_command_runs_a_server(sam2_tiny_checkpoint: tuple[Path, str]) -> None:
    path, config = sam2_tiny_checkpoint
    port = _free_port()
    env = {**os.environ, "MASKLOOP_API_KEY": "env-key"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port), "--checkpoint", str(path),
         "--config", config, "--device", "cpu"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)
        assert httpx.get(f"{url}/v1/info", timeout=10).status_code == 401
        info = httpx.get(f"{url}/v1/info", headers={"Authorization": "Bearer env-key"},
                         timeout=10).json()
        assert info["sam2_version_id"] == "hiera_tiny" and info["hybrid"] is True
        r = httpx.get(f"{url}/v1/info", params={"api_key": "env-key"}, timeout=10)
        assert r.status_code == 200  # and its access-log line hides the key
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert "env-key" not in out  # the key is never printed
