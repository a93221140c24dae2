"""Rate limits shared through a real Redis, and what happens when Redis goes away."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import running_client
from tests.support.servers import free_port, redis_server

REDIS = shutil.which("redis-server")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        REDIS is None, reason="redis-server not installed (scripts/install_test_services.sh)"
    ),
]


def test_two_instances_share_one_budget(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis:
        settings = {"rate_limit": "6/minute", "rate_limit_storage_uri": redis.uri}
        with running_client(**settings) as a, running_client(**settings) as b:
            for client in (a, b, a, b, a, b):
                assert client.post("/v1/predict", json={"text": "x"}).status_code == 200
            for client in (a, b):  # the shared budget of 6 is spent, whichever replica
                r = client.post("/v1/predict", json={"text": "x"})
                assert r.status_code == 429
                assert r.headers["x-ratelimit-remaining"] == "0"


def test_fail_open_when_redis_dies_then_limits_resume(tmp_path: Path) -> None:
    with (
        redis_server(tmp_path) as redis,
        running_client(
            rate_limit="3/minute", rate_limit_storage_uri=redis.uri, rate_limit_fail_open=True
        ) as c,
    ):
        # Two of three units: a caller refused as spent would stay refused from this process's
        # memory until its window resets, Redis or not (test_security).
        for _ in range(2):
            assert c.post("/v1/predict", json={"text": "x"}).status_code == 200
        redis.kill()
        started = time.monotonic()
        for _ in range(5):  # limit unenforceable: served, with a warning and a metric
            r = c.post("/v1/predict", json={"text": "x"})
            assert r.status_code == 200
            assert "x-ratelimit-limit" not in r.headers
        assert time.monotonic() - started < 30  # bounded timeouts: no hang
        assert "rate_limit_storage_errors_total 5.0" in c.get("/metrics").text
        redis.start()  # same port, empty: limits resume with a fresh budget
        # ...once the circuit breaker asks Redis again (within BREAKER_OPEN_SECONDS).
        codes: list[int] = []
        deadline = time.monotonic() + 10
        while 429 not in codes:
            assert time.monotonic() < deadline, codes
            codes.append(c.post("/v1/predict", json={"text": "x"}).status_code)
            time.sleep(0.05)
        assert c.post("/v1/predict", json={"text": "x"}).status_code == 429


def test_fail_closed_when_redis_dies(tmp_path: Path) -> None:
    with (
        redis_server(tmp_path) as redis,
        running_client(
            rate_limit="100/minute", rate_limit_storage_uri=redis.uri, rate_limit_fail_open=False
        ) as c,
    ):
        assert c.post("/v1/predict", json={"text": "x"}).status_code == 200
        redis.kill()
        r = c.post("/v1/predict", json={"text": "x"})
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "rate_limit_unavailable"
        assert r.headers["retry-after"] == "1"
        assert c.get("/healthz").status_code == 200
        redis.start()
        deadline = time.monotonic() + 10
        while c.post("/v1/predict", json={"text": "x"}).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_unreachable_redis_at_start_follows_the_setting() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with running_client(
        rate_limit="5/minute", rate_limit_storage_uri=dead, rate_limit_fail_open=False
    ) as c:
        assert c.post("/v1/predict", json={"text": "x"}).status_code == 503
    with running_client(rate_limit="5/minute", rate_limit_storage_uri=dead) as c:
        assert c.post("/v1/predict", json={"text": "x"}).status_code == 200


def test_a_redis_that_never_answers_is_given_up_for_a_while(tmp_path: Path) -> None:
    # A Redis that accepts connections but never answers: without a breaker, every request
    # waited RATE_LIMIT_TIMEOUT_MS and opened a new connection.
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    uri = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    try:
        with running_client(
            rate_limit="100/minute",
            rate_limit_storage_uri=uri,
            rate_limit_fail_open=True,
            rate_limit_timeout_ms=50,
        ) as c:
            for _ in range(12):
                assert c.post("/v1/predict", json={"text": "x"}).status_code == 200
            text = c.get("/metrics").text
    finally:
        listener.close()
        for conn in accepted:
            conn.close()
    assert len(accepted) <= 3, len(accepted)  # a few tries, then the breaker opened
    assert "rate_limit_storage_errors_total 12.0" in text  # every request still counted
