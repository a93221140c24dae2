"""`ml-prod-api serve`: uvicorn with this service's protocol, logging, workers and drain."""

from __future__ import annotations

import argparse
import math
import signal
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve the HTTP API (settings from the environment)"
    )
    parser.add_argument("--host", default=None, help="listen address (default: HOST or 0.0.0.0)")
    parser.add_argument("--port", type=int, default=None, help="port (default: PORT or 8000)")
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: WEB_CONCURRENCY or 1)"
    )
    parser.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    # Imported here: `ml-prod-api score` and `--help` need none of the server.
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    class _Supervisor(Multiprocess):
        """uvicorn's supervisor, closing its own copy of the listening socket as it stops.

        Each worker, at the end of its drain, stops the kernel taking new connections on the
        listening socket and accepts what is queued (`http/listeners.py`), but only on a socket
        its parent does not hold too: the supervisor keeps it to start new workers, and a filter
        on a socket it keeps serving (uvicorn replaces workers one at a time on SIGHUP) would
        stop them all. Once the whole server stops the supervisor needs it no more; with its
        copy open, connections queued after the workers closed theirs were reset at its exit.
        """

        def terminate_all(self) -> None:
            for listener in self.sockets:
                listener.close()
            super().terminate_all()

    from ml_prod_api.http.protocol import HeaderTimeoutProtocol
    from ml_prod_api.logs import configure_logging
    from ml_prod_api.multiproc import metrics_directory
    from ml_prod_api.settings import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"ml-prod-api: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    workers = args.workers or settings.web_concurrency
    config = uvicorn.Config(
        "ml_prod_api.api:app",
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=workers,
        # httptools with a header-read timeout (HEADER_READ_TIMEOUT_SECONDS, read by each worker
        # process): uvicorn has none of its own, so slowloris connections would stay open.
        http=HeaderTimeoutProtocol,
        log_config=None,  # the app configures JSON logging for uvicorn's loggers too
        access_log=False,  # our middleware writes the access line
        # Rounded up, never to None: uvicorn reads None as "wait for in-flight requests forever",
        # so `int(0.5) or None` would let one slow client hold the drain for good.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_seconds),
        timeout_keep_alive=settings.timeout_keep_alive,
        server_header=False,
        # X-Forwarded-For is handled in the app, from TRUSTED_PROXIES only; uvicorn's own
        # middleware would trust 127.0.0.1 by default (and costs a pass per request).
        proxy_headers=False,
        # With several workers, uvicorn's supervisor kills a worker that does not answer its
        # ping within this many seconds, and it starts answering only once the spawned
        # interpreter has imported everything. Its 5 s default is shorter than that start on a
        # CPU-starved host (a pod at its CPU limit), where the workers were killed and replaced
        # in a loop and never became ready.
        timeout_worker_healthcheck=30,
    )
    with metrics_directory(workers):
        # Uvicorn re-raises the signal that stopped it once it has restored the previous
        # handler, so a drained SIGTERM would end the process with status 143; a no-op previous
        # handler lets a clean drain exit 0, as orchestrators expect.
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
        if workers > 1:
            sock = config.bind_socket()
            supervisor = _Supervisor(config, sockets=[sock])
            supervisor.run()
            # Uvicorn's supervisor stops when a worker fails to start (STARTUP_FAIL_FAST and a
            # broken model) but returns normally; the exit status must say it failed.
            if any(p.process.exitcode == STARTUP_FAILURE for p in supervisor.processes):
                return STARTUP_FAILURE
            return 0
        server = uvicorn.Server(config)
        server.run()
        if not server.started:
            return STARTUP_FAILURE  # start-up failed (e.g. STARTUP_FAIL_FAST and a broken model)
        return 0
