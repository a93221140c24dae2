"""`ml-prod-api serve` and `ml-prod-api score`."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ml_prod_api.settings import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"ml-prod-api: configuration error: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        "ml_prod_api.api:app",
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,  # the app configures JSON logging for uvicorn's loggers too
        access_log=False,  # our middleware writes the access line
        timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds) or None,
        server_header=False,
    )
    server = uvicorn.Server(config)
    # Uvicorn re-raises the signal that stopped it once it has restored the previous handler,
    # so a drained SIGTERM would end the process with status 143; a no-op previous handler lets
    # a clean drain exit 0, as orchestrators expect.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run()
    if not server.started:
        return 3  # start-up failed (e.g. STARTUP_FAIL_FAST and a broken model)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-prod-api", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the HTTP API (settings from the environment)")
    serve.add_argument("--host", default=None, help="listen address (default: HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, default=None, help="port (default: PORT or 8000)")
    serve.set_defaults(func=_serve)
    try:
        from ml_prod_api import scoring
    except ImportError:  # TEMP until scoring.py lands (issue 3)
        pass
    else:
        scoring.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
