"""Where two models' ROC-AUC on a source's split differ: inside or across the strata of texts
with and without profanity, a slur or an insult.

    python -m training.profanity_strata --model models/onnx --reference DIR
        [--provider onnx] [--reference-provider onnx] [--source tweeteval_offensive]
        [--split test|validation] [--floor 0.5]

Each model is scored as served (`evaluate_sources.make_scorer`). The split is cut by
`augment.has_abuse` (the strong words: profanity, slurs, personal insults). Printed per model:
ROC-AUC overall and within each stratum, the within-strata ROC-AUC (every toxic text compared only
with the non-toxic texts of its own stratum, pairs pooled over both strata), and the mean score
per stratum and label. A model can rank texts within each stratum as well as another and still
lose overall ROC-AUC by how far it places one stratum above the other: that part is the words
themselves, which is what a source whose labels call every profanity offensive rewards, and what
this service's definition of toxic (profanity for emphasis is not) does not.

Also printed: the ROC-AUC the model would have if every text with abuse words scored at least
`--floor` and nothing else changed, i.e. how much of its ROC-AUC on this split the words alone
would buy. Comparing that on the validation and the test split tells whether a training change
that lifts profanity (chosen on validation) could move the test figure.

The test split is for reporting, never for choosing a model or a threshold.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from training.augment import has_abuse
from training.corpus import load_corpus
from training.data_sources import DEFAULT_DATA_DIR, run_script
from training.evaluate import score
from training.evaluate_sources import make_scorer

PROVIDERS = ("tfidf", "onnx", "transformer", "cascade")


def within_strata_auc(scores: np.ndarray, labels: np.ndarray, strata: np.ndarray) -> float:
    """ROC-AUC over the (toxic, non-toxic) pairs of the same stratum only, pooled: each stratum's
    ROC-AUC weighed by its number of such pairs."""
    total = pairs = 0.0
    for value in np.unique(strata):
        mask = strata == value
        positives, negatives = int(labels[mask].sum()), int((labels[mask] == 0).sum())
        if positives and negatives:
            auc = float(roc_auc_score(labels[mask], scores[mask]))
            total += auc * positives * negatives
            pairs += positives * negatives
    if not pairs:
        raise ValueError("no stratum holds both labels")
    return total / pairs


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def strata_report(
    scores: np.ndarray, labels: np.ndarray, strata: np.ndarray, floor: float = 0.5
) -> dict[str, Any]:
    """The figures the module docstring lists, for one model's scores."""
    out: dict[str, Any] = {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "within_strata_roc_auc": within_strata_auc(scores, labels, strata),
        "floor": floor,
        "roc_auc_floored": float(
            roc_auc_score(labels, np.where(strata, np.maximum(scores, floor), scores))
        ),
    }
    for name, mask in (("with abuse words", strata), ("without", ~strata)):
        out[name] = {
            "rows": int(mask.sum()),
            "toxic_share": float(labels[mask].mean()),
            "roc_auc": float(roc_auc_score(labels[mask], scores[mask]))
            if len(set(labels[mask].tolist())) == 2
            else None,
            "mean_score_toxic": _mean(scores[mask & (labels == 1)]),
            "mean_score_non_toxic": _mean(scores[mask & (labels == 0)]),
        }
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.profanity_strata", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--provider", choices=PROVIDERS, default="onnx")
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--reference-provider", choices=PROVIDERS, default="onnx")
    parser.add_argument("--source", default="tweeteval_offensive")
    parser.add_argument("--split", choices=("test", "validation"), default="test")
    parser.add_argument(
        "--floor",
        type=float,
        default=0.5,
        help="also report ROC-AUC with every text with abuse words scored at least this",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    corpus = load_corpus(args.data_dir, include_test=args.split == "test", augment=False)
    split = corpus.test if args.split == "test" else corpus.val
    rows = [i for i, source in enumerate(split.sources) if source == args.source]
    if not rows:
        raise SystemExit(f"no {args.split} rows of {args.source!r}")
    texts = [split.texts[i] for i in rows]
    labels = np.asarray([split.labels[i] for i in rows])
    strata = np.asarray([has_abuse(text) for text in texts])
    out: dict[str, Any] = {}
    for name, provider_name, path in (
        ("model", args.provider, args.model),
        ("reference", args.reference_provider, args.reference),
    ):
        provider, _ = make_scorer(provider_name, path)
        out[f"{name} ({provider.version})"] = strata_report(
            score(provider, texts), labels, strata, args.floor
        )
    return out


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    def figure(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    print(f"{args.source} {args.split} split")
    for name, r in result.items():
        print(f"\n{name}")
        print(
            f"  ROC-AUC {r['roc_auc']:.3f}, within strata {r['within_strata_roc_auc']:.3f}, "
            f"with abuse words scored >= {r['floor']:g} {r['roc_auc_floored']:.3f}"
        )
        for stratum in ("with abuse words", "without"):
            s = r[stratum]
            print(
                f"  {stratum:16s} rows {s['rows']:5d}, toxic {s['toxic_share']:.2f}, "
                f"ROC-AUC {figure(s['roc_auc'])}, mean score toxic "
                f"{figure(s['mean_score_toxic'])} / non-toxic {figure(s['mean_score_non_toxic'])}"
            )


def main(argv: list[str] | None = None) -> int:
    return run_script(parse_args, run, report, argv)


if __name__ == "__main__":
    raise SystemExit(main())
