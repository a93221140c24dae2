"""`training.select_cascade_band`: the band search, the stage-2 map, and the script end to end on
the committed fixture sample with the shipped models (no ../shared)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ml_prod_api.providers.cascade import CascadeSettings
from training import select_cascade_band as band
from training.corpus import EVALUATED_SOURCES, load_corpus
from training.selection import fit_platt

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "training"


def synthetic(seed: int = 3, n: int = 600) -> band.ValScores:
    """Two sources; stage 2 ranks well, stage 1 is noisy in the middle of its range."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    stage2 = np.clip(0.15 + 0.7 * y + rng.normal(0, 0.15, n), 0.01, 0.99)
    stage1 = np.clip(0.5 + 0.6 * (stage2 - 0.5) + rng.normal(0, 0.12, n), 0.001, 0.999)
    sources = ["tweeteval_offensive"] * (n // 2) + ["edos"] * (n - n // 2)
    return band.ValScores(stage1, stage2, y, sources)


def test_the_chosen_band_meets_the_budget_and_a_looser_one_costs_less() -> None:
    scores = synthetic()
    rows = band.evaluate_bands(scores, band.candidate_bands(scores.stage1, step=0.05))
    strict, loose = band.cheapest(rows, 0.002), band.cheapest(rows, 0.05)
    assert strict is not None and loose is not None
    assert loose["share"] < strict["share"]
    for chosen, budget in ((strict, 0.002), (loose, 0.05)):
        combined, inside, _, _ = band.combine(scores, chosen["low"], chosen["high"])
        for mask in scores.masks.values():
            onnx = roc_auc_score(scores.labels[mask], scores.stage2[mask])
            assert roc_auc_score(scores.labels[mask], combined[mask]) >= onnx - budget - 1e-12
        assert scores.share(inside) == pytest.approx(chosen["share"])
    # No budget at all is met by the band that covers everything: onnx alone.
    exact = band.cheapest(rows, 0.0)
    assert exact is not None and exact["worst_gap"] <= 0.0


def test_the_stage_2_map_keeps_its_order_and_calibrates_inside_the_band() -> None:
    scores = synthetic()
    combined, inside, a, b = band.combine(scores, 0.3, 0.7)
    assert a > 0
    order = np.argsort(scores.stage2[inside])
    assert np.all(np.diff(combined[inside][order]) >= 0)
    # Calibrated where it answers: mean predicted = observed rate (source-balanced weights).
    w = scores.weights[inside]
    assert np.average(combined[inside], weights=w) == pytest.approx(
        np.average(scores.labels[inside], weights=w), abs=0.01
    )
    # Outside the band the tfidf score is kept as it is.
    assert np.array_equal(combined[~inside], scores.stage1[~inside])


def test_the_map_is_fitted_as_the_trainers_fit_platt() -> None:
    scores = synthetic()
    inside = (scores.stage1 >= 0.25) & (scores.stage1 <= 0.75)
    margin = band.logit(scores.stage2[inside])
    y, w = scores.labels[inside], scores.weights[inside]
    assert band.fit_map(margin, y, w) == pytest.approx(fit_platt(margin, y, w), abs=1e-4)


def test_too_few_texts_inside_the_band_keep_the_stage_2_scores() -> None:
    scores = synthetic()
    assert band.stage2_map(scores, scores.stage1 > 2.0) == (1.0, 0.0)


def test_short_texts_get_a_band_of_their_own_when_stage_1_is_surer_of_them() -> None:
    """Stage 1 is nearly as good as stage 2 on short texts and noisy on long ones: the pair of
    bands meets the budget and sends fewer texts to stage 2 than any single band can."""
    rng = np.random.default_rng(5)
    n = 1200
    y = rng.integers(0, 2, n)
    words = rng.choice([5, 40], n)
    stage2 = np.clip(0.15 + 0.7 * y + rng.normal(0, 0.15, n), 0.01, 0.99)
    noise = np.where(words <= 8, 0.02, 0.2)
    stage1 = np.clip(0.5 + 0.6 * (stage2 - 0.5) + rng.normal(0, 1, n) * noise, 0.001, 0.999)
    sources = ["tweeteval_offensive"] * (n // 2) + ["edos"] * (n - n // 2)
    scores = band.ValScores(stage1, stage2, y, sources, words)
    budget = 0.005
    single, _ = band.select(scores, budget, step=0.05)
    paired, _ = band.select(scores, budget, step=0.05, short_text_cuts=(8, 20))
    assert single["short"] is None
    assert paired["short"] is not None
    cut, (low, high) = paired["short"]
    assert cut in (8, 20)
    assert high - low < paired["high"] - paired["low"]  # a narrower band for the sure texts
    assert paired["share"] < single["share"]
    combined, inside, _, _ = band.combine(scores, paired["low"], paired["high"], paired["short"])
    assert scores.share(inside) == pytest.approx(paired["share"])
    for mask in scores.masks.values():
        onnx = roc_auc_score(scores.labels[mask], scores.stage2[mask])
        assert roc_auc_score(scores.labels[mask], combined[mask]) >= onnx - budget - 1e-12
    # Without word counts there is no short band to choose.
    with pytest.raises(ValueError, match="word counts"):
        band.in_bands(band.ValScores(stage1, stage2, y, sources), (0.0, 1.0), (8, (0.0, 1.0)))


@pytest.mark.slow
def test_the_script_writes_a_band_the_provider_serves(tmp_path: Path) -> None:
    out = tmp_path / "cascade"
    args = ["--data-dir", str(FIXTURES), "--output", str(out), "--budget", "0.01"]
    assert band.main([*args, "--grid-step", "0.1"]) == 0
    metadata = json.loads((out / "metadata.json").read_text())
    low, high = metadata["band"]["low"], metadata["band"]["high"]
    assert 0.0 <= low <= high <= 1.0
    assert metadata["budget"]["max_gap"] == 0.01
    assert metadata["stage2_calibration"]["a"] > 0
    per_source = metadata["validation"]["per_source"]
    assert set(per_source) == set(load_corpus(FIXTURES, augment=False).val.sources)
    for figures in per_source.values():
        assert figures["roc_auc_cascade"] >= figures["roc_auc_onnx"] - 0.01 - 1e-4
        assert 0.0 <= figures["share_stage2"] <= 1.0

    provider = CascadeSettings(_env_file=None, model_path=out).build_provider()  # type: ignore[call-arg]
    provider.load()
    assert provider.default_threshold == metadata["threshold"]
    val = load_corpus(FIXTURES, augment=False).val
    scores = provider.predict_batch(val.texts)
    reached = np.mean([s.stage == "onnx" for s in scores])
    assert reached == pytest.approx(metadata["validation"]["share_stage2_pooled"], abs=1e-3)


@pytest.mark.slow
# The fixture sample names no identity term 20 times, so the identity-bias means are empty.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_per_source_evaluation_takes_the_cascade(tmp_path: Path) -> None:
    from training import evaluate_sources

    table = tmp_path / "cascade.md"
    args = ["--provider", "cascade", "--data-dir", str(FIXTURES), "--plots-dir", str(tmp_path)]
    assert evaluate_sources.main([*args, "--markdown", str(table)]) == 0
    text = table.read_text()
    assert "| answered by |" in text and "onnx" in text
    assert (tmp_path / "cascade_calibration.png").stat().st_size > 0
    # The optional source (HatEval) gets its own row; the mean stays on the default sources.
    rows = {
        line.split("|")[1].strip(): line.split("|")[4].strip()
        for line in text.splitlines()
        if line.startswith("| ") and line.count("|") > 6
    }
    assert "tweeteval_hate" in rows
    default = [float(v) for k, v in rows.items() if k in EVALUATED_SOURCES]
    assert float(rows["**mean** (default sources)"].strip("*")) == pytest.approx(
        np.mean(default), abs=2e-3
    )
