"""Model selection, calibration and threshold on the validation splits, shared by both trainers.

Several sources are pooled for validation; each helper can weight them equally, so the largest
source does not decide alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fit_platt(
    margin: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None
) -> tuple[float, float]:
    """p = sigmoid(a * margin + b), by nearly unregularised 1-D logistic regression."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e6, solver="lbfgs", max_iter=1000, tol=1e-10)
    model.fit(margin.reshape(-1, 1), y, sample_weight=weights)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def macro_f1_by_threshold(
    proba: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The threshold grid [0.05, 0.95] (step 0.005) and the macro-F1 at each threshold."""
    from sklearn.metrics import f1_score

    grid = np.round(np.arange(0.05, 0.95001, 0.005), 3)
    scores = [
        f1_score(y, (proba >= t).astype(int), average="macro", sample_weight=weights) for t in grid
    ]
    return grid, np.asarray(scores)


def choose_threshold(proba: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The threshold in [0.05, 0.95] (step 0.005) with the best macro-F1 (as for tfidf)."""
    grid, scores = macro_f1_by_threshold(proba, y, weights)
    return float(grid[int(np.argmax(scores))])


def power_mean(values: Sequence[float], p: float = -5.0) -> float:
    """The generalised mean with exponent `p`; p = -5 (the Jigsaw bias metric's) lets the worst
    values weigh most."""
    arr = np.asarray(values, dtype=np.float64)
    return float(np.mean(arr**p) ** (1.0 / p))


def per_source_auc(
    margin: np.ndarray, labels: np.ndarray, sources: Sequence[str], min_rows: int = 100
) -> dict[str, float]:
    """ROC-AUC of each validation source that has both labels and at least `min_rows` rows."""
    from sklearn.metrics import roc_auc_score

    names = np.asarray(sources)
    out: dict[str, float] = {}
    for source in sorted(set(sources)):
        mask = names == source
        if len(set(labels[mask].tolist())) == 2 and mask.sum() >= min_rows:
            out[source] = float(roc_auc_score(labels[mask], margin[mask]))
    return out


def source_balanced_weights(sources: Sequence[str]) -> np.ndarray:
    """Per-row weights that give every validation source the same total weight."""
    names = np.asarray(sources)
    weights = np.zeros(len(names), dtype=np.float64)
    for source in set(sources):
        mask = names == source
        weights[mask] = 1.0 / mask.sum()
    balanced: np.ndarray = weights * len(names) / weights.sum()
    return balanced
