"""Serving layer: the inference queue, deadlines, backpressure and readiness."""

from ml_prod_api.serving.readiness import Readiness, ReadyState
from ml_prod_api.serving.service import InferenceService

__all__ = ["InferenceService", "Readiness", "ReadyState"]
