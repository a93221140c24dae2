"""Train the shipped `tfidf` toxicity model.

    python -m training.train_tfidf [--data-dir ../shared/data] [--output models/tfidf]

Recipe, each step chosen on the validation splits only (test splits are read once per shipped
model, by `evaluate_sources.py`):

1. Data: `corpus.load_corpus`, the same rows and source weights as the transformer: every
   labelled source's train split, the project's own templates and identity swaps.
2. Normalise every text with `ml_prod_api.providers.tfidf.normalize` (the function serving uses).
3. Word 1-2-gram and character 2-5-gram (within word boundaries) TF-IDF, sublinear tf, plus one
   lexicon feature: `scale * log(1 + n)` for the n words of the text found in
   `ml_prod_api.providers.lexicon.ABUSIVE_WORDS` (it pools rare abusive words the n-grams
   see too seldom).
4. Identity-only features (an identity word as a unigram, and character n-grams inside one) are
   held at zero weight, so naming a group cannot by itself move the score.
5. Naive-Bayes log-count ratio scaling (NB-LR, Wang & Manning 2012), then an L2 logistic
   regression with per-row weights from the source weights, and one
   indicator column per source during training only: it absorbs each source's base rate, so a
   word is not weighed as toxic for being common in a mostly-toxic source.
6. Selection: C by the mean of the per-source validation ROC-AUCs averaged with the held-out
   identity AUC (`identity_validation.selection_score`).
7. Sigmoid (Platt) calibration on the pooled validation splits, each source weighted equally;
   the decision threshold flags the fewest held-out benign identity sentences
   (`identity_validation.py`) among thresholds within 0.01 of the best validation macro-F1.
8. NB scaling, regression and calibration are folded into one weight vector (exactly the same
   function), saved with the two vectorizers and the lexicon as `model.joblib`, plus
   `metadata.json`.

The run is deterministic: the same data and seed give the same model bytes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from ml_prod_api.providers.lexicon import ABUSIVE_WORDS
from ml_prod_api.providers.tfidf import (
    ARTIFACT_FILE,
    METADATA_FILE,
    LinearTextModel,
    lexicon_hits,
    normalize,
)
from training.corpus import (
    OPTIONAL_SOURCES,
    SOURCE_BY_NAME,
    SOURCES,
    add_optional_source_argument,
    add_weight_argument,
    load_corpus,
    source_weight,
)
from training.data_sources import DEFAULT_DATA_DIR, DataFileMissing, sha256_file
from training.identity import ALL_ADJECTIVES, ALL_GROUPS, IDENTITY_NOUNS
from training.identity_validation import bias_aware_threshold, identity_auc, selection_score
from training.identity_validation import sentences as identity_sentences
from training.selection import (
    fit_platt,
    per_source_auc,
    source_balanced_weights,
)
from training.teacher_scores import add_teacher_arguments, distillation_targets

REPO_ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("train_tfidf")


@dataclass(frozen=True)
class FeatureConfig:
    word_ngram_max: int = 2
    # Rare n-grams are pruned so a served worker stays within its memory budget (BENCHMARK.md):
    # with the multi-source corpus, lower counts more than doubled the vocabulary for a gain in
    # validation ROC-AUC within noise (MODEL_CARD.md).
    word_min_df: int = 4
    char_ngram_min: int = 2
    char_ngram_max: int = 5
    char_min_df: int = 5
    max_features_word: int | None = None
    max_features_char: int | None = None
    lexicon_scale: float = 0.5


@dataclass(frozen=True)
class FitConfig:
    C: float
    nb_alpha: float = 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.train_tfidf", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared/data folder"
    )
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "models" / "tfidf")
    parser.add_argument("--seed", type=int, default=20190101)
    parser.add_argument(
        "--grid-c", type=float, nargs="+", default=[2.0, 4.0, 8.0], help="C values to try"
    )
    add_weight_argument(parser)
    add_optional_source_argument(parser)
    parser.add_argument(
        "--no-source-indicators",
        dest="source_indicators",
        action="store_false",
        help="fit without the training-only source indicator columns",
    )
    # Ablations, for the model card's "what worked" table.
    parser.add_argument(
        "--no-augmentation",
        dest="augment",
        action="store_false",
        help="train without the own templates, the identity swaps and the punctuation-free rows",
    )
    parser.add_argument(
        "--no-identity-zeroing",
        dest="identity_zeroing",
        action="store_false",
        help="let identity-only features take weights like any other",
    )
    add_teacher_arguments(parser)
    parser.add_argument("--char-min-df", type=int, default=FeatureConfig.char_min_df)
    parser.add_argument("--word-min-df", type=int, default=FeatureConfig.word_min_df)
    return parser.parse_args(argv)


# --- model pieces --------------------------------------------------------------------------


def fit_vectorizers(
    texts: list[str], cfg: FeatureConfig
) -> tuple[TfidfVectorizer, TfidfVectorizer]:
    # Texts arrive normalised (lower-cased too), so the vectorizers must not preprocess again.
    word = TfidfVectorizer(
        lowercase=False,
        ngram_range=(1, cfg.word_ngram_max),
        min_df=cfg.word_min_df,
        max_features=cfg.max_features_word,
        sublinear_tf=True,
        dtype=np.float64,
    )
    char = TfidfVectorizer(
        lowercase=False,
        analyzer="char_wb",
        ngram_range=(cfg.char_ngram_min, cfg.char_ngram_max),
        min_df=cfg.char_min_df,
        max_features=cfg.max_features_char,
        sublinear_tf=True,
        dtype=np.float64,
    )
    word.fit(texts)
    char.fit(texts)
    for vectorizer in (word, char):
        # `stop_words_` (the terms cut by min_df) is only for introspection and would be most of
        # the pickle's size; older scikit-learn versions keep it.
        if hasattr(vectorizer, "stop_words_"):
            delattr(vectorizer, "stop_words_")
    return word, char


LEXICON = frozenset(ABUSIVE_WORDS)


def lexicon_column(texts: list[str], scale: float) -> sp.csr_matrix:
    """The lexicon feature as one sparse column, computed as `LinearTextModel` computes it."""
    hits = np.asarray([lexicon_hits(t, LEXICON) for t in texts], dtype=np.float64)
    return sp.csr_matrix((scale * np.log1p(hits)).reshape(-1, 1))


@dataclass
class Features:
    """Vectorizers fitted on one set of texts, and the matrices they give."""

    word: TfidfVectorizer
    char: TfidfVectorizer
    cfg: FeatureConfig

    @property
    def n_word(self) -> int:
        return len(self.word.vocabulary_)

    def matrix(self, texts: list[str]) -> sp.csr_matrix:
        return sp.hstack(
            [
                self.word.transform(texts),
                self.char.transform(texts),
                lexicon_column(texts, self.cfg.lexicon_scale),
            ]
        ).tocsr()


def identity_feature_columns(feats: Features) -> np.ndarray:
    """Columns that can only say "an identity is named": each identity term as a word unigram
    (and its plural), and every character n-gram that lies inside one such word, such as
    ` gay`, `gay ` or `musli`.

    Held at zero weight, they leave the model to judge what is said about a group: bigrams
    ("gay people", "filthy gays") and the rest of the sentence keep their weights.
    """
    words: set[str] = set()
    for term in ALL_ADJECTIVES + ALL_GROUPS + IDENTITY_NOUNS:
        for word in normalize(term).split():
            words |= {word, word + "s"}
    columns = [feats.word.vocabulary_[w] for w in words if w in feats.word.vocabulary_]
    padded = [f" {w} " for w in words]
    for gram, column in feats.char.vocabulary_.items():
        # Short n-grams too: with only the longer ones held at zero, the two-letter grams of
        # "jewish" alone still gave benign sentences naming it a 0.2 false-positive rate.
        if gram.strip() and any(gram in p for p in padded):
            columns.append(feats.n_word + column)
    return np.asarray(sorted(columns), dtype=np.int64)


def source_indicators(sources: list[str]) -> sp.csr_matrix:
    """One 0/1 column per source (training only; see `fit_nblr`)."""
    names = sorted(set(sources))
    index = {name: i for i, name in enumerate(names)}
    cols = np.asarray([index[s] for s in sources])
    rows = np.arange(len(sources))
    data = np.ones(len(sources))
    return sp.csr_matrix((data, (rows, cols)), shape=(len(sources), len(names)))


def nb_ratio(x: sp.csr_matrix, y: np.ndarray, weight: np.ndarray, alpha: float) -> np.ndarray:
    """Log-count ratio r = log(p/|p|) - log(q/|q|) of smoothed, weighted feature sums per class."""
    p = alpha + np.asarray(x.T @ (weight * (y == 1))).ravel()
    q = alpha + np.asarray(x.T @ (weight * (y == 0))).ravel()
    ratio: np.ndarray = np.log(p / p.sum()) - np.log(q / q.sum())
    return ratio


def soft_rows(
    x: sp.csr_matrix,
    target: np.ndarray,
    weight: np.ndarray,
    indicators: sp.csr_matrix | None = None,
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, sp.csr_matrix | None]:
    """Rows for a target between 0 and 1 (a teacher's probability): each row twice, as toxic with
    weight `w * t` and as non-toxic with weight `w * (1 - t)`. The weighted log-loss of the pair
    is exactly the cross-entropy against `t`, which scikit-learn's LogisticRegression (hard
    labels only) cannot take directly; the NB ratio's weighted counts become expected counts.
    Rows of weight 0 (a hard label's other half) are dropped by `fit_nblr`."""
    n = x.shape[0]
    y = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
    w = np.concatenate([weight * target, weight * (1.0 - target)])
    ind = sp.vstack([indicators, indicators]).tocsr() if indicators is not None else None
    return sp.vstack([x, x]).tocsr(), y, w, ind


def fit_nblr(
    x: sp.csr_matrix,
    y: np.ndarray,
    weight: np.ndarray,
    fit: FitConfig,
    seed: int,
    zeroed: np.ndarray | None = None,
    indicators: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, float]:
    """Fit NB-LR; return weights on the unscaled features (r folded in) and the intercept.

    Columns in `zeroed` get an NB ratio of 0, so the regression cannot weigh them at all.
    `indicators` (one column per training source, training only) absorb each source's base
    rate and style, so words are not weighed for merely being frequent in a mostly-toxic
    source; their weights are dropped, since a served text has no source.
    """
    keep = weight > 0
    x, y, weight = x[keep], y[keep], weight[keep]
    ratio = nb_ratio(x, y, weight, fit.nb_alpha)
    if zeroed is not None:
        ratio[zeroed] = 0.0
    if indicators is not None:
        scaled = sp.hstack([x.multiply(ratio), indicators[keep]]).tocsr()
        model = LogisticRegression(
            C=fit.C, solver="liblinear", max_iter=1000, tol=1e-6, random_state=seed
        )
        model.fit(scaled, y, sample_weight=weight)
        return model.coef_.ravel()[: x.shape[1]] * ratio, float(model.intercept_[0])
    model = LogisticRegression(
        C=fit.C, solver="liblinear", max_iter=1000, tol=1e-6, random_state=seed
    )
    model.fit(x.multiply(ratio).tocsr(), y, sample_weight=weight)
    return model.coef_.ravel() * ratio, float(model.intercept_[0])


def write_artifact(model: LinearTextModel, path: Path) -> str:
    """Dump the model to `path` and return the file's sha256.

    A vectorizer's first `transform` caches `_stop_words_id`, the memory address of its stop-word
    list (scikit-learn's `_check_stop_words_consistency`): a different number in every process,
    so it is dropped and the same model is always the same bytes (it is recomputed on use).
    """
    for vectorizer in (model.word, model.char):
        vectorizer.__dict__.pop("_stop_words_id", None)
    joblib.dump(model.to_payload(), path, compress=("zlib", 3), protocol=5)
    return sha256_file(path)


def sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return out


# --- the run -------------------------------------------------------------------------------


def _normalise_all(texts: list[str], what: str) -> list[str]:
    from tqdm import tqdm

    return [normalize(t) for t in tqdm(texts, desc=f"normalise {what}", unit="text", leave=False)]


def train(args: argparse.Namespace) -> dict[str, Any]:
    from training.evaluate import split_metrics

    started = time.perf_counter()
    corpus = load_corpus(
        args.data_dir, seed=args.seed, augment=args.augment, optional_sources=args.with_source
    )
    for source, row in corpus.counts().items():
        log.info("%-20s %s", source, row)
    train_texts = _normalise_all(corpus.train.texts, "train")
    val_texts = _normalise_all(corpus.val.texts, "val")
    y = np.asarray(corpus.train.labels, dtype=np.int64)
    y_val = np.asarray(corpus.val.labels, dtype=np.int64)
    overrides = dict(args.weight)
    row_weight = np.asarray([source_weight(s, overrides) for s in corpus.train.sources])
    balance = source_balanced_weights(corpus.val.sources)
    features_cfg = FeatureConfig(char_min_df=args.char_min_df, word_min_df=args.word_min_df)

    log.info("fitting word and character TF-IDF on %d texts", len(train_texts))
    feats = Features(*fit_vectorizers(train_texts, features_cfg), cfg=features_cfg)
    x, x_val = feats.matrix(train_texts), feats.matrix(val_texts)
    log.info("features: %d word + %d char + 1 lexicon", feats.n_word, x.shape[1] - feats.n_word - 1)
    identity_columns = identity_feature_columns(feats) if args.identity_zeroing else None
    indicators = source_indicators(corpus.train.sources) if args.source_indicators else None
    teacher = None
    if args.teacher is not None:
        target, teacher = distillation_targets(args, corpus.train.texts, y, corpus.train.origins)
        x, y, row_weight, indicators = soft_rows(x, target, row_weight, indicators)
        log.info("distilling from %s (share %.2f)", teacher["model_version"], args.teacher_share)
    log.info(
        "%d identity-only features held at zero weight",
        0 if identity_columns is None else len(identity_columns),
    )

    # Grid scored by the mean of the per-source validation ROC-AUCs (so no platform decides) and
    # the held-out identity AUC (`identity_validation.selection_score`), as for the transformer.
    id_texts, id_terms = identity_sentences()
    x_id = feats.matrix(_normalise_all(id_texts, "identity"))
    results: list[tuple[FitConfig, float, dict[str, float]]] = []
    for i, c in enumerate(args.grid_c, 1):
        fit = FitConfig(C=c)
        coef, intercept = fit_nblr(x, y, row_weight, fit, args.seed, identity_columns, indicators)
        val_margin = x_val @ coef + intercept
        aucs = per_source_auc(val_margin, y_val, corpus.val.sources)
        mean_auc = float(np.mean(list(aucs.values())))
        id_auc = identity_auc(val_margin[y_val == 1], x_id @ coef + intercept, id_terms)
        score = selection_score(mean_auc, id_auc)
        results.append((fit, score, aucs | {"heldout_identity_auc": id_auc}))
        log.info(
            "grid %d/%d C=%-4g mean per-source val ROC-AUC %.4f, held-out identity AUC %.4f",
            i,
            len(args.grid_c),
            c,
            mean_auc,
            id_auc,
        )
    chosen, best_score, best_aucs = max(results, key=lambda r: r[1])
    log.info("chosen: %s (selection score %.4f)", chosen, best_score)

    coef, intercept = fit_nblr(x, y, row_weight, chosen, args.seed, identity_columns, indicators)
    val_logits = x_val @ coef + intercept
    # Calibration and threshold on the validation splits, each source weighted equally.
    platt_a, platt_b = fit_platt(val_logits, y_val, balance)
    val_proba = sigmoid(platt_a * val_logits + platt_b)
    id_logits = x_id @ coef + intercept
    threshold_choice = bias_aware_threshold(
        val_proba, y_val, balance, sigmoid(platt_a * id_logits + platt_b), id_terms
    )
    threshold = float(threshold_choice["threshold"])
    log.info("sigmoid calibration: p = sigmoid(%.4f * logit %+.4f)", platt_a, platt_b)
    log.info("threshold %s", threshold_choice)
    selection = {
        "fitted_on": "every source's train split, templates and identity swaps",
        "selection_score": round(best_score, 5),
        "val_roc_auc": {k: round(v, 4) for k, v in best_aucs.items()},
        "val_pooled": split_metrics(val_proba, y_val, threshold),
    }

    n_word = feats.n_word
    n_char = x.shape[1] - n_word - 1
    folded = coef * platt_a
    model = LinearTextModel(
        word=feats.word,
        char=feats.char,
        coef_word=folded[:n_word].copy(),
        coef_char=folded[n_word : n_word + n_char].copy(),
        intercept=platt_a * intercept + platt_b,
        lexicon=LEXICON,
        lexicon_scale=features_cfg.lexicon_scale,
        coef_lexicon=float(folded[-1]),
    )

    args.output.mkdir(parents=True, exist_ok=True)
    model_path = args.output / ARTIFACT_FILE
    model_sha = write_artifact(model, model_path)
    metadata: dict[str, Any] = {
        "model_version": f"tfidf-nblr-{model_sha[:12]}",
        "provider": "tfidf",
        "artifact": {
            "file": ARTIFACT_FILE,
            "sha256": model_sha,
            "bytes": model_path.stat().st_size,
        },
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "python_version": sys.version.split()[0],
        "seed": args.seed,
        "threshold": threshold,
        "labels": {"1": "toxic", "0": "non-toxic"},
        "label_mapping": {s.name: s.mapping for s in SOURCES},
        "training_data": {
            "files": corpus.files,
            "sources": corpus.counts(),
            "how": "per-row loss weight = the source's weight",
            "teacher": teacher,
            "weights": {
                s: source_weight(s, overrides)
                for s in SOURCE_BY_NAME
                if s not in OPTIONAL_SOURCES or s in args.with_source
            },
            "validation": "every source's val split: selection (mean per-source ROC-AUC, averaged "
            "with the held-out identity AUC), "
            "calibration and threshold (each source weighted equally)",
        },
        "features": asdict(features_cfg)
        | {
            "n_word": n_word,
            "n_char": n_char,
            "n_lexicon": 1,
            "lexicon_words": len(LEXICON),
            "n_features": x.shape[1],
            "identity_only_features_zeroed": 0
            if identity_columns is None
            else len(identity_columns),
            "source_indicators": "training only" if indicators is not None else "none",
        },
        "hyperparameters": asdict(chosen)
        | {
            "solver": "liblinear",
            "penalty": "l2",
            "calibration": "sigmoid on validation, sources weighted equally",
            "platt_a": platt_a,
            "platt_b": platt_b,
            "threshold_rule": "the fewest held-out identity false positives among thresholds "
            "within 0.01 of the best validation macro-F1 (sources weighted equally)",
            "threshold_choice": threshold_choice,
        },
        "grid": [asdict(fit) | {"selection_score": round(score, 5)} for fit, score, _ in results],
        "selection": selection,
        "normalisation": "ml_prod_api.providers.textnorm.normalize",
        "metrics": {},
    }
    write_metadata(args.output, metadata)
    log.info(
        "wrote %s (%.1f MB) and %s", model_path, model_path.stat().st_size / 1e6, METADATA_FILE
    )
    metadata["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    return metadata


def write_metadata(folder: Path, metadata: dict[str, Any]) -> None:
    text = json.dumps(metadata, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    (folder / METADATA_FILE).write_text(text, encoding="utf-8")


def print_summary(metadata: dict[str, Any]) -> None:
    print("\n=== tfidf training summary ===")
    print(f"model version   {metadata['model_version']}")
    artifact = metadata["artifact"]
    size_mb = artifact["bytes"] / 1e6
    print(
        f"artifact        {artifact['file']} ({size_mb:.2f} MB, sha256 {artifact['sha256'][:12]})"
    )
    print(f"features        {metadata['features']['n_features']}")
    print(f"chosen          C={metadata['hyperparameters']['C']} threshold={metadata['threshold']}")
    sel = metadata["selection"]
    print(f"selection score {sel['selection_score']:.4f} (per-source val ROC-AUC and identity)")
    for source, auc in sel["val_roc_auc"].items():
        print(f"  {source:<20} {auc:.4f}")
    print(f"elapsed         {metadata.get('elapsed_seconds', 0):.0f} s")
    print("evaluate it:    python -m training.evaluate_sources --provider tfidf")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    try:
        metadata = train(args)
    except DataFileMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_summary(metadata)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
