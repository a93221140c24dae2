"""The profanity-strata report: ROC-AUC within the strata of texts with and without abuse words
separates ranking inside each stratum from the placing of one stratum above the other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training import profanity_strata
from training.profanity_strata import strata_report, within_strata_auc

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "training"


def test_within_strata_auc_ignores_how_the_strata_are_placed() -> None:
    """Each stratum ranked perfectly, but the stratum with abuse words scored below the other
    one: ROC-AUC within the strata is 1, overall it is not."""
    labels = np.asarray([1, 0, 1, 0])
    strata = np.asarray([True, True, False, False])
    scores = np.asarray([0.3, 0.2, 0.9, 0.8])
    assert within_strata_auc(scores, labels, strata) == pytest.approx(1.0)
    report = strata_report(scores, labels, strata)
    assert report["roc_auc"] == pytest.approx(0.75)
    assert report["with abuse words"]["roc_auc"] == pytest.approx(1.0)
    assert report["with abuse words"]["mean_score_toxic"] == pytest.approx(0.3)
    assert report["without"]["mean_score_non_toxic"] == pytest.approx(0.8)


def test_pairs_of_each_stratum_weigh_by_their_number() -> None:
    """Stratum A: 2 x 1 pairs, both right; stratum B: 1 x 1 pair, wrong: 2 of 3 pairs right."""
    labels = np.asarray([1, 1, 0, 1, 0])
    strata = np.asarray([True, True, True, False, False])
    scores = np.asarray([0.9, 0.8, 0.1, 0.2, 0.7])
    assert within_strata_auc(scores, labels, strata) == pytest.approx(2 / 3)


def test_a_stratum_without_both_labels_is_left_out_and_none_is_refused() -> None:
    labels = np.asarray([1, 1, 1, 0])
    strata = np.asarray([True, True, False, False])
    assert within_strata_auc(np.asarray([0.1, 0.2, 0.9, 0.3]), labels, strata) == 1.0
    with pytest.raises(ValueError):
        within_strata_auc(np.asarray([0.1, 0.2]), np.asarray([1, 1]), np.asarray([True, False]))


def test_the_script_compares_two_served_models_on_a_test_split(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--model", str(REPO / "models" / "tfidf"), "--provider", "tfidf"]
    args += ["--reference", str(REPO / "models" / "tfidf"), "--reference-provider", "tfidf"]
    assert profanity_strata.main([*args, "--data-dir", str(FIXTURES)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tweeteval_offensive test split")
    assert out.count("ROC-AUC") >= 2 and "within strata" in out


def test_the_floor_lifts_only_texts_with_abuse_words() -> None:
    """The stratum with abuse words scored below the other: flooring it at 0.85 puts its toxic
    text above the clean non-toxic one (0.85 > 0.8) and leaves the clean texts as they were."""
    labels = np.asarray([1, 0, 1, 0])
    strata = np.asarray([True, True, False, False])
    scores = np.asarray([0.3, 0.2, 0.9, 0.8])
    report = strata_report(scores, labels, strata, floor=0.85)
    assert report["roc_auc"] == pytest.approx(0.75)
    # pairs (toxic, non-toxic): (0.85, 0.85) tie, (0.85, 0.8) right, (0.9, 0.85) right, (0.9, 0.8)
    assert report["roc_auc_floored"] == pytest.approx(3.5 / 4)
    assert strata_report(scores, labels, strata, floor=0.0)["roc_auc_floored"] == 0.75


def test_a_stratum_with_one_label_has_no_mean_for_the_other() -> None:
    labels = np.asarray([1, 1, 1, 0])
    strata = np.asarray([True, True, False, False])
    report = strata_report(np.asarray([0.9, 0.8, 0.7, 0.1]), labels, strata)
    assert report["with abuse words"]["mean_score_non_toxic"] is None
    assert report["with abuse words"]["roc_auc"] is None


def test_the_script_reads_the_validation_split_when_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tfidf = str(REPO / "models" / "tfidf")
    args = ["--model", tfidf, "--provider", "tfidf", "--reference", tfidf]
    args += ["--reference-provider", "tfidf", "--split", "validation", "--floor", "0.4"]
    assert profanity_strata.main([*args, "--data-dir", str(FIXTURES)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tweeteval_offensive validation split")
    assert "with abuse words scored >= 0.4" in out
