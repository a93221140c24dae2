"""The training templates are this project's own writing, apart from the suite that judges them,
and the held-out identity sentences are apart from both."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from training.augment import template_rows
from training.identity_validation import bias_aware_threshold
from training.identity_validation import sentences as identity_sentences

SUITE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "functional_suite.csv"


def _normalised(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


def test_templates_never_replay_a_suite_case() -> None:
    with SUITE.open(encoding="utf-8", newline="") as handle:
        suite = {_normalised(row["text"]) for row in csv.DictReader(handle)}
    templates = {_normalised(row.text) for row in template_rows(seed=20190101, insults=True)}
    assert suite and templates
    assert not suite & templates, sorted(suite & templates)[:5]


def test_insult_templates_are_an_option_that_leaves_the_other_rows_as_they_were() -> None:
    """Off by default (the shipped recipe); on, the insults of a person come with the same
    frames' praise and the insulting words aimed at things, and every other row is unchanged."""
    plain = template_rows(seed=20190101)
    with_insults = template_rows(seed=20190101, insults=True)
    added = [row for row in with_insults if row not in plain]
    assert [row for row in with_insults if row in plain] == plain
    assert not any(row.kind == "insult of a person" for row in plain)
    kinds = {row.kind: row.label for row in added}
    assert kinds == {
        "insult of a person": 1,
        "praise of a person": 0,
        "abuse of things and ideas": 0,
    }


def test_heldout_identity_sentences_are_neither_trained_on_nor_judged_by() -> None:
    """The sentences that pick the checkpoint and the threshold are held out from training and
    from the suite, or the selection would reward replaying them."""
    with SUITE.open(encoding="utf-8", newline="") as handle:
        suite = {_normalised(row["text"]) for row in csv.DictReader(handle)}
    templates = {_normalised(row.text) for row in template_rows(seed=20190101)}
    texts, terms = identity_sentences()
    heldout = {_normalised(t) for t in texts}
    assert len(heldout) == len(texts) == len(terms)
    assert not heldout & templates, sorted(heldout & templates)[:5]
    assert not heldout & suite, sorted(heldout & suite)[:5]


def test_bias_aware_threshold_trades_a_little_f1_for_fewer_identity_false_positives() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(500), np.zeros(500)].astype(int)
    proba = np.clip(np.r_[rng.normal(0.7, 0.15, 500), rng.normal(0.3, 0.15, 500)], 0, 1)
    weights = np.ones(len(y))
    # One term's benign sentences sit just above the best-F1 threshold, another's far below.
    identity = np.r_[np.full(10, 0.51), np.full(10, 0.1)]
    terms = ["a"] * 10 + ["b"] * 10
    choice = bias_aware_threshold(proba, y, weights, identity, terms)
    assert choice["best_f1_threshold"] < 0.51  # the plain rule flags all of term "a"
    assert choice["heldout_identity_worst_fpr_at_best_f1"] == 1.0
    assert choice["threshold"] > 0.51 and choice["heldout_identity_worst_fpr"] == 0.0
    assert choice["val_macro_f1"] >= choice["best_val_macro_f1"] - 0.01
    # With no room in F1 the rule is the plain one.
    strict = bias_aware_threshold(proba, y, weights, identity, terms, f1_tolerance=0.0)
    assert strict["threshold"] == strict["best_f1_threshold"]
