"""Pure ASGI middleware (no BaseHTTPMiddleware: it breaks contextvars and costs throughput).

`RequestContextMiddleware` is the outermost of ours: it gives every request an id, measures it,
writes the one access-log line, records the metrics by route template, and turns any exception
that escaped the app into the 500 envelope (logging the exception type, never its message, which
may quote input).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_prod_api.http.errors import ApiError, send_error
from ml_prod_api.logs import request_id_var
from ml_prod_api.metrics import UNMATCHED_ROUTE, Metrics

access_log = logging.getLogger("ml_prod_api.access")
error_log = logging.getLogger("ml_prod_api.http")

# A caller's X-Request-ID is reused only when it is short and plain, so it cannot inject
# log lines or carry data; anything else gets a fresh id.
_SANE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")

LOG_SCOPE_KEY = "ml_prod_api.log"
ARRIVED_SCOPE_KEY = "ml_prod_api.arrived"  # time.monotonic() when the request came in
# Set by the HTTP protocol when the rest of a request (its body) could not be parsed: the protocol
# has answered 400 and closed, and the app sees the connection end.
UNPARSEABLE_SCOPE_KEY = "ml_prod_api.unparseable"

# Generated ids: a random per-process prefix and a counter, unique across processes and
# restarts like a UUID but without a urandom call per request.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def request_log_fields(scope: Scope) -> dict[str, Any]:
    """The per-request dict a route fills with access-log fields (batch_size, label counts)."""
    fields: dict[str, Any] = scope.setdefault(LOG_SCOPE_KEY, {})
    return fields


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        model_fields: Callable[[], dict[str, Any]],
        routes: Callable[[], list[Any]] = list,
        max_header_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.model_fields = model_fields
        self.routes = routes
        # The HTTP protocol (http/protocol.py) refuses large heads while they arrive; this is the
        # same limit for a server started without it (uvicorn's own protocols), where the head
        # is already buffered but at least goes no further (no key hashed, no route run).
        self.max_header_bytes = max_header_bytes

    def _route_label(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            # Refused before routing (401, 413): find the template so the metric is useful.
            for candidate in self.routes():
                match, _ = candidate.matches(scope)
                if match is not Match.NONE:
                    route = candidate
                    break
        return getattr(route, "path", None) or UNMATCHED_ROUTE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if _SANE_REQUEST_ID.match(value):
                    request_id = value.decode("ascii")
                break
        if request_id is None:
            request_id = new_request_id()
        token = request_id_var.set(request_id)
        header = (b"x-request-id", request_id.encode("ascii"))
        fields: dict[str, Any] = {}
        scope[LOG_SCOPE_KEY] = fields
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        started = time.perf_counter()
        scope[ARRIVED_SCOPE_KEY] = time.monotonic()
        self.metrics.in_flight.inc()
        try:
            if self.max_header_bytes is not None and _head_bytes(scope) > self.max_header_bytes:
                await send_error(
                    send_wrapper,
                    431,
                    "headers_too_large",
                    f"the request line and headers exceed {self.max_header_bytes} bytes "
                    "(MAX_HEADER_BYTES)",
                    [(b"connection", b"close")],
                )
            else:
                await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            # The connection ended before the body was in: the client left (nginx's 499), or the
            # protocol refused a body it could not parse (and answered 400 itself). Nobody reads
            # an answer; nothing failed here.
            status = 400 if scope.get(UNPARSEABLE_SCOPE_KEY) else 499
        except Exception as exc:
            error_log.error(
                "unhandled exception",
                extra={"error_type": type(exc).__name__, "event": "unhandled_exception"},
            )
            if not response_started:
                await send_error(send_wrapper, 500, "internal_error", "internal server error")
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.in_flight.dec()
            route = self._route_label(scope)
            self.metrics.observe_request(route, status, elapsed)
            client = scope.get("client")
            access_log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "route": route,
                    "status_code": status,
                    "latency_ms": round(elapsed * 1000, 3),
                    "client": client[0] if client else None,
                    "caller": scope.get("ml_prod_api.caller"),
                    **self.model_fields(),
                    **fields,
                },
            )
            request_id_var.reset(token)


def _head_bytes(scope: Scope) -> int:
    """The size of a request's line and headers, as they were sent (near enough)."""
    size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + 16
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4
    return size


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        # Close the connection: otherwise the server keeps reading (and discarding) the rest of
        # the body to find the next request on this connection.
        super().__init__(
            status_code=413, detail="request body too large", headers={"Connection": "close"}
        )


class BodyReadTimeout(HTTPException):
    def __init__(self) -> None:
        super().__init__(
            status_code=408,
            detail="the request body did not arrive in time (BODY_READ_TIMEOUT_SECONDS)",
            headers={"Connection": "close"},
        )


class BodyLimitMiddleware:
    """Refuse bodies over `limit` bytes with the 413 envelope, before they are buffered whole.

    Hand-written because Starlette's `RequestBodyLimitMiddleware` (FastAPI's `max_body_size`)
    replaces any response to an over-long declared body with its own plain-text 413, which would
    break the one-envelope rule. A declared Content-Length over the limit is refused before the
    body is read; a chunked body is counted as it streams and cut off at the limit.
    """

    def __init__(self, app: ASGIApp, *, limit: int, read_timeout_s: float | None = None) -> None:
        self.app = app
        self.limit = limit
        # A body that trickles in (slowloris on the body) is cut off after this long; uvicorn
        # has no body-read timeout of its own.
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.limit:
                    await self._refuse(scope, send)
                    return
                break
        received = 0
        body_done = False
        timed_out = False
        reader: asyncio.Task[Any] | None = None  # the task waiting in receive(), if any
        timer: asyncio.TimerHandle | None = None
        if self.read_timeout_s is not None:
            # One timer per request that cancels the read if it is still waiting when the time is
            # up, instead of an `asyncio.timeout` block around every receive(), which costs a
            # measurable share of a small prediction's time under load.
            def expire() -> None:
                nonlocal timed_out
                if not body_done:
                    timed_out = True
                    if reader is not None:
                        reader.cancel()

            timer = asyncio.get_running_loop().call_later(self.read_timeout_s, expire)

        async def limited_receive() -> Message:
            nonlocal received, body_done, reader
            if body_done or timer is None:
                message = await receive()
            else:
                if timed_out:
                    raise BodyReadTimeout()
                reader = asyncio.current_task()
                try:
                    message = await receive()
                except asyncio.CancelledError:
                    if timed_out and reader is not None and reader.uncancel() == 0:
                        raise BodyReadTimeout() from None
                    raise
                finally:
                    reader = None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge()
                if not message.get("more_body", False):
                    body_done = True
                    if timer is not None:
                        timer.cancel()
            return message

        try:
            await self.app(scope, limited_receive, send)
        finally:
            if timer is not None:
                timer.cancel()

    async def _refuse(self, scope: Scope, send: Send) -> None:
        # Close the connection: the unread body would otherwise be parsed as the next request.
        await send_error(
            send,
            413,
            "payload_too_large",
            f"request body exceeds the limit of {self.limit} bytes (MAX_BODY_BYTES)",
            [(b"connection", b"close")],
        )


class AdmissionMiddleware:
    """Refuse prediction requests beyond `limit` in flight with an immediate 429.

    The inference queue refuses work once it is full, but under several times its capacity the
    event loop itself falls behind and requests wait in the process before they reach the queue
    (the overload drill saw 20 s). Counting prediction requests in flight keeps the refusal cheap
    and fast. A request counts from the moment its whole body is in, as behind nginx, which
    buffers a body before the upstream sees it: counted from its headers, connections that send
    a body a byte a second held every slot until `BODY_READ_TIMEOUT_SECONDS` and refused
    everyone else. A body still arriving costs a connection and a timer, nothing of the model.
    Hand-written: uvicorn's `--limit-concurrency` counts every connection and answers a
    plain-text 503, which probes and clients would misread.
    """

    def __init__(self, app: ASGIApp, *, limit: int, paths: tuple[str, ...]) -> None:
        self.app = app
        self.limit = limit
        self.paths = paths
        self.in_flight = 0

    def _refusal(self) -> ApiError:
        return ApiError(
            429,
            "overloaded",
            f"too many prediction requests in flight (limit {self.limit}, MAX_IN_FLIGHT_REQUESTS)",
            headers={"Retry-After": "1"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        holding = False
        started = False

        async def admitted_receive() -> Message:
            nonlocal holding
            message = await receive()
            if (
                not holding
                and message["type"] == "http.request"
                and not message.get("more_body", False)
            ):
                # The body is in: take a slot, or refuse. Raised as the route's own error, so
                # FastAPI answers it with the envelope (Retry-After included).
                if self.in_flight >= self.limit:
                    raise self._refusal()
                self.in_flight += 1
                holding = True
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, admitted_receive, watched_send)
        except ApiError as exc:
            # Only where no framework answered it (a bare ASGI app): the same envelope.
            if started:
                raise
            headers = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
            await send_error(send, exc.status, exc.code, exc.message, headers)
        finally:
            if holding:
                self.in_flight -= 1
