"""A header-read timeout on uvicorn's httptools protocol (slow clients: RELIABILITY.md).

Hand-written because uvicorn (0.54) has no header timeout: it times out only an idle kept-alive
connection, so a connection that sends nothing, or its request line and headers a byte at a time
(slowloris), stays open for good; and the app cannot help, it sees a request only once its headers
are complete. nginx's `client_header_timeout` is the model. An HTTP protocol class is uvicorn's own
extension point: `ml-prod-api serve` passes this one, the classic command selects it with
`--http ml_prod_api.http.protocol:HeaderTimeoutProtocol`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

log = logging.getLogger("ml_prod_api.http")

# The one error envelope (http/errors.py); no request was parsed, so there is no request id.
_BODY = orjson.dumps(
    {
        "error": {
            "code": "request_timeout",
            "message": "the request headers did not arrive in time (HEADER_READ_TIMEOUT_SECONDS)",
            "request_id": "-",
        }
    }
)
# What follows the status line and uvicorn's default headers (Date).
_REST = b"".join(
    [
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(_BODY),
        b"connection: close\r\n\r\n",
        _BODY,
    ]
)


@functools.cache
def configured_timeout() -> float:
    """HEADER_READ_TIMEOUT_SECONDS, read on a process's first connection (each worker is a spawned
    process of its own, and nothing reads the environment at import time)."""
    from ml_prod_api.settings import load_settings

    return load_settings().header_read_timeout_seconds


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """Close a connection whose request headers are not complete in time.

    The timer runs from the connection's start and, on a kept-alive connection, from the first
    byte of each later request (the idle time between requests is `TIMEOUT_KEEP_ALIVE`'s); it
    stops when the headers are complete (the body then has `BODY_READ_TIMEOUT_SECONDS`, in the
    app). A partial request is answered `408 request_timeout`; a connection that sent nothing is
    closed without an answer (a client that writes to it later would read an unasked-for 408 as
    the reply to its request).
    """

    # Seconds; None: HEADER_READ_TIMEOUT_SECONDS from the settings.
    header_read_timeout_s: float | None = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        timeout = self.header_read_timeout_s
        self._header_timeout_s = timeout if timeout is not None else configured_timeout()
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(self._header_timeout_s, self._headers_late)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
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
        if self._header_timer is None:  # a later request on a kept-alive connection
            self._header_timer = self.loop.call_later(self._header_timeout_s, self._headers_late)

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

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
            head = [b"HTTP/1.1 408 Request Timeout\r\n"]
            head += [b"%s: %s\r\n" % header for header in self.server_state.default_headers]
            self.transport.write(b"".join(head) + _REST)
        self.transport.close()
