"""Routes: validate, call the inference service, shape the response. Nothing else.

Every route takes only the Request: the prediction routes parse their bodies with `parse_body`,
and the app's parts come from `app_state` (http/state.py). FastAPI's body field and dependency
solving cost more per request than the rest of a prediction route.

Over 300 lines on purpose: it holds every route of the service, one concept, beside the error
answers the prediction routes document (`_PREDICT_ERRORS`) and the steps they share (`_score`
and the helpers it calls), so a route reads against both without leaving the file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from ml_prod_api import API_VERSION, __version__
from ml_prod_api.http.auth import caller_identity
from ml_prod_api.http.errors import ApiError, error_body
from ml_prod_api.http.middleware import ARRIVED_SCOPE_KEY, request_log_fields
from ml_prod_api.http.moderations import check_model, moderation_body, moderation_texts
from ml_prod_api.http.schemas import (
    BatchPredictRequest,
    BatchPredictResponse,
    ErrorEnvelope,
    HealthResponse,
    ModerationRequest,
    ModerationResponse,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
    ServiceInfo,
)
from ml_prod_api.http.state import AppState, app_state
from ml_prod_api.http.validation import Body, check_batch, check_text, parse_body
from ml_prod_api.logs import request_id_var
from ml_prod_api.metrics import CONTENT_TYPE_LATEST, Metrics
from ml_prod_api.providers.base import Contribution, Score
from ml_prod_api.serving import InferenceService
from ml_prod_api.serving.service import InferenceResult
from ml_prod_api.settings import Settings

EXPLAIN_TOP_K = 10


def _err(code: str, message: str) -> dict[str, Any]:
    return {"application/json": {"example": error_body(code, message)}}


def _responses(*entries: tuple[int, str, str, str]) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {}
    for status, description, code, message in entries:
        out[status] = {
            "model": ErrorEnvelope,
            "description": description,
            "content": _err(code, message),
        }
    return out


_PREDICT_ERRORS = _responses(
    (
        401,
        "API keys are configured and none or a wrong one was sent",
        "unauthorized",
        "a valid API key is required (X-API-Key header or Authorization: Bearer)",
    ),
    (
        408,
        "The body did not arrive within BODY_READ_TIMEOUT_SECONDS",
        "request_timeout",
        "the request body did not arrive in time (BODY_READ_TIMEOUT_SECONDS)",
    ),
    (
        413,
        "Body over MAX_BODY_BYTES",
        "payload_too_large",
        "request body exceeds the limit of 1985536 bytes (MAX_BODY_BYTES)",
    ),
    (415, "Not JSON", "unsupported_media_type", "Content-Type must be application/json"),
    (
        422,
        "Invalid input",
        "text_too_long",
        "field 'text' has 5001 characters; the limit is 5000 (MAX_TEXT_LENGTH)",
    ),
    (
        429,
        "Queue full, too many in flight, the caller's rate limit spent, or too many of its "
        "bodies still arriving",
        "overloaded",
        "inference queue full (2048 items queued, limit 2048)",
    ),
    (500, "The model raised", "inference_error", "the model failed to score this request"),
    (503, "Not ready or deadline passed", "model_not_ready", "model not ready (loading)"),
)

_MODERATION_ERRORS = {
    **_PREDICT_ERRORS,
    **_responses(
        (
            422,
            "Invalid input, or a `model` not served here",
            "unknown_model",
            "field 'model' names no model served here (accepted: tfidf-20261126-abc123, "
            "tfidf, omni-moderation-latest, text-moderation-latest, text-moderation-stable; "
            "or leave it out)",
        )
    ),
}

router = APIRouter()


def _threshold(settings: Settings, service: InferenceService) -> float | None:
    """TOXIC_THRESHOLD, else the loaded model's own, else 0.5; None while the model that would
    decide it is not loaded."""
    if settings.toxic_threshold is not None:
        return settings.toxic_threshold
    provider = service.provider
    if provider is None:
        return None
    default = provider.default_threshold
    return default if default is not None else 0.5


def _predictions(
    scores: list[Score],
    threshold: float,
    service: InferenceService,
    explanation: list[Contribution] | None = None,
) -> list[dict[str, Any]]:
    provider = service.provider
    assert provider is not None  # predict() only returns once the model is loaded
    name, version = provider.name, provider.version
    out = []
    for score in scores:
        p = min(1.0, max(0.0, float(score.probability_toxic)))
        pred: dict[str, Any] = {
            "label": "toxic" if p >= threshold else "non-toxic",
            "probability_toxic": p,
            "threshold": threshold,
            "model_version": version,
            "provider": name,
        }
        if score.labels is not None:
            pred["labels"] = score.labels
        if explanation is not None:
            pred["explanation"] = [{"feature": c.feature, "weight": c.weight} for c in explanation]
        out.append(pred)
    return out


def _disconnected(request: Request) -> Callable[[], Awaitable[None]]:
    async def wait() -> None:
        # The body has been read, so the next ASGI message is the disconnect (or nothing until
        # the response is sent).
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return wait


async def _rate_limit(request: Request, state: AppState, cost: int) -> dict[str, str]:
    limiter = state.rate_limiter
    if limiter is None:
        return {}
    decision = await limiter.check(caller_identity(request.scope), cost)
    return decision.headers


async def _valid_body(
    request: Request, state: AppState, model: type[Body], check: Callable[[Body, Settings], None]
) -> Body:
    """The request's body as `model`, passed through `check` (the settings' limits). With rate
    limits, a caller whose budget is spent is refused before its body is read, and an invalid
    body costs one unit: validation is work too."""
    limiter = state.rate_limiter
    if limiter is not None:
        limiter.refuse_if_spent(caller_identity(request.scope))
    settings = state.settings
    try:
        body = parse_body(await request.body(), request.headers.get("content-type"), model)
        check(body, settings)
    except ApiError:
        if limiter is not None:
            await limiter.check(caller_identity(request.scope), 1)
        raise
    return body


def _respond(payload: dict[str, Any], result: InferenceResult, headers: dict[str, str]) -> Response:
    """The JSON answer, serialised once with orjson.

    The documented response models stay on the routes for OpenAPI; building the dict directly
    skips FastAPI's second validation pass of our own output.
    """
    # Server-Timing lets a client tell queueing from compute without scraping metrics.
    headers["Server-Timing"] = (
        f"queue;dur={result.queue_seconds * 1000:.3f}, "
        f"inference;dur={result.compute_seconds * 1000:.3f}"
    )
    headers["Cache-Control"] = "no-store"
    return Response(orjson.dumps(payload), media_type="application/json", headers=headers)


def _record(
    request: Request, metrics: Metrics, preds: list[dict[str, Any]], texts: list[str]
) -> None:
    labels = [p["label"] for p in preds]
    toxic = labels.count("toxic")
    fields = request_log_fields(request.scope)
    fields["batch_size"] = len(preds)
    fields["labels"] = {"toxic": toxic, "non-toxic": len(preds) - toxic}
    metrics.observe_predictions(preds[0]["provider"], labels, [len(t) for t in texts])


def _log_stages(request: Request, scores: list[Score]) -> None:
    """How many of the request's texts each stage answered (a provider made of several stages,
    the cascade), as the access log's `stages`: counts only."""
    if scores and scores[0].stage is not None:
        stages = Counter(score.stage for score in scores)
        request_log_fields(request.scope)["stages"] = dict(stages)


async def _score(
    request: Request, state: AppState, texts: list[str], *, explain: bool = False
) -> tuple[list[dict[str, Any]], InferenceResult, dict[str, str]]:
    """What both prediction routes do once their body is valid: spend the caller's rate limit
    (one unit a text), score the texts, shape and record the predictions. Returns them with the
    inference result and the rate-limit headers."""
    service = state.service
    headers = await _rate_limit(request, state, len(texts))
    result = await service.predict(
        texts,
        explain_top_k=EXPLAIN_TOP_K if explain else None,
        caller_gone=_disconnected(request),
        arrived_at=request.scope.get(ARRIVED_SCOPE_KEY),
    )
    threshold = _threshold(state.settings, service)
    assert threshold is not None  # predict() only returns once the model is loaded
    preds = _predictions(result.scores, threshold, service, result.explanation)
    _record(request, state.metrics, preds, texts)
    _log_stages(request, result.scores)
    return preds, result, headers


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that parses its own body (`parse_body`)."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "/v1/predict",
    response_model=PredictResponse,
    responses=_PREDICT_ERRORS,
    summary="Classify one text",
    tags=["predict"],
    openapi_extra=_json_body(PredictRequest),
)
async def predict(request: Request) -> Response:
    state = app_state(request.app)
    body = await _valid_body(
        request, state, PredictRequest, lambda b, s: check_text(b.text, "text", s.max_text_length)
    )
    preds, result, headers = await _score(request, state, [body.text], explain=body.explain)
    return _respond({"prediction": preds[0]}, result, headers)


@router.post(
    "/v1/predict_batch",
    response_model=BatchPredictResponse,
    responses=_PREDICT_ERRORS,
    summary="Classify several texts in one model call",
    tags=["predict"],
    openapi_extra=_json_body(BatchPredictRequest),
)
async def predict_batch(request: Request) -> Response:
    state = app_state(request.app)
    body = await _valid_body(
        request,
        state,
        BatchPredictRequest,
        lambda b, s: check_batch(b.texts, s.max_texts_per_request, s.max_text_length),
    )
    preds, result, headers = await _score(request, state, body.texts)
    return _respond({"predictions": preds}, result, headers)


@router.post(
    "/v1/moderations",
    response_model=ModerationResponse,
    responses=_MODERATION_ERRORS,
    summary="Moderate texts in the shape of OpenAI's moderation API",
    description=(
        "A drop-in for OpenAI's `POST /v1/moderations`: point the official client (or an LLM "
        "gateway) at this service's base URL. The model's toxicity score is `harassment`; "
        "`hate` is judged only by a model with an identity-attack label; every other category "
        "is `null` (not judged), never a made-up `false`. Costs one rate-limit unit per input."
    ),
    tags=["openai"],
    openapi_extra=_json_body(ModerationRequest),
)
async def moderations(request: Request) -> Response:
    state = app_state(request.app)
    provider = state.service.provider
    texts: list[str] = []

    def check(body: ModerationRequest, s: Settings) -> None:
        texts.extend(moderation_texts(body.input, s.max_texts_per_request, s.max_text_length))
        check_model(body.model, s.model_provider, provider.version if provider else None)

    await _valid_body(request, state, ModerationRequest, check)
    preds, result, headers = await _score(request, state, texts)
    threshold: float = preds[0]["threshold"]  # the one the predictions were decided with
    scored_by = state.service.provider
    assert scored_by is not None  # _score() only returns once the model is loaded
    payload = moderation_body(
        preds, threshold, scored_by.label_thresholds, request_id_var.get() or "-"
    )
    return _respond(payload, result, headers)


@router.get("/", response_model=ServiceInfo, tags=["meta"], summary="Service metadata")
async def root(request: Request) -> ServiceInfo:
    state = app_state(request.app)
    settings, service = state.settings, state.service
    provider = service.provider
    return ServiceInfo(
        service="ml-prod-api",
        version=__version__,
        api_version=API_VERSION,
        provider=settings.model_provider,
        model_version=provider.version if provider is not None else None,
        threshold=_threshold(settings, service),
        label_thresholds=provider.label_thresholds if provider is not None else {},
        ready=service.readiness.ready,
        links={
            "docs": "/docs",
            "openapi": "/openapi.json",
            "health": "/healthz",
            "ready": "/readyz",
            "metrics": "/metrics",
            "predict": "/v1/predict",
            "predict_batch": "/v1/predict_batch",
            "moderations": "/v1/moderations",
        },
    )


# HEAD on the probes, as many health checkers and load balancers send it: the GET route's
# status and headers, and uvicorn sends no body for HEAD. A separate route (not
# `methods=["GET", "HEAD"]`) keeps HEAD out of the OpenAPI schema, where both methods would share
# one operation id.
@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", response_model=HealthResponse, tags=["probes"], summary="Liveness")
async def healthz() -> HealthResponse:
    # No model work and no awaits on the model thread: answers while a batch computes.
    return HealthResponse(status="ok")


@router.head("/readyz", include_in_schema=False)
@router.get(
    "/readyz",
    response_model=ReadyResponse,
    tags=["probes"],
    summary="Readiness: model loaded and warm, not draining",
    responses={503: {"model": ReadyResponse, "description": "loading, draining or failed"}},
)
async def readyz(request: Request) -> Any:
    state = app_state(request.app)
    settings, service = state.settings, state.service
    readiness = service.readiness
    provider = service.provider
    status, ready = readiness.describe(), readiness.ready
    board = state.worker_board
    if ready and board is not None:
        # Whichever worker answers, "ready" must hold for every worker behind the socket.
        count = board.ready_workers()
        if count < board.expected:
            status, ready = f"loading ({count} of {board.expected} workers ready)", False
            if board.draining_workers():
                status = "draining"
    body = ReadyResponse(
        status=status,
        ready=ready,
        provider=settings.model_provider,
        model_version=provider.version if provider is not None else None,
    )
    if ready:
        return body
    return JSONResponse(body.model_dump(exclude_none=True), status_code=503)


@router.get(
    "/metrics",
    tags=["probes"],
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics_endpoint(request: Request) -> Response:
    metrics = app_state(request.app).metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
