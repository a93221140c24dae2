"""A cap on the requests per client whose body is still arriving (pure ASGI).

A request takes an in-flight slot only once its body is in (`AdmissionMiddleware`), so a body
sent a byte a second costs nothing of the model; it still costs a connection, a file descriptor
and a timer until `BODY_READ_TIMEOUT_SECONDS`. One client opening hundreds of them could use up
the process's descriptors, and then every other client's connection is dropped unanswered (the
server cannot even accept it). Beyond `MAX_BODY_READERS_PER_CLIENT` such requests from one
client, a new one is answered `429 too_many_uploads` at once and its connection closed, before
any of its body is read: the descriptor comes back at once.

The client is the one the rate limiter charges (`caller_identity`): the API key's name when keys
are on (this runs after the key check, so a request without a valid key never counts), else the
client address after trusted-proxy handling, so a client cannot pick its own count with
`X-Forwarded-For`. nginx's `limit_conn` per address is the model; this counts only the
connections that are sending a body, which a well-behaved client holds for microseconds. Counts
are per process, kept only for clients with a body arriving.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_prod_api.http.auth import caller_identity
from ml_prod_api.http.errors import send_error


def _declares_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
        if name == b"transfer-encoding":
            return True
    return False


class BodyReaderCap:
    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.reading: dict[str, int] = {}  # client -> its requests whose body is arriving

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _declares_body(scope):
            await self.app(scope, receive, send)
            return
        client = caller_identity(scope)
        if self.reading.get(client, 0) >= self.limit:
            # Close the connection: its unread body would otherwise be parsed as the next request.
            await send_error(
                send,
                429,
                "too_many_uploads",
                f"this client already has {self.limit} requests whose body is still arriving "
                "(MAX_BODY_READERS_PER_CLIENT); finish sending those first",
                [(b"retry-after", b"1"), (b"connection", b"close")],
            )
            return
        self.reading[client] = self.reading.get(client, 0) + 1
        counted = True

        def release() -> None:
            nonlocal counted
            if counted:
                counted = False
                left = self.reading[client] - 1
                if left:
                    self.reading[client] = left
                else:
                    del self.reading[client]

        async def watched_receive() -> Message:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                release()  # the body is in, or the client left
            return message

        try:
            await self.app(scope, watched_receive, send)
        finally:
            release()
