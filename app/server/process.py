"""``maskloop serve`` as a subprocess on 127.0.0.1 (the load bench and the restart tests):
started from a source tree (``PYTHONPATH``) with a private cache folder
(``MASKLOOP_CACHE_DIR``), killed as a crash would (SIGKILL) or stopped (SIGTERM)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def source_root() -> Path:
    """The folder holding this ``app`` package."""
    return Path(__file__).resolve().parents[2]


class ServerProcess:
    """``python -m app serve`` of a source tree, on 127.0.0.1, as a subprocess."""

    def __init__(self, checkpoint: Path, cache_dir: Path, source: Path,
                 extra: tuple[str, ...] = (), port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=str(source), MASKLOOP_CACHE_DIR=str(cache_dir))
        cmd = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--checkpoint", str(checkpoint),
               "--config", TINY_CONFIG, "--device", "cpu", *extra]
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        self.proc = subprocess.Popen(cmd, cwd=source, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}): {self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the server did not start in {timeout:g} s: {self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def kill(self) -> None:
        """SIGKILL (as a crash would)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        if not self.log.closed:
            self.log.close()


