"""Choose the `cascade` provider's uncertainty band on every source's validation split.

    python -m training.select_cascade_band [--budget 0.005] [--output models/cascade]

The cascade serves the tfidf probability unless it falls inside the band, where the onnx model
answers instead. The band chosen is the cheapest one (the fewest texts sent to stage 2, every
source weighted equally) whose cascade keeps ROC-AUC within `--budget` of onnx alone on every
source's validation split. Test splits are never read here (`evaluate_sources.py --provider
cascade` reads them once the band is chosen).

One calibrated scale. Both stages are Platt-calibrated on these same validation splits, but the
onnx calibration was fitted on all texts, and the texts inside the band are the ones tfidf is
unsure of: there the onnx probability need not mean the observed toxic rate. So for every
candidate band a monotone map `sigmoid(a * logit(p_onnx) + b)` is fitted on the validation texts
inside it (sources weighted equally, as both models' calibrations were), which makes stage 2's
answers calibrated where it answers; outside the band, tfidf's calibration is a function of its
own score, so it holds there too. The map keeps stage 2's order, so ROC-AUC within the band is
onnx's own. The cascade's threshold is then chosen on its combined validation scores by the rule
both models use (best macro-F1, sources weighted equally), since neither stage's threshold
applies to the mix.

Short texts may get a band of their own. How sure tfidf can be depends on how much text it has:
a tweet of eight words and a forum post of sixty are not scored alike. So once the single band is
chosen, for each candidate word-count cut (`--short-text-cuts`) the band of texts of at most that
many words and the band of the longer ones are chosen again, one at a time from the single band
(two rounds, same grid, same budget); the cheapest pair that meets the budget is kept when it
sends fewer texts to stage 2 than the single band, and written as `short_texts`.

Scores come from the very stage providers the cascade serves with (`CascadeSettings`), loaded
once each. Writes `metadata.json` (band, map, threshold, the stages' model versions, and the
figures the band was chosen on) into the output folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from training.corpus import EVALUATED_SOURCES, load_corpus
from training.data_sources import DEFAULT_DATA_DIR, DataFileMissing
from training.evaluate import expected_calibration_error, score
from training.selection import choose_threshold, source_balanced_weights

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUDGET = 0.005
# Candidate band ends: these quantiles of the validation tfidf scores, plus 0 and 1.
GRID_STEP = 0.02
# Word-count cuts tried for a band of short texts of their own.
SHORT_TEXT_CUTS = (8, 12, 16, 24)
# Also recorded: the cheapest band at other budgets, to show what the budget costs.
TRADE_OFF_BUDGETS = (0.0025, 0.005, 0.01, 0.02, 0.03, 0.05)
_EPS = 1e-7


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    out: np.ndarray = np.log(q / (1.0 - q))
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = expit(x)  # no overflow for the large margins of a near-separable band
    return out


class ValScores:
    """Both stages' validation scores, labels and sources."""

    def __init__(
        self,
        stage1: np.ndarray,
        stage2: np.ndarray,
        labels: np.ndarray,
        sources: Sequence[str],
        words: np.ndarray | None = None,
    ) -> None:
        self.stage1 = stage1
        # Whitespace-separated words of each text, as the provider counts them.
        self.words = words
        self.stage2 = stage2
        self.labels = labels
        self.sources = np.asarray(sources)
        self.weights = source_balanced_weights(list(sources))
        self.names = [
            s
            for s in EVALUATED_SOURCES
            if (self.sources == s).any() and len(set(labels[self.sources == s].tolist())) == 2
        ]
        self.masks = {s: self.sources == s for s in self.names}

    def auc(self, proba: np.ndarray) -> dict[str, float]:
        return {s: float(roc_auc_score(self.labels[m], proba[m])) for s, m in self.masks.items()}

    def share(self, inside: np.ndarray) -> float:
        """The share of texts sent to stage 2, every source weighted equally."""
        return float(np.average(inside, weights=self.weights))


def fit_map(
    margin: np.ndarray, y: np.ndarray, weights: np.ndarray, iterations: int = 50
) -> tuple[float, float]:
    """`selection.fit_platt` (unregularised 1-D logistic regression, p = sigmoid(a * margin + b))
    by Newton's method in numpy: it is fitted once for each of about a thousand candidate bands,
    where scikit-learn's solver, called a thousand times, takes minutes. The same (a, b) to
    1e-4 (`tests/test_cascade_band.py` checks it against `fit_platt`)."""
    x = np.column_stack([margin, np.ones_like(margin)])
    theta = np.array([1.0, 0.0])
    for _ in range(iterations):
        p = sigmoid(x @ theta)
        gradient = x.T @ (weights * (p - y))
        hessian = (x * (weights * p * (1.0 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def stage2_map(scores: ValScores, inside: np.ndarray) -> tuple[float, float]:
    """(a, b) of the monotone map fitted inside the band; the identity where it cannot be fitted
    (too few texts, one class) or would reverse stage 2's order."""
    y = scores.labels[inside]
    if inside.sum() < 50 or len(set(y.tolist())) < 2:
        return 1.0, 0.0
    a, b = fit_map(logit(scores.stage2[inside]), y, scores.weights[inside])
    return (a, b) if 0 < a < 100 and np.isfinite(b) else (1.0, 0.0)


# (max_words, (low, high)): the band of texts of at most max_words words.
ShortBand = tuple[int, tuple[float, float]]


def word_counts(texts: Sequence[str]) -> np.ndarray:
    return np.asarray([len(t.split()) for t in texts])


def in_bands(scores: ValScores, band: tuple[float, float], short: ShortBand | None) -> np.ndarray:
    """Which texts reach stage 2: `short` = (max_words, (low, high)) for the short texts."""
    p = scores.stage1
    inside: np.ndarray = (p >= band[0]) & (p <= band[1])
    if short is not None:
        if scores.words is None:
            raise ValueError("a band for short texts needs the texts' word counts")
        max_words, (low, high) = short
        is_short = scores.words <= max_words
        inside = np.where(is_short, (p >= low) & (p <= high), inside)
    return inside


def combine(
    scores: ValScores, low: float, high: float, short: ShortBand | None = None
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The cascade's scores for one band (and a band of short texts): (scores, inside, a, b)."""
    inside = in_bands(scores, (low, high), short)
    a, b = stage2_map(scores, inside)
    combined = scores.stage1.copy()
    combined[inside] = sigmoid(a * logit(scores.stage2[inside]) + b)
    return combined, inside, a, b


def candidate_bands(stage1: np.ndarray, step: float = GRID_STEP) -> list[tuple[float, float]]:
    ends = np.unique(np.round(np.quantile(stage1, np.arange(step, 1.0, step)), 4))
    grid = [0.0, *ends.tolist(), 1.0]
    return [(lo, hi) for i, lo in enumerate(grid) for hi in grid[i:]]


def worst_gap(scores: ValScores, combined: np.ndarray, reference: dict[str, float]) -> float:
    """The largest ROC-AUC loss of `combined` against `reference` (onnx alone) over sources."""
    auc = scores.auc(combined)
    return max(reference[s] - auc[s] for s in scores.names)


def evaluate_bands(scores: ValScores, bands: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """Every band's cost (share reaching stage 2) and worst ROC-AUC shortfall against onnx."""
    reference = scores.auc(scores.stage2)
    rows = []
    for low, high in bands:
        combined, inside, a, b = combine(scores, low, high)
        rows.append(
            {
                "low": low,
                "high": high,
                "share": scores.share(inside),
                "worst_gap": worst_gap(scores, combined, reference),
                "a": a,
                "b": b,
            }
        )
    return rows


def cheapest(rows: list[dict[str, Any]], budget: float) -> dict[str, Any] | None:
    """The feasible band with the smallest share reaching stage 2 (then the narrowest)."""
    feasible = [r for r in rows if r["worst_gap"] <= budget]
    if not feasible:
        return None
    return min(feasible, key=lambda r: (r["share"], r["high"] - r["low"]))


def select_short_band(
    scores: ValScores,
    chosen: dict[str, Any],
    budget: float,
    cuts: Sequence[int],
    step: float = GRID_STEP,
    rounds: int = 2,
) -> dict[str, Any]:
    """`chosen` with a band of short texts of its own (`short`) when one meets the budget for
    fewer texts at stage 2; `chosen` itself (`short` None) otherwise. For each cut the two bands
    are chosen in turn, each the cheapest on the grid with the other held (coordinate descent
    from the single band, so a pair is never dearer than it)."""
    reference = scores.auc(scores.stage2)
    bands = candidate_bands(scores.stage1, step)
    best = {**chosen, "short": None}
    for cut in cuts:
        long_band = short_band = (chosen["low"], chosen["high"])
        for _ in range(rounds):
            for part in ("short", "long"):
                # The candidates in order of their cost: the first that meets the budget is the
                # cheapest, and the costly part (the AUCs) is computed for few of them.
                trials = []
                for candidate in bands:
                    s_band = candidate if part == "short" else short_band
                    l_band = candidate if part == "long" else long_band
                    share = scores.share(in_bands(scores, l_band, (cut, s_band)))
                    trials.append((share, candidate, s_band, l_band))
                trials.sort(key=lambda t: (t[0], t[1][1] - t[1][0]))
                for _, _, s_band, l_band in trials:
                    combined, _, _, _ = combine(scores, l_band[0], l_band[1], short=(cut, s_band))
                    if worst_gap(scores, combined, reference) <= budget:
                        break  # the band held before is on the grid and meets it
                short_band, long_band = s_band, l_band
        combined, inside, a, b = combine(scores, *long_band, short=(cut, short_band))
        share = scores.share(inside)
        if share < best["share"] - 1e-9:
            best = {
                "low": long_band[0],
                "high": long_band[1],
                "short": (cut, short_band),
                "share": share,
                "worst_gap": worst_gap(scores, combined, reference),
                "a": a,
                "b": b,
            }
    return best


def report(scores: ValScores, chosen: dict[str, Any]) -> dict[str, Any]:
    """The figures the band was chosen on, per source and pooled."""
    combined, inside, _, _ = combine(scores, chosen["low"], chosen["high"], chosen.get("short"))
    per_source = {}
    auc1, auc2, auc_c = scores.auc(scores.stage1), scores.auc(scores.stage2), scores.auc(combined)
    for s, m in scores.masks.items():
        per_source[s] = {
            "rows": int(m.sum()),
            "toxic": int(scores.labels[m].sum()),
            "roc_auc_tfidf": round(auc1[s], 4),
            "roc_auc_onnx": round(auc2[s], 4),
            "roc_auc_cascade": round(auc_c[s], 4),
            "share_stage2": round(float(inside[m].mean()), 4),
        }
    y = scores.labels
    return {
        "per_source": per_source,
        "share_stage2_sources_weighted_equally": round(scores.share(inside), 4),
        "share_stage2_pooled": round(float(inside.mean()), 4),
        "worst_roc_auc_gap_to_onnx": round(chosen["worst_gap"], 4),
        "ece_pooled": {
            name: round(expected_calibration_error(p, y), 4)
            for name, p in (
                ("tfidf", scores.stage1),
                ("onnx", scores.stage2),
                ("cascade", combined),
            )
        },
    }


def stage_scores(data_dir: Path, models_dir: Path) -> tuple[ValScores, dict[str, Any], Any]:
    """Score every validation text with both of the cascade's stages."""
    from ml_prod_api.providers.cascade import CascadeSettings

    cascade = CascadeSettings(_env_file=None, models_dir=models_dir).build_provider()  # type: ignore[call-arg]
    cascade.stage1.load()
    cascade.stage2.load()
    corpus = load_corpus(data_dir, augment=False)
    val = corpus.val
    p1 = score(cascade.stage1, val.texts, batch=256)
    p2 = score(cascade.stage2, val.texts)
    scores = ValScores(p1, p2, np.asarray(val.labels), val.sources, word_counts(val.texts))
    return scores, corpus.files, cascade


def select(
    scores: ValScores,
    budget: float,
    step: float = GRID_STEP,
    short_text_cuts: Sequence[int] = (),
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rows = evaluate_bands(scores, candidate_bands(scores.stage1, step))
    chosen = cheapest(rows, budget)
    if chosen is None:  # cannot happen: the band [0, 1] is onnx alone, a gap of 0
        raise RuntimeError("no band meets the budget")
    chosen = {**chosen, "short": None}
    if short_text_cuts:
        chosen = select_short_band(scores, chosen, budget, short_text_cuts, step)
    return chosen, rows


def metadata(
    scores: ValScores,
    chosen: dict[str, Any],
    rows: list[dict[str, Any]],
    budget: float,
    stages: dict[str, dict[str, Any]],
    files: dict[str, str],
    step: float = GRID_STEP,
    short_text_cuts: Sequence[int] = (),
) -> dict[str, Any]:
    combined, _, _, _ = combine(scores, chosen["low"], chosen["high"], chosen.get("short"))
    threshold = choose_threshold(combined, scores.labels, scores.weights)
    trade_off = {}
    for b in TRADE_OFF_BUDGETS:
        best = cheapest(rows, b)
        if best is not None:
            trade_off[str(b)] = {
                "band": [best["low"], best["high"]],
                "share_stage2": round(best["share"], 4),
            }
    short = chosen.get("short")
    out: dict[str, Any] = {
        "provider": "cascade",
        "stages": stages,
        "band": {"low": chosen["low"], "high": chosen["high"]},
        "band_rule": "a text goes to stage 2 when low <= p_tfidf <= high"
        + ("; texts of at most short_texts.max_words words use short_texts' band" if short else ""),
        "stage2_calibration": {"a": round(chosen["a"], 6), "b": round(chosen["b"], 6)},
        "stage2_calibration_rule": "p = sigmoid(a * logit(p_onnx) + b), fitted on the "
        "validation texts inside the band, sources weighted equally",
        "threshold": threshold,
        "threshold_rule": "max macro-F1 of the cascade's validation scores, sources weighted "
        "equally",
        "budget": {
            "rule": "ROC-AUC within `max_gap` of onnx alone on every source's validation split; "
            "of the bands that meet it, the one sending the fewest texts to stage 2 (sources "
            "weighted equally)",
            "max_gap": budget,
            "grid": f"band ends at every {step:.0%} quantile of the validation tfidf scores, "
            "plus 0 and 1",
            "bands_tried": len(rows),
            "short_text_cuts_tried": list(short_text_cuts),
            "short_text_rule": "for each cut, the short texts' band and the longer texts' band "
            "chosen in turn (two rounds, same grid and budget, from the single band); the "
            "cheapest pair kept if it sends fewer texts to stage 2 than the single band",
        },
        "validation": report(scores, chosen),
        "trade_off": trade_off,
        "data_files": files,
    }
    if short is not None:
        out["short_texts"] = {"max_words": short[0], "low": short[1][0], "high": short[1][1]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.select_cascade_band", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET)
    parser.add_argument(
        "--grid-step", type=float, default=GRID_STEP, help="quantile step of the band ends"
    )
    parser.add_argument(
        "--short-text-cuts",
        default=",".join(map(str, SHORT_TEXT_CUTS)),
        help="word-count cuts tried for a band of short texts of their own; empty: one band",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--output", type=Path, help="default: MODELS_DIR/cascade")
    args = parser.parse_args(argv)
    try:
        scores, files, cascade = stage_scores(args.data_dir, args.models_dir)
    except DataFileMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cuts = [int(c) for c in args.short_text_cuts.split(",") if c.strip()]
    chosen, rows = select(scores, args.budget, args.grid_step, cuts)
    stages = {
        stage.name: {"model_version": stage.version, "threshold": stage.default_threshold}
        for stage in (cascade.stage1, cascade.stage2)
    }
    out = metadata(scores, chosen, rows, args.budget, stages, files, args.grid_step, cuts)
    folder = args.output or args.models_dir / "cascade"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metadata.json"
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    v = out["validation"]
    if chosen.get("short"):
        cut, (low, high) = chosen["short"]
        print(f"texts of at most {cut} words: band [{low}, {high}]; longer texts:")
    print(
        f"band [{chosen['low']}, {chosen['high']}], threshold {out['threshold']}, "
        f"stage 2 for {v['share_stage2_sources_weighted_equally']:.1%} of texts (sources weighted "
        f"equally; pooled {v['share_stage2_pooled']:.1%}), worst ROC-AUC gap to onnx "
        f"{v['worst_roc_auc_gap_to_onnx']:+.4f}; wrote {path}"
    )
    print("| source (val) | rows | tfidf | onnx | cascade | to stage 2 |")
    for s, r in v["per_source"].items():
        print(
            f"| {s} | {r['rows']} | {r['roc_auc_tfidf']:.4f} | {r['roc_auc_onnx']:.4f} | "
            f"{r['roc_auc_cascade']:.4f} | {r['share_stage2']:.1%} |"
        )
    print("ECE (every validation text pooled):", v["ece_pooled"])
    print("cheapest band per budget:", json.dumps(out["trade_off"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
