"""What a hostile client can do to a real server over loopback, and what the service does about
it: slow bodies, oversized headers, disconnects, unparseable requests, forwarded addresses."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.support.servers import LoggedServer, run_logged_server

pytestmark = [pytest.mark.integration]


def _connect(server: LoggedServer) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    return conn


def _read_until_closed(conn: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := conn.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedServer]:
    log = tmp_path_factory.mktemp("hostile") / "server.log"
    with run_logged_server(log, MAX_IN_FLIGHT_REQUESTS="2") as running:
        running.wait_ready(timeout_s=60)
        yield running


def test_slow_bodies_do_not_take_the_in_flight_slots(server: LoggedServer) -> None:
    head = (
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{\"text\": \""
    )
    slow = [_connect(server) for _ in range(6)]  # three times MAX_IN_FLIGHT_REQUESTS
    try:
        for conn in slow:
            conn.sendall(head)
        answer = httpx2.post(server.url + "/v1/predict", json={"text": "hello"}, timeout=20)
        assert answer.status_code == 200, answer.text
    finally:
        for conn in slow:
            conn.close()
