"""What a hostile client can do to a real server over loopback, and what the service does about
it: slow bodies, oversized headers, disconnects, unparseable requests, forwarded addresses."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.support.servers import LoggedServer, ready_logged_server, run_logged_server

pytestmark = [pytest.mark.integration]


def _connect(server: LoggedServer, source: str = "127.0.0.1") -> socket.socket:
    """A connection from `source` (another loopback address is another client)."""
    return socket.create_connection(
        ("127.0.0.1", server.port), timeout=20, source_address=(source, 0)
    )


def _send_until_closed(conn: socket.socket, data: bytes) -> None:
    """Send `data`; a server that refuses early may close before it has all of it."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        conn.sendall(data)


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
    with ready_logged_server(log, MAX_IN_FLIGHT_REQUESTS="2") as running:
        yield running


def test_slow_bodies_do_not_take_the_in_flight_slots(server: LoggedServer) -> None:
    head = (
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100000\r\n\r\n{"text": "'
    )
    # One client's slow bodies, three times MAX_IN_FLIGHT_REQUESTS; another client's request.
    slow = [_connect(server, source="127.0.0.2") for _ in range(6)]
    try:
        for conn in slow:
            conn.sendall(head)
        answer = httpx2.post(server.url + "/v1/predict", json={"text": "hello"}, timeout=20)
        assert answer.status_code == 200, answer.text
    finally:
        for conn in slow:
            conn.close()


def _slow_body(
    server: LoggedServer, source: str = "127.0.0.1", forwarded_for: str | None = None
) -> socket.socket:
    """A connection from `source` that sends a prediction's head and the start of its body (of a
    declared 100,000 bytes), then nothing more."""
    conn = _connect(server, source)
    forwarded = b"X-Forwarded-For: %s\r\n" % forwarded_for.encode() if forwarded_for else b""
    conn.sendall(
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + forwarded
        + b"Content-Length: 100000\r\n\r\n"
        + _BODY_START
    )
    return conn


_BODY_START = b'{"text": "'


def _finish_body(conn: socket.socket) -> None:
    rest = b'hello"}'
    conn.sendall(rest + b" " * (100_000 - len(_BODY_START) - len(rest)))


def _answer(conn: socket.socket) -> tuple[int, dict[str, object], bool]:
    """The status and JSON body of the next answer on `conn`, and whether the server then closed
    the connection (only looked for when the answer asks for it with `connection: close`)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = conn.recv(65536)
        assert chunk, f"closed without an answer: {received[:200]!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:"))
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk, "closed in the middle of the answer"
        body += chunk
    closed = b"connection: close" in lines and _read_until_closed(conn) == b""
    return int(lines[0].split(b" ", 2)[1]), json.loads(body), closed


def test_one_client_cannot_hold_more_than_its_cap_of_body_readers(tmp_path: Path) -> None:
    cap, fd_limit = 4, 256
    # A server with few descriptors, so that connections one client keeps open would run out of
    # them for everyone else.
    argv = ["prlimit", f"--nofile={fd_limit}", sys.executable, "-m", "ml_prod_api.cli", "serve"]
    argv += ["--host", "127.0.0.1", "--port", "{port}"]
    with run_logged_server(
        tmp_path / "server.log",
        argv=argv,
        MAX_BODY_READERS_PER_CLIENT=str(cap),
        TRUSTED_PROXIES="127.0.0.1",
        BODY_READ_TIMEOUT_SECONDS="60",
    ) as srv:
        srv.wait_ready(timeout_s=60)
        hostile: list[socket.socket] = []
        try:
            # 127.0.0.2 (not a trusted proxy) opens more slow bodies than the server has
            # descriptors, and never closes one: beyond the cap each is refused at once.
            for i in range(fd_limit + 44):
                conn = _slow_body(srv, source="127.0.0.2")
                hostile.append(conn)
                if i >= cap:
                    status, body, closed = _answer(conn)
                    assert status == 429, (i, body)
                    error = body["error"]
                    assert isinstance(error, dict) and error["code"] == "too_many_uploads"
                    assert closed  # by the server: this client keeps its end open
            # Other clients are served meanwhile: another address, and a client behind the
            # trusted proxy, whose forwarded address is its identity.
            ok = httpx2.post(srv.url + "/v1/predict", json={"text": "hello"}, timeout=20)
            assert ok.status_code == 200, ok.text
            via_proxy = [_slow_body(srv, forwarded_for="203.0.113.9") for _ in range(cap + 1)]
            hostile += via_proxy
            assert _answer(via_proxy[-1])[:1] == (429,)
            other = httpx2.post(
                srv.url + "/v1/predict",
                json={"text": "hello"},
                headers={"X-Forwarded-For": "203.0.113.10"},
                timeout=20,
            )
            assert other.status_code == 200, other.text
            # A held body that arrives is served, and gives its client's slot back.
            _finish_body(hostile[0])
            assert _answer(hostile[0])[0] == 200
            again = _slow_body(srv, source="127.0.0.2")
            hostile.append(again)
            _finish_body(again)
            assert _answer(again)[0] == 200
        finally:
            for conn in hostile:
                conn.close()
        assert not [r for r in srv.log_records() if r.get("level") == "ERROR"]


def _head_with(pad: bytes, header: bytes = b"X-Pad") -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + header + b": " + pad + b"\r\n\r\n"


def test_an_oversized_header_is_refused_early_with_431(server: LoggedServer) -> None:
    with _connect(server) as conn:
        # 4 MB, far more than MAX_HEADER_BYTES (16 KiB): refused once the limit is passed.
        _send_until_closed(conn, _head_with(b"a" * (4 << 20)))
        answer = _read_until_closed(conn)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"]["code"] == "headers_too_large"
    assert [r for r in server.log_records() if r.get("event") == "headers_too_large"]
    # A header under the limit is served as before.
    assert httpx2.get(server.url + "/healthz", headers={"X-Pad": "a" * 8000}).status_code == 200


def test_a_huge_api_key_is_refused_before_it_is_hashed(server: LoggedServer) -> None:
    with _connect(server) as conn:
        _send_until_closed(conn, _head_with(b"k" * (1 << 20), header=b"X-API-Key"))
        assert _read_until_closed(conn).startswith(b"HTTP/1.1 431 ")


def _readme_classic_command() -> list[str]:
    """The classic `uvicorn` command exactly as README.md gives it, on a free loopback port."""
    import shlex
    import sys

    from tests.support.servers import ROOT

    readme = (ROOT / "README.md").read_text()
    start = readme.index(".venv/bin/uvicorn ml_prod_api.api:app")
    command = readme[start : readme.index("```", start)].replace("\\\n", " ")
    argv = shlex.split(command)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = "{port}"
    return [sys.executable, "-m", "uvicorn", *argv[1:]]


def test_the_readme_classic_command_holds_like_serve(tmp_path: Path) -> None:
    # Behind a sidecar on 127.0.0.1, a client must not pick its own rate-limit bucket with
    # X-Forwarded-For (TRUSTED_PROXIES is unset), and oversized heads are refused early.
    argv = _readme_classic_command()
    with run_logged_server(tmp_path / "server.log", argv=argv, RATE_LIMIT="3/minute") as classic:
        classic.wait_ready(timeout_s=60)
        statuses = [
            httpx2.post(
                classic.url + "/v1/predict",
                json={"text": "hello"},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            ).status_code
            for i in range(5)
        ]
        assert statuses == [200, 200, 200, 429, 429]
        with _connect(classic) as conn:
            _send_until_closed(conn, _head_with(b"a" * (4 << 20)))
            assert _read_until_closed(conn).startswith(b"HTTP/1.1 431 ")
        assert "server" not in httpx2.get(classic.url + "/healthz").headers


def _metric(server: LoggedServer, route: str, status: int) -> float:
    text = httpx2.get(server.url + "/metrics").text
    needle = f'http_requests_total{{route="{route}",status="{status}"}} '
    for line in text.splitlines():
        if line.startswith(needle):
            return float(line.split()[-1])
    return 0.0


def _wait_for_metric(server: LoggedServer, route: str, status: int, before: float) -> None:
    """The server notices a closed connection at its next read: wait for the request's count."""
    for _ in range(200):
        if _metric(server, route, status) > before:
            return
        time.sleep(0.05)


def _send_and_count(server: LoggedServer, status: int, raw: bytes, *, read: bool) -> bytes:
    """Send a prediction's head and `raw` on a new connection, read the answer (`read`) or leave,
    and wait until the server has counted the request with `status`; returns the answer."""
    before = _metric(server, "/v1/predict", status)
    head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with _connect(server) as conn:
        conn.sendall(head + raw)
        answer = _read_until_closed(conn) if read else b""
    _wait_for_metric(server, "/v1/predict", status, before)
    assert _metric(server, "/v1/predict", status) == before + 1
    assert _metric(server, "/v1/predict", 500) == 0
    return answer


def test_a_client_that_leaves_mid_body_is_counted_as_499_not_500(server: LoggedServer) -> None:
    _send_and_count(server, 499, b'Content-Length: 1000\r\n\r\n{"text": "hel', read=False)
    assert not [r for r in server.log_records() if r.get("level") == "ERROR"]


def test_a_malformed_chunked_body_is_answered_and_counted_as_400(server: LoggedServer) -> None:
    raw = b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"tex\r\nzz-not-a-size\r\n'
    answer = _send_and_count(server, 400, raw, read=True)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["error"]["code"] == "bad_request"


def test_an_unparseable_request_gets_the_envelope_a_log_line_and_a_metric(
    server: LoggedServer,
) -> None:
    before = _metric(server, "<unmatched>", 400)
    with _connect(server) as conn:
        conn.sendall(b"GET /secret-sentinel-path HTTP/1.1\r\nHo st: x\r\n\r\n")
        answer = _read_until_closed(conn)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"application/json" in head
    assert json.loads(body)["error"] == {
        "code": "bad_request",
        "message": "the request is not valid HTTP/1.1",
        "request_id": "-",
    }
    assert _metric(server, "<unmatched>", 400) == before + 1
    lines = [r for r in server.log_records() if r.get("event") == "http_parse_error"]
    assert lines
    assert "secret-sentinel-path" not in server.output()
