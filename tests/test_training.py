"""`training.train_tfidf` end to end on the small committed fixture sample (no ../shared)."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest

from ml_prod_api.providers.tfidf import ARTIFACT_FILE, METADATA_FILE, TfidfProvider
from training import train_tfidf

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "training"

FAST = ["--grid-c", "2", "4", "--char-min-df", "1", "--word-min-df", "1"]


def train(tmp_path: Path, name: str, *extra: str) -> int:
    return train_tfidf.main(
        ["--data-dir", str(FIXTURES), "--output", str(tmp_path / name), *FAST, *extra]
    )  # fmt: skip


@pytest.mark.slow
def test_trains_on_every_source_and_is_deterministic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train(tmp_path, "a") == 0
    summary = capsys.readouterr().out
    assert "tfidf training summary" in summary and "selection score" in summary

    metadata = json.loads((tmp_path / "a" / METADATA_FILE).read_text())
    for key in ("model_version", "artifact", "sklearn_version", "threshold", "label_mapping",
                "hyperparameters", "training_data", "selection"):  # fmt: skip
        assert key in metadata
    sources = metadata["training_data"]["sources"]
    expected = {"tweeteval_offensive", "davidson", "hatexplain", "edos", "stormfront", "mlma_en",
                "convabuse", "toxigen_prompts", "templates", "counterfactual"}  # fmt: skip
    assert expected <= set(sources)
    assert all("test_rows" not in row for row in sources.values()), "test splits are not read"
    assert "tweeteval_offensive" in metadata["selection"]["val_roc_auc"]
    assert all(path.startswith("../") or "/" in path for path in metadata["training_data"]["files"])

    # The artifact serves through the real provider.
    provider = TfidfProvider(tmp_path / "a")
    provider.load()
    assert provider.version == metadata["model_version"]
    scores = provider.predict_batch(["you stupid bitch", "good morning"])
    assert len(scores) == 2

    # Same data, same seed: the same bytes and therefore the same scores.
    assert train(tmp_path, "b") == 0
    assert (tmp_path / "a" / ARTIFACT_FILE).read_bytes() == (
        tmp_path / "b" / ARTIFACT_FILE
    ).read_bytes()
    again = TfidfProvider(tmp_path / "b")
    again.load()
    texts = ["you stupid bitch", "good morning", "f u c k"]
    first = np.array([s.probability_toxic for s in provider.predict_batch(texts)])
    second = np.array([s.probability_toxic for s in again.predict_batch(texts)])
    assert np.abs(first - second).max() <= 1e-9


@pytest.mark.slow
def test_identity_words_alone_carry_no_weight(tmp_path: Path) -> None:
    """The trained model gives an identity word, and the n-grams inside it, zero weight: naming
    a group moves the score only through what is said around it."""
    assert train(tmp_path, "m") == 0
    model = joblib.load(tmp_path / "m" / ARTIFACT_FILE)
    word_vocab, char_vocab = model["word"].vocabulary_, model["char"].vocabulary_
    for word in ("gay", "muslims", "jewish", "women", "transgender", "black"):
        if word in word_vocab:
            assert model["coef_word"][word_vocab[word]] == 0.0, word
    for gram in (" gay", "gay ", " gay ", "musli", "jewis"):
        if gram in char_vocab:
            assert model["coef_char"][char_vocab[gram]] == 0.0, gram
    # Ordinary words keep their weights.
    assert any(model["coef_word"][i] != 0.0 for i in word_vocab.values())


def test_missing_data_file_names_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = train_tfidf.main(["--data-dir", str(tmp_path / "no-data"), "--output", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "dataset file not found" in err and str(tmp_path / "no-data") in err
