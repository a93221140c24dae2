"""A small round-robin HTTP/1.1 reverse proxy with active health checks, for the rolling-restart
drill. It behaves like the load balancer in front of the replicas:

- every `check_interval_s` it asks each backend's `/readyz`; only backends answering 200 get
  requests, so a draining replica (503) leaves the rotation within one interval, and its idle
  upstream connections are closed;
- a request whose connection to a backend is refused goes to the next backend (nothing was
  sent, so this is always safe);
- a request written to a kept-alive upstream connection that the backend had just closed, with
  no byte of answer, is resent once on a fresh connection (the backend never read it; nginx's
  `proxy_next_upstream error` does the same);
- anything else (a reset after the request was read, a timeout) is answered 502 and counted.

Only what this service speaks: Content-Length bodies, no chunked encoding, no upgrades.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter, deque
from dataclasses import dataclass, field


@dataclass
class Backend:
    host: str
    port: int
    healthy: bool = False
    idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=deque)

    def drop_idle(self) -> None:
        while self.idle:
            _, writer = self.idle.popleft()
            writer.close()


class Upstream(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes, bool]:
    """(head, body, connection close) of one request or response with a Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    close = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    body = await reader.readexactly(length) if length else b""
    return head, body, close


class RoundRobinProxy:
    def __init__(
        self,
        backends: list[tuple[str, int]],
        *,
        check_interval_s: float = 0.1,
        timeout_s: float = 30.0,
    ) -> None:
        self.backends = [Backend(h, p) for h, p in backends]
        self.check_interval_s = check_interval_s
        self.timeout_s = timeout_s
        self.counts: Counter[str] = Counter()
        self.health_log: list[tuple[float, int, bool]] = []
        self._rr = itertools.count()
        self._server: asyncio.Server | None = None
        self._checker: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        await self._check_all()
        self._checker = asyncio.create_task(self._check_loop())
        return self.port

    async def close(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
        if self._server is not None:
            self._server.close()
        for b in self.backends:
            b.drop_idle()

    # --- health --------------------------------------------------------------------------------
    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval_s)
            await self._check_all()

    async def _check_all(self) -> None:
        await asyncio.gather(*(self._check(i, b) for i, b in enumerate(self.backends)))

    async def _check(self, index: int, backend: Backend) -> None:
        healthy = False
        try:
            async with asyncio.timeout(0.5):
                reader, writer = await asyncio.open_connection(backend.host, backend.port)
                writer.write(b"GET /readyz HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")
                head, _, _ = await _read_message(reader)
                healthy = head.startswith(b"HTTP/1.1 200")
                writer.close()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            healthy = False
        if healthy != backend.healthy:
            self.health_log.append((time.monotonic(), index, healthy))
            backend.healthy = healthy
            if not healthy:
                backend.drop_idle()

    # --- forwarding ----------------------------------------------------------------------------
    async def _pick(self) -> list[Backend]:
        """Healthy backends in round-robin order (waits up to 2 s for one)."""
        end = time.monotonic() + 2.0
        while True:
            healthy = [b for b in self.backends if b.healthy]
            if healthy:
                start = next(self._rr) % len(healthy)
                return healthy[start:] + healthy[:start]
            if time.monotonic() > end:
                return []
            await asyncio.sleep(0.01)

    async def _exchange(self, backend: Backend, request: bytes) -> tuple[bytes, bytes, bool]:
        reused = bool(backend.idle)
        if reused:
            reader, writer = backend.idle.pop()
        else:
            try:
                reader, writer = await asyncio.open_connection(backend.host, backend.port)
            except OSError:
                raise Upstream("refused") from None
        got = False
        try:
            writer.write(request)
            async with asyncio.timeout(self.timeout_s):
                head = await reader.readuntil(b"\r\n\r\n")
                got = True
                length, close = _length_close(head)
                body = await reader.readexactly(length) if length else b""
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            writer.close()
            if not got and reused and not isinstance(exc, TimeoutError):
                raise Upstream("stale") from None
            raise Upstream("failed") from None
        if close or not backend.healthy:
            writer.close()
        else:
            backend.idle.append((reader, writer))
        return head, body, close

    async def _forward(self, request: bytes) -> bytes:
        for backend in await self._pick():
            for _ in range(2):  # a stale kept-alive connection gets one fresh retry
                try:
                    head, body, _ = await self._exchange(backend, request)
                    self.counts["forwarded"] += 1
                    return head + body
                except Upstream as exc:
                    self.counts[f"retry_{exc.kind}"] += 1
                    if exc.kind == "stale":
                        continue
                    if exc.kind == "refused":
                        break  # next backend
                    self.counts["answered_502"] += 1
                    return _error(502)
        self.counts["answered_503_no_backend"] += 1
        return _error(503)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head, body, close = await _read_message(reader)
                except (asyncio.IncompleteReadError, OSError, ValueError):
                    return
                writer.write(await self._forward(head + body))
                await writer.drain()
                if close:
                    return
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def _length_close(head: bytes) -> tuple[int, bool]:
    length = 0
    close = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    return length, close


def _error(status: int) -> bytes:
    body = b'{"error": {"code": "proxy_error", "message": "from the drill proxy"}}'
    reason = {502: b"Bad Gateway", 503: b"Service Unavailable"}[status]
    return b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status,
        reason,
        len(body),
        body,
    )
