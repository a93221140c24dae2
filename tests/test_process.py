"""The real server process: both start commands, liveness under load, SIGTERM drain, fail-fast."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx2
import pytest

from tests.support.servers import ROOT, run_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def json_records(output: str) -> list[dict[str, object]]:
    """Every line a server wrote (stdout and stderr together) as one JSON object each, with no
    terminal escape codes; fails on any line that is not."""
    records = []
    for line in output.splitlines():
        assert "\x1b" not in line and "\\u001b" not in line, line[:300]
        record = json.loads(line)  # a plain-text line (a traceback, a warning) fails here
        assert isinstance(record, dict), line[:300]
        assert "color_message" not in record, line[:300]
        records.append(record)
    assert records
    return records


def head_without_body(port: int, path: str) -> bytes:
    """HEAD over a raw socket: the status line, and nothing after the headers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert body == b"", body[:200]
    return head.split(b"\r\n", 1)[0]


def test_console_script_serves_the_seed_example_and_logs_only_json() -> None:
    with run_server(DRAIN_GRACE_SECONDS="0") as server:
        server.wait_ready()
        r = httpx2.post(
            server.url + "/v1/predict",
            content=b'{"text":"you are awful"}',
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 200
        assert r.json()["prediction"]["label"] == "toxic"
        assert "server" not in r.headers  # no version banner
        # What a load balancer's HEAD health check gets from the real server.
        assert head_without_body(server.port, "/healthz") == b"HTTP/1.1 200 OK"
        assert head_without_body(server.port, "/readyz") == b"HTTP/1.1 200 OK"
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
        records = json_records(server.output())
    routes = [(r.get("method"), r.get("route")) for r in records if "status_code" in r]
    assert ("HEAD", "/healthz") in routes and ("POST", "/v1/predict") in routes
    assert any(r["logger"] == "uvicorn.error" for r in records)  # uvicorn's own lines too


def test_several_workers_log_only_json() -> None:
    with run_server(WEB_CONCURRENCY="2", DRAIN_GRACE_SECONDS="0") as server:
        server.wait_ready(timeout_s=60)
        for _ in range(4):
            r = httpx2.post(server.url + "/v1/predict", json={"text": "you are awful"})
            assert r.status_code == 200
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
        records = json_records(server.output())
    assert sum(r["message"] == "model loaded" for r in records) == 2
    # No library warning at all (prometheus-client warns when labels are cleared in its
    # multiprocess mode; the service never clears them).
    assert [r["message"] for r in records if r["logger"] == "py.warnings"] == []


def test_python_warnings_become_json_lines() -> None:
    code = (
        "import warnings\n"
        "from ml_prod_api.logs import configure_logging\n"
        "configure_logging('INFO')\n"
        "warnings.warn('a library is unhappy', UserWarning)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert proc.stderr == ""
    (record,) = json_records(proc.stdout)
    assert record["logger"] == "py.warnings" and record["level"] == "WARNING"
    assert "UserWarning: a library is unhappy" in str(record["message"])


def test_classic_uvicorn_command() -> None:
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "ml_prod_api.api:app",
        "--app-dir",
        "src",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--http",
        "ml_prod_api.http.protocol:HeaderTimeoutProtocol",
    ]
    with run_server(argv, HEADER_READ_TIMEOUT_SECONDS="0.5") as server:
        server.wait_ready()
        r = httpx2.post(server.url + "/v1/predict", json={"text": "have a nice day"})
        assert r.status_code == 200
        assert r.json()["prediction"]["label"] == "non-toxic"
        # `--http` brings the header-read timeout (from the settings) to uvicorn's own command.
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as slow:
            slow.sendall(b"GET /never-finished")
            assert slow.recv(12) == b"HTTP/1.1 408"
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(30)
        out = server.output()
    # Every line on stdout is JSON, uvicorn's own lines included.
    json_records(out)


def test_liveness_answers_while_a_batch_computes() -> None:
    with run_server(STUB_DELAY_MS="1500", DRAIN_GRACE_SECONDS="0") as server:
        server.wait_ready(timeout_s=60)
        done = threading.Event()

        def slow() -> None:
            httpx2.post(server.url + "/v1/predict_batch", json={"texts": ["a"] * 64}, timeout=30)
            done.set()

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.2)  # let the batch reach the model thread
        assert httpx2.get(server.url + "/healthz", timeout=5).status_code == 200
        assert not done.is_set()  # liveness answered while the batch was still computing
        t.join(30)
        assert done.is_set()


def test_sigterm_drains_without_losing_requests() -> None:
    with run_server(STUB_DELAY_MS="700", DRAIN_GRACE_SECONDS="1.0") as server:
        server.wait_ready(timeout_s=60)
        results: list[int] = []

        def call() -> None:
            r = httpx2.post(server.url + "/v1/predict", json={"text": "in flight"}, timeout=30)
            results.append(r.status_code)

        in_flight = [threading.Thread(target=call) for _ in range(3)]
        for t in in_flight:
            t.start()
        time.sleep(0.2)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        r = httpx2.get(server.url + "/readyz", timeout=5)
        assert r.status_code == 503
        assert r.json()["status"] == "draining"
        # Inside the grace period new predictions are still served.
        late = threading.Thread(target=call)
        late.start()
        for t in [*in_flight, late]:
            t.join(30)
        assert results == [200, 200, 200, 200]
        assert server.proc.wait(30) == 0
        with pytest.raises(httpx2.TransportError):
            httpx2.get(server.url + "/healthz", timeout=2)
        log = [json.loads(line) for line in server.output().splitlines() if line.strip()]
        assert any(e.get("event") == "drain_started" for e in log)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_fail_fast_exits_non_zero_with_one_line_of_reason(workers: str) -> None:
    with run_server(
        STUB_LOAD_ERROR="model file is truncated",
        STARTUP_FAIL_FAST="true",
        WEB_CONCURRENCY=workers,
    ) as server:
        code = server.proc.wait(60)
        records = json_records(server.output())
    assert code == 3  # uvicorn's start-up failure status, with one worker or several
    # The reason once per worker that tried, as one JSON line; no traceback anywhere.
    reasons = [r for r in records if "model file is truncated" in str(r["message"])]
    assert 1 <= len(reasons) <= int(workers)
    assert all(r["event"] == "model_load_failed" for r in reasons)
    assert not any("Traceback" in str(r) for r in records)


def test_invalid_setting_stops_serve_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ml_prod_api.cli", "serve"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "TOXIC_THRESHOLD": "2"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "ml-prod-api: configuration error: invalid setting TOXIC_THRESHOLD='2': "
        "Input should be less than or equal to 1"
    ]


def test_a_disconnected_callers_queued_work_is_dropped() -> None:
    with run_server(STUB_DELAY_MS="800", DRAIN_GRACE_SECONDS="0") as server:
        server.wait_ready(timeout_s=60)
        blocker = threading.Thread(
            target=lambda: httpx2.post(server.url + "/v1/predict", json={"text": "a"}, timeout=30)
        )
        blocker.start()
        time.sleep(0.2)  # the model thread is busy with the blocker
        body = b'{"texts": ["b", "c", "d"]}'
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(
                b"POST /v1/predict_batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            time.sleep(0.2)  # queued behind the blocker; then the caller hangs up
        blocker.join(30)
        time.sleep(1.0)
        metrics = httpx2.get(server.url + "/metrics").text
    assert 'inference_rejected_total{reason="cancelled"} 1.0' in metrics
    assert 'http_requests_total{route="/v1/predict_batch",status="499"} 1.0' in metrics
    # only the blocker (1 text) was scored: the three dropped texts never reached the model
    sums = [line for line in metrics.splitlines() if line.startswith("inference_batch_size_sum")]
    assert sums == ["inference_batch_size_sum 1.0"]
