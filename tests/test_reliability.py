"""Short versions of the reliability drills: overload, graceful shutdown, bad artifacts,
provider faults, slow clients, each on a real server process over loopback. They assert behaviour
(status codes, readiness, exit codes, no lost request, closed connections), never timing; the long
versions with their figures are `python -m scripts.reliability.run_all` (RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import httpx2
import pytest

from ml_prod_api.errors import InferenceError
from ml_prod_api.serving import InferenceService, ReadyState
from tests.support.bad_artifacts import BAD_ARTIFACTS, build_bad_artifact
from tests.support.fakes import FakeProvider
from tests.support.servers import ROOT, LoggedServer, ready_logged_server, run_logged_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAULTS = str(ROOT / "tests" / "faultinject")


def _post(url: str, text: str, timeout: float = 30) -> httpx2.Response:
    return httpx2.post(url + "/v1/predict", json={"text": text}, timeout=timeout)


def _records(server: LoggedServer, event: str) -> list[dict[str, object]]:
    return [r for r in server.log_records() if r.get("event") == event]


# --- 1. overload -------------------------------------------------------------------------------
def test_overload_refuses_the_excess_with_429_and_keeps_serving(tmp_path: Path) -> None:
    # A slow model (200 ms a call, 1 text a call) behind a queue of 2 texts, offered 24 requests
    # at once: some are served, the rest refused at once with the envelope and Retry-After.
    settings = {"STUB_DELAY_MS": "200", "QUEUE_BATCH_MAX_SIZE": "1", "QUEUE_MAX_ITEMS": "2"}
    with run_logged_server(tmp_path / "server.log", **settings) as server:
        server.wait_ready(timeout_s=60)
        answers: list[httpx2.Response] = []
        lock = threading.Lock()

        def call(i: int) -> None:
            r = _post(server.url, f"text {i}")
            with lock:
                answers.append(r)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        statuses = sorted(r.status_code for r in answers)
        assert len(answers) == 24
        assert set(statuses) <= {200, 429}, statuses
        assert 200 in statuses and 429 in statuses, statuses
        for r in answers:
            if r.status_code == 429:
                assert r.json()["error"]["code"] == "overloaded"
                assert int(r.headers["retry-after"]) >= 1
        # Back to normal afterwards.
        assert _post(server.url, "after the burst").status_code == 200
        assert httpx2.get(server.url + "/readyz").status_code == 200


# --- 2. graceful shutdown under load -----------------------------------------------------------
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_under_load_loses_no_request_and_exits_0(tmp_path: Path, workers: str) -> None:
    # With two workers the supervisor holds the listening socket too; it must let go of it as
    # the server stops, or the connections queued after the workers closed theirs are reset.
    settings = {
        "STUB_DELAY_MS": "5",
        "DRAIN_GRACE_SECONDS": "1",
        "SHUTDOWN_TIMEOUT_SECONDS": "10",
        "WEB_CONCURRENCY": workers,
    }
    with run_logged_server(tmp_path / "server.log", **settings) as server:
        server.wait_ready(timeout_s=60)
        stop = threading.Event()
        outcomes: list[str] = []
        lock = threading.Lock()

        def load(worker: int) -> None:
            # One connection per request: a request is either refused at connect (the port is
            # closed: clean) or it must be answered 200.
            i = 0
            while not stop.is_set():
                request_id = f"drill-{worker}-{i}"
                try:
                    with httpx2.Client(timeout=30) as c:
                        r = c.post(
                            server.url + "/v1/predict",
                            json={"text": f"w{worker} {i}"},
                            headers={"X-Request-ID": request_id},
                        )
                    outcome = str(r.status_code)
                except httpx2.ConnectError:
                    outcome = "refused"
                    time.sleep(0.01)
                except httpx2.TransportError:
                    outcome = f"unanswered {request_id}"
                with lock:
                    outcomes.append(outcome)
                i += 1

        callers = [threading.Thread(target=load, args=(w,)) for w in range(6)]
        for t in callers:
            t.start()
        try:
            deadline = time.monotonic() + 60
            while len(outcomes) < 30 and time.monotonic() < deadline:  # load is running
                time.sleep(0.01)
            before = len(outcomes)
            server.proc.send_signal(signal.SIGTERM)
            # With several workers the supervisor passes SIGTERM on at its next check.
            ready = httpx2.get(server.url + "/readyz", timeout=5)
            deadline = time.monotonic() + 30
            while ready.status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.05)
                ready = httpx2.get(server.url + "/readyz", timeout=5)
            assert ready.status_code == 503
            assert ready.json()["status"] == "draining"
            code = server.proc.wait(60)
            time.sleep(0.2)
        finally:
            stop.set()
            for t in callers:
                t.join(60)
            if server.proc.poll() is None:  # failed early: let the supervisor stop its workers
                server.proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.proc.wait(30)
    assert code == 0
    # No request is left unanswered, whether the server read it (it would be lost) or not: the
    # connections queued in the kernel when the grace period ends are accepted and answered
    # before the listening socket closes, and new ones are refused at connect.
    seen = {r.get("request_id") for r in server.log_records()}
    unanswered = [o.split()[1] for o in outcomes if o.startswith("unanswered")]
    assert not [rid for rid in unanswered if rid in seen], "read by the server, never answered"
    assert not unanswered, "reset after connect, never read by the server"
    assert set(outcomes) <= {"200", "refused"}, set(outcomes)
    assert outcomes.count("200") > before  # predictions were served during the grace period
    assert "refused" in outcomes  # and new connections were refused once the socket closed
    assert len(_records(server, "drain_started")) == int(workers)
    quiesced = _records(server, "listeners_quiesced")  # one line a worker
    assert [(r["listeners"], r["left_queued"]) for r in quiesced] == [(1, 0)] * int(workers)


def test_a_slow_client_does_not_hold_a_sub_second_shutdown_forever(tmp_path: Path) -> None:
    # SHUTDOWN_TIMEOUT_SECONDS=0.5 was passed to uvicorn as int(0.5) or None = None, which means
    # "wait for in-flight requests forever": a client that never finishes its body then held the
    # process up for good.
    settings = {"DRAIN_GRACE_SECONDS": "0", "SHUTDOWN_TIMEOUT_SECONDS": "0.5"}
    with run_logged_server(tmp_path / "server.log", **settings) as server:
        server.wait_ready(timeout_s=60)
        with socket.create_connection(("127.0.0.1", server.port)) as slow:
            slow.sendall(
                b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"text": '
            )
            time.sleep(0.3)  # the request is in flight, waiting for the rest of its body
            server.proc.send_signal(signal.SIGTERM)
            code = server.proc.wait(30)
    assert code == 0


# --- 5. bad artifacts --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", BAD_ARTIFACTS)
def test_bad_artifact_keeps_the_process_up_and_says_why(kind: str, tmp_path: Path) -> None:
    provider, path, reason = build_bad_artifact(kind, tmp_path)
    settings = {"MODEL_PROVIDER": provider, "MODEL_PATH": str(path)}
    with run_logged_server(tmp_path / "server.log", **settings) as server:
        deadline = time.monotonic() + 60
        while True:  # until loading has finished, one way or the other
            assert server.proc.poll() is None, server.output()
            try:
                ready = httpx2.get(server.url + "/readyz", timeout=2)
                if ready.json()["status"] != "loading":
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert ready.status_code == 503
        assert ready.json()["status"].startswith("failed: ")
        assert reason in ready.json()["status"]
        assert httpx2.get(server.url + "/healthz").status_code == 200
        r = _post(server.url, "hello world")
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "model_not_ready"
        failures = _records(server, "model_load_failed")
        assert len(failures) == 1
        assert reason in str(failures[0]["message"])
        assert server.proc.poll() is None
    with run_logged_server(
        tmp_path / "fail-fast.log", STARTUP_FAIL_FAST="true", **settings
    ) as server:
        code = server.proc.wait(60)
        fast = _records(server, "model_load_failed")
    assert code != 0
    assert len(fast) == 1
    assert fast[0]["message"] == failures[0]["message"]


# --- 6. provider faults ------------------------------------------------------------------------
def test_a_poisoned_text_fails_only_its_own_request() -> None:
    # Raises when any text of a call holds "poison"; can hold the model thread on its gate.
    provider = FakeProvider(score=lambda text: 0.25, fail_marker="poison")

    async def scenario() -> None:
        service = InferenceService(lambda: provider, batch_max_size=64)
        service.start()
        assert (await service.wait_loaded()).state is ReadyState.READY
        provider.gate.clear()
        provider.entered.clear()
        blocker = asyncio.ensure_future(service.predict(["blocker"]))
        assert await asyncio.get_running_loop().run_in_executor(None, provider.entered.wait, 5)
        # Queued behind the blocked call, so the next call gathers all three.
        jobs = [
            asyncio.ensure_future(service.predict(texts))
            for texts in (["fine one"], ["poison here"], ["fine two", "fine three"])
        ]
        for _ in range(5000):  # bounded: 5 s
            if service.queued_items >= 4:
                break
            await asyncio.sleep(0.001)
        assert service.queued_items == 4
        provider.gate.set()
        await blocker
        results = await asyncio.gather(*jobs, return_exceptions=True)
        assert isinstance(results[1], InferenceError)
        assert not isinstance(results[0], BaseException)
        assert not isinstance(results[2], BaseException)
        assert [s.probability_toxic for s in results[2].scores] == [0.25, 0.25]
        assert ["fine one", "poison here", "fine two", "fine three"] in provider.batches
        service.stop()

    asyncio.run(scenario())


def test_provider_faults_on_a_real_server(tmp_path: Path) -> None:
    settings = {
        "STUB_FAIL_MARKER": "@@poison@@",
        "PYTHONPATH": FAULTS,
        "RELIABILITY_HANG_MARKER": "@@hang@@",
        "RELIABILITY_HANG_SECONDS": "600",
        "REQUEST_TIMEOUT_MS": "1000",
        "DRAIN_GRACE_SECONDS": "0",
        "SHUTDOWN_TIMEOUT_SECONDS": "2",
    }
    with run_logged_server(tmp_path / "server.log", **settings) as server:
        server.wait_ready(timeout_s=60)
        r = _post(server.url, "@@poison@@ breaks the model")
        assert r.status_code == 500
        assert r.json()["error"]["code"] == "inference_error"
        assert "poison" not in r.text
        assert _post(server.url, "the next one is fine").status_code == 200
        # A call that hangs for good: its request is answered at the deadline, liveness stays
        # up, and shutdown does not wait for the call.
        hung = _post(server.url, "@@hang@@ never returns")
        assert hung.status_code == 503
        assert hung.json()["error"]["code"] == "timeout"
        assert httpx2.get(server.url + "/healthz").status_code == 200
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(60)
        stopped = _records(server, "shutdown")
    assert code == 0
    assert stopped and stopped[-1]["clean"] is False  # the hung thread was abandoned


def test_a_hung_model_call_does_not_stretch_shutdown_past_its_budget(tmp_path: Path) -> None:
    # SIGTERM with a request in flight on a model call that never returns: uvicorn waits for the
    # request (answered 503 timeout at its deadline), then the lifespan waits for the model thread.
    # That second wait used the whole SHUTDOWN_TIMEOUT_SECONDS again, so the process took
    # grace + deadline + SHUTDOWN_TIMEOUT_SECONDS (33 s with the defaults, past Kubernetes' 30 s).
    settings = {
        "PYTHONPATH": FAULTS,
        "RELIABILITY_HANG_MARKER": "@@hang@@",
        "RELIABILITY_HANG_SECONDS": "600",
        "REQUEST_TIMEOUT_MS": "4000",
        "DRAIN_GRACE_SECONDS": "0",
        "SHUTDOWN_TIMEOUT_SECONDS": "4",
    }
    with run_logged_server(tmp_path / "server.log", **settings) as server:
        server.wait_ready(timeout_s=60)
        answers: list[httpx2.Response] = []
        caller = threading.Thread(target=lambda: answers.append(_post(server.url, "@@hang@@")))
        caller.start()
        time.sleep(0.5)  # in flight, inside the hung call
        server.proc.send_signal(signal.SIGTERM)
        # The configured budget is grace + SHUTDOWN_TIMEOUT_SECONDS = 4 s; 2.5 s of slack.
        code = server.proc.wait(6.5)
        caller.join(30)
    assert code == 0
    assert [r.status_code for r in answers] == [503]
    assert answers[0].json()["error"]["code"] == "timeout"


# --- 8. slow clients ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def header_timeout_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedServer]:
    log_path = tmp_path_factory.mktemp("slow-clients") / "server.log"
    with ready_logged_server(log_path, HEADER_READ_TIMEOUT_SECONDS="0.5") as server:
        yield server


def _connect(server: LoggedServer) -> socket.socket:
    # Generous: the server answers within HEADER_READ_TIMEOUT_SECONDS, a failure must not hang.
    return socket.create_connection(("127.0.0.1", server.port), timeout=15)


def _read_until_closed(conn: socket.socket) -> bytes:
    received = b""
    while chunk := conn.recv(4096):
        received += chunk
    return received


def _read_response(stream: BinaryIO) -> tuple[int, bytes]:
    status = int(stream.readline().split()[1])
    length = 0
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, stream.read(length)


def test_a_request_line_that_never_finishes_gets_408_and_is_closed(
    header_timeout_server: LoggedServer,
) -> None:
    with _connect(header_timeout_server) as conn:
        conn.sendall(b"GET /slowloris-probe")
        answer = _read_until_closed(conn)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"]["code"] == "request_timeout"
    timeouts = _records(header_timeout_server, "header_read_timeout")
    assert any(r["request_started"] for r in timeouts)
    assert "slowloris-probe" not in header_timeout_server.output()  # never logged raw


def test_a_silent_connection_is_closed_by_the_server(header_timeout_server: LoggedServer) -> None:
    with _connect(header_timeout_server) as conn:
        assert _read_until_closed(conn) == b""  # closed, without an answer nobody asked for
    timeouts = _records(header_timeout_server, "header_read_timeout")
    assert any(not r["request_started"] for r in timeouts)


def test_kept_alive_and_complete_requests_outlive_the_header_timeout(
    header_timeout_server: LoggedServer,
) -> None:
    body = b'{"text": "have a nice day"}'
    predict_head = (
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with _connect(header_timeout_server) as conn, conn.makefile("rb") as stream:
        statuses = []
        for _ in range(3):
            # Idle longer than HEADER_READ_TIMEOUT_SECONDS, shorter than TIMEOUT_KEEP_ALIVE (5 s).
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            statuses.append(_read_response(stream)[0])
            time.sleep(1.0)
        # Complete headers, then a body later than HEADER_READ_TIMEOUT_SECONDS: the body has
        # BODY_READ_TIMEOUT_SECONDS (10 s).
        conn.sendall(predict_head)
        time.sleep(1.0)
        conn.sendall(body)
        status, answer = _read_response(stream)
    assert statuses == [200, 200, 200]
    assert status == 200
    assert json.loads(answer)["prediction"]["label"] == "non-toxic"
