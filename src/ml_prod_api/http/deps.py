"""Dependencies as `Annotated` aliases, so routes read as plain parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ml_prod_api.metrics import Metrics
from ml_prod_api.serving import InferenceService
from ml_prod_api.settings import Settings


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _service(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.service
    return service


def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(_settings)]
ServiceDep = Annotated[InferenceService, Depends(_service)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
