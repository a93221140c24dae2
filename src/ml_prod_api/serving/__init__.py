"""Serving layer: the inference queue, deadlines, backpressure and readiness."""

from ml_prod_api.serving.service import InferenceService, Readiness, ReadyState

__all__ = ["InferenceService", "Readiness", "ReadyState"]
