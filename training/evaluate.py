"""Evaluate a `tfidf` artifact; also run at the end of `train_tfidf.py`.

    python -m training.evaluate [--model models/tfidf] [--write-metadata]

Scores go through the serving code path (`TfidfProvider.load` and `predict_batch`), so what is
measured is what is served. Reports, at the threshold recorded in the artifact:

- tweeteval_offensive val and test (the in-domain test, touched once per model): ROC-AUC, PR-AUC,
  macro-F1, precision, recall, confusion matrix and expected calibration error (ECE);
- bias_madlibs: AUC per identity term and the false-positive rate on non-toxic sentences that
  merely name an identity; the ten worst terms;
- PNG plots under docs/model/: ROC, precision-recall, reliability diagram, bias chart.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from ml_prod_api.providers.tfidf import METADATA_FILE, TfidfProvider
from training.data_sources import (
    DEFAULT_DATA_DIR,
    DataFileMissing,
    read_bias_madlibs,
    read_tweeteval,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

ECE_BINS = 15

# The identity terms of bias_madlibs (its file names no term column, so it is found in the text).
# Two-word terms first so `african american` is not counted as `american`.
IDENTITY_TERMS = (
    "african american",
    "middle eastern",
    "middle aged",
    "lesbian",
    "gay",
    "bisexual",
    "transgender",
    "trans",
    "queer",
    "lgbt",
    "lgbtq",
    "homosexual",
    "straight",
    "heterosexual",
    "male",
    "female",
    "nonbinary",
    "african",
    "black",
    "white",
    "european",
    "hispanic",
    "latino",
    "latina",
    "latinx",
    "mexican",
    "canadian",
    "american",
    "asian",
    "indian",
    "chinese",
    "japanese",
    "christian",
    "muslim",
    "jewish",
    "buddhist",
    "catholic",
    "protestant",
    "sikh",
    "taoist",
    "old",
    "older",
    "young",
    "younger",
    "teenage",
    "millenial",
    "elderly",
    "blind",
    "deaf",
    "paralyzed",
)
_TERM_RE = re.compile(r"\b(" + "|".join(map(re.escape, IDENTITY_TERMS)) + r")\b")


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Equal-width-bin ECE: the sample-weighted gap between mean confidence and observed rate."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(proba, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            ece += mask.mean() * abs(proba[mask].mean() - y[mask].mean())
    return float(ece)


def split_metrics(proba: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Any]:
    predicted = (proba >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, predicted, labels=[0, 1]).ravel()
    return {
        "rows": int(len(y)),
        "toxic": int(y.sum()),
        "threshold": threshold,
        "roc_auc": round(float(roc_auc_score(y, proba)), 4),
        "pr_auc": round(float(average_precision_score(y, proba)), 4),
        "macro_f1": round(float(f1_score(y, predicted, average="macro")), 4),
        "precision": round(float(precision_score(y, predicted, zero_division=0)), 4),
        "recall": round(float(recall_score(y, predicted)), 4),
        "accuracy": round(float((predicted == y).mean()), 4),
        "ece": round(expected_calibration_error(proba, y), 4),
        "brier": round(float(np.mean((proba - y) ** 2)), 4),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }


def identity_term(text: str) -> str | None:
    match = _TERM_RE.search(text.lower())
    return match.group(1) if match else None


def bias_report(
    proba: np.ndarray, y: np.ndarray, texts: list[str], threshold: float
) -> dict[str, Any]:
    terms = np.asarray([identity_term(t) or "" for t in texts], dtype=object)
    per_term: dict[str, dict[str, float | int]] = {}
    for term in IDENTITY_TERMS:
        mask = terms == term
        if not mask.any() or len(set(y[mask])) < 2:
            continue
        benign = mask & (y == 0)
        per_term[term] = {
            "rows": int(mask.sum()),
            "auc": round(float(roc_auc_score(y[mask], proba[mask])), 4),
            "fpr": round(float((proba[benign] >= threshold).mean()), 4),
            "mean_benign_score": round(float(proba[benign].mean()), 4),
        }
    with_term = terms != ""
    benign_all = with_term & (y == 0)
    # "Worst" = lowest AUC within the term's own sentences, then highest false-positive rate.
    worst = sorted(per_term, key=lambda t: (per_term[t]["auc"], -per_term[t]["fpr"]))[:10]
    return {
        "rows": int(with_term.sum()),
        "overall_auc": round(float(roc_auc_score(y[with_term], proba[with_term])), 4),
        "overall_fpr": round(float((proba[benign_all] >= threshold).mean()), 4),
        "per_term": per_term,
        "worst_terms": worst,
    }


# --- plots ---------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display here
    import matplotlib.pyplot as plt

    return plt


def plot_curves(splits: dict[str, tuple[np.ndarray, np.ndarray]], plots_dir: Path) -> list[Path]:
    plt = _pyplot()
    written = []
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (proba, y) in splits.items():
        fpr, tpr, _ = roc_curve(y, proba)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, proba):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(
        xlabel="false-positive rate", ylabel="true-positive rate", title="ROC, tweeteval_offensive"
    )
    ax.legend(loc="lower right")
    written.append(_save(fig, plots_dir / "roc.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (proba, y) in splits.items():
        precision, recall, _ = precision_recall_curve(y, proba)
        ax.plot(recall, precision, label=f"{name} (AP {average_precision_score(y, proba):.3f})")
        ax.axhline(y.mean(), color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, tweeteval_offensive")
    ax.legend(loc="upper right")
    written.append(_save(fig, plots_dir / "precision_recall.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    edges = np.linspace(0, 1, ECE_BINS + 1)
    for name, (proba, y) in splits.items():
        index = np.clip(np.digitize(proba, edges[1:-1]), 0, ECE_BINS - 1)
        conf, rate, count = [], [], []
        for b in range(ECE_BINS):
            mask = index == b
            if mask.sum() >= 5:  # a bin of two texts says nothing
                conf.append(proba[mask].mean())
                rate.append(y[mask].mean())
                count.append(mask.sum())
        ece = expected_calibration_error(proba, y)
        ax.plot(conf, rate, marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect")
    ax.set(
        xlabel="predicted probability_toxic",
        ylabel="observed toxic rate",
        title="Reliability diagram",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left")
    written.append(_save(fig, plots_dir / "reliability.png"))
    return written


def plot_bias(bias: dict[str, Any], plots_dir: Path) -> Path:
    plt = _pyplot()
    per_term = bias["per_term"]
    terms = sorted(per_term, key=lambda t: per_term[t]["fpr"])
    fig, (ax_fpr, ax_auc) = plt.subplots(1, 2, figsize=(10, 11), sharey=True)
    ys = np.arange(len(terms))
    ax_fpr.barh(ys, [per_term[t]["fpr"] for t in terms], color="tab:red")
    ax_fpr.axvline(bias["overall_fpr"], color="black", linestyle=":", label="all terms")
    ax_fpr.set(
        yticks=ys,
        yticklabels=terms,
        xlabel="false-positive rate on non-toxic sentences",
        title="FPR per identity term (lower is better)",
    )
    ax_fpr.legend(loc="lower right")
    ax_auc.barh(ys, [per_term[t]["auc"] for t in terms], color="tab:blue")
    ax_auc.axvline(bias["overall_auc"], color="black", linestyle=":", label="all terms")
    ax_auc.set(
        xlabel="ROC-AUC within the term's sentences",
        xlim=(0.5, 1.0),
        title="AUC per identity term (higher is better)",
    )
    ax_auc.legend(loc="lower right")
    fig.suptitle("Unintended bias on bias_madlibs")
    return _save(fig, plots_dir / "bias_madlibs.png")


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    # No timestamp or version in the PNG, so a retrain with the same scores changes no bytes.
    fig.savefig(path, dpi=90, metadata={"Software": None})
    _pyplot().close(fig)
    return path


# --- entry points --------------------------------------------------------------------------


def score_all(provider: Any, texts: list[str], batch: int = 64) -> list[Any]:
    """Every text's `Score` through a loaded provider, in input order.

    Batches are sorted by length so a transformer pads little; the order is restored on the way
    out.
    """
    from tqdm import tqdm

    out: list[Any] = [None] * len(texts)
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in tqdm(range(0, len(texts), batch), desc="score", unit="batch", leave=False):
        index = order[start : start + batch]
        for i, s in zip(index, provider.predict_batch([texts[i] for i in index]), strict=True):
            out[i] = s
    return out


def score(provider: Any, texts: list[str], batch: int = 64) -> np.ndarray:
    """probability_toxic of every text through a loaded provider, in input order."""
    return np.asarray(
        [s.probability_toxic for s in score_all(provider, texts, batch)], dtype=np.float64
    )


def evaluate_artifact(
    artifact: Path,
    offensive_dir: Path,
    bias_madlibs: Path,
    plots_dir: Path | None,
) -> dict[str, Any]:
    provider = TfidfProvider(artifact)
    provider.load()
    threshold = provider.default_threshold
    threshold = 0.5 if threshold is None else threshold

    metrics: dict[str, Any] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in ("val", "test"):
        part = read_tweeteval(offensive_dir, split, f"tweeteval_offensive/{split}")
        y = np.asarray(part.labels)
        proba = score(provider, part.texts, batch=1024)
        metrics[split] = split_metrics(proba, y, threshold)
        curves[split] = (proba, y)
    madlibs = read_bias_madlibs(bias_madlibs)
    m_proba = score(provider, madlibs.texts, batch=1024)
    metrics["bias_madlibs"] = bias_report(
        m_proba, np.asarray(madlibs.labels), madlibs.texts, threshold
    )
    if plots_dir is not None:
        plot_curves(curves, plots_dir)
        plot_bias(metrics["bias_madlibs"], plots_dir)
    metrics["evaluated"] = {
        "model_version": provider.version,
        "ece_bins": ECE_BINS,
        # A model refitted on train + val has seen the validation split: its val figures are
        # in-sample; the honest ones are under `selection` in the metadata.
        "val_in_training_data": bool(provider.metadata.get("refit_with_val", False)),
    }
    selection = provider.metadata.get("selection", {}).get("val_at_oof_threshold")
    if selection:
        metrics["val_before_refit"] = selection
    return metrics


def print_report(metrics: dict[str, Any]) -> None:
    print(f"model {metrics['evaluated']['model_version']}")
    splits = ["val", "test"]
    if metrics["evaluated"].get("val_in_training_data"):
        print(
            "note: this model was refitted on train + val, so `val` is in-sample;\n"
            "      `val_before_refit` is the same configuration fitted on train only"
        )
        if "val_before_refit" in metrics:
            splits.insert(0, "val_before_refit")
    for split in splits:
        m = metrics[split]
        cm = m["confusion_matrix"]
        print(
            f"{split} n={m['rows']}\n     ROC-AUC {m['roc_auc']:.4f}  "
            f"PR-AUC {m['pr_auc']:.4f}  "
            f"macro-F1 {m['macro_f1']:.4f}  precision {m['precision']:.4f}  "
            f"recall {m['recall']:.4f}  ECE {m['ece']:.4f}  @ threshold {m['threshold']}"
        )
        print(f"     confusion: tn={cm['tn']} fp={cm['fp']} fn={cm['fn']} tp={cm['tp']}")
    bias = metrics["bias_madlibs"]
    print(
        f"bias_madlibs n={bias['rows']} AUC {bias['overall_auc']:.4f}  "
        f"FPR on non-toxic identity sentences {bias['overall_fpr']:.4f}"
    )
    print("ten worst identity terms (AUC, FPR):")
    for term in bias["worst_terms"]:
        t = bias["per_term"][term]
        print(f"     {term:<16} AUC {t['auc']:.4f}  FPR {t['fpr']:.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate", description="Evaluate a tfidf artifact."
    )
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "tfidf")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--plots-dir", type=Path, default=REPO_ROOT / "docs" / "model")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--write-metadata", action="store_true", help="store the metrics in the metadata.json"
    )
    args = parser.parse_args(argv)
    try:
        metrics = evaluate_artifact(
            args.model,
            offensive_dir=args.data_dir / "tweeteval_offensive",
            bias_madlibs=args.data_dir / "bias_madlibs" / "bias_madlibs_77k.csv",
            plots_dir=None if args.no_plots else args.plots_dir,
        )
    except DataFileMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_report(metrics)
    if args.write_metadata:
        path = (args.model if args.model.is_dir() else args.model.parent) / METADATA_FILE
        metadata = json.loads(path.read_text(encoding="utf-8"))
        metadata["metrics"] = metrics
        path.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
