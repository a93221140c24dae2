"""The validation-only judge never scores a test text; its gate says why a candidate fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training import judge_candidate
from training.corpus import load_corpus
from training.functional_suite import read_suite
from training.judge_candidate import gate, judge

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "training"


def test_judge_scores_validation_and_no_test_text(monkeypatch: pytest.MonkeyPatch) -> None:
    scored: list[str] = []
    real_score = judge_candidate.score

    def recording(provider: Any, texts: list[str], batch: int = 64) -> np.ndarray:
        scored.extend(texts)
        return real_score(provider, texts, batch)

    monkeypatch.setattr(judge_candidate, "score", recording)
    report = judge("tfidf", REPO / "models" / "tfidf", FIXTURES)

    corpus = load_corpus(FIXTURES, include_test=True, augment=False)
    # The fixtures' test rows borrow some suite sentences; those are scored as suite cases.
    elsewhere = {c.text for c in read_suite()} | set(corpus.val.texts) | set(corpus.train.texts)
    test_only = set(corpus.test.texts) - elsewhere
    assert test_only and not test_only & set(scored)
    assert set(corpus.val.texts) <= set(scored)
    labels = np.asarray(corpus.val.labels)
    sources = np.asarray(corpus.val.sources)
    both = {s for s in set(corpus.val.sources) if len(set(labels[sources == s])) == 2}
    assert set(report["val_roc_auc"]) == both
    assert 0 <= report["val_tweets_without_mentions_roc_auc"] <= 1
    assert report["model_version"].startswith("tfidf-")
    assert 0 <= report["hateful_at_floor"] <= 8


def figures(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "val_roc_auc": {"tweeteval_offensive": 0.84, "edos": 0.82},
        "val_mean_roc_auc": 0.873,
        "val_tweets_without_mentions_roc_auc": 0.80,
        "val_pooled_ece": 0.033,
        "heldout_identity_auc": 0.975,
        "bias_madlibs_auc": 0.987,
        "bias_madlibs_worst_fpr": 0.056,
        "hateful_at_floor": 7,
        "functional_suite": {
            "identity mention, neutral": 1.0,
            "negated hate": 0.83,
            "counter-speech quoting hate": 0.96,
            "direct threat": 0.73,
        },
    }
    base.update(changes)
    return base


def test_gate_passes_a_better_candidate_and_names_what_a_worse_one_misses() -> None:
    reference = figures()
    better = figures(val_roc_auc={"tweeteval_offensive": 0.86, "edos": 0.82})
    assert all(gate(better, reference).values())
    assert not gate(reference, reference)["tweet validation ROC-AUC > reference's"]

    worse = figures(
        val_roc_auc={"tweeteval_offensive": 0.86, "edos": 0.82},
        val_mean_roc_auc=0.860,
        val_tweets_without_mentions_roc_auc=0.79,
        hateful_at_floor=6,
        functional_suite={**reference["functional_suite"], "counter-speech quoting hate": 0.55},
    )
    failed = {name for name, ok in gate(worse, reference).items() if not ok}
    assert failed == {
        "mean validation ROC-AUC >= reference's",
        "tweet validation ROC-AUC without mentions >= reference's",
        "hateful functionalities at 0.70 >= reference's",
        "suite negation and counter-speech >= 0.60",
    }
