"""Our pure ASGI middleware on bare ASGI apps (the way uvicorn tests its middleware), and the HTTP
protocol's header-read timeout on a bare ASGI app behind a loopback socket."""

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


def _admission_call(mw: Any, path: str, body_arrives: asyncio.Event | None = None) -> Any:
    """One request through `mw`; its body arrives once `body_arrives` is set (at once if None)."""

    async def call() -> list[Message]:
        out: list[Message] = []

        async def send(message: Message) -> None:
            out.append(message)

        async def receive() -> Message:
            if body_arrives is not None:
                await body_arrives.wait()
            return {"type": "http.request", "body": b"{}", "more_body": False}

        await mw({"type": "http", "method": "POST", "path": path, "headers": []}, receive, send)
        return out

    return asyncio.ensure_future(call())


async def _read_body_then_wait(gate: asyncio.Event, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await gate.wait()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_admission_refuses_beyond_the_in_flight_limit() -> None:
    from ml_prod_api.http.middleware import AdmissionMiddleware

    gate = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body_then_wait(gate, receive, send)

    mw = AdmissionMiddleware(slow_app, limit=2, paths=("/v1/predict",))

    async def scenario() -> None:
        first = [_admission_call(mw, "/v1/predict") for _ in range(2)]
        await asyncio.sleep(0.01)
        refused = await _admission_call(mw, "/v1/predict")  # answered at once
        assert refused[0]["status"] == 429
        assert (b"retry-after", b"1") in refused[0]["headers"]
        assert json.loads(refused[1]["body"])["error"]["code"] == "overloaded"
        other = _admission_call(mw, "/healthz")  # other paths are not counted
        gate.set()
        for done in await asyncio.gather(*first, other):
            assert done[0]["status"] == 200
        assert mw.in_flight == 0

    asyncio.run(scenario())


def test_admission_counts_a_request_only_once_its_body_is_in() -> None:
    # Slow bodies (headers sent, the body trickling) must not hold the in-flight slots: a
    # complete request is served while more of them wait than the limit allows.
    from ml_prod_api.http.middleware import AdmissionMiddleware

    gate = asyncio.Event()
    gate.set()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body_then_wait(gate, receive, send)

    mw = AdmissionMiddleware(app, limit=2, paths=("/v1/predict",))

    async def scenario() -> None:
        never = asyncio.Event()
        trickling = [_admission_call(mw, "/v1/predict", never) for _ in range(5)]
        await asyncio.sleep(0.01)
        served = await _admission_call(mw, "/v1/predict")
        assert served[0]["status"] == 200
        for task in trickling:
            task.cancel()
        await asyncio.gather(*trickling, return_exceptions=True)
        assert mw.in_flight == 0

    asyncio.run(scenario())


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


# --- the header-read timeout (http/protocol.py) --------------------------------------------------


async def _answer_ok(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(0.5)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


def _header_timeout_exchanges(*conversations: list[bytes | float]) -> list[bytes]:
    """Serve `_answer_ok` with a 0.1 s header timeout on loopback; each conversation (bytes to
    write, or seconds to pause) runs on its own connection and returns everything read until the
    server closed it."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from ml_prod_api.http.protocol import HeaderTimeoutProtocol

    class QuickHeaderTimeout(HeaderTimeoutProtocol):
        header_read_timeout_s = 0.1

    config = Config(_answer_ok, lifespan="off", log_config=None)

    async def scenario() -> list[bytes]:
        state = ServerState()
        server = await asyncio.get_running_loop().create_server(
            lambda: QuickHeaderTimeout(config=config, server_state=state, app_state={}),
            "127.0.0.1",
            0,
        )
        port = server.sockets[0].getsockname()[1]

        async def converse(steps: list[bytes | float]) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for step in steps:
                if isinstance(step, bytes):
                    writer.write(step)
                else:
                    await asyncio.sleep(step)
            received = await asyncio.wait_for(reader.read(), 10)  # until the server closes
            writer.close()
            return received

        try:
            return await asyncio.gather(*(converse(c) for c in conversations))
        finally:
            server.close()

    return asyncio.run(scenario())


def test_header_timeout_answers_a_partial_request_and_closes_a_silent_connection() -> None:
    partial, silent = _header_timeout_exchanges([b"POST /v1/pre"], [])
    head, _, body = partial.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in head
    assert b"content-type: application/json" in head
    assert json.loads(body)["error"] == {
        "code": "request_timeout",
        "message": "the request headers did not arrive in time (HEADER_READ_TIMEOUT_SECONDS)",
        "request_id": "-",
    }
    assert silent == b""  # closed without an answer nobody asked for


def test_header_timeout_spares_kept_alive_connections_and_in_flight_responses() -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    kept_alive, pipelined = _header_timeout_exchanges(
        # idle between requests for longer than the header timeout: TIMEOUT_KEEP_ALIVE governs
        [request, 0.3, request, 0.3, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"],
        # the next request starts, and stalls, while the previous answer is still computing
        [b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET / HT"],
    )
    assert kept_alive.count(b"HTTP/1.1 200 OK") == 3
    assert pipelined.count(b"HTTP/1.1 200 OK") == 1  # the answer in flight is delivered whole
    assert b"408" not in pipelined  # then the connection is closed


def test_header_timeout_covers_bytes_that_begin_no_request() -> None:
    # A bare CRLF after an answer cancels uvicorn's keep-alive timer without starting a request;
    # the connection must still be closed (here after 0.1 s, long before keep-alive's 5 s).
    (stray,) = _header_timeout_exchanges([b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0.2, b"\r\n"])
    assert stray.count(b"HTTP/1.1 200 OK") == 1


def _upload(
    mw: Any,
    client: str,
    body_arrives: asyncio.Event,
    *,
    caller: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Any:
    """One request from `client` (its address) through `mw`, declaring a body that arrives once
    `body_arrives` is set; ends with what was sent."""

    async def call() -> list[Message]:
        out: list[Message] = []

        async def send(message: Message) -> None:
            out.append(message)

        async def receive() -> Message:
            await body_arrives.wait()
            return {"type": "http.request", "body": b"{}", "more_body": False}

        scope: dict[str, Any] = {
            "type": "http",
            "method": "POST",
            "path": "/v1/predict",
            "headers": [(b"content-length", b"2")] if headers is None else headers,
            "client": (client, 50000),
        }
        if caller is not None:
            scope["ml_prod_api.caller"] = caller
        await mw(scope, receive, send)
        return out

    return asyncio.ensure_future(call())


def test_body_reader_cap_refuses_one_client_beyond_its_cap_and_spares_others() -> None:
    from ml_prod_api.http.bodyreaders import BodyReaderCap

    gate = asyncio.Event()
    gate.set()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body_then_wait(gate, receive, send)

    mw = BodyReaderCap(app, limit=2)

    async def scenario() -> None:
        slow, other_slow = asyncio.Event(), asyncio.Event()
        held = [_upload(mw, "198.51.100.1", slow) for _ in range(2)]
        await asyncio.sleep(0.01)
        refused = await _upload(mw, "198.51.100.1", asyncio.Event())  # answered at once
        assert refused[0]["status"] == 429
        assert (b"connection", b"close") in refused[0]["headers"]
        assert (b"retry-after", b"1") in refused[0]["headers"]
        assert json.loads(refused[1]["body"])["error"]["code"] == "too_many_uploads"
        # Another client, and a request without a body from the same one, are not counted.
        other = _upload(mw, "198.51.100.2", other_slow)
        no_body = await _upload(mw, "198.51.100.1", gate, headers=[(b"content-length", b"0")])
        assert no_body[0]["status"] == 200
        other_slow.set()
        assert (await other)[0]["status"] == 200
        # Once a held body is in, the client's count drops and a new request is accepted.
        slow.set()
        for done in await asyncio.gather(*held):
            assert done[0]["status"] == 200
        assert mw.reading == {}
        assert (await _upload(mw, "198.51.100.1", slow))[0]["status"] == 200

    asyncio.run(scenario())


def test_body_reader_cap_counts_by_key_name_and_forgets_clients_that_leave() -> None:
    from ml_prod_api.http.bodyreaders import BodyReaderCap

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body_then_wait(asyncio.Event(), receive, send)

    mw = BodyReaderCap(app, limit=1)

    async def scenario() -> None:
        never = asyncio.Event()
        # One key from two addresses is one client; two keys from one address are two.
        first = _upload(mw, "198.51.100.1", never, caller="alice")
        chunked = [(b"transfer-encoding", b"chunked")]
        second = _upload(mw, "198.51.100.1", never, caller="bob", headers=chunked)
        await asyncio.sleep(0.01)
        assert mw.reading == {"alice": 1, "bob": 1}
        refused = await _upload(mw, "198.51.100.9", never, caller="alice")
        assert refused[0]["status"] == 429
        # Requests that end while their body is arriving (timed out, client gone) give their
        # count back; nothing is kept for a client with no body arriving.
        for task in (first, second):
            task.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
        assert mw.reading == {}

    asyncio.run(scenario())
