"""Start the real server as a subprocess on a free loopback port (for process-level tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerProcess:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()}")
            try:
                if httpx2.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError("server did not become ready")

    def output(self) -> str:
        if self.proc.poll() is None:
            return ""
        out, _ = self.proc.communicate(timeout=5)
        return out


def server_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "STUB_"))}
    env.update({"MODEL_PROVIDER": "stub", "PYTHONUNBUFFERED": "1"})
    env.update(settings)
    return env


@contextmanager
def run_server(argv: Sequence[str] | None = None, **settings: str) -> Iterator[ServerProcess]:
    port = free_port()
    cmd = (
        list(argv)
        if argv
        else [
            sys.executable,
            "-m",
            "ml_prod_api.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    )
    cmd = [c.replace("{port}", str(port)) for c in cmd]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=server_env(**settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = ServerProcess(proc, port)
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
