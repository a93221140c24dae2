"""Structured JSON logs (python-json-logger), one object per line on stdout.

The request id lives in a contextvar set by the request middleware, and a filter copies it onto
every record, so a log line written anywhere during a request can be joined to it. Uvicorn's own
loggers are routed through the same formatter; its access log is replaced by ours (which knows
the route template and the model version). Python warnings go through the logging module too
(`logging.captureWarnings`), so a library's warning is a JSON line like any other instead of two
plain-text lines on stderr. Raw input text is never passed to a logger.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_HANDLER_NAME = "ml_prod_api_json"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def make_formatter() -> OrjsonFormatter:
    # python-json-logger's orjson flavour: the same records, several times cheaper to encode
    # than the json module on the one-line-per-request path.
    return OrjsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="timestamp",  # ISO 8601, UTC, microseconds
        # Uvicorn attaches `color_message` (the message with ANSI colour codes) to its records
        # for its own coloured console formatter; in JSON it is noise with escape codes in it.
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],
    )


def configure_logging(level: str = "INFO") -> None:
    """Idempotent: replaces handlers on the root, `ml_prod_api` and uvicorn loggers."""
    # The records never show the caller's file and line, thread or process, so skip collecting
    # them on every record: the logging HOWTO's "Optimization" settings. With one access line
    # per request they are a measurable part of a prediction.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(make_formatter())
    handler.addFilter(RequestIdFilter())

    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != _HANDLER_NAME]
    # Keep pytest's capture handlers (they are not StreamHandlers to stdout/stderr).
    root.handlers = [h for h in root.handlers if type(h) is not logging.StreamHandler]
    root.addHandler(handler)
    root.setLevel(level)

    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
        lg.setLevel(level)
    # Our middleware writes the access line; uvicorn's would be plain text without the route.
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    access.disabled = True
    logging.getLogger("ml_prod_api").setLevel(level)
    # `warnings.warn` -> the `py.warnings` logger -> the JSON handler above.
    logging.captureWarnings(True)
