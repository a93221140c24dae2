"""One JSON error envelope for every error, and the one place that maps errors to statuses.

`{"error": {"code": "<stable_snake_case>", "message": "...", "request_id": "..."}}`. Messages name
the field and the limit and never echo submitted input. FastAPI's default 422 does echo it, and
never answers here: no route lets FastAPI parse its input (the prediction routes parse their
bodies with `validation.parse_body`, whose errors are described below).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from ml_prod_api.errors import (
    CallerGone,
    DeadlineExceeded,
    ExplainNotSupported,
    InferenceError,
    ModelNotReady,
    Overloaded,
    RequestTooCostly,
    ServiceError,
)
from ml_prod_api.http.state import app_state
from ml_prod_api.logs import request_id_var

log = logging.getLogger("ml_prod_api.http")

# ServiceError subclass -> HTTP status. Extend here, nowhere else.
STATUS_BY_ERROR: dict[type[ServiceError], int] = {
    CallerGone: 499,  # nginx's "client closed request": logged and counted, read by nobody
    ModelNotReady: 503,
    Overloaded: 429,
    # Too much work for its deadline on its own: a status clients do not retry (RFC 9110 15.5.14)
    RequestTooCostly: 413,
    DeadlineExceeded: 503,
    InferenceError: 500,
    ExplainNotSupported: 422,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An error raised by the HTTP layer itself (validation beyond the schema)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Sequence[Mapping[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details) if details else None
        self.headers = dict(headers) if headers else None


def error_body(
    code: str, message: str, details: Sequence[Mapping[str, str]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "request_id": request_id_var.get() or "-",
    }
    if details:
        body["details"] = [dict(d) for d in details]
    return {"error": body}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: Sequence[Mapping[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Send the envelope straight from pure ASGI middleware (before or outside FastAPI)."""
    body = orjson.dumps(error_body(code, message))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- validation errors ---------------------------------------------------------------------------


def _field_name(loc: Sequence[Any]) -> str:
    parts = [p for p in loc if p != "body"]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or "body"


def _describe(err: Mapping[str, Any], allowed: Sequence[str]) -> tuple[str, str, str]:
    """(field, code, message) for one pydantic error, built without its `input`."""
    kind = err.get("type", "")
    loc = err.get("loc", ())
    if kind == "extra_forbidden":
        # The unknown key is caller data: name the allowed fields instead of echoing it.
        return (
            "body",
            "unknown_field",
            (f"request body has a field that is not allowed (allowed: {', '.join(allowed)})"),
        )
    field = _field_name(loc)
    if kind == "json_invalid":
        pos = loc[-1] if loc and isinstance(loc[-1], int) else None
        where = f" at byte {pos}" if pos is not None else ""
        return "body", "invalid_json", f"request body is not valid JSON{where}"
    if kind == "missing":
        if field == "body":
            return "body", "missing_body", "request body is required"
        return field, "missing_field", f"field '{field}' is required"
    if kind in ("model_attributes_type", "dict_type", "model_type"):
        return "body", "invalid_body", "request body must be a JSON object"
    if kind == "string_type":
        return field, "invalid_type", f"field '{field}' must be a string"
    if kind == "list_type":
        return field, "invalid_type", f"field '{field}' must be a list of strings"
    if kind == "bool_type":
        return field, "invalid_type", f"field '{field}' must be true or false"
    # pydantic's `msg` describes the rule, not the value (e.g. "Input should be ..."), and `ctx`
    # holds only the limit, so it is safe to pass on.
    return field, "validation_error", f"field '{field}': {err.get('msg', 'invalid value')}"


def validation_error(errors: Sequence[Mapping[str, Any]], allowed: Sequence[str]) -> ApiError:
    """The 422 for pydantic errors: the first one's code and message, up to 20 in `details`."""
    described = list(dict.fromkeys(_describe(err, allowed) for err in errors))
    field, code, message = described[0]
    details = [{"field": f, "code": c, "message": m} for f, c, m in described[:20]]
    if len(described) > 1:
        message = f"{message} (and {len(described) - 1} more error(s))"
    return ApiError(422, code, message, details=details)


async def _api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status, exc.code, exc.message, details=exc.details, headers=exc.headers
    )


async def _service_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    status = next((code for cls, code in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 500)
    headers: dict[str, str] | None = None
    if isinstance(exc, Overloaded):
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif isinstance(exc, ModelNotReady):
        headers = {"Retry-After": "5"}
    if status >= 500:
        log.warning("request failed", extra={"error_code": exc.code, "status_code": status})
    return error_response(status, exc.code, exc.message, headers=headers)


def _http_message(status: int, request: Request, detail: Any, limit: int) -> str:
    if status == 404:
        return "no route matches this path"
    if status == 405:
        return f"method {request.method} is not allowed on this path"
    if status == 413:
        return f"request body exceeds the limit of {limit} bytes (MAX_BODY_BYTES)"
    # Starlette's details for other statuses are fixed phrases, never request data.
    return str(detail) if isinstance(detail, str) else "request failed"


async def _http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _HTTP_CODES.get(status, "http_error")
    limit = app_state(request.app).settings.body_limit
    return error_response(
        status, code, _http_message(status, request, exc.detail, limit), headers=exc.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error_handler)
    app.add_exception_handler(ServiceError, _service_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
