"""Hostile bodies get a clear 4xx envelope or a correct prediction: never a 500, never a hang."""

from __future__ import annotations

import socket
import time

import pytest

from tests.conftest import running_client
from tests.support.servers import run_server

JSON = {"Content-Type": "application/json"}

CASES: dict[str, tuple[bytes, int, str | None]] = {
    # name: (body, expected status, expected error code)
    "deeply nested arrays": (
        b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        422,
        "invalid_json",
    ),
    "deeply nested top level": (b"[" * 50_000 + b"]" * 50_000, 422, "invalid_json"),
    "huge integer": (b'{"text": 1' + b"0" * 100_000 + b"}", 422, "invalid_json"),
    "huge float": (b'{"text": 1e999999}', 422, "invalid_type"),
    "NaN": (b'{"text": NaN}', 422, "invalid_type"),
    "invalid UTF-8": (b'{"text": "\xff\xfe bad"}', 422, "invalid_json"),
    "raw NUL inside a string": (b'{"text": "a\x00b"}', 422, "invalid_json"),
    "escaped NUL": (b'{"text": "a\\u0000b"}', 200, None),
    "lone surrogate": (b'{"text": "you \\ud800 idiot"}', 200, None),
    "very long single token": (b'{"text": "' + b"x" * 5000 + b'"}', 200, None),
    "right-to-left and zero-width": (
        '{"text": "\u202eevil\u200b\u200d text \u2066 \ufeff"}'.encode(),
        200,
        None,
    ),
    "duplicate keys": (b'{"text": "a", "text": "b"}', 200, None),
    "byte-order mark": (b'\xef\xbb\xbf{"text": "hello"}', 200, None),
    "10k-element batch": (
        b'{"texts": [' + b",".join([b'"a"'] * 10_000) + b"]}",
        422,
        "batch_too_large",
    ),
    "batch of objects": (b'{"texts": [{"text": "a"}]}', 422, "invalid_type"),
}


@pytest.mark.parametrize("provider", ["stub", "tfidf"])
@pytest.mark.parametrize("name", list(CASES))
def test_hostile_body(name: str, provider: str) -> None:
    body, status, code = CASES[name]
    path = "/v1/predict_batch" if b'"texts"' in body else "/v1/predict"
    with running_client(model_provider=provider) as c:
        r = c.post(path, content=body, headers=JSON)
    assert r.status_code == status, r.text[:300]
    if code is not None:
        assert r.json()["error"]["code"] == code
    else:
        pred = r.json()["prediction"]
        assert 0.0 <= pred["probability_toxic"] <= 1.0


def _raw_request(port: int, head: bytes, chunks: int, chunk: bytes) -> tuple[bytes, int]:
    """Send a request with a huge body over a raw socket; return the answer and bytes sent."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        try:
            for _ in range(chunks):
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server closed the connection after answering 413
        s.settimeout(10)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or b"}" not in answer:
                data = s.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    return answer, sent


@pytest.mark.integration
@pytest.mark.slow
def test_a_1gb_declared_body_is_refused_before_it_is_read() -> None:
    with run_server() as server:
        server.wait_ready()
        head = (
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
        )
        started = time.monotonic()
        answer, _ = _raw_request(server.port, head, 1, b'{"text": "')
        assert answer.startswith(b"HTTP/1.1 413")
        assert b'"payload_too_large"' in answer
        assert time.monotonic() - started < 10


@pytest.mark.integration
@pytest.mark.slow
def test_a_chunked_body_without_length_is_cut_off_at_the_limit() -> None:
    with run_server(MAX_BODY_BYTES="100000") as server:
        server.wait_ready()
        head = (
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (10_000, b"x" * 10_000)
        answer, sent = _raw_request(server.port, head, 10_000, chunk)  # up to 100 MB
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b'"payload_too_large"' in answer
        assert sent < 50_000_000  # the server stopped reading long before the end
        # and it still serves others
        import httpx2

        assert httpx2.get(server.url + "/healthz").status_code == 200
