"""Dependencies as `Annotated` aliases, so routes read as plain parameters.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, and
three thread hops per request cost more than the whole stub prediction (py-spy, issue 8).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ml_prod_api.metrics import Metrics
from ml_prod_api.serving import InferenceService
from ml_prod_api.settings import Settings


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _service(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.service
    return service


async def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(_settings)]
ServiceDep = Annotated[InferenceService, Depends(_service)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
