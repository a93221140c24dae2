"""Add an `identity_attack` head to a trained tfidf model: a second score on the same features.

    python -m training.train_identity_head [--model models/tfidf] [--output models/tfidf]

The toxic score is left exactly as it is (same vectorizers, weights and threshold); the head is
an NB-LR fitted on the same TF-IDF features to `corpus.IDENTITY_ATTACK_MAPPING`'s target: an
attack on people for who they are (origin, religion, gender, sexuality, disability), from the
sources that say so (HateXplain's hatespeech majority, Stormfront, EDOS, ToxiGen, the hateful
MLMA tweets, Davidson's hate class, ConvAbuse's identity votes). Rows whose source does not say
(OLID tweets, HateXplain's posts without a majority) are left out. The head is what
`/v1/moderations` reports as `hate`.

- Sources are weighted as for toxicity, except `HEAD_WEIGHTS` (and `--weight SOURCE=W`).
- The identity-only features (an identity word, or a character n-gram inside one) are held at
  zero, as for the toxic score, so naming a group cannot by itself raise the score; the
  project's benign identity templates are negatives.
- C is chosen on the validation splits: the mean per-source ROC-AUC of the head, averaged with
  the held-out identity AUC (benign identity sentences of the project's own writing against the
  validation identity attacks), as the trainers choose their models. Platt scaling on the
  validation splits (sources weighted equally) is folded into the head, and its threshold (best
  validation macro-F1) is recorded for `/v1/moderations`' `hate`.
- Writes a new `model.joblib` (the toxic weights unchanged, the head added) and `metadata.json`
  (the old one, with a new version, the new sha256 and a `heads` entry) to `--output`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ml_prod_api.providers.tfidf.model import (
    ARTIFACT_FILE,
    LinearHead,
    load_artifact,
)
from training.corpus import add_weight_argument, load_corpus
from training.data_sources import DEFAULT_DATA_DIR
from training.identity_head import (
    HEAD,
    HEAD_WEIGHTS,
    choose_head,
    head_metadata,
    known,
    row_weights,
    run_head_trainer,
)
from training.identity_validation import sentences as identity_sentences
from training.train_tfidf import (
    LEXICON,
    FeatureConfig,
    Features,
    FitConfig,
    _normalise_all,
    fit_nblr,
    identity_feature_columns,
    write_artifact,
    write_metadata,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("train_identity_head")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.train_identity_head", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "tfidf")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "models" / "tfidf")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--seed", type=int, default=20190101)
    parser.add_argument("--grid-c", type=float, nargs="+", default=[2.0, 4.0, 8.0, 16.0])
    add_weight_argument(parser)
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    model, metadata = load_artifact(args.model)
    if model.lexicon != LEXICON:
        raise SystemExit(f"{args.model}: its lexicon is not this checkout's; retrain it first")
    corpus = load_corpus(args.data_dir, seed=args.seed)
    train_texts, y, train_sources = known(corpus.train)
    val_texts, y_val, val_sources = known(corpus.val)
    log.info("%d training rows (%d attacks), %d validation rows", len(y), y.sum(), len(y_val))
    feats = Features(model.word, model.char, FeatureConfig(lexicon_scale=model.lexicon_scale))
    x = feats.matrix(_normalise_all(train_texts, "train"))
    x_val = feats.matrix(_normalise_all(val_texts, "val"))
    overrides = HEAD_WEIGHTS | dict(args.weight)
    weight = row_weights(train_sources, overrides)
    zeroed = identity_feature_columns(feats)
    id_texts, id_terms = identity_sentences()
    x_id = feats.matrix(_normalise_all(id_texts, "identity"))

    def fit(c: float) -> tuple[np.ndarray, float]:
        coef, intercept = fit_nblr(x, y, weight, FitConfig(C=c), args.seed, zeroed)
        return coef, float(intercept)

    chosen = choose_head(fit, args.grid_c, x_val, y_val, val_sources, x_id, id_terms, log.info)
    folded, intercept = chosen.folded()
    n_word, n_char = len(model.coef_word), len(model.coef_char)
    head = LinearHead(
        coef_word=folded[:n_word].copy(),
        coef_char=folded[n_word : n_word + n_char].copy(),
        coef_lexicon=float(folded[-1]),
        intercept=intercept,
    )
    with_head = replace(model, heads={**model.heads, HEAD: head})

    args.output.mkdir(parents=True, exist_ok=True)
    model_path = args.output / ARTIFACT_FILE
    sha = write_artifact(with_head, model_path)
    entry = head_metadata(
        chosen, train_sources, y, overrides, chosen.proba(x_val), y_val, chosen.proba(x_id)
    )
    metadata = metadata | {
        "model_version": f"tfidf-nblr-{sha[:12]}",
        "artifact": {"file": ARTIFACT_FILE, "sha256": sha, "bytes": model_path.stat().st_size},
        "heads": {
            HEAD: entry
            | {
                "identity_only_features_zeroed": len(zeroed),
                "seed": args.seed,
                "training_seconds": round(time.perf_counter() - started, 1),
            }
        },
    }
    write_metadata(args.output, metadata)
    log.info("wrote %s (%s) with an %s head", model_path, metadata["model_version"], HEAD)
    return metadata


def main(argv: list[str] | None = None) -> int:
    return run_head_trainer(parse_args, train, argv)


if __name__ == "__main__":
    sys.exit(main())
