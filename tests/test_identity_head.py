"""The shipped models' `identity_attack` heads (tfidf's and the onnx model's): what they score,
how they are served (`labels`, the cascade, `/v1/moderations`' `hate`), tfidf artifacts with and
without heads, and `training.train_identity_head` on the committed fixtures (the transformer's
head trainer is tested in `test_transformer_training.py`)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import joblib
import numpy as np
import pytest

from ml_prod_api.providers.base import Provider
from ml_prod_api.providers.cascade import CascadeSettings
from ml_prod_api.providers.tfidf import TfidfProvider
from ml_prod_api.providers.tfidf.model import LinearTextModel, load_artifact
from tests.conftest import running_client
from training import train_identity_head, train_tfidf
from training.augment import template_rows
from training.corpus import UNKNOWN, identity_attack_label, load_corpus
from training.evaluate_sources import is_hate
from training.functional_suite import read_suite

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
FIXTURES = ROOT / "tests" / "fixtures" / "training"
HEAD = "identity_attack"
VOTES = {
    f"votes_{kind}": "0" for kind in ("ableist", "homophobic", "racist", "sexist", "transphobic")
}


def load_shipped(name: str) -> Provider:
    if name == "onnx":
        pytest.importorskip("onnxruntime")
        from ml_prod_api.providers.onnx import OnnxProvider

        provider: Provider = OnnxProvider(MODELS / "onnx")
    else:
        provider = TfidfProvider(MODELS / "tfidf")
    provider.load()
    return provider


@pytest.fixture(scope="module")
def tfidf() -> Provider:
    return load_shipped("tfidf")


@pytest.fixture(scope="module", params=["tfidf", "onnx"])
def shipped(request: pytest.FixtureRequest) -> Provider:
    return load_shipped(request.param)


def head_by_functionality(provider: Provider) -> dict[str, np.ndarray]:
    cases = read_suite()
    scores = provider.predict_batch([case.text for case in cases])
    out: dict[str, list[float]] = defaultdict(list)
    for case, score in zip(cases, scores, strict=True):
        assert score.labels is not None
        out[case.functionality].append(score.labels[HEAD])
    return {name: np.asarray(values) for name, values in out.items()}


def test_the_shipped_head_tells_attacks_on_groups_from_abuse_of_a_person(
    shipped: Provider,
) -> None:
    """Slurs and dehumanising comparisons of a group score well above profanity aimed at one
    person, and no sentence that only names an identity scores 0.5 or more: a head that keys on
    identity words would be worse than none. Floors a little below the shipped heads' means."""
    head = head_by_functionality(shipped)
    for group_attack in ("slur aimed at a group", "dehumanising comparison"):
        assert head[group_attack].mean() >= head["profanity aimed at a person"].mean() + 0.2
    for mention in ("identity mention, neutral", "identity mention, positive"):
        assert head[mention].max() < 0.5


def test_hate_is_decided_for_attacks_on_groups_not_for_abuse_of_one_person(
    shipped: Provider,
) -> None:
    """`/v1/moderations`' `hate` (flagged, and the head at its own threshold) on the suite: true
    for most slurs and dehumanising comparisons of a group, and for at most a minority of the
    insults and profanities aimed at one person, who is abused but not for who they are.
    Bounds a little beyond the shipped models' shares (MODEL_CARD.md, "The identity_attack
    heads"): a head that calls every insult hate again fails here."""
    cases = read_suite()
    scores = shipped.predict_batch([case.text for case in cases])
    toxic_at = shipped.default_threshold
    assert toxic_at is not None
    hate: dict[str, list[bool]] = defaultdict(list)
    for case, score in zip(cases, scores, strict=True):
        hate[case.functionality].append(is_hate(score, toxic_at, shipped.label_thresholds))
    share = {name: float(np.mean(values)) for name, values in hate.items()}
    for group_attack in ("slur aimed at a group", "dehumanising comparison"):
        assert share[group_attack] >= 0.75, (group_attack, share[group_attack])
    for personal in ("insult of an individual, no profanity", "profanity aimed at a person"):
        assert share[personal] <= 0.45, (personal, share[personal])


def test_labels_hold_toxicity_and_the_head(shipped: Provider) -> None:
    for score in shipped.predict_batch(["you are a fucking idiot", "have a lovely day"]):
        assert score.labels is not None
        assert set(score.labels) == {"toxic", HEAD}
        assert score.labels["toxic"] == score.probability_toxic
        assert 0.0 <= score.labels[HEAD] <= 1.0


def test_the_heads_threshold_is_the_one_chosen_in_training(shipped: Provider) -> None:
    folder = "tfidf" if shipped.name == "tfidf" else "onnx"
    metadata = json.loads((MODELS / folder / "metadata.json").read_text())
    chosen = metadata["heads"][HEAD]["threshold"]
    assert 0.05 <= chosen <= 0.95
    assert shipped.label_thresholds == {HEAD: chosen}


def test_the_cascade_answers_stage_1s_head_for_every_text(tfidf: Provider) -> None:
    """Texts that onnx answers keep tfidf's identity_attack (onnx has a head of its own, with
    its own threshold: mixing the two would decide one label two ways); `toxic` is the
    cascade's score, and the head's threshold is tfidf's."""
    pytest.importorskip("onnxruntime")
    settings = CascadeSettings(_env_file=None, model_path=MODELS / "cascade")  # type: ignore[call-arg]
    cascade = settings.build_provider()
    cascade.load()
    texts = [case.text for case in read_suite()][::7]
    first = tfidf.predict_batch(texts)
    scores = cascade.predict_batch(texts)
    assert {score.stage for score in scores} == {"tfidf", "onnx"}
    for mine, stage1 in zip(scores, first, strict=True):
        assert mine.labels is not None and stage1.labels is not None
        assert mine.labels["toxic"] == mine.probability_toxic
        assert mine.labels[HEAD] == stage1.labels[HEAD]
    assert cascade.label_thresholds == tfidf.label_thresholds


@pytest.mark.parametrize("name", ["tfidf", "onnx"])
def test_moderations_judges_hate_with_the_head(name: str) -> None:
    """With either shipped model, `hate` is judged (a score, and `false` on a benign text)
    rather than `null`, and it is the head's score."""
    if name == "onnx":
        pytest.importorskip("onnxruntime")
    texts = ["have a lovely day, my friend", "you are a fucking idiot"]
    with running_client(model_provider=name, model_path=MODELS / name) as client:
        response = client.post("/v1/moderations", json={"input": texts})
        predicted = client.post("/v1/predict_batch", json={"texts": texts})
        info = client.get("/").json()
    assert response.status_code == 200, response.text
    assert set(info["label_thresholds"]) == {HEAD}
    results = response.json()["results"]
    predictions = predicted.json()["predictions"]
    for result, prediction in zip(results, predictions, strict=True):
        assert result["category_scores"]["hate"] == prediction["labels"][HEAD]
        assert result["category_applied_input_types"]["hate"] == ["text"]
    assert results[0]["categories"]["hate"] is False


def test_head_weights_that_do_not_fit_the_vocabularies_are_refused() -> None:
    payload = joblib.load(MODELS / "tfidf" / "model.joblib")
    head = payload["heads"][HEAD]
    head["coef_word"] = head["coef_word"][:-1]
    with pytest.raises(ValueError, match="do not match the vocabularies"):
        LinearTextModel.from_payload(payload)


@pytest.mark.slow
def test_the_trainer_adds_a_head_and_leaves_toxicity_as_it_was(tmp_path: Path) -> None:
    """On the fixtures: a model without heads answers no labels; the trainer adds the head,
    every toxic score stays the same, the version changes, and the same run gives the same
    bytes."""
    plain = tmp_path / "plain"
    fast = ["--grid-c", "2", "--char-min-df", "1", "--word-min-df", "1"]
    assert train_tfidf.main(["--data-dir", str(FIXTURES), "--output", str(plain), *fast]) == 0
    before = TfidfProvider(plain)
    before.load()
    texts = [case.text for case in read_suite()]
    assert all(score.labels is None for score in before.predict_batch(texts))

    versions = []
    for name in ("headed", "again"):
        argv = ["--model", str(plain), "--output", str(tmp_path / name), "--grid-c", "1", "4"]
        assert train_identity_head.main([*argv, "--data-dir", str(FIXTURES)]) == 0
        versions.append(json.loads((tmp_path / name / "metadata.json").read_text()))
    assert versions[0]["model_version"] == versions[1]["model_version"]
    assert versions[0]["model_version"] != before.version
    assert (
        versions[0]["threshold"] == json.loads((plain / "metadata.json").read_text())["threshold"]
    )
    assert versions[0]["heads"][HEAD]["C"] in (1.0, 4.0)
    assert 0.05 <= versions[0]["heads"][HEAD]["threshold"] <= 0.95

    after = TfidfProvider(tmp_path / "headed")
    after.load()
    scored = after.predict_batch(texts)
    assert [s.probability_toxic for s in scored] == [
        s.probability_toxic for s in before.predict_batch(texts)
    ]
    assert all(s.labels is not None and 0.0 <= s.labels[HEAD] <= 1.0 for s in scored)
    model, _ = load_artifact(tmp_path / "headed")
    assert list(model.heads) == [HEAD]


def mlma(label: str, hostility: str, target: str) -> dict[str, str]:
    return {"label": label, "hostility_type": hostility, "target_attribute": target}


@pytest.mark.parametrize(
    ("source", "row", "expected"),
    [
        ("hatexplain", {"label": "1", "majority_3class": "hatespeech"}, 1),
        ("hatexplain", {"label": "1", "majority_3class": "offensive"}, 0),
        ("hatexplain", {"label": "1", "majority_3class": "no_majority"}, UNKNOWN),
        ("mlma_en", mlma("1", "abusive_hateful", "origin"), 1),
        ("mlma_en", mlma("1", "hateful", "other"), UNKNOWN),
        ("mlma_en", mlma("1", "offensive", "gender"), UNKNOWN),
        ("mlma_en", mlma("0", "normal", "gender"), 0),
        ("convabuse", {"label": "1", "n_annotators": "3", **VOTES, "votes_racist": "2"}, 1),
        ("convabuse", {"label": "1", "n_annotators": "4", **VOTES, "votes_sexist": "1"}, UNKNOWN),
        ("convabuse", {"label": "1", "n_annotators": "3", **VOTES}, 0),
        ("convabuse", {"label": "1", "n_annotators": "3"}, UNKNOWN),
        ("convabuse", {"label": "0", "n_annotators": "3"}, 0),
        ("edos", {"label": "1"}, 1),
        ("stormfront", {"label": "0"}, 0),
    ],
)  # fmt: skip
def test_each_source_says_what_it_knows_of_identity_attacks(
    source: str, row: dict[str, str], expected: int
) -> None:
    assert identity_attack_label(source, row) == expected


def test_templates_aimed_at_one_person_are_abuse_but_no_identity_attack() -> None:
    """The project's templates teach the heads too: a threat or an insult of one person that names
    no identity is toxic and no identity attack, the hate templates about a group are attacks,
    and every benign template is neither."""
    seed = 7
    corpus = load_corpus(FIXTURES, seed=seed, insult_templates=True)
    targets = {
        text.rstrip(".!? "): (label, identity)
        for text, label, identity, source in zip(
            corpus.train.texts,
            corpus.train.labels,
            corpus.train.identity,
            corpus.train.sources,
            strict=True,
        )
        if source == "templates"
    }
    expected = {"threat or insult": (1, 0), "insult of a person": (1, 0)}
    expected |= {"hate without profanity": (1, 1), "benign identity mention": (0, 0)}
    seen = set()
    for row in template_rows(seed, insults=True):
        got = targets[row.text.rstrip(".!? ")]
        assert got == expected.get(row.kind, (0, 0)), (row.kind, got)
        seen.add(row.kind)
    assert set(expected) <= seen
