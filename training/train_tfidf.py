"""Train the shipped `tfidf` toxicity model (issue 3).

    python training/train_tfidf.py [--data-dir ../shared/data] [--output models/tfidf]

Recipe, each step chosen on the validation split only (the test split is touched once, by the
evaluation at the end):

1. Normalise every text with `ml_prod_api.textnorm.normalize` (the function serving uses).
2. Word 1-2-gram and character 2-5-gram (within word boundaries) TF-IDF, sublinear tf, fitted on
   all training texts, plus one lexicon feature: `scale * log(1 + n)` for the n words of the text
   found in `ml_prod_api.lexicon.ABUSIVE_WORDS` (it pools rare abusive words the n-grams see too
   seldom to weigh; +0.014 validation ROC-AUC).
3. Naive-Bayes log-count ratio scaling (NB-LR, Wang & Manning 2012) of the features, then an
   L2 logistic regression, with sample weights per source: tweeteval_offensive at 1, Davidson
   down-weighted (a second platform's style without letting it dominate).
4. Selection on the validation split: the grid of C and Davidson weights is scored by validation
   ROC-AUC of models fitted on the training split only; the chosen model's validation figures
   (with its out-of-fold calibration) are recorded under `selection` in the metadata.
5. Refit (unless `--no-refit-with-val`): the chosen configuration is fitted again on train + val,
   the validation split is then training data, and the test split stays untouched.
6. Sigmoid (Platt) calibration fitted on out-of-fold logits of the in-domain (tweet) rows only:
   Davidson's 83% toxic base rate would skew the probabilities.
7. Decision threshold: the one that maximises macro-F1 on those out-of-fold tweet probabilities
   (on the validation split when not refitting).
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

import numpy as np
import scipy.sparse as sp

TRAINING_DIR = Path(__file__).resolve().parent
REPO_ROOT = TRAINING_DIR.parent
sys.path.insert(0, str(REPO_ROOT / "src"))  # run as a script from a plain checkout too
sys.path.insert(0, str(TRAINING_DIR))

import joblib  # noqa: E402
import sklearn  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import f1_score, roc_auc_score  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402

from data_sources import (  # noqa: E402
    DEFAULT_DATA_DIR,
    DataFileMissing,
    LabeledTexts,
    read_davidson,
    read_tweeteval,
    sha256_of,
)
from ml_prod_api.lexicon import ABUSIVE_WORDS  # noqa: E402
from ml_prod_api.providers.tfidf import (  # noqa: E402
    ARTIFACT_FILE,
    METADATA_FILE,
    LinearTextModel,
    lexicon_hits,
)
from ml_prod_api.textnorm import normalize  # noqa: E402

log = logging.getLogger("train_tfidf")

LABEL_MAPPING = {
    "tweeteval_offensive": "1 offensive -> toxic; 0 not-offensive -> non-toxic",
    "davidson": "class 0 hate speech or 1 offensive -> toxic; class 2 neither -> non-toxic",
    "tweeteval_hate": "not used: its 0 'not hate' class holds offensive tweets (toxic for us)",
}


@dataclass(frozen=True)
class FeatureConfig:
    word_ngram_max: int = 2
    word_min_df: int = 2
    char_ngram_min: int = 2
    char_ngram_max: int = 5
    char_min_df: int = 3
    max_features_word: int | None = None
    max_features_char: int | None = None
    lexicon_scale: float = 0.5


@dataclass(frozen=True)
class FitConfig:
    C: float
    davidson_weight: float
    nb_alpha: float = 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared/data folder"
    )
    parser.add_argument("--offensive-dir", type=Path, help="default: DATA_DIR/tweeteval_offensive")
    parser.add_argument("--davidson", type=Path, help="default: DATA_DIR/davidson/labeled_data.csv")
    parser.add_argument("--bias-madlibs", type=Path, help="default: DATA_DIR/bias_madlibs/...csv")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "models" / "tfidf")
    parser.add_argument("--plots-dir", type=Path, default=REPO_ROOT / "docs" / "model")
    parser.add_argument("--seed", type=int, default=20190101)
    parser.add_argument("--folds", type=int, default=5, help="folds for out-of-fold calibration")
    parser.add_argument(
        "--grid-c", type=float, nargs="+", default=[2.0, 4.0, 8.0], help="C values to try"
    )
    parser.add_argument(
        "--grid-davidson-weight",
        type=float,
        nargs="+",
        default=[0.1, 0.2, 0.3],
        help="Davidson sample weights to try (0 leaves it out)",
    )
    parser.add_argument(
        "--no-refit-with-val",
        dest="refit_with_val",
        action="store_false",
        help="ship the model fitted on the training split (default: refit on train + val)",
    )
    parser.add_argument("--char-min-df", type=int, default=FeatureConfig.char_min_df)
    parser.add_argument("--word-min-df", type=int, default=FeatureConfig.word_min_df)
    parser.add_argument("--skip-evaluation", action="store_true", help="do not run evaluate.py")
    args = parser.parse_args(argv)
    data = args.data_dir
    args.offensive_dir = args.offensive_dir or data / "tweeteval_offensive"
    args.davidson = args.davidson or data / "davidson" / "labeled_data.csv"
    args.bias_madlibs = args.bias_madlibs or data / "bias_madlibs" / "bias_madlibs_77k.csv"
    return args


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


def nb_ratio(x: sp.csr_matrix, y: np.ndarray, weight: np.ndarray, alpha: float) -> np.ndarray:
    """Log-count ratio r = log(p/|p|) - log(q/|q|) of smoothed, weighted feature sums per class."""
    p = alpha + np.asarray(x.T @ (weight * (y == 1))).ravel()
    q = alpha + np.asarray(x.T @ (weight * (y == 0))).ravel()
    ratio: np.ndarray = np.log(p / p.sum()) - np.log(q / q.sum())
    return ratio


def fit_nblr(
    x: sp.csr_matrix, y: np.ndarray, weight: np.ndarray, fit: FitConfig, seed: int
) -> tuple[np.ndarray, float]:
    """Fit NB-LR; return weights on the unscaled features (r folded in) and the intercept."""
    keep = weight > 0
    x, y, weight = x[keep], y[keep], weight[keep]
    ratio = nb_ratio(x, y, weight, fit.nb_alpha)
    model = LogisticRegression(
        C=fit.C, solver="liblinear", max_iter=1000, tol=1e-6, random_state=seed
    )
    model.fit(x.multiply(ratio).tocsr(), y, sample_weight=weight)
    return model.coef_.ravel() * ratio, float(model.intercept_[0])


def fit_platt(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Sigmoid calibration p = sigmoid(a * logit + b), by (nearly) unregularised 1-D regression."""
    model = LogisticRegression(C=1e6, solver="lbfgs", max_iter=1000, tol=1e-10)
    model.fit(logits.reshape(-1, 1), y)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def out_of_fold_logits(
    x: sp.csr_matrix,
    y: np.ndarray,
    weight: np.ndarray,
    strata: np.ndarray,
    fit: FitConfig,
    seed: int,
    folds: int,
) -> np.ndarray:
    """Logits of every row from a model that did not see it. The vectorizers stay fitted on all
    texts (IDF uses no labels); the NB ratio and the regression are refitted per fold."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    oof = np.zeros(len(y))
    for k, (fit_idx, held_idx) in enumerate(splitter.split(np.zeros(len(y)), strata), 1):
        coef, intercept = fit_nblr(x[fit_idx], y[fit_idx], weight[fit_idx], fit, seed)
        oof[held_idx] = x[held_idx] @ coef + intercept
        log.info("out-of-fold %d/%d done", k, folds)
    return oof


def sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return out


def choose_threshold(proba: np.ndarray, y: np.ndarray) -> float:
    """The threshold in [0.05, 0.95] (step 0.005) with the best macro-F1."""
    grid = np.round(np.arange(0.05, 0.95001, 0.005), 3)
    scores = [f1_score(y, (proba >= t).astype(int), average="macro") for t in grid]
    return float(grid[int(np.argmax(scores))])


# --- the run -------------------------------------------------------------------------------


def load_sources(args: argparse.Namespace) -> tuple[LabeledTexts, LabeledTexts, LabeledTexts]:
    train = read_tweeteval(args.offensive_dir, "train", "tweeteval_offensive/train")
    val = read_tweeteval(args.offensive_dir, "val", "tweeteval_offensive/val")
    davidson = read_davidson(args.davidson)
    for part in (train, val, davidson):
        log.info("read %-28s %6d rows, %5.1f%% toxic", part.name, len(part), _rate(part))
    return train, val, davidson


def _rate(part: LabeledTexts) -> float:
    return 100.0 * part.positives / max(len(part), 1)


def _normalise_all(texts: list[str], what: str) -> list[str]:
    from tqdm import tqdm

    return [normalize(t) for t in tqdm(texts, desc=f"normalise {what}", unit="text", leave=False)]


def train(args: argparse.Namespace) -> dict[str, Any]:
    from evaluate import split_metrics

    started = time.perf_counter()
    train_part, val_part, davidson = load_sources(args)
    n_in, n_val = len(train_part), len(val_part)
    train_texts = _normalise_all(train_part.texts, "train")
    davidson_texts = _normalise_all(davidson.texts, "davidson")
    val_texts = _normalise_all(val_part.texts, "val")
    y_train = np.asarray(train_part.labels, dtype=np.int64)
    y_dav = np.asarray(davidson.labels, dtype=np.int64)
    y_val = np.asarray(val_part.labels, dtype=np.int64)
    features_cfg = FeatureConfig(char_min_df=args.char_min_df, word_min_df=args.word_min_df)

    # --- 1. selection: fitted on the training split, scored on validation --------------------
    texts = train_texts + davidson_texts
    y = np.concatenate([y_train, y_dav])
    is_davidson = np.arange(len(y)) >= n_in
    log.info("fitting word and character TF-IDF on %d texts (selection)", len(texts))
    feats = Features(*fit_vectorizers(texts, features_cfg), cfg=features_cfg)
    x, x_val = feats.matrix(texts), feats.matrix(val_texts)
    log.info("features: %d word + %d char + 1 lexicon", feats.n_word, x.shape[1] - feats.n_word - 1)

    # Grid scored by validation ROC-AUC. Ties within 0.002 AUC, well inside the split's noise, go
    # to the larger Davidson weight: a second platform helps generalisation beyond tweets.
    grid = [
        FitConfig(C=c, davidson_weight=w) for w in args.grid_davidson_weight for c in args.grid_c
    ]
    results: list[tuple[FitConfig, float]] = []
    for i, fit in enumerate(grid, 1):
        weight = np.where(is_davidson, fit.davidson_weight, 1.0)
        coef, intercept = fit_nblr(x, y, weight, fit, args.seed)
        auc = float(roc_auc_score(y_val, x_val @ coef + intercept))
        results.append((fit, auc))
        log.info(
            "grid %2d/%d C=%-4g davidson_weight=%-4g val ROC-AUC %.4f",
            i,
            len(grid),
            fit.C,
            fit.davidson_weight,
            auc,
        )
    best_auc = max(auc for _, auc in results)
    chosen = max(
        (fit for fit, auc in results if auc >= best_auc - 0.002),
        key=lambda f: (f.davidson_weight, -abs(np.log(f.C / 4.0))),
    )
    log.info("chosen: %s (best val ROC-AUC %.4f)", chosen, best_auc)

    # The chosen model as fitted on the training split, calibrated on its out-of-fold tweet
    # logits: its validation figures are the honest estimate (the refit below trains on val).
    weight = np.where(is_davidson, chosen.davidson_weight, 1.0)
    oof = out_of_fold_logits(x, y, weight, y + 2 * is_davidson, chosen, args.seed, args.folds)
    platt_a, platt_b = fit_platt(oof[~is_davidson], y[~is_davidson])
    oof_threshold = choose_threshold(sigmoid(platt_a * oof[~is_davidson] + platt_b), y_train)
    coef, intercept = fit_nblr(x, y, weight, chosen, args.seed)
    val_proba = sigmoid(platt_a * (x_val @ coef + intercept) + platt_b)
    val_threshold = choose_threshold(val_proba, y_val)
    selection = {
        "fitted_on": "tweeteval_offensive/train + davidson",
        "val_at_oof_threshold": split_metrics(val_proba, y_val, oof_threshold),
        "val_threshold": val_threshold,
        "val_at_val_threshold": split_metrics(val_proba, y_val, val_threshold),
    }
    m = selection["val_at_oof_threshold"]
    log.info(
        "selected model on val: ROC-AUC %.4f macro-F1 %.4f ECE %.4f (threshold %.3f from "
        "out-of-fold train scores)",
        m["roc_auc"],
        m["macro_f1"],
        m["ece"],
        oof_threshold,
    )

    # --- 2. the shipped model ---------------------------------------------------------------
    if args.refit_with_val:
        texts = train_texts + val_texts + davidson_texts
        y = np.concatenate([y_train, y_val, y_dav])
        is_davidson = np.arange(len(y)) >= n_in + n_val
        log.info("refitting on train + val: TF-IDF on %d texts", len(texts))
        feats = Features(*fit_vectorizers(texts, features_cfg), cfg=features_cfg)
        x = feats.matrix(texts)
        weight = np.where(is_davidson, chosen.davidson_weight, 1.0)
        oof = out_of_fold_logits(x, y, weight, y + 2 * is_davidson, chosen, args.seed, args.folds)
        tweets = ~is_davidson
        platt_a, platt_b = fit_platt(oof[tweets], y[tweets])
        threshold = choose_threshold(sigmoid(platt_a * oof[tweets] + platt_b), y[tweets])
        threshold_rule = "max macro-F1 on out-of-fold tweet (train + val) probabilities"
        coef, intercept = fit_nblr(x, y, weight, chosen, args.seed)
    else:
        threshold, threshold_rule = val_threshold, "max macro-F1 on validation"
    log.info("sigmoid calibration: p = sigmoid(%.4f * logit %+.4f)", platt_a, platt_b)
    log.info("threshold %.3f (%s)", threshold, threshold_rule)

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
    training_files = train_part.files | davidson.files
    if args.refit_with_val:
        training_files = train_part.files | val_part.files | davidson.files

    args.output.mkdir(parents=True, exist_ok=True)
    model_path = args.output / ARTIFACT_FILE
    joblib.dump(model.to_payload(), model_path, compress=("zlib", 3), protocol=5)
    model_sha = sha256_of(model_path)
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
        "refit_with_val": args.refit_with_val,
        "labels": {"1": "toxic", "0": "non-toxic"},
        "label_mapping": LABEL_MAPPING,
        "training_data": {
            "files": training_files,
            "rows": {
                "tweeteval_offensive/train": {
                    "rows": n_in,
                    "toxic": train_part.positives,
                    "weight": 1.0,
                },
                **(
                    {
                        "tweeteval_offensive/val": {
                            "rows": n_val,
                            "toxic": val_part.positives,
                            "weight": 1.0,
                        }
                    }
                    if args.refit_with_val
                    else {}
                ),
                "davidson": {
                    "rows": len(davidson),
                    "toxic": davidson.positives,
                    "weight": chosen.davidson_weight,
                },
            },
            "validation": {
                "files": val_part.files,
                "rows": len(val_part),
                "toxic": val_part.positives,
            },
        },  # fmt: skip
        "features": asdict(features_cfg)
        | {
            "n_word": n_word,
            "n_char": n_char,
            "n_lexicon": 1,
            "lexicon_words": len(LEXICON),
            "n_features": x.shape[1],
        },
        "hyperparameters": asdict(chosen)
        | {
            "solver": "liblinear",
            "penalty": "l2",
            "calibration": "sigmoid, out-of-fold",
            "folds": args.folds,
            "platt_a": platt_a,
            "platt_b": platt_b,
            "threshold_rule": threshold_rule,
        },
        "grid": [asdict(fit) | {"val_roc_auc": round(auc, 5)} for fit, auc in results],
        "selection": selection,
        "normalisation": "ml_prod_api.textnorm.normalize",
        "metrics": {},
    }
    write_metadata(args.output, metadata)
    log.info(
        "wrote %s (%.1f MB) and %s", model_path, model_path.stat().st_size / 1e6, METADATA_FILE
    )

    if not args.skip_evaluation:
        from evaluate import evaluate_artifact

        metadata["metrics"] = evaluate_artifact(
            args.output,
            offensive_dir=args.offensive_dir,
            bias_madlibs=args.bias_madlibs,
            plots_dir=args.plots_dir,
        )
        write_metadata(args.output, metadata)
    metadata["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    return metadata


def write_metadata(folder: Path, metadata: dict[str, Any]) -> None:
    text = json.dumps(metadata, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    (folder / METADATA_FILE).write_text(text, encoding="utf-8")


def print_summary(metadata: dict[str, Any]) -> None:
    rows = metadata["training_data"]["rows"]
    print("\n=== tfidf training summary ===")
    print(f"model version   {metadata['model_version']}")
    artifact = metadata["artifact"]
    size_mb = artifact["bytes"] / 1e6
    print(
        f"artifact        {artifact['file']} ({size_mb:.2f} MB, sha256 {artifact['sha256'][:12]})"
    )
    sources = ", ".join(f"{k} {v['rows']} (w={v['weight']})" for k, v in rows.items())
    print(f"training rows   {sources}")
    print(f"features        {metadata['features']['n_features']}")
    hp = metadata["hyperparameters"]
    print(
        f"chosen          C={hp['C']} davidson_weight={hp['davidson_weight']} "
        f"threshold={metadata['threshold']}"
    )
    sel = metadata["selection"]["val_at_oof_threshold"]
    print(
        f"selection val   ROC-AUC {sel['roc_auc']:.4f}  PR-AUC {sel['pr_auc']:.4f}  "
        f"macro-F1 {sel['macro_f1']:.4f}  ECE {sel['ece']:.4f}  (fitted on train only)"
    )
    if metadata.get("refit_with_val"):
        print("shipped model   refitted on train + val: its val figures below are in-sample")
    for split in ("val", "test"):
        m = metadata.get("metrics", {}).get(split)
        if m:
            print(
                f"{split:<5}           ROC-AUC {m['roc_auc']:.4f}  PR-AUC {m['pr_auc']:.4f}  "
                f"macro-F1 {m['macro_f1']:.4f}  P {m['precision']:.3f}  R {m['recall']:.3f}  "
                f"ECE {m['ece']:.4f}"
            )
    bias = metadata.get("metrics", {}).get("bias_madlibs")
    if bias:
        worst = ", ".join(bias["worst_terms"][:5])
        print(
            f"bias_madlibs    AUC {bias['overall_auc']:.4f}  FPR(non-toxic identity) "
            f"{bias['overall_fpr']:.3f}  worst: {worst}"
        )
    print(f"elapsed         {metadata.get('elapsed_seconds', 0):.0f} s")


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
