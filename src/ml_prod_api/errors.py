"""Typed errors shared by the serving layer and the providers.

The HTTP layer maps each of these to a status code and a stable error code in one place
(`ml_prod_api.http.errors`). Messages here must never contain submitted text.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class for errors that carry a stable machine code."""

    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ModelNotReady(ServiceError):
    """The model is loading, failed to load, or the service is draining."""

    code = "model_not_ready"


class ModelLoadError(ServiceError):
    """A provider could not load its artifact (missing, corrupt, incompatible)."""

    code = "model_load_failed"


class Overloaded(ServiceError):
    """The inference queue is full: refuse at once instead of queueing past the deadline."""

    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(ServiceError):
    """The request's deadline passed before its inference finished."""

    code = "timeout"


class InferenceError(ServiceError):
    """The provider raised while scoring a batch."""

    code = "inference_error"


class ExplainNotSupported(ServiceError):
    """The configured provider cannot explain its scores."""

    code = "explain_not_supported"


class CallerGone(ServiceError):
    """The caller went away before its inference ran; its work was dropped."""

    code = "client_closed_request"


class RequestTooCostly(ServiceError):
    """The request alone is more work than the model can do before its deadline: retrying the
    same request cannot help; fewer or shorter texts can."""

    code = "request_too_costly"


class WorkAbandoned(ServiceError):
    """A provider gave up a call between its steps because nobody waits for its result."""

    code = "work_abandoned"
