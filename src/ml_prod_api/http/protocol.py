"""uvicorn's httptools protocol with a header-read timeout and a header size limit (slow and
hostile clients: RELIABILITY.md), and a shutdown that answers requests that already arrived.

Hand-written because uvicorn (0.54) has neither for httptools: it times out only an idle
kept-alive connection, so a connection that sends nothing, or its request line and headers a byte
at a time (slowloris), stays open for good; and it buffers a request line and headers of any size
(uvicorn's size limit, `h11_max_incomplete_event_size`, exists for its h11 protocol only), so one
50 MB header held the event loop for seconds and a few of them hundreds of megabytes. The app
cannot help with either: it sees a request only once its headers are complete. nginx's
`client_header_timeout` and `large_client_header_buffers` are the model. An HTTP protocol class is
uvicorn's own extension point: `ml-prod-api serve` passes this one, the classic command selects it
with `--http ml_prod_api.http.protocol:HeaderTimeoutProtocol`.

At shutdown uvicorn closes at once every connection without a response in progress, also one
whose request is already in the socket's buffer or half parsed, and one accepted a moment ago
whose client is still writing its request: the kernel resets a socket closed with unread bytes,
and the client sees its request fail after its connect succeeded (RELIABILITY.md, graceful
shutdown). `shutdown` below answers those requests, with `Connection: close`.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import functools
import logging
import termios
from typing import Any

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from ml_prod_api.http.middleware import UNPARSEABLE_SCOPE_KEY
from ml_prod_api.metrics import UNMATCHED_ROUTE, serving_metrics

log = logging.getLogger("ml_prod_api.http")


def _envelope(code: str, message: str) -> bytes:
    """What follows the status line and uvicorn's default headers (Date): the one error envelope
    (http/errors.py), closing the connection. No request was parsed, so there is no request id."""
    body = orjson.dumps({"error": {"code": code, "message": message, "request_id": "-"}})
    return b"".join(
        [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


_UNPARSEABLE_REST = _envelope("bad_request", "the request is not valid HTTP/1.1")
_TIMEOUT_REST = _envelope(
    "request_timeout", "the request headers did not arrive in time (HEADER_READ_TIMEOUT_SECONDS)"
)


@functools.cache
def configured_limits() -> tuple[float, int]:
    """(HEADER_READ_TIMEOUT_SECONDS, MAX_HEADER_BYTES), read on a process's first connection
    (each worker is a spawned process of its own, and nothing reads the environment at import
    time)."""
    from ml_prod_api.settings import load_settings

    settings = load_settings()
    return settings.header_read_timeout_seconds, settings.max_header_bytes


@functools.cache
def _too_large_rest(limit: int) -> bytes:
    return _envelope(
        "headers_too_large",
        f"the request line and headers exceed {limit} bytes (MAX_HEADER_BYTES)",
    )


def _count_refusal(status: int) -> None:
    """A request refused before the app saw it, in `http_requests_total` as an unmatched route."""
    metrics = serving_metrics()
    if metrics is not None:
        metrics.observe_request(UNMATCHED_ROUTE, status, 0.0)


def _bytes_waiting(transport: asyncio.Transport) -> bool:
    """Whether bytes the event loop has not read yet wait in the connection's socket."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    count = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count, True)
    except OSError:
        return False
    return count[0] > 0


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """Close a connection whose request headers are not complete in time, or too large.

    The timer runs from the connection's start and, on a kept-alive connection, from the first
    byte of each later request (the idle time between requests is `TIMEOUT_KEEP_ALIVE`'s); it
    stops when the headers are complete (the body then has `BODY_READ_TIMEOUT_SECONDS`, in the
    app). A partial request is answered `408 request_timeout`; a connection that sent nothing is
    closed without an answer (a client that writes to it later would read an unasked-for 408 as
    the reply to its request).

    The bytes of a request line and headers are counted as they arrive; past `MAX_HEADER_BYTES`
    the request is answered `431 headers_too_large` and the connection closed, having buffered
    at most the limit and one read.
    """

    # Seconds; None: HEADER_READ_TIMEOUT_SECONDS from the settings.
    header_read_timeout_s: float | None = None
    # Bytes; None: MAX_HEADER_BYTES from the settings.
    max_header_bytes: int | None = None
    # Seconds from its accept that a connection without a request yet still gets, once the
    # server shuts down, for its request to begin. Its client connected a moment ago and is
    # writing the request; a connection silent for longer is a client's spare one, closed at
    # once. Bounded: uvicorn waits for these connections before the process exits.
    fresh_connection_grace_s: float = 1.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        timeout, limit = self.header_read_timeout_s, self.max_header_bytes
        if timeout is None or limit is None:
            configured_timeout, configured_limit = configured_limits()
            timeout = configured_timeout if timeout is None else timeout
            limit = configured_limit if limit is None else limit
        self._header_timeout_s = timeout
        self._max_header_bytes = limit
        self._header_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # of the request line and headers being read
        self._heads_completed = 0
        self._head_started = False  # a request's first byte is parsed, its headers are not
        self._made_at = 0.0  # loop time of the accept
        self._shutting_down = False
        self._shutdown_timer: asyncio.TimerHandle | None = None

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        self._made_at = self.loop.time()
        self._header_timer = self.loop.call_later(self._header_timeout_s, self._headers_late)

    def data_received(self, data: bytes) -> None:
        completed = self._heads_completed
        super().data_received(data)
        if self._header_timer is not None and not self.transport.is_closing():
            # Still reading a request's head. A read that also completed an earlier head is not
            # counted (how much of it is the new head is unknown; at most one read).
            self._head_bytes = (
                self._head_bytes + len(data) if self._heads_completed == completed else 0
            )
            if self._head_bytes > self._max_header_bytes:
                self._refuse_large_head()
                return
        # Bytes that begin no request (a bare CRLF between requests, which the parser skips)
        # still cancel uvicorn's keep-alive timer, and then no timer at all would be left: time
        # them like a request's headers. A few attribute reads per chunk.
        if (
            self._header_timer is None
            and self.timeout_keep_alive_task is None
            and self.cycle is not None
            and self.cycle.response_complete
            and not self.transport.is_closing()
        ):
            self._header_timer = self.loop.call_later(self._header_timeout_s, self._headers_late)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True
        self._cancel_shutdown_timer()
        if self._header_timer is None:  # a later request on a kept-alive connection
            self._header_timer = self.loop.call_later(self._header_timeout_s, self._headers_late)

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        self._head_bytes = 0
        self._heads_completed += 1
        self._head_started = False
        super().on_headers_complete()
        if self._shutting_down and self.cycle is not None:
            self.cycle.keep_alive = False  # answered with `Connection: close`, then closed

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        self._cancel_shutdown_timer()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """The server is shutting down: close this connection once no request is left for it.

        A response in progress is finished with `Connection: close` (as uvicorn does). So is a
        request that has begun to arrive or waits in the socket's buffer: its client sent it
        before the connection was closed, so it is answered. A connection that has had no
        request yet gets until `fresh_connection_grace_s` after its accept for one to begin. An
        idle kept-alive connection is closed at once (a client that writes to it at that instant
        reads a reset: the race of every keep-alive close, RFC 9112 section 9.3.1).
        """
        self._shutting_down = True
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            super().shutdown()
            return
        if self._head_started or _bytes_waiting(self.transport):
            return  # the header timer bounds the wait for the rest of the head
        if self.cycle is None:
            left = self._made_at + self.fresh_connection_grace_s - self.loop.time()
            if left > 0:
                self._shutdown_timer = self.loop.call_later(left, self._close_if_no_request)
                return
        self.transport.close()

    def _close_if_no_request(self) -> None:
        self._shutdown_timer = None
        if not self._head_started and self.cycle is None and not self.transport.is_closing():
            self.transport.close()

    def _cancel_shutdown_timer(self) -> None:
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
            self._shutdown_timer = None

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request began while the previous one is still being answered: let
            # that answer finish, then close (as uvicorn's own `shutdown` does).
            self.cycle.keep_alive = False
            return
        started = self.scope is not None  # uvicorn sets it on a request's first byte
        log.info(
            "request headers not complete in time: connection closed",
            extra={
                "event": "header_read_timeout",
                "client": self.client[0] if self.client else None,
                "request_started": started,
            },
        )
        if started:
            _count_refusal(408)
            head = [b"HTTP/1.1 408 Request Timeout\r\n"]
            head += [b"%s: %s\r\n" % header for header in self.server_state.default_headers]
            self.transport.write(b"".join(head) + _TIMEOUT_REST)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes it cannot parse (a bad request line, header or chunk size),
        in the envelope instead of plain text, logged and counted: uvicorn only writes a warning
        without the client, and the app never hears of a request that did not parse."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The body of a request the app is reading: its access line and metric record 400.
            cycle.scope[UNPARSEABLE_SCOPE_KEY] = True  # type: ignore[literal-required]
        else:
            log.info(
                "request could not be parsed: answered 400 and closed",
                extra={
                    "event": "http_parse_error",
                    "client": self.client[0] if self.client else None,
                },
            )
            _count_refusal(400)
        self._stop_header_timer()
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        head += [b"%s: %s\r\n" % header for header in self.server_state.default_headers]
        self.transport.write(b"".join(head) + _UNPARSEABLE_REST)
        self.transport.close()

    def _refuse_large_head(self) -> None:
        self._stop_header_timer()
        log.info(
            "request headers too large: refused and closed",
            extra={
                "event": "headers_too_large",
                "client": self.client[0] if self.client else None,
                "limit_bytes": self._max_header_bytes,
            },
        )
        _count_refusal(431)
        head = [b"HTTP/1.1 431 Request Header Fields Too Large\r\n"]
        head += [b"%s: %s\r\n" % header for header in self.server_state.default_headers]
        self.transport.write(b"".join(head) + _too_large_rest(self._max_header_bytes))
        self.transport.close()
