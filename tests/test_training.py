"""`training/train_tfidf.py` end to end on the small committed fixture sample (no ../shared)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ml_prod_api.providers.tfidf import ARTIFACT_FILE, METADATA_FILE, TfidfProvider

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "training"
sys.path.insert(0, str(REPO / "training"))

import train_tfidf  # noqa: E402

FAST = ["--grid-c", "2", "4", "--grid-davidson-weight", "0.3", "--folds", "2",
        "--char-min-df", "1", "--word-min-df", "1"]  # fmt: skip


def train(tmp_path: Path, name: str, *extra: str) -> int:
    return train_tfidf.main(
        ["--data-dir", str(FIXTURES), "--output", str(tmp_path / name),
         "--plots-dir", str(tmp_path / f"{name}-plots"), *FAST, *extra]
    )  # fmt: skip


@pytest.mark.slow
def test_trains_evaluates_and_is_deterministic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train(tmp_path, "a") == 0
    summary = capsys.readouterr().out
    assert "tfidf training summary" in summary and "test" in summary

    metadata = json.loads((tmp_path / "a" / METADATA_FILE).read_text())
    for key in ("model_version", "artifact", "sklearn_version", "threshold", "label_mapping",
                "hyperparameters", "training_data", "metrics"):  # fmt: skip
        assert key in metadata
    assert set(metadata["metrics"]) >= {"val", "test", "bias_madlibs"}
    assert {"roc_auc", "pr_auc", "macro_f1", "precision", "recall", "ece", "confusion_matrix"} <= (
        set(metadata["metrics"]["test"])
    )
    assert len(metadata["metrics"]["bias_madlibs"]["worst_terms"]) <= 10
    assert all(path.startswith("../") or "/" in path for path in metadata["training_data"]["files"])
    for plot in ("roc.png", "precision_recall.png", "reliability.png", "bias_madlibs.png"):
        assert (tmp_path / "a-plots" / plot).stat().st_size > 1000

    # The artifact serves through the real provider.
    provider = TfidfProvider(tmp_path / "a")
    provider.load()
    assert provider.version == metadata["model_version"]
    scores = provider.predict_batch(["you stupid bitch", "good morning"])
    assert len(scores) == 2

    # Same data, same seed: the same bytes and therefore the same scores.
    assert train(tmp_path, "b", "--skip-evaluation") == 0
    assert (tmp_path / "a" / ARTIFACT_FILE).read_bytes() == (
        tmp_path / "b" / ARTIFACT_FILE
    ).read_bytes()
    again = TfidfProvider(tmp_path / "b")
    again.load()
    texts = ["you stupid bitch", "good morning", "f u c k"]
    first = np.array([s.probability_toxic for s in provider.predict_batch(texts)])
    second = np.array([s.probability_toxic for s in again.predict_batch(texts)])
    assert np.abs(first - second).max() <= 1e-9


def test_missing_data_file_names_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = train_tfidf.main(["--data-dir", str(tmp_path / "no-data"), "--output", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "dataset file not found" in err and str(tmp_path / "no-data") in err
