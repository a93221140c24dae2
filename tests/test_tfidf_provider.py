"""The `tfidf` provider on the shipped artifact, and each way loading it can fail."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import pytest
import sklearn

from ml_prod_api.errors import ModelLoadError
from ml_prod_api.providers import create_provider
from ml_prod_api.providers.tfidf import ARTIFACT_FILE, METADATA_FILE, TfidfProvider
from ml_prod_api.settings import Settings

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "tfidf"

TOXIC = [
    "you are a fucking idiot",
    "shut up you stupid bitch",
    "go to hell you worthless piece of shit",
    "f*ck you, m0ron",
]
BENIGN = [
    "have a lovely day, my friend",
    "thank you for the kind words, it means a lot",
    "the weather is nice today and we are going to the park",
    "congratulations on the new job",
]


@pytest.fixture(scope="module")
def provider() -> TfidfProvider:
    loaded = TfidfProvider(SHIPPED)
    loaded.load()
    return loaded


def test_metadata_drives_version_and_threshold(provider: TfidfProvider) -> None:
    metadata = json.loads((SHIPPED / METADATA_FILE).read_text())
    assert provider.version == metadata["model_version"]
    assert provider.default_threshold == metadata["threshold"]
    assert 0.0 < metadata["threshold"] < 1.0
    assert provider.name == "tfidf"


def test_clear_cases_fall_on_the_right_side(provider: TfidfProvider) -> None:
    threshold = provider.default_threshold
    assert threshold is not None
    for score in provider.predict_batch(TOXIC):
        assert score.probability_toxic >= threshold
    for score in provider.predict_batch(BENIGN):
        assert score.probability_toxic < threshold


def test_batch_equals_singles(provider: TfidfProvider) -> None:
    texts = TOXIC + BENIGN + ["", "   ", "😀" * 50, "a" * 5000]
    batch = [s.probability_toxic for s in provider.predict_batch(texts)]
    singles = [provider.predict_batch([t])[0].probability_toxic for t in texts]
    assert batch == pytest.approx(singles, abs=1e-12)
    assert all(0.0 <= p <= 1.0 for p in batch)
    assert provider.predict_batch([]) == []


def test_explanation_is_exact(provider: TfidfProvider) -> None:
    text = "you are a stupid idiot"
    top = provider.explain(text, top_k=3)
    assert len(top) == 3
    assert abs(top[0].weight) >= abs(top[1].weight) >= abs(top[2].weight)
    assert any(c.feature in {"idiot", "stupid"} and c.weight > 0 for c in top)
    # Every contribution plus the intercept is the logit behind probability_toxic.
    everything = provider.explain(text, top_k=10_000)
    logit = sum(c.weight for c in everything) + provider.model.intercept
    probability = provider.predict_batch([text])[0].probability_toxic
    assert 1.0 / (1.0 + math.exp(-logit)) == pytest.approx(probability, abs=1e-9)
    assert provider.explain(text, top_k=0) == []


def test_explanation_names_the_lexicon_feature(provider: TfidfProvider) -> None:
    from ml_prod_api.providers.tfidf import LEXICON_FEATURE

    toxic = provider.explain("you are a stupid idiot", top_k=10_000)
    assert any(c.feature == LEXICON_FEATURE and c.weight > 0 for c in toxic)
    benign = provider.explain("have a lovely day", top_k=10_000)
    assert all(c.feature != LEXICON_FEATURE for c in benign)


def test_lexicon_is_stored_in_the_artifact(provider: TfidfProvider) -> None:
    # A later edit of the package lexicon must not change a shipped model's scores.
    from ml_prod_api.providers.lexicon import ABUSIVE_WORDS

    assert provider.model.lexicon == frozenset(ABUSIVE_WORDS)
    assert provider.model.coef_lexicon > 0


def test_version_override() -> None:
    overridden = TfidfProvider(SHIPPED, version_override="pinned-1")
    overridden.load()
    assert overridden.version == "pinned-1"


def test_registry_builds_it_from_settings() -> None:
    settings = Settings(_env_file=None, model_provider="tfidf")  # type: ignore[call-arg]
    built = create_provider(settings)
    assert isinstance(built, TfidfProvider)
    built.load()
    assert built.version.startswith("tfidf-")


def test_accepts_the_model_file_itself() -> None:
    direct = TfidfProvider(SHIPPED / ARTIFACT_FILE)
    direct.load()
    assert direct.predict_batch(["hello"])[0].probability_toxic < 0.5


@pytest.fixture
def artifact_copy(tmp_path: Path) -> Path:
    target = tmp_path / "tfidf"
    shutil.copytree(SHIPPED, target)
    return target


def _edit_metadata(folder: Path, **changes: object) -> None:
    path = folder / METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata.update(changes)
    path.write_text(json.dumps(metadata))


def _load_error(path: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no InconsistentVersionWarning, no warning of any kind
        with pytest.raises(ModelLoadError) as caught:
            TfidfProvider(path).load()
    return caught.value.message


def test_sklearn_version_mismatch_is_a_clear_error(artifact_copy: Path) -> None:
    _edit_metadata(artifact_copy, sklearn_version="0.24.2")
    message = _load_error(artifact_copy)
    assert "0.24.2" in message and sklearn.__version__ in message
    assert ARTIFACT_FILE in message


def test_missing_model_file(tmp_path: Path) -> None:
    message = _load_error(tmp_path / "nowhere")
    assert "not found" in message and "nowhere" in message


def test_missing_metadata(artifact_copy: Path) -> None:
    (artifact_copy / METADATA_FILE).unlink()
    assert METADATA_FILE in _load_error(artifact_copy)


def test_unreadable_metadata(artifact_copy: Path) -> None:
    (artifact_copy / METADATA_FILE).write_text("{not json")
    assert "unreadable" in _load_error(artifact_copy)


def test_truncated_file_fails_the_checksum(artifact_copy: Path) -> None:
    model = artifact_copy / ARTIFACT_FILE
    model.write_bytes(model.read_bytes()[:1000])
    message = _load_error(artifact_copy)
    assert "corrupt" in message and ARTIFACT_FILE in message


def test_corrupt_file_with_matching_checksum_still_fails_cleanly(artifact_copy: Path) -> None:
    # Someone recomputed the checksum of a broken file: unpickling must still fail cleanly.
    import hashlib

    model = artifact_copy / ARTIFACT_FILE
    model.write_bytes(model.read_bytes()[:1000])
    artifact = {"file": ARTIFACT_FILE, "sha256": hashlib.sha256(model.read_bytes()).hexdigest()}
    _edit_metadata(artifact_copy, artifact=artifact)
    message = _load_error(artifact_copy)
    assert "could not be loaded" in message and ARTIFACT_FILE in message


def test_not_loaded_yet_is_not_ready() -> None:
    from ml_prod_api.errors import ModelNotReady

    with pytest.raises(ModelNotReady):
        TfidfProvider(SHIPPED).predict_batch(["hello"])


def test_fast_scorer_equals_scikit_learn_transform(provider: TfidfProvider) -> None:
    """The served path (the fast scorer) gives the reference logits to rounding error."""
    import numpy as np

    from ml_prod_api.providers.tfidf import normalize

    model = provider.model
    assert model.fast is not None
    texts = [
        "you are awful",
        "have a lovely day",
        "",
        "   ",
        "a",
        "é",
        "x" * 5000,
        "f*ck you i.d.i.o.t",
        "s t u p i d people",
        "🙂🙂 great game 🙂",
        "\u200bzero\u200bwidth",
        "RT @someone: this is trash lol http://t.co/abc",
        "the the the the the",
        "Ünïcödé wörds",
    ] + [f"sentence number {i} with some words like loser and friend" for i in range(40)]
    normalized = [normalize(t) for t in texts]
    reference = model.logits(normalized)
    fast = model.fast_logits(normalized)
    assert np.abs(reference - fast).max() < 1e-9
    # and batch composition does not change a text's score
    singles = np.concatenate([model.fast_logits([n]) for n in normalized])
    assert np.abs(singles - fast).max() < 1e-9


def test_the_word_cache_is_bounded_in_bytes(provider: TfidfProvider) -> None:
    """Distinct long random "words" (as an attacker sends them) must not grow the scorer's
    memory past its budget: each 5,000-letter word used to stay cached with its 20,000 n-gram
    ids, up to 131,072 of them."""
    import random
    import string
    import tracemalloc

    from ml_prod_api.providers.tfidf import fast

    budget = 128 << 10  # small, so that a few long words would pass it (tracing is slow)
    model = provider.model
    assert model.fast is not None
    scorer = fast.FastLinearScorer(
        model.word, model.char, model.coef_word, model.coef_char, cache_bytes=budget
    )
    rng = random.Random(16)
    letters = string.ascii_lowercase + "äöüßéèñçøå"
    entries = fast.word_cache_entries(model.char.get_params()["ngram_range"], budget)
    short = fast.MAX_CACHED_WORD_CHARS
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(6):  # about 350 KB of n-gram ids if they were kept
            scorer.linear(["".join(rng.choices(letters, k=5000))])
        # Then twice as many distinct words of the longest cached length as the cache holds.
        for _ in range(2 * entries // 50):
            scorer.linear([" ".join("".join(rng.choices(letters, k=short)) for _ in range(50))])
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert scorer.cached_char_ids.cache_info().currsize <= entries
    assert grown <= budget, f"{grown} bytes held after the cache filled, budget {budget}"
