"""Start-up and shutdown: load and warm the model, drain gracefully on SIGTERM.

On SIGTERM, readiness turns 503 at once while predictions are still accepted for
`DRAIN_GRACE_SECONDS` (the load balancer needs a few probe periods to stop sending), and every
response says `Connection: close`, so clients stop reusing connections that are about to close.
Then the listening sockets stop taking new connections while the ones already queued in the
kernel are accepted (`http/listeners.py`), and the server's own handler runs: it closes the
listening sockets, answers what already arrived on open connections (`http/protocol.py`), waits
for in-flight requests, and the lifespan's exit stops the model thread after the queued work is
done.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_prod_api.http.listeners import quiesce_listeners
from ml_prod_api.http.state import app_state
from ml_prod_api.serving import InferenceService, ReadyState
from ml_prod_api.settings import Settings

log = logging.getLogger("ml_prod_api.lifecycle")


class StartupError(RuntimeError):
    """Start-up failed and STARTUP_FAIL_FAST is set."""


Handler = Callable[[int, FrameType | None], Any]


class StartupFailureMiddleware:
    """Pure ASGI, lifespan scope only: a `StartupError` fails start-up without a traceback.

    Starlette answers any exception from the lifespan with `lifespan.startup.failed` carrying the
    whole formatted traceback, which uvicorn logs as one error record. A model that does not load
    under STARTUP_FAIL_FAST is an expected outcome whose reason is already logged once
    (`model_load_failed`), so the message is emptied: uvicorn then logs only "Application startup
    failed. Exiting." and the process exits non-zero. Any other exception keeps its traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_quietly(message: Message) -> None:
            # Starlette sends this message from inside its `except` block, so the exception
            # being handled is the one the lifespan raised.
            if message["type"] == "lifespan.startup.failed" and isinstance(
                sys.exc_info()[1], StartupError
            ):
                message = {"type": "lifespan.startup.failed", "message": ""}
            await send(message)

        await self.app(scope, receive, send_quietly)


class CloseWhileDrainingMiddleware:
    """Pure ASGI, HTTP only: once the drain has begun, every response says `Connection: close`.

    The server closes its idle kept-alive connections when the grace period ends, and a request
    written to one at that instant is lost unread (RFC 9112 section 9.3.1). Told to close after
    each answer during the grace period, clients and load balancers open a new connection for
    the next request instead, which the drain then either serves or refuses at connect. gunicorn
    and Go's net/http do the same once their shutdown begins; uvicorn only for the responses in
    progress when it closes the listener.
    """

    def __init__(self, app: ASGIApp, draining: Callable[[], bool]) -> None:
        self.app = app
        self.draining = draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.draining():
                headers = list(message.get("headers", ()))
                if not any(name.lower() == b"connection" for name, _ in headers):
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_closing)


def install_drain_handler(
    service: InferenceService, grace_s: float, loop: asyncio.AbstractEventLoop
) -> Callable[[], None]:
    """Wrap the server's SIGTERM handler with a grace period. Returns an undo function.

    Uvicorn installs its handler with `signal.signal` before the lifespan starts, so we can chain
    to it; if no Python handler is installed (not the main thread, or not under a server), this
    does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return lambda: None
    server_handler: Handler = previous
    fired = False
    handed_over = False
    closing: set[asyncio.Task[None]] = set()

    def hand_over(signum: int, frame: FrameType | None) -> None:
        nonlocal handed_over
        if not handed_over:
            handed_over = True
            server_handler(signum, frame)

    async def close_listeners(signum: int) -> None:
        try:
            result = await quiesce_listeners()
            log.info(
                "grace period over: new connections stopped, queued ones accepted",
                extra={
                    "event": "listeners_quiesced",
                    "listeners": result.quiesced,
                    "listeners_shared": result.shared,
                    "queued": result.queued_at_start,
                    "left_queued": result.left_queued,
                },
            )
        except OSError as exc:  # the kernel refused the filter: close as uvicorn alone would
            log.warning(
                f"could not stop new connections before closing: {exc}",
                extra={"event": "listeners_not_quiesced"},
            )
        finally:
            hand_over(signum, None)

    def end_of_grace(signum: int) -> None:
        # A fresh context: the signal may have interrupted a request, whose id would otherwise
        # label these log lines.
        task = loop.create_task(close_listeners(signum), context=contextvars.Context())
        closing.add(task)
        task.add_done_callback(closing.discard)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if fired:  # a second SIGTERM: stop waiting
            hand_over(signum, frame)
            return
        fired = True
        service.begin_drain()
        log.info("SIGTERM: draining", extra={"event": "drain_started", "grace_s": grace_s})
        loop.call_soon_threadsafe(loop.call_later, grace_s, end_of_grace, signum)

    signal.signal(signal.SIGTERM, on_sigterm)

    def undo() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, server_handler)

    return undo


def stop_timeout(service: InferenceService, settings: Settings) -> float:
    """How long to wait for the model thread: what is left of the drain's budget.

    After SIGTERM the whole shutdown gets DRAIN_GRACE_SECONDS + SHUTDOWN_TIMEOUT_SECONDS, and the
    server may already have spent most of it waiting for in-flight requests; a hung model call
    must not get the full SHUTDOWN_TIMEOUT_SECONDS again on top (with the defaults that would
    pass the 30 s after which Kubernetes kills the pod).
    """
    timeout = settings.shutdown_timeout_seconds
    if service.drain_started_at is None:
        return timeout
    budget_end = (
        service.drain_started_at + settings.drain_grace_seconds + settings.shutdown_timeout_seconds
    )
    return max(0.0, min(timeout, budget_end - time.monotonic()))


def make_lifespan(settings: Settings) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app_state(app)
        service = state.service
        log.info("starting", extra={"event": "startup", "settings": settings.redacted()})
        for old, new in settings.renamed_in_use:
            log.warning(
                f"setting {old} is deprecated: it was renamed {new}",
                extra={"event": "deprecated_setting", "old_name": old, "new_name": new},
            )
        service.start()
        if settings.startup_fail_fast:
            readiness = await service.wait_loaded()
            if readiness.state is ReadyState.FAILED:
                raise StartupError(f"model failed to load: {readiness.reason}")
        undo = install_drain_handler(
            service, settings.drain_grace_seconds, asyncio.get_running_loop()
        )
        try:
            yield
        finally:
            undo()
            stopped = await asyncio.get_running_loop().run_in_executor(
                None, service.stop, stop_timeout(service, settings)
            )
            state.metrics.close()
            if state.rate_limiter is not None:
                await state.rate_limiter.aclose()
            log.info("stopped", extra={"event": "shutdown", "clean": stopped})

    return lifespan
