"""A small HTTP/1.1 load generator on raw asyncio streams, for the reliability drills.

wrk and hey report aggregates; the drills need every request's fate: its status, its error code,
its latency, whether it was refused at connect (clean) or lost after it was sent (a failure),
and its request id to match against the server's access log. A full HTTP client costs several
times more CPU per request than the server's own work on this shared two-core machine, so this
speaks just enough HTTP/1.1 (Content-Length bodies, keep-alive, `Connection: close`) to do that.

Open loop (`open_loop`): requests start at a fixed rate whatever the server does, the way
independent users arrive; a request that finds every connection busy opens a new one up to
`max_conns`, and beyond that is counted as `unsent` (the generator could not keep up), never
queued silently. Closed loop (`closed_loop`): N workers each send the next request when the last
one finished, the way a capacity measurement does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# How a request ended when no HTTP response came back.
REFUSED = "connect_refused"  # nothing was sent: the port is closed (clean for a load balancer)
CONNECT_FAILED = "connect_failed"  # another connect error (timeout, reset during connect)
LOST = "lost"  # the request was sent and the connection ended without a response
TIMEOUT = "timeout"  # no response within the client's timeout
STALE = "stale_keepalive"  # an idle keep-alive connection was closed by the server just as
# this request was written to it; no byte came back (the server never read it)


@dataclass(slots=True)
class Request:
    method: str
    path: str
    body: bytes = b""
    kind: str = "single"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Result:
    kind: str
    started: float  # time.monotonic() when the request was due (open loop) or sent
    latency: float  # seconds until the whole response was read, or until the failure
    status: int  # 0 when no HTTP response came back
    error: str | None = None  # REFUSED, CONNECT_FAILED, LOST, TIMEOUT, STALE
    code: str | None = None  # the error envelope's code, for non-2xx answers
    retry_after: str | None = None
    request_id: str = ""
    reused: bool = False  # sent on a kept-alive connection
    # Seconds from `started` until the request was written: the generator's own lag (a busy
    # client, a connection being opened). `latency - send_lag` is what the network and the
    # server took; open-loop latency from the due time is what a user would see.
    send_lag: float = 0.0
    # The connection's local port: to match a request with a server-side trace of connections.
    local_port: int = 0


@dataclass
class Stats:
    """Counters of one run; `results` holds every request (keep runs bounded)."""

    results: list[Result] = field(default_factory=list)
    unsent: int = 0
    connections_opened: int = 0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


class _Conn:
    __slots__ = ("reader", "writer", "used", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = 0
        self.idle_since = 0.0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Client:
    """Keep-alive connections to one host:port, opened on demand up to `max_conns`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_conns: int = 256,
        timeout_s: float = 30.0,
        idle_timeout_s: float = 4.0,
        fresh_connections: bool = False,
        stats: Stats | None = None,
    ) -> None:
        self.host = host
        self.fresh_connections = fresh_connections  # one connection per request
        # Idle connections older than this are closed instead of reused: it must be shorter
        # than the server's TIMEOUT_KEEP_ALIVE (5 s), or a request can be written to a
        # connection the server is closing at that instant (the keep-alive race; RELIABILITY.md).
        self.idle_timeout_s = idle_timeout_s
        self.port = port
        self.max_conns = max_conns
        self.timeout_s = timeout_s
        self.stats = stats or Stats()
        self._idle: deque[_Conn] = deque()
        self._open = 0
        self._ids = itertools.count()
        self.id_prefix = f"rel{random.randrange(16**6):06x}-"

    @property
    def busy(self) -> int:
        return self._open - len(self._idle)

    async def close(self) -> None:
        while self._idle:
            self._idle.popleft().close()

    def _encode(self, req: Request, request_id: str) -> bytes:
        head = [
            f"{req.method} {req.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"X-Request-ID: {request_id}",
        ]
        if req.body or req.method == "POST":
            head.append("Content-Type: application/json")
            head.append(f"Content-Length: {len(req.body)}")
        head.extend(f"{k}: {v}" for k, v in req.headers)
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + req.body

    async def send(self, req: Request, started: float | None = None) -> Result:
        """Send one request; never raises for network trouble (it is recorded in the Result)."""
        request_id = f"{self.id_prefix}{next(self._ids)}"
        t0 = time.monotonic()
        due = t0 if started is None else started
        result = Result(kind=req.kind, started=due, latency=0.0, status=0, request_id=request_id)
        conn: _Conn | None = None
        while self._idle and t0 - self._idle[0].idle_since > self.idle_timeout_s:
            self._idle.popleft().close()  # the oldest idle ones sit at the left end
            self._open -= 1
        if self._idle:
            conn = self._idle.pop()  # the most recently used: least likely to have timed out
            result.reused = True
        else:
            self._open += 1
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.timeout_s
                )
            except ConnectionRefusedError:
                self._open -= 1
                result.error = REFUSED
                result.latency = time.monotonic() - due
                self.stats.results.append(result)
                return result
            except (OSError, TimeoutError):
                self._open -= 1
                result.error = CONNECT_FAILED
                result.latency = time.monotonic() - due
                self.stats.results.append(result)
                return result
            self.stats.connections_opened += 1
            conn = _Conn(reader, writer)
        sockname = conn.writer.get_extra_info("sockname")
        result.local_port = sockname[1] if sockname else 0
        keep = False
        got_bytes = False
        try:
            result.send_lag = time.monotonic() - due
            conn.writer.write(self._encode(req, request_id))
            async with asyncio.timeout(self.timeout_s):
                head = await conn.reader.readuntil(b"\r\n\r\n")
                got_bytes = True
                status, length, close, retry_after = _parse_head(head)
                body = await conn.reader.readexactly(length) if length else b""
            result.status = status
            result.retry_after = retry_after
            if status >= 400:
                result.code = _error_code(body)
            keep = not close and not self.fresh_connections
        except TimeoutError:
            result.error = TIMEOUT
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            partial = got_bytes
            if isinstance(conn, _Conn) and not partial and result.reused and conn.used > 0:
                # Written to a kept-alive connection the server had just closed: the bytes were
                # never read (RFC 9112 9.3.1 lets a client retry such a request).
                result.error = STALE
            else:
                result.error = LOST
        finally:
            result.latency = time.monotonic() - due
            conn.used += 1
            if keep:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:
                conn.close()
                self._open -= 1
        self.stats.results.append(result)
        return result


def _parse_head(head: bytes) -> tuple[int, int, bool, str | None]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError("not an HTTP response")
    status = int(parts[1])
    length = 0
    close = parts[0] == b"HTTP/1.0"
    retry_after = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
        elif name == b"retry-after":
            retry_after = value.strip().decode("latin-1")
        elif name == b"transfer-encoding":
            raise ValueError("chunked responses are not expected from this service")
    return status, length, close, retry_after


def _error_code(body: bytes) -> str | None:
    try:
        envelope = json.loads(body)
    except ValueError:
        return None
    error = envelope.get("error") if isinstance(envelope, dict) else None
    return error.get("code") if isinstance(error, dict) else None


async def open_loop(
    client: Client,
    make: Callable[[int], Request],
    rate: float,
    duration_s: float,
    *,
    drain_s: float = 30.0,
) -> Stats:
    """Start `rate` requests per second for `duration_s`, then wait (at most `drain_s`) for the
    ones still in flight. Requests that find `max_conns` busy are counted as `unsent`."""
    stats = client.stats
    tasks: set[asyncio.Task[Result]] = set()
    t0 = time.monotonic()
    total = int(rate * duration_s)
    started = 0
    while started < total:
        now = time.monotonic()
        due = min(total, int((now - t0) * rate) + 1)
        while started < due:
            when = t0 + started / rate
            if len(tasks) < client.max_conns:  # one connection per request in flight
                task = asyncio.create_task(client.send(make(started), started=when))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            else:
                stats.unsent += 1
            started += 1
        await asyncio.sleep(max(0.0, t0 + started / rate - time.monotonic()))
    if tasks:
        await asyncio.wait(set(tasks), timeout=drain_s)
    for task in list(tasks):
        task.cancel()
    return stats


async def closed_loop(
    client: Client,
    make: Callable[[int], Request],
    workers: int,
    duration_s: float,
    *,
    stop: asyncio.Event | None = None,
    max_requests: int | None = None,
) -> Stats:
    """`workers` loops, each sending its next request when the last one is answered, until
    `duration_s` passed, `stop` is set, or `max_requests` were sent."""
    counter = itertools.count()
    end = time.monotonic() + duration_s

    async def worker() -> None:
        while time.monotonic() < end and not (stop is not None and stop.is_set()):
            i = next(counter)
            if max_requests is not None and i >= max_requests:
                return
            result = await client.send(make(i))
            if result.error in (REFUSED, CONNECT_FAILED):
                await asyncio.sleep(0.01)  # the port is closed: do not spin

    await asyncio.gather(*(worker() for _ in range(workers)))
    return client.stats
