"""Held-out benign identity sentences for choosing a checkpoint and a threshold.

The source validation splits say how well a model ranks; they say little about the failure this
project cares most about: a benign sentence flagged only because it names an identity. These
sentences (own writing, frames used nowhere else: not by the training templates of `augment.py`,
not by the behavioural suite of `functional_suite.py`, and nothing from `bias_madlibs`, which stays
evaluation-only) are scored beside the validation splits, and

- `identity_auc` (threshold-free) says how well real toxic posts rank above them, the worst terms
  weighing most: with the mean per-source ROC-AUC it picks the checkpoint;
- `bias_aware_threshold` picks, among thresholds of nearly the best validation macro-F1, the one
  that flags the fewest of them.

Every frame is non-toxic; every term of `identity.py` fills every frame of its kind (adjective,
singular noun, plural group), so the terms of a kind have the same number of sentences.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.identity import ALL_ADJECTIVES, ALL_GROUPS, IDENTITY_NOUNS
from training.selection import macro_f1_by_threshold, power_mean

ADJECTIVE_FRAMES = (
    "my aunt is {adj} and runs a small flower shop",
    "a {adj} swimmer won gold at the regional games",
    "the podcast invited a {adj} historian to talk about bridges",
    "i'm {adj}. ask me anything about gardening",
    "our {adj} landlord fixed the boiler within a day",
    "the choir has several {adj} singers this year",
    "she's {adj} and the best chess player in our club",
    "as a {adj} dad i love taking my kids to the zoo",
    "a {adj} student asked a great question in the lecture",
    "the clinic hired a {adj} nurse who speaks four languages",
    "being {adj} has never stopped me from doing what i love",
    "he is {adj} and he volunteers at the animal shelter",
    # Short sentences, where the identity term is most of what there is to read: the hardest case
    # for a model that learned "names a group" -> toxic.
    "i'm {adj}",
    "she is {adj}",
    "my son is {adj}",
    "{adj} and happy",
    "we are {adj}",
    "he's a {adj} guy",
    "so {adj}, so what",
    "{adj} folks",
)

NOUN_FRAMES = (
    "the plumber who fixed our sink is a {noun}",
    "a {noun} and her daughter run the bakery by the station",
    "i'm a {noun}, a nurse and a mum of two",
    "a friendly {noun} showed us the way to the museum",
    "he is a {noun}",
    "a {noun} won the village quiz again",
)

GROUP_FRAMES = (
    "{grp} are welcome at our climbing club",
    "the council met with {grp} to plan the new park",
    "{grp} run many of the shops on the high street",
    "i learned a lot from {grp} at the workshop",
    "the charity offers free legal advice to {grp}",
    "{grp} and their families filled the stadium on sunday",
    "{grp} exist",
    "i know many {grp}",
    "hello to all {grp}",
)


def sentences() -> tuple[list[str], list[str]]:
    """The held-out benign sentences and the identity term each one names."""
    texts: list[str] = []
    terms: list[str] = []
    for frame in ADJECTIVE_FRAMES:
        for adj in ALL_ADJECTIVES:
            texts.append(frame.replace("{adj}", adj))
            terms.append(adj)
    for frame in NOUN_FRAMES:
        for noun in IDENTITY_NOUNS:
            texts.append(frame.replace("{noun}", noun))
            terms.append(noun)
    for frame in GROUP_FRAMES:
        for group in ALL_GROUPS:
            texts.append(frame.replace("{grp}", group))
            terms.append(group)
    return texts, terms


def worst_term_fpr(proba: np.ndarray, terms: Sequence[str], threshold: float) -> tuple[float, str]:
    """The largest share of one term's (benign) sentences at or above `threshold`, and the term."""
    term_arr = np.asarray(terms, dtype=object)
    worst, worst_term = 0.0, ""
    for term in sorted(set(terms)):
        rate = float((proba[term_arr == term] >= threshold).mean())
        if rate > worst:
            worst, worst_term = rate, term
    return worst, worst_term


def identity_auc(
    toxic_scores: np.ndarray, benign_scores: np.ndarray, terms: Sequence[str], power: float = -5.0
) -> float:
    """How well real toxic posts rank above each term's benign sentences, over all terms.

    Per term, the ROC-AUC of the validation splits' toxic rows against that term's held-out benign
    sentences (the Jigsaw challenge's BPSN AUC, with the benign side written here); the terms are
    pooled by the power mean with p = -5, as in the Jigsaw final bias metric, so the worst terms
    weigh most. Threshold-free, so it can pick a checkpoint before the threshold is chosen.
    """
    from sklearn.metrics import roc_auc_score

    term_arr = np.asarray(terms, dtype=object)
    aucs = []
    for term in sorted(set(terms)):
        benign = benign_scores[term_arr == term]
        y = np.r_[np.ones(len(toxic_scores)), np.zeros(len(benign))]
        aucs.append(float(roc_auc_score(y, np.r_[toxic_scores, benign])))
    return power_mean(aucs, power)


def selection_score(mean_source_auc: float, identity: float | None) -> float:
    """The checkpoint score: the mean per-source validation ROC-AUC, averaged with the held-out
    identity AUC when there is one (the Jigsaw bias metric likewise weighs the identity AUCs
    beside the overall one), so a checkpoint that ranks better by flagging identity mentions
    does not win."""
    return mean_source_auc if identity is None else (mean_source_auc + identity) / 2


def bias_aware_threshold(
    proba: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    identity_proba: np.ndarray,
    terms: Sequence[str],
    f1_tolerance: float = 0.01,
) -> dict[str, float | str]:
    """The threshold with the fewest held-out identity false positives among those within
    `f1_tolerance` of the best validation macro-F1 (sources weighted equally).

    The best-macro-F1 threshold alone is a coin toss between thresholds of nearly equal F1 that
    flag very different shares of benign identity sentences; this rule spends at most
    `f1_tolerance` of macro-F1 on flagging fewer of them (the worst term first, then all).
    """
    grid, f1 = macro_f1_by_threshold(proba, y, weights)
    best_f1 = float(f1.max())
    f1_threshold = float(grid[int(np.argmax(f1))])
    candidates = [i for i in range(len(grid)) if f1[i] >= best_f1 - f1_tolerance]

    def cost(i: int) -> tuple[float, float, float]:
        worst = worst_term_fpr(identity_proba, terms, float(grid[i]))[0]
        overall = float((identity_proba >= grid[i]).mean())
        return (worst, overall, -float(f1[i]))

    chosen = min(candidates, key=cost)
    worst, term = worst_term_fpr(identity_proba, terms, float(grid[chosen]))
    f1_worst, _ = worst_term_fpr(identity_proba, terms, f1_threshold)
    return {
        "threshold": float(grid[chosen]),
        "val_macro_f1": round(float(f1[chosen]), 4),
        "best_f1_threshold": f1_threshold,
        "best_val_macro_f1": round(best_f1, 4),
        "heldout_identity_worst_fpr": round(worst, 4),
        "heldout_identity_worst_term": term,
        "heldout_identity_worst_fpr_at_best_f1": round(f1_worst, 4),
        "heldout_identity_fpr": round(float((identity_proba >= grid[chosen]).mean()), 4),
    }
