"""The app factory. `uvicorn ml_prod_api.api:app --app-dir src` serves `app = create_app()`."""

from __future__ import annotations

import sys
from typing import Any

from fastapi import FastAPI

from ml_prod_api import __version__
from ml_prod_api.http.errors import install_error_handlers
from ml_prod_api.http.middleware import BodyLimitMiddleware, RequestContextMiddleware
from ml_prod_api.http.routes import router
from ml_prod_api.lifecycle import make_lifespan
from ml_prod_api.logs import configure_logging
from ml_prod_api.metrics import Metrics
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
    service = InferenceService(
        lambda: create_provider(settings),
        batch_max_size=settings.batch_max_size,
        batch_max_wait_ms=settings.batch_max_wait_ms,
        queue_max_items=settings.queue_max_items,
        request_timeout_ms=settings.request_timeout_ms,
        metrics=metrics,
    )
    app = FastAPI(
        title="ml-prod-api",
        version=__version__,
        description=DESCRIPTION,
        lifespan=make_lifespan(settings),
    )
    app.state.settings = settings
    app.state.service = service
    app.state.metrics = metrics
    app.state.body_limit = settings.body_limit
    install_error_handlers(app)
    app.include_router(router)

    def model_fields() -> dict[str, Any]:
        provider = service.provider
        return {
            "provider": settings.model_provider,
            "model_version": provider.version if provider is not None else None,
        }

    # Declared once, outermost first (add_middleware prepends, so add in reverse).
    app.add_middleware(BodyLimitMiddleware, limit=settings.body_limit)
    app.add_middleware(RequestContextMiddleware, metrics=metrics, model_fields=model_fields)
    return app


def _app_from_env() -> FastAPI:
    try:
        return create_app()
    except ConfigError as exc:
        # One clear line and a non-zero exit, instead of a traceback from inside uvicorn.
        print(f"ml-prod-api: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


app = _app_from_env()
