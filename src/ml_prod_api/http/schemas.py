"""Request and response bodies. Limits that depend on settings are checked in `validation.py`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

Label = Literal["toxic", "non-toxic"]


class PredictRequest(BaseModel):
    # Unknown fields are rejected (422 `unknown_field`): a typo such as `txt` must not be
    # silently ignored and scored as nothing.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "you are awful"}]},
    )

    text: StrictStr = Field(description="The text to classify (1..MAX_TEXT_LENGTH characters).")
    explain: StrictBool = Field(
        default=False, description="Add the top contributing words or n-grams (tfidf only)."
    )


class BatchPredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"texts": ["you are awful", "have a nice day"]}]},
    )

    texts: list[StrictStr] = Field(
        description=(
            "Texts to classify (1..MAX_TEXTS_PER_REQUEST items, each 1..MAX_TEXT_LENGTH chars)."
        )
    )


class Contribution(BaseModel):
    feature: str
    weight: float


class Prediction(BaseModel):
    label: Label
    probability_toxic: float = Field(ge=0.0, le=1.0)
    model_version: str
    provider: str
    labels: dict[str, float] | None = Field(
        default=None, description="Every label's score, for multi-label models only."
    )
    explanation: list[Contribution] | None = Field(
        default=None, description="Top contributing features, when `explain` was requested."
    )


_PREDICTION_EXAMPLE: dict[str, Any] = {
    "label": "toxic",
    "probability_toxic": 0.91,
    "model_version": "tfidf-20261126-abc123",
    "provider": "tfidf",
}


class PredictResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"prediction": _PREDICTION_EXAMPLE}]})

    prediction: Prediction


class BatchPredictResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "predictions": [
                        _PREDICTION_EXAMPLE,
                        {**_PREDICTION_EXAMPLE, "label": "non-toxic", "probability_toxic": 0.04},
                    ]
                }
            ]
        }
    )

    predictions: list[Prediction]


class ErrorDetail(BaseModel):
    field: str
    code: str
    message: str


class ErrorBody(BaseModel):
    code: str = Field(description="Stable snake_case machine code.")
    message: str = Field(description="Human text naming the field and the limit.")
    request_id: str
    details: list[ErrorDetail] | None = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class HealthResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"]


class ReadyResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ready", "ready": True, "provider": "tfidf", "model_version": "v1"},
                {"status": "loading", "ready": False},
                {
                    "status": "failed: model file not found: models/tfidf/model.joblib",
                    "ready": False,
                },
                {"status": "draining", "ready": False},
            ]
        }
    )

    status: str = Field(description="loading, ready, draining, stopped or failed: <reason>.")
    ready: bool
    provider: str | None = None
    model_version: str | None = None


class ServiceInfo(BaseModel):
    service: str
    version: str
    api_version: str
    provider: str
    model_version: str | None
    ready: bool
    links: dict[str, str]
