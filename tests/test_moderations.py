"""The OpenAI moderation shape on its own: the category mapping and the documented schema.
Through the official client against a real server: tests/test_openai_client.py."""

from __future__ import annotations

from typing import Any

import pytest

from ml_prod_api.http.moderations import moderation_result
from ml_prod_api.http.schemas import MODERATION_CATEGORIES
from tests.conftest import running_client


def _prediction(p: float, labels: dict[str, float] | None = None) -> dict[str, Any]:
    pred: dict[str, Any] = {"label": "toxic" if p >= 0.5 else "non-toxic", "probability_toxic": p}
    if labels is not None:
        pred["labels"] = labels
    return pred


def test_categories_are_openais_thirteen() -> None:
    assert len(MODERATION_CATEGORIES) == 13
    assert {"harassment", "hate", "self-harm/intent", "violence/graphic"} <= set(
        MODERATION_CATEGORIES
    )


@pytest.mark.parametrize(
    ("p", "identity", "hate"),
    [
        (0.9, 0.8, True),  # flagged, and the identity score reaches the threshold
        (0.9, 0.2, False),  # flagged, but not for hate
        (0.3, 0.8, False),  # not flagged: no category is true, as in OpenAI's `flagged`
    ],
)
def test_hate_follows_an_identity_label_only_on_flagged_texts(
    p: float, identity: float, hate: bool
) -> None:
    for label in ("identity_attack", "identity_hate"):
        result = moderation_result(_prediction(p, {"toxic": p, label: identity}), 0.5)
        assert result["flagged"] is (p >= 0.5)
        assert result["categories"]["hate"] is hate
        assert result["category_scores"]["hate"] == identity
        assert result["category_applied_input_types"]["hate"] == ["text"]


def test_a_label_with_its_own_threshold_is_decided_at_it() -> None:
    """A head's own threshold (the model's `label_thresholds`) decides its category, not the
    toxic one; a label without one is decided at the toxic threshold."""
    prediction = _prediction(0.9, {"toxic": 0.9, "identity_attack": 0.45})
    assert moderation_result(prediction, 0.62)["categories"]["hate"] is False
    decided = moderation_result(prediction, 0.62, {"identity_attack": 0.4})
    assert decided["categories"]["hate"] is True
    assert decided["category_scores"]["hate"] == 0.45
    other = moderation_result(prediction, 0.62, {"identity_hate": 0.1})
    assert other["categories"]["hate"] is False


def test_without_an_identity_label_hate_is_not_judged() -> None:
    result = moderation_result(_prediction(0.9, {"toxic": 0.9, "insult": 0.9}), 0.5)
    judged = {name for name, value in result["categories"].items() if value is not None}
    assert judged == {"harassment"}
    assert result["category_scores"]["hate"] is None


def test_openapi_documents_the_route_with_the_configured_limits() -> None:
    with running_client(max_texts_per_request=7, max_text_length=300) as client:
        spec = client.get("/openapi.json").json()
    route = spec["paths"]["/v1/moderations"]["post"]
    assert route["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ModerationRequest"
    }
    one, several = spec["components"]["schemas"]["ModerationRequest"]["properties"]["input"][
        "anyOf"
    ]
    assert one["maxLength"] == 300 and several["items"]["maxLength"] == 300
    assert several["maxItems"] == 7
    result = spec["components"]["schemas"]["ModerationResult"]["properties"]
    assert set(result) == {
        "flagged",
        "categories",
        "category_scores",
        "category_applied_input_types",
    }
    example = route["responses"]["422"]["content"]["application/json"]["example"]
    assert example["error"]["code"] == "unknown_model"
