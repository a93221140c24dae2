"""The end of a drain on loopback sockets: the listening socket stops taking new connections
while the queued ones are accepted and answered (`http/listeners.py`), requests that reached a
connection before the server's shutdown are answered (`HeaderTimeoutProtocol.shutdown`), and
responses say `Connection: close` once the drain began (`CloseWhileDrainingMiddleware`).

Linux only (a socket filter and TCP_INFO); no timing assertions: a wait is bounded only so that a
broken mechanism fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import errno
import select
import socket
import sys
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from ml_prod_api.http import listeners
from ml_prod_api.http.protocol import HeaderTimeoutProtocol
from ml_prod_api.lifecycle import CloseWhileDrainingMiddleware

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="a Linux socket filter")

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def _answer_ok(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


class FixedLimitsProtocol(HeaderTimeoutProtocol):
    # Fixed limits: the tests do not read the settings from the environment.
    header_read_timeout_s = 30.0
    max_header_bytes = 16384
    fresh_connection_grace_s = 60.0


class QuickFreshGrace(FixedLimitsProtocol):
    fresh_connection_grace_s = 0.2


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def _connect_nowait(address: tuple[str, int]) -> socket.socket:
    client = socket.socket()
    client.setblocking(False)
    assert client.connect_ex(address) == errno.EINPROGRESS
    return client


def _connect_outcome(client: socket.socket, wait_s: float = 20.0) -> str:
    """How a non-blocking connect ended: `connected`, `refused`, another errno, or `pending`."""
    _, writable, _ = select.select([], [client], [], wait_s)
    if not writable:
        return "pending"
    error = client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error == 0:
        return "connected"
    return "refused" if error == errno.ECONNREFUSED else errno.errorcode[error]


def _read_all(client: socket.socket, wait_s: float = 20.0) -> bytes:
    """Everything until the server closes the connection (a reset counts as the end)."""
    client.setblocking(True)
    client.settimeout(wait_s)
    chunks = []
    try:
        while chunk := client.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        chunks.append(b"<reset>")
    return b"".join(chunks)


def test_the_filter_stops_new_handshakes_and_keeps_the_queued_connections() -> None:
    sock = _listener()
    address = sock.getsockname()
    queued = [socket.create_connection(address) for _ in range(3)]
    assert listeners.accept_queue_length(sock) == 3  # TCP_INFO's tcpi_unacked on a listener

    listeners.refuse_new_connections(sock)
    late = _connect_nowait(address)  # its SYN is dropped: no handshake, nothing queued
    for client in queued:
        server_side, _ = sock.accept()
        client.sendall(b"ping")
        assert server_side.recv(4) == b"ping"  # queued before the filter: accepted and usable
        server_side.close()
        client.close()
    assert listeners.accept_queue_length(sock) == 0

    sock.close()
    # The client retransmits its SYN and meets a closed port: refused, never reset after a
    # successful connect (which is what a handshake completed before the close would give).
    assert _connect_outcome(late) == "refused"
    late.close()


def test_quiescing_answers_the_queued_connections_and_refuses_new_ones() -> None:
    config = Config(_answer_ok, lifespan="off", log_config=None)
    state = ServerState()
    sock = _listener()
    address = sock.getsockname()

    async def scenario() -> tuple[listeners.QuiesceResult, list[bytes], str]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: FixedLimitsProtocol(config=config, server_state=state, app_state={}),
            sock=sock,
            start_serving=False,
        )
        # Connected and sent their request while nothing accepted: queued in the kernel.
        queued = [socket.create_connection(address) for _ in range(3)]
        for client in queued:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        quiesce = asyncio.create_task(listeners.quiesce_listeners(max_wait_s=30))
        await asyncio.sleep(0)  # its first step attaches the filter and counts the queue
        late = _connect_nowait(address)
        await server.start_serving()
        result = await quiesce
        server.close()  # closes the listening socket, as uvicorn's shutdown does
        await server.wait_closed()
        answers = await asyncio.gather(*(asyncio.to_thread(_read_all, c) for c in queued))
        outcome = await asyncio.to_thread(_connect_outcome, late)
        for client in [*queued, late]:
            client.close()
        return result, answers, outcome

    result, answers, late = asyncio.run(scenario())
    assert (result.quiesced, result.queued_at_start, result.left_queued) == (1, 3, 0)
    assert all(a.startswith(b"HTTP/1.1 200 OK") for a in answers), answers
    assert late == "refused"


def test_quiescing_leaves_a_socket_the_parent_process_holds() -> None:
    # A worker of a multi-process server shares its listening socket with the supervisor; a
    # filter on it would stop every worker. The parent holds it here through an inherited fd.
    import subprocess

    sock = _listener()
    sock.set_inheritable(True)
    code = (
        "import asyncio, socket\n"
        "from ml_prod_api.http import listeners\n"
        "r = asyncio.run(listeners.quiesce_listeners(max_wait_s=1))\n"
        "print(r.quiesced, r.shared)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code],
        pass_fds=[sock.fileno()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert child.stdout.split() == ["0", "1"]
    # Still takes new connections.
    with socket.create_connection(sock.getsockname()):
        assert listeners.accept_queue_length(sock) == 1
    sock.close()


def _read_answer(client: socket.socket) -> bytes:
    client.settimeout(20)
    data = b""
    while not data.endswith(b"ok"):
        chunk = client.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _shutdown_conversations(
    protocol: type[HeaderTimeoutProtocol], *conversations: tuple[str, bytes, bytes]
) -> list[bytes]:
    """One connection per conversation `(kind, before, after)`: `before` is written just before
    the server's shutdown, `after` just after it; with kind `answered`, `before` is a request
    whose answer is read before the shutdown. Returns what each client read after the shutdown
    until the server closed the connection."""
    config = Config(_answer_ok, lifespan="off", log_config=None)
    state = ServerState()

    async def scenario() -> list[bytes]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: protocol(config=config, server_state=state, app_state={}), "127.0.0.1", 0
        )
        address = server.sockets[0].getsockname()
        clients = [socket.create_connection(address) for _ in conversations]
        while len(state.connections) < len(clients):  # accepted
            await asyncio.sleep(0.01)
        for client, (kind, before, _) in zip(clients, conversations, strict=True):
            if kind == "answered":
                client.sendall(before)
                assert (await asyncio.to_thread(_read_answer, client)).endswith(b"ok")
        for client, (kind, before, _) in zip(clients, conversations, strict=True):
            if kind != "answered" and before:
                client.sendall(before)
        # What uvicorn's Server.shutdown does, with no turn of the event loop in between.
        server.close()
        for connection in list(state.connections):
            connection.shutdown()
        for client, (_, _, after) in zip(clients, conversations, strict=True):
            if after:
                client.sendall(after)
        answers = await asyncio.gather(*(asyncio.to_thread(_read_all, c) for c in clients))
        for client in clients:
            client.close()
        return list(answers)

    return asyncio.run(scenario())


def test_shutdown_answers_requests_that_reached_the_connection_and_closes_after() -> None:
    sent_before, sent_after, began_before, kept_alive = _shutdown_conversations(
        FixedLimitsProtocol,
        ("fresh", REQUEST, b""),  # written before the shutdown, not read yet by the server
        ("fresh", b"", REQUEST),  # accepted before the shutdown, written after it
        ("fresh", REQUEST[:10], REQUEST[10:]),  # begun before, finished after
        ("answered", REQUEST, b""),  # answered with keep-alive, then idle
    )
    for answer in (sent_before, sent_after, began_before):
        head = answer.partition(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 200 OK"), answer
        assert b"connection: close" in head
        assert answer.endswith(b"ok")  # one answer, then closed
    # An idle kept-alive connection is closed at once, not after the 60 s a new connection may
    # wait for its first request.
    assert kept_alive == b""


def test_shutdown_closes_a_new_connection_that_sends_nothing() -> None:
    (silent,) = _shutdown_conversations(QuickFreshGrace, ("fresh", b"", b""))
    assert silent == b""


# --- Connection: close while draining ----------------------------------------------------------
def _response_headers(draining: bool, app_headers: list[tuple[bytes, bytes]]) -> list[Any]:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": app_headers})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    middleware = CloseWhileDrainingMiddleware(app, draining=lambda: draining)
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    asyncio.run(middleware(scope, receive, send))
    return list(sent[0]["headers"])


def test_responses_say_connection_close_once_the_drain_began() -> None:
    assert _response_headers(False, [(b"content-length", b"0")]) == [(b"content-length", b"0")]
    assert _response_headers(True, [(b"content-length", b"0")]) == [
        (b"content-length", b"0"),
        (b"connection", b"close"),
    ]
    # An app's own Connection header is left as it is.
    assert _response_headers(True, [(b"Connection", b"close")]) == [(b"Connection", b"close")]
