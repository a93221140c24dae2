"""Request and response bodies. Limits that depend on settings are checked in `validation.py`."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, WithJsonSchema

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


THRESHOLD_DESCRIPTION = (
    "The decision threshold: `label` is `toxic` when `probability_toxic` is at least this. "
    "It is TOXIC_THRESHOLD when set, else the threshold chosen for the model in training, else 0.5."
)


class Prediction(BaseModel):
    label: Label
    probability_toxic: float = Field(ge=0.0, le=1.0)
    threshold: float = Field(ge=0.0, le=1.0, description=THRESHOLD_DESCRIPTION)
    model_version: str
    provider: str
    labels: dict[str, float] | None = Field(
        default=None,
        description="Every score of a model with more than one (a multi-label model, such as "
        "the shipped ones with their `identity_attack` head), `toxic` included; absent "
        "otherwise.",
    )
    explanation: list[Contribution] | None = Field(
        default=None, description="Top contributing features, when `explain` was requested."
    )


_PREDICTION_EXAMPLE: dict[str, Any] = {
    "label": "toxic",
    "probability_toxic": 0.91,
    "threshold": 0.395,
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


# --- OpenAI's moderation shape (`POST /v1/moderations`; the mapping is in http/moderations.py) ---


class ModerationRequest(BaseModel):
    # `input` is checked by `moderations.moderation_texts`, not by its type here: a pydantic
    # union reports a wrong item once per member (`input.str`, `input.list[str].0`), where the
    # check names the item (`input[2]`) and refuses OpenAI's multi-modal objects by name.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"input": "you are awful"},
                {"input": ["you are awful", "have a nice day"], "model": "omni-moderation-latest"},
            ]
        },
    )

    input: Annotated[
        Any,
        WithJsonSchema(
            {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
        ),
    ] = Field(
        description=(
            "One text, or a list of texts (1..MAX_TEXTS_PER_REQUEST, each "
            "1..MAX_TEXT_LENGTH characters): one result each, in order. OpenAI's multi-modal "
            "objects are refused (`unsupported_input`)."
        )
    )
    model: StrictStr | None = Field(
        default=None,
        description=(
            "Optional. The served model's version, the provider's name, or one of OpenAI's "
            "aliases `omni-moderation-latest`, `text-moderation-latest`, "
            "`text-moderation-stable`: all mean the one model this service serves. Any other "
            "name is `422 unknown_model`."
        ),
    )


Judged = TypeVar("Judged")


class _PerCategory(BaseModel, Generic[Judged]):
    """One value per OpenAI moderation category, under OpenAI's names."""

    harassment: Judged
    harassment_threatening: Judged = Field(alias="harassment/threatening")
    hate: Judged
    hate_threatening: Judged = Field(alias="hate/threatening")
    illicit: Judged
    illicit_violent: Judged = Field(alias="illicit/violent")
    self_harm: Judged = Field(alias="self-harm")
    self_harm_instructions: Judged = Field(alias="self-harm/instructions")
    self_harm_intent: Judged = Field(alias="self-harm/intent")
    sexual: Judged
    sexual_minors: Judged = Field(alias="sexual/minors")
    violence: Judged
    violence_graphic: Judged = Field(alias="violence/graphic")


MODERATION_CATEGORIES: tuple[str, ...] = tuple(
    info.alias or name for name, info in _PerCategory.model_fields.items()
)


class ModerationCategories(_PerCategory[bool | None]):
    """Whether the text is in the category; null where the model does not judge it."""


class ModerationCategoryScores(_PerCategory[float | None]):
    """The model's score for the category; null where the model does not judge it."""


class ModerationAppliedInputTypes(_PerCategory[list[Literal["text"]]]):
    """`["text"]` where the category was judged, `[]` where it was not."""


class ModerationResult(BaseModel):
    flagged: bool = Field(
        description='The same decision as `label == "toxic"` on /v1/predict (TOXIC_THRESHOLD).'
    )
    categories: ModerationCategories
    category_scores: ModerationCategoryScores
    category_applied_input_types: ModerationAppliedInputTypes


_NOT_JUDGED: dict[str, Any] = dict.fromkeys(MODERATION_CATEGORIES)
_MODERATION_EXAMPLE: dict[str, Any] = {
    "flagged": True,
    "categories": {**_NOT_JUDGED, "harassment": True},
    "category_scores": {**_NOT_JUDGED, "harassment": 0.91},
    "category_applied_input_types": {
        **{name: [] for name in MODERATION_CATEGORIES},
        "harassment": ["text"],
    },
}


class ModerationResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "modr-3f9c0a1b2c3d4e5f0000000000000007",
                    "model": "tfidf-20261126-abc123",
                    "results": [_MODERATION_EXAMPLE],
                }
            ]
        }
    )

    id: str = Field(description="`modr-` and the request id (X-Request-ID).")
    model: str = Field(description="The version of the model that answered.")
    results: list[ModerationResult] = Field(description="One result per input, in order.")


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
    threshold: float | None = Field(
        description=THRESHOLD_DESCRIPTION + " null while no model is loaded and it is unset."
    )
    label_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="The threshold chosen in training for each extra label that has its own "
        "(`identity_attack`: `/v1/moderations` reports `hate` true when the text is flagged "
        "and this score reaches it); `TOXIC_THRESHOLD` does not change them.",
    )
    ready: bool
    links: dict[str, str]
