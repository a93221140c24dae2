"""The behavioural suite (`tests/fixtures/functional_suite.csv`) as a regression test.

Each shipped model must keep every functionality at or above a floor set a little below its own
figure (MODEL_CARD.md, "Behavioural suite"): a worse model fails CI, a better one passes. The
models are scored through the serving providers, at the threshold each artifact records.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_prod_api.providers import create_provider
from ml_prod_api.settings import Settings
from training.functional_suite import (
    FUNCTIONALITIES,
    accuracy_by_functionality,
    build_cases,
    read_suite,
    render,
)

REPO = Path(__file__).resolve().parents[1]

# Floors: the shipped model's accuracy (MODEL_CARD.md) less about one case in twenty, rounded
# down to a multiple of 0.05.
FLOORS: dict[str, dict[str, float]] = {
    "tfidf": {
        "identity mention, neutral": 0.95,
        "identity mention, positive": 0.95,
        "negated hate": 0.70,
        "counter-speech quoting hate": 0.20,
        "counter-speech referencing hate": 0.75,
        "direct threat": 0.30,
        "threat as a normative statement": 0.80,
        "dehumanising comparison": 0.95,
        "implicit derogation": 0.00,
        "slur aimed at a group": 0.95,
        "profanity aimed at a person": 0.95,
        "profanity not aimed at anyone": 0.30,
        "insult of an individual, no profanity": 0.80,
        "obfuscated abuse": 0.85,
        "abuse of objects, not people": 0.40,
    },
    "onnx": {
        "identity mention, neutral": 0.95,
        "identity mention, positive": 0.95,
        "negated hate": 0.60,
        "counter-speech quoting hate": 0.70,
        "counter-speech referencing hate": 0.75,
        "direct threat": 0.75,
        "threat as a normative statement": 0.95,
        "dehumanising comparison": 0.95,
        "implicit derogation": 0.95,
        "slur aimed at a group": 0.95,
        "profanity aimed at a person": 0.85,
        "profanity not aimed at anyone": 0.95,
        "insult of an individual, no profanity": 0.90,
        "obfuscated abuse": 0.80,
        "abuse of objects, not people": 0.95,
    },
}


def test_suite_file_matches_its_generator() -> None:
    committed = (REPO / "tests" / "fixtures" / "functional_suite.csv").read_text(encoding="utf-8")
    assert committed == render(build_cases()), "run: python -m training.functional_suite"


def test_suite_has_enough_functionalities_and_cases() -> None:
    cases = read_suite()
    assert len(FUNCTIONALITIES) >= 14
    for f in FUNCTIONALITIES:
        group = [c for c in cases if c.functionality == f.name]
        assert len(group) >= 20, f.name
        assert {c.label for c in group} == {f.label}, f.name
        assert len({c.text for c in group}) == len(group), f"duplicate case in {f.name}"


def test_identity_mentions_cover_at_least_25_terms() -> None:
    from training.functional_suite import ADJ

    assert len(set(ADJ)) >= 25


def test_floors_name_every_functionality() -> None:
    names = {f.name for f in FUNCTIONALITIES}
    for provider, floors in FLOORS.items():
        assert set(floors) == names, provider


@pytest.mark.parametrize("provider_name", sorted(FLOORS))
def test_shipped_model_keeps_its_behaviour(provider_name: str) -> None:
    provider = create_provider(Settings(model_provider=provider_name))
    provider.load()
    cases = read_suite()
    scores = provider.predict_batch([c.text for c in cases])
    threshold = provider.default_threshold
    assert threshold is not None
    accuracy = accuracy_by_functionality(cases, [s.probability_toxic for s in scores], threshold)
    below = {
        name: (figures["accuracy"], FLOORS[provider_name][name])
        for name, figures in accuracy.items()
        if float(figures["accuracy"]) < FLOORS[provider_name][name]
    }
    assert not below, f"{provider_name} below its floor (accuracy, floor): {below}"
