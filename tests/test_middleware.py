"""Our pure ASGI middleware on bare ASGI apps (the way uvicorn tests its middleware)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ml_prod_api.http.middleware import BodyLimitMiddleware, BodyTooLarge, RequestContextMiddleware
from ml_prod_api.logs import request_id_var
from ml_prod_api.metrics import Metrics

Message = dict[str, Any]


def _run(app: Any, scope: dict[str, Any], chunks: list[bytes]) -> tuple[list[Message], int]:
    sent: list[Message] = []
    reads = 0

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        i = reads - 1
        if i < len(chunks):
            return {"type": "http.request", "body": chunks[i], "more_body": i < len(chunks) - 1}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent, reads


def _scope(headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/x", "headers": headers or []}


async def _echo_body_len(scope: Any, receive: Any, send: Any) -> None:
    total = 0
    try:
        while True:
            msg = await receive()
            total += len(msg.get("body", b""))
            if not msg.get("more_body"):
                break
    except BodyTooLarge:
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b"cut"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(total).encode()})


def test_body_limit_refuses_declared_length_without_reading() -> None:
    app = BodyLimitMiddleware(_echo_body_len, limit=10)
    sent, reads = _run(app, _scope([(b"content-length", b"1000000000")]), [b"x" * 100])
    assert reads == 0  # refused before a single byte was read
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "payload_too_large"


def test_body_limit_stops_reading_a_stream_at_the_limit() -> None:
    app = BodyLimitMiddleware(_echo_body_len, limit=250)
    chunks = [b"x" * 100] * 1000  # 100 kB streamed with no Content-Length
    sent, reads = _run(app, _scope(), chunks)
    assert sent[0]["status"] == 413
    assert reads == 3  # 300 bytes > 250: stopped at the third chunk, not the thousandth


def test_body_limit_passes_small_bodies() -> None:
    app = BodyLimitMiddleware(_echo_body_len, limit=250)
    sent, _ = _run(app, _scope(), [b"x" * 100, b"y" * 100])
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b"200"


def test_request_context_sets_id_header_and_metrics() -> None:
    seen: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(request_id_var.get())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    metrics = Metrics()
    mw = RequestContextMiddleware(app, metrics=metrics, model_fields=dict)
    sent, _ = _run(mw, _scope([(b"x-request-id", b"abc-123")]), [])
    headers = dict(sent[0]["headers"])
    assert headers[b"x-request-id"] == b"abc-123"
    assert seen == ["abc-123"]
    assert request_id_var.get() is None  # reset after the request
    text = metrics.render().decode()
    assert 'http_requests_total{route="<unmatched>",status="204"} 1.0' in text


def test_request_context_turns_a_crash_into_the_500_envelope() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("secret input text")

    mw = RequestContextMiddleware(app, metrics=Metrics(), model_fields=dict)
    sent, _ = _run(mw, _scope(), [])
    assert sent[0]["status"] == 500
    body = json.loads(sent[1]["body"])
    assert body["error"]["code"] == "internal_error"
    assert "secret" not in sent[1]["body"].decode()


def test_request_context_ignores_non_http_scopes() -> None:
    called = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope["type"])

    mw = RequestContextMiddleware(app, metrics=Metrics(), model_fields=dict)
    asyncio.run(mw({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert called == ["lifespan"]


def test_admission_refuses_beyond_the_in_flight_limit() -> None:
    from ml_prod_api.http.middleware import AdmissionMiddleware

    gate = asyncio.Event()
    sent: list[Message] = []

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw = AdmissionMiddleware(slow_app, limit=2, paths=("/v1/predict",))

    async def call(path: str) -> list[Message]:
        out: list[Message] = []

        async def send(message: Message) -> None:
            out.append(message)

        async def receive() -> Message:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        await mw({"type": "http", "method": "POST", "path": path, "headers": []}, receive, send)
        return out

    async def scenario() -> None:
        first = [asyncio.ensure_future(call("/v1/predict")) for _ in range(2)]
        await asyncio.sleep(0)
        refused = await call("/v1/predict")  # answered at once, while two are in flight
        assert refused[0]["status"] == 429
        assert (b"retry-after", b"1") in refused[0]["headers"]
        assert json.loads(refused[1]["body"])["error"]["code"] == "overloaded"
        other = asyncio.ensure_future(call("/healthz"))  # other paths are not counted
        gate.set()
        for done in await asyncio.gather(*first, other):
            assert done[0]["status"] == 200
        assert mw.in_flight == 0
        sent.extend(refused)

    asyncio.run(scenario())
    assert sent


def test_a_trickling_body_is_cut_off_by_the_read_timeout() -> None:
    from ml_prod_api.http.middleware import BodyReadTimeout

    async def trickle_receive() -> Message:
        await asyncio.sleep(0.05)
        return {"type": "http.request", "body": b"x", "more_body": True}

    app = BodyLimitMiddleware(_echo_body_len_timeout, limit=10_000, read_timeout_s=0.2)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(_scope(), trickle_receive, send))
    assert sent[0]["status"] == 408
    assert issubclass(BodyReadTimeout, Exception)


async def _echo_body_len_timeout(scope: Any, receive: Any, send: Any) -> None:
    from ml_prod_api.http.middleware import BodyReadTimeout

    try:
        while True:
            msg = await receive()
            if not msg.get("more_body"):
                break
    except BodyReadTimeout:
        await send({"type": "http.response.start", "status": 408, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})
