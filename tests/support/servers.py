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

ROOT = Path(__file__).resolve().parents[2]


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


def serve_argv() -> list[str]:
    """`ml-prod-api serve` on a loopback port; `{port}` is filled in by `run_server`."""
    return [
        sys.executable,
        "-m",
        "ml_prod_api.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ]


@contextmanager
def run_server(argv: Sequence[str] | None = None, **settings: str) -> Iterator[ServerProcess]:
    port = free_port()
    cmd = [c.replace("{port}", str(port)) for c in (argv or serve_argv())]
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


class LoggedServer(ServerProcess):
    """A server whose output goes to a file.

    Under sustained load the server writes one JSON access line per request; a pipe nobody reads
    fills up after a few hundred lines and the server then blocks on its own logging. A file
    never does, and the lines stay readable while the process runs.
    """

    def __init__(self, proc: subprocess.Popen[str], port: int, log_path: Path) -> None:
        super().__init__(proc, port)
        self.log_path = log_path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, object]]:
        """Every JSON line the server wrote so far (lines that are not JSON are skipped)."""
        import json

        records = []
        for line in self.output().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records


def start_logged_server(
    log_path: Path,
    port: int | None = None,
    argv: Sequence[str] | None = None,
    **settings: str,
) -> LoggedServer:
    """Start `ml-prod-api serve` (or `argv`, where `{port}` is replaced) on 127.0.0.1, on `port`
    (e.g. to restart in place); output to `log_path` (appended). The caller stops it
    (`stop_server`)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "ml_prod_api.cli", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port)]
    if argv:
        cmd = [c.replace("{port}", str(port)) for c in argv]
    with log_path.open("a") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=server_env(**settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return LoggedServer(proc, port, log_path)


def stop_server(server: ServerProcess, timeout_s: float = 10.0) -> None:
    """Kill the server if it still runs (by its own pid) and reap it."""
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait(timeout_s)


@contextmanager
def run_logged_server(
    log_path: Path, port: int | None = None, argv: Sequence[str] | None = None, **settings: str
) -> Iterator[LoggedServer]:
    server = start_logged_server(log_path, port, argv, **settings)
    try:
        yield server
    finally:
        stop_server(server)


@contextmanager
def ready_logged_server(log_path: Path, **settings: str) -> Iterator[LoggedServer]:
    """`run_logged_server`, once it answers `/readyz` 200."""
    with run_logged_server(log_path, **settings) as server:
        server.wait_ready(timeout_s=60)
        yield server


class RedisServer:
    """Debian's redis-server on a free loopback port, no persistence; can be stopped and started
    again on the same port (an outage and a recovery)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import shutil

        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server not installed (scripts/install_test_services.sh)"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("redis did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()
