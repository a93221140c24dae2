"""What the two `identity_attack` head trainers share: the rows, the source weights, the choice of
C on validation and the head's entry in `metadata.json`.

The head is a linear score over features a trained model already has (tfidf's TF-IDF features in
`train_identity_head.py`, the fine-tuned encoder's pooled output in
`train_transformer_head.py`), fitted to `corpus.IDENTITY_ATTACK_MAPPING`'s target: an attack on
people for who they are, from the sources that say so. Rows whose source does not say (OLID
tweets, HateXplain's posts without a majority) are left out. The toxic score is never touched.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from training.corpus import IDENTITY_ATTACK, IDENTITY_ATTACK_MAPPING, UNKNOWN, Split, source_weight
from training.data_sources import run_script
from training.identity_validation import identity_auc, selection_score
from training.selection import (
    choose_threshold,
    fit_platt,
    per_source_auc,
    source_balanced_weights,
)

HEAD = IDENTITY_ATTACK
HEAD_MEANING = (
    "an attack on people for who they are (origin, religion, gender, sexuality, disability, "
    "...); the `hate` category of /v1/moderations"
)
# The head's own source weights over `corpus.SOURCES`': EDOS is down-weighted for toxicity because
# its `0` ("not sexist") may still be rude, which does not matter here, where sexism is the
# target itself (chosen on validation: MODEL_CARD.md, "The identity_attack heads").
HEAD_WEIGHTS: dict[str, float] = {"edos": 1.0}

# A fit for one C: (coefficients, intercept) of the head's margin.
Fit = Callable[[float], tuple[np.ndarray, float]]


def known(split: Split) -> tuple[list[str], np.ndarray, list[str]]:
    """The texts, identity_attack targets and sources of the rows whose target is known."""
    rows = [i for i, target in enumerate(split.identity) if target != UNKNOWN]
    return (
        [split.texts[i] for i in rows],
        np.asarray([split.identity[i] for i in rows], dtype=np.int64),
        [split.sources[i] for i in rows],
    )


def row_weights(sources: list[str], overrides: dict[str, float]) -> np.ndarray:
    return np.asarray([source_weight(s, overrides) for s in sources])


@dataclass(frozen=True)
class ChosenHead:
    """The head chosen on validation, calibrated: p = sigmoid(platt_a * margin + platt_b), and
    decided at `threshold`."""

    c: float
    coef: np.ndarray
    intercept: float
    score: float
    val_auc: dict[str, float]
    platt_a: float
    platt_b: float
    threshold: float

    def folded(self) -> tuple[np.ndarray, float]:
        """The calibrated head as one linear layer: sigmoid(x @ coef + intercept)."""
        return self.coef * self.platt_a, self.platt_a * self.intercept + self.platt_b

    def proba(self, x: Any) -> np.ndarray:
        coef, intercept = self.folded()
        out: np.ndarray = 1.0 / (1.0 + np.exp(-(x @ coef + intercept)))
        return out


def choose_head(
    fit: Fit,
    grid: list[float],
    x_val: Any,
    y_val: np.ndarray,
    val_sources: list[str],
    x_identity: Any,
    identity_terms: list[str],
    log: Callable[..., None],
) -> ChosenHead:
    """Fit the head for each C of `grid` and keep the best on validation: the mean per-source
    ROC-AUC of the head, averaged with the held-out identity AUC (benign identity sentences of the
    project's own writing against the validation identity attacks), as the trainers choose their
    models. Platt scaling on the validation splits (sources weighted equally) calibrates it,
    and its threshold is the one of best validation macro-F1 (sources weighted equally), the
    rule of the toxic thresholds. `x_val` and `x_identity` are anything `@ coef` works on
    (sparse or dense)."""
    results = []
    for c in grid:
        coef, intercept = fit(c)
        margin = x_val @ coef + intercept
        aucs = per_source_auc(margin, y_val, val_sources)
        # Pooled when no source has the 100 validation rows a per-source AUC needs (a sample).
        pooled = {"pooled": float(roc_auc_score(y_val, margin))}
        mean_auc = float(np.mean(list((aucs or pooled).values())))
        id_auc = identity_auc(margin[y_val == 1], x_identity @ coef + intercept, identity_terms)
        score = selection_score(mean_auc, id_auc)
        log("C=%-6g mean per-source val ROC-AUC %.4f, identity AUC %.4f", c, mean_auc, id_auc)
        results.append((score, c, coef, intercept, aucs | {"heldout_identity_auc": id_auc}))
    score, c, coef, intercept, aucs = max(results, key=lambda r: r[0])
    margin = x_val @ coef + intercept
    balance = source_balanced_weights(val_sources)
    platt_a, platt_b = fit_platt(margin, y_val, balance)
    proba = 1.0 / (1.0 + np.exp(-(platt_a * margin + platt_b)))
    threshold = choose_threshold(proba, y_val, balance)
    return ChosenHead(c, coef, float(intercept), score, aucs, platt_a, platt_b, threshold)


def head_metadata(
    head: ChosenHead,
    train_sources: list[str],
    y: np.ndarray,
    overrides: dict[str, float],
    val_proba: np.ndarray,
    y_val: np.ndarray,
    identity_proba: np.ndarray,
) -> dict[str, Any]:
    """The head's entry under `metadata.json`'s `heads`."""
    names = np.asarray(train_sources)
    counts = {
        source: {
            "train_rows": int((names == source).sum()),
            "train_attacks": int(y[names == source].sum()),
            "weight": source_weight(source, overrides),
        }
        for source in sorted(set(train_sources))
    }
    return {
        "meaning": HEAD_MEANING,
        "label_mapping": IDENTITY_ATTACK_MAPPING,
        "training_rows": counts,
        "C": head.c,
        "selection_score": round(head.score, 5),
        "val_roc_auc": {k: round(v, 4) for k, v in head.val_auc.items()},
        "platt_a": head.platt_a,
        "platt_b": head.platt_b,
        # `/v1/moderations` reports `hate` when a flagged text's head score reaches it.
        "threshold": head.threshold,
        # The share of the held-out benign identity sentences the head scores at 0.5 or more: a
        # head that flags "I am a proud gay man" as hate would be worse than none.
        "heldout_identity_sentences_at_0_5": round(float(np.mean(identity_proba >= 0.5)), 4),
        "val_pooled_mean_score": round(float(val_proba.mean()), 4),
        "val_pooled_attack_rate": round(float(y_val.mean()), 4),
    }


def run_head_trainer(
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    train: Callable[[argparse.Namespace], dict[str, Any]],
    argv: list[str] | None,
) -> int:
    """Both head trainers' `main` (`data_sources.run_script`), printing the head's validation
    ROC-AUCs."""

    def report(_: argparse.Namespace, metadata: dict[str, Any]) -> None:
        print(json.dumps(metadata["heads"][HEAD]["val_roc_auc"], indent=2))

    return run_script(parse_args, train, report, argv)
