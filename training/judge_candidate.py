"""Judge a candidate model on validation data only, and say whether it may be shipped.

    python -m training.judge_candidate --provider onnx --model DIR [--reference models/onnx]

What the rule for shipping a retrained model reads before any test split is opened (MODEL_CARD.md,
"Tried and not shipped"): the artifact is scored as served (`create_provider(Settings(...))`, its
own threshold and input normalisation) on

- every source's validation split: ROC-AUC per source with both labels, their mean, and the
  pooled expected calibration error; and the tweets' ROC-AUC once more with the `@user`
  mentions their replies start with removed (`corpus.without_leading_mentions`), since a model
  that reads a mention as the sign of a target judges other platforms' texts, which have none,
  worse;
- the held-out benign identity sentences (`identity_validation.py`): how well real toxic
  validation posts rank above each term's sentences, and the largest share of one term's
  sentences flagged;
- `bias_madlibs` (evaluation only): ROC-AUC and the largest per-term false-positive rate;
- the behavioural suite: accuracy per functionality.

`--reference` judges the shipped model the same way and checks the candidate against the rule:
the issue's targets on identity mentions, negation and counter-speech and `bias_madlibs`, the
held-out identity AUC, calibration, at least as many hateful functionalities at 0.70 as the
reference, a mean validation ROC-AUC no lower, a tweet validation ROC-AUC higher, and one
without the mentions no lower. The test
splits stay unread here: `evaluate_sources.py` reads them once a candidate has passed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from training.corpus import load_corpus, without_leading_mentions
from training.data_sources import DEFAULT_DATA_DIR, read_bias_madlibs, run_script
from training.evaluate import bias_report, expected_calibration_error, score
from training.evaluate_sources import make_scorer
from training.functional_suite import accuracy_by_functionality, read_suite
from training.identity_validation import identity_auc, sentences, worst_term_fpr
from training.selection import per_source_auc

TWEETS = "tweeteval_offensive"
HATEFUL_FLOOR = 0.70


def judge(provider_name: str, model: Path, data_dir: Path) -> dict[str, Any]:
    """The validation-only figures of one served artifact."""
    provider, threshold = make_scorer(provider_name, model)
    val = load_corpus(data_dir, augment=False).val
    y = np.asarray(val.labels)
    proba = score(provider, val.texts)
    tweets = [i for i, source in enumerate(val.sources) if source == TWEETS]
    bare = score(provider, [without_leading_mentions(val.texts[i]) for i in tweets])
    # Every source, the small ones too (toxigen_prompts has 31 validation rows): the mean of
    # all 8 is the figure the model card compares.
    per_source = {
        source: round(auc, 4)
        for source, auc in per_source_auc(proba, y, val.sources, min_rows=1).items()
    }

    id_texts, id_terms = sentences()
    id_proba = score(provider, id_texts)
    worst_fpr, worst_term = worst_term_fpr(id_proba, id_terms, threshold)

    madlibs = read_bias_madlibs(data_dir / "bias_madlibs" / "bias_madlibs_77k.csv")
    bias = bias_report(
        score(provider, madlibs.texts, batch=256),
        np.asarray(madlibs.labels),
        madlibs.texts,
        threshold,
    )

    suite = read_suite()
    functional = accuracy_by_functionality(
        suite, score(provider, [c.text for c in suite]).tolist(), threshold
    )
    return {
        "model_version": provider.version,
        "threshold": threshold,
        "val_roc_auc": per_source,
        "val_mean_roc_auc": round(float(np.mean(list(per_source.values()))), 4),
        "val_tweets_without_mentions_roc_auc": round(float(roc_auc_score(y[tweets], bare)), 4),
        "val_pooled_ece": round(expected_calibration_error(proba, y), 4),
        "heldout_identity_auc": round(identity_auc(proba[y == 1], id_proba, id_terms), 4),
        "heldout_identity_worst_fpr": {"term": worst_term, "fpr": round(worst_fpr, 4)},
        "bias_madlibs_auc": bias["overall_auc"],
        "bias_madlibs_worst_fpr": max(
            (float(t["fpr"]) for t in bias["per_term"].values()), default=0.0
        ),
        "functional_suite": {name: f["accuracy"] for name, f in functional.items()},
        "hateful_at_floor": sum(
            1
            for f in functional.values()
            if f["kind"] == "hateful" and float(f["accuracy"]) >= HATEFUL_FLOOR
        ),
    }


def gate(candidate: dict[str, Any], reference: dict[str, Any]) -> dict[str, bool]:
    """Each criterion of the shipping rule: True where the candidate meets it."""
    suite = candidate["functional_suite"]
    identity = [v for k, v in suite.items() if k.startswith("identity mention")]
    reading = [v for k, v in suite.items() if k.startswith(("negated", "counter-speech"))]
    return {
        "suite identity mentions >= 0.95": min(identity) >= 0.95,
        "suite negation and counter-speech >= 0.60": min(reading) >= 0.60,
        "hateful functionalities at 0.70 >= reference's": (
            candidate["hateful_at_floor"] >= reference["hateful_at_floor"]
        ),
        "bias_madlibs worst per-term FPR <= 0.15": candidate["bias_madlibs_worst_fpr"] <= 0.15,
        "bias_madlibs ROC-AUC >= 0.97": candidate["bias_madlibs_auc"] >= 0.97,
        "held-out identity AUC >= 0.95": candidate["heldout_identity_auc"] >= 0.95,
        "pooled validation ECE <= 0.05": candidate["val_pooled_ece"] <= 0.05,
        "mean validation ROC-AUC >= reference's": (
            candidate["val_mean_roc_auc"] >= reference["val_mean_roc_auc"]
        ),
        "tweet validation ROC-AUC > reference's": (
            candidate["val_roc_auc"].get(TWEETS, 0.0) > reference["val_roc_auc"].get(TWEETS, 1.0)
        ),
        "tweet validation ROC-AUC without mentions >= reference's": (
            candidate["val_tweets_without_mentions_roc_auc"]
            >= reference["val_tweets_without_mentions_roc_auc"]
        ),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.judge_candidate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--provider", choices=["tfidf", "onnx", "transformer"], default="onnx")
    parser.add_argument("--model", type=Path, required=True, help="the candidate artifact folder")
    parser.add_argument("--reference", type=Path, help="the shipped artifact to judge against")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"candidate": judge(args.provider, args.model, args.data_dir)}
    if args.reference:
        report["reference"] = judge(args.provider, args.reference, args.data_dir)
        report["gate"] = gate(report["candidate"], report["reference"])
        report["passes"] = all(report["gate"].values())
    return report


def main(argv: list[str] | None = None) -> int:
    def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
        print(json.dumps(result, indent=2))

    return run_script(parse_args, run, report, argv)


if __name__ == "__main__":
    raise SystemExit(main())
