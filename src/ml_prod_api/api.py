"""The app factory. `uvicorn ml_prod_api.api:app --app-dir src` serves `app = create_app()`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ml_prod_api import __version__
from ml_prod_api.http.auth import ApiKeyGuard, ApiKeyStore
from ml_prod_api.http.bodyreaders import BodyReaderCap
from ml_prod_api.http.docs import docs_router
from ml_prod_api.http.errors import install_error_handlers
from ml_prod_api.http.headers import SecurityHeadersMiddleware
from ml_prod_api.http.middleware import (
    AdmissionMiddleware,
    BodyLimitMiddleware,
    RequestContextMiddleware,
)
from ml_prod_api.http.moderations import OPENAI_MODEL_ALIASES
from ml_prod_api.http.ratelimit import RateLimiter
from ml_prod_api.http.routes import router
from ml_prod_api.http.schemas import BatchPredictRequest, ModerationRequest, PredictRequest
from ml_prod_api.http.state import AppState
from ml_prod_api.http.validation import NOT_ONLY_WHITESPACE
from ml_prod_api.lifecycle import (
    CloseWhileDrainingMiddleware,
    StartupFailureMiddleware,
    make_lifespan,
)
from ml_prod_api.logs import configure_logging
from ml_prod_api.metrics import Metrics
from ml_prod_api.multiproc import WorkerBoard
from ml_prod_api.providers import create_provider
from ml_prod_api.serving import InferenceService
from ml_prod_api.settings import ConfigError, Settings, load_settings

DESCRIPTION = """Text-toxicity classification. Every error answers one JSON envelope:
`{"error": {"code": "...", "message": "...", "request_id": "..."}}`.
Unknown request fields are rejected with `422 unknown_field`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    if settings is None:
        settings = load_settings()
    configure_logging(settings.log_level)
    metrics = Metrics()
    metrics.serve_process()
    board = (
        WorkerBoard(Path(metrics.multiprocess_dir), settings.web_concurrency)
        if metrics.multiprocess_dir and settings.web_concurrency > 1
        else None
    )
    service = InferenceService(
        lambda: create_provider(settings),
        instances=settings.model_instances,
        batch_max_size=settings.queue_batch_max_size,
        batch_max_wait_ms=settings.queue_batch_max_wait_ms,
        batch_max_chars=settings.queue_batch_max_chars,
        queue_max_items=settings.queue_max_items,
        request_timeout_ms=settings.request_timeout_ms,
        metrics=metrics,
        on_readiness=board.publish if board is not None else None,
    )
    docs = settings.docs_enabled
    app = FastAPI(
        title="ml-prod-api",
        version=__version__,
        description=DESCRIPTION,
        lifespan=make_lifespan(settings),
        # FastAPI's own pages load their scripts from a CDN: ours serve them from the package
        # (`http/docs.py`). No OAuth2 flow, so no OAuth2 redirect page.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_url="/openapi.json" if docs else None,
        # FastAPI's native OpenTelemetry hooks look up three global providers on every request;
        # this service reports through Prometheus metrics and JSON logs instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    key_store = ApiKeyStore(
        settings.api_keys, settings.api_keys_file, settings.api_keys_reload_seconds
    )
    AppState(
        settings=settings,
        service=service,
        metrics=metrics,
        rate_limiter=RateLimiter(settings, metrics) if settings.rate_limit else None,
        worker_board=board,
    ).attach(app)
    install_error_handlers(app)
    app.include_router(router)
    if docs:
        app.include_router(docs_router(title=app.title, openapi_url="/openapi.json"))
    _document_limits(app, settings)

    def model_fields() -> dict[str, Any]:
        provider = service.provider
        return {
            "provider": settings.model_provider,
            "model_version": provider.version if provider is not None else None,
        }

    # The order, outermost first: proxy headers (the real client address), `Connection: close`
    # while draining, request context (id, access log, metrics, last-resort 500), security
    # headers, CORS, API keys (before any body is read), bodies arriving per client (by the key's
    # name, so after the key check), admission (in-flight cap), body limit, then FastAPI.
    # `add_middleware` prepends, so add in reverse. (The start-up failure message sees the
    # lifespan scope only, so its place does not matter.)
    app.add_middleware(StartupFailureMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.body_limit,
        read_timeout_s=settings.body_read_timeout_seconds,
    )
    app.add_middleware(
        AdmissionMiddleware,
        limit=settings.max_in_flight_requests,
        paths=("/v1/predict", "/v1/predict_batch", "/v1/moderations"),
    )
    app.add_middleware(BodyReaderCap, limit=settings.max_body_readers_per_client)
    if key_store.enabled:
        app.add_middleware(
            ApiKeyGuard, store=key_store, protect_metrics=settings.metrics_require_key
        )
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Authorization", "X-API-Key", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "Retry-After",
                "Server-Timing",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
            ],
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=metrics,
        model_fields=model_fields,
        routes=lambda: router.routes,
        max_header_bytes=settings.max_header_bytes,
    )
    app.add_middleware(
        CloseWhileDrainingMiddleware, draining=lambda: service.drain_started_at is not None
    )
    if settings.trusted_proxies:
        # uvicorn's own middleware; X-Forwarded-For is believed only from these peers.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    return app


def _document_limits(app: FastAPI, settings: Settings) -> None:
    """Put the configured limits into the OpenAPI schema, so it describes what is accepted.

    The request models are static while the limits are settings; the checks themselves stay in
    `http/validation.py` (with their own error codes), this only documents them.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        text = {
            "minLength": 1,
            "maxLength": settings.max_text_length,
            "pattern": NOT_ONLY_WHITESPACE,
        }
        models = schema["components"]["schemas"]
        # The prediction routes parse their own bodies, so FastAPI does not list their models.
        for model in (PredictRequest, BatchPredictRequest, ModerationRequest):
            models.setdefault(
                model.__name__, model.model_json_schema(ref_template="#/components/schemas/{model}")
            )
        models["PredictRequest"]["properties"]["text"].update(text)
        batch = {"minItems": 1, "maxItems": settings.max_texts_per_request}
        texts = models["BatchPredictRequest"]["properties"]["texts"]
        texts.update(batch)
        texts["items"].update(text)
        one, several = models["ModerationRequest"]["properties"]["input"]["anyOf"]
        one.update(text)
        several.update(batch)
        several["items"].update(text)
        # The names always accepted; the served model's version is too, once it is loaded.
        named = models["ModerationRequest"]["properties"]["model"]["anyOf"][0]
        named["enum"] = [settings.model_provider, *OPENAI_MODEL_ALIASES]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _app_from_env() -> FastAPI:
    try:
        return create_app()
    except ConfigError as exc:
        # One clear line and a non-zero exit, instead of a traceback from inside uvicorn.
        print(f"ml-prod-api: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


# Kept importable on purpose: `uvicorn ml_prod_api.api:app --app-dir src` (README) and every
# worker of `ml-prod-api serve` import this module for `app`. Import-time work is building the
# app only (settings from the environment, middleware, routes); the model is loaded and warmed
# in the lifespan, and tests build their own apps with `create_app(settings)`.
app = _app_from_env()
