"""OpenAI's moderation shape over this service's scores, for `POST /v1/moderations`.

Callers of OpenAI's moderation endpoint (its official clients, LLM gateways, guardrail
frameworks) switch to this service by changing the base URL: the request, the response and the
error statuses are OpenAI's. What the shape asks and the model cannot answer is not made up:

- The model judges one thing, toxicity: insults, slurs, dehumanising statements and abuse aimed
  at someone. Its score is reported as `harassment` (OpenAI: harassing language towards any
  target), and `flagged` is the same decision as `label` on `/v1/predict`.
- `hate` is judged only by a model with its own identity-attack score (an `identity_attack` or
  `identity_hate` label, as Jigsaw-trained models have). Every shipped model has an
  `identity_attack` head (tfidf, onnx, transformer, and so the cascade); a model without one
  raises `harassment` and `flagged` for hateful abuse, and `hate` is not judged.
- A category that is not judged is `null` in `categories` and `category_scores` and `[]` in
  `category_applied_input_types`, never a confident `false` / `0.0`. OpenAI answers `null` the
  same way for a category one of its models does not judge (`illicit` from its text-moderation
  models), and the official client parses it: it builds response models without validating
  them (openai `_models.construct_type`), so the value is `None`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ml_prod_api.http.errors import ApiError
from ml_prod_api.http.schemas import MODERATION_CATEGORIES
from ml_prod_api.http.validation import check_batch, check_text

# The category the model's toxicity score stands for.
TOXICITY_CATEGORY = "harassment"
# A multi-label model's label -> the category its score is reported as. `identity_attack` is
# the label of Jigsaw's unintended-bias data (and Detoxify), `identity_hate` of the Jigsaw
# toxic-comment challenge; both are hate aimed at a group for who its members are.
LABEL_CATEGORIES: dict[str, str] = {"identity_attack": "hate", "identity_hate": "hate"}
# OpenAI's model names a caller may already send: each means the one model served here.
OPENAI_MODEL_ALIASES = (
    "omni-moderation-latest",
    "text-moderation-latest",
    "text-moderation-stable",
)


def accepted_models(provider: str, version: str) -> list[str]:
    return [version, provider, *OPENAI_MODEL_ALIASES]


def check_model(requested: str | None, provider: str, version: str | None) -> None:
    """Refuse a `model` that names no model served here (422 `unknown_model`).

    Before the model has loaded its version is unknown: the request then goes on and is
    answered `503 model_not_ready` like every prediction, rather than refused for its name.
    """
    if requested is None or version is None:
        return
    names = accepted_models(provider, version)
    if requested not in names:
        # The requested name is caller data: list the accepted names instead of echoing it.
        raise ApiError(
            422,
            "unknown_model",
            f"field 'model' names no model served here (accepted: {', '.join(names)}; "
            "or leave it out)",
        )


def moderation_texts(value: object, max_texts: int, max_length: int) -> list[str]:
    """The texts of `input` (a string or a list of strings), checked against the limits of the
    other prediction routes, or the 422 that names the offending item."""
    if isinstance(value, str):
        check_text(value, "input", max_length)
        return [value]
    if not isinstance(value, list):
        raise ApiError(422, "invalid_type", "field 'input' must be a string or a list of strings")
    for i, item in enumerate(value):
        if isinstance(item, str):
            continue
        if isinstance(item, dict):
            raise ApiError(
                422,
                "unsupported_input",
                f"field 'input[{i}]' is a multi-modal input object; this service moderates "
                "text only: send a string or a list of strings",
            )
        raise ApiError(422, "invalid_type", f"field 'input[{i}]' must be a string")
    check_batch(value, max_texts, max_length, field="input")
    return value


# Every category starts as not judged. The answers of a model without label categories share
# these read-only dicts: only the scores differ from one text to the next.
_NULLS: dict[str, Any] = dict.fromkeys(MODERATION_CATEGORIES)
_NOT_APPLIED: dict[str, Any] = {name: [] for name in MODERATION_CATEGORIES}
_TOXICITY_ONLY: dict[bool, dict[str, Any]] = {
    flagged: {**_NULLS, TOXICITY_CATEGORY: flagged} for flagged in (False, True)
}
_TOXICITY_APPLIED: dict[str, Any] = {**_NOT_APPLIED, TOXICITY_CATEGORY: ["text"]}


def moderation_result(
    prediction: dict[str, Any], threshold: float, label_thresholds: dict[str, float] | None = None
) -> dict[str, Any]:
    """One result in OpenAI's shape from one prediction of `/v1/predict_batch`'s shape.

    A category of a label score is true when its score reaches the label's own threshold (the
    model's `label_thresholds`, else the same threshold as toxicity), and only on a flagged
    text, so `flagged` stays "some category is true", as in OpenAI's.
    """
    own = label_thresholds or {}
    flagged: bool = prediction["label"] == "toxic"
    scores = _NULLS.copy()
    scores[TOXICITY_CATEGORY] = prediction["probability_toxic"]
    labels: dict[str, float] = prediction.get("labels") or {}
    judged = {
        category: (float(labels[label]), own.get(label, threshold))
        for label, category in LABEL_CATEGORIES.items()
        if label in labels
    }
    if not judged:
        categories, applied = _TOXICITY_ONLY[flagged], _TOXICITY_APPLIED
    else:
        categories, applied = _TOXICITY_ONLY[flagged].copy(), _TOXICITY_APPLIED.copy()
        for category, (score, decided_at) in judged.items():
            categories[category] = flagged and score >= decided_at
            scores[category] = score
            applied[category] = ["text"]
    return {
        "flagged": flagged,
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": applied,
    }


def moderation_body(
    predictions: Sequence[dict[str, Any]],
    threshold: float,
    label_thresholds: dict[str, float],
    request_id: str,
) -> dict[str, Any]:
    return {
        "id": f"modr-{request_id}",
        "model": predictions[0]["model_version"],
        "results": [moderation_result(p, threshold, label_thresholds) for p in predictions],
    }
