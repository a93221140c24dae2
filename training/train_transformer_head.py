"""Add an `identity_attack` head to a fine-tuned transformer checkpoint: a second score read from
the representation its output layer already reads.

    python -m training.train_transformer_head [--checkpoint models/.checkpoints/transformer-fp32]
        [--output DIR]    # default: the checkpoint, rewritten in place

The encoder is not trained again, so the toxic score stays what it was. The two-way softmax
output layer becomes a two-label layer read with sigmoids (`problem_type:
multi_label_classification`, labels `toxic` and `identity_attack`):

- the `toxic` row is the old layer's margin (toxic row minus non-toxic row), and
  sigmoid(margin) is exactly the old softmax's toxic probability;
- the `identity_attack` row is a logistic regression on the layer's input (BERT's pooled [CLS]
  output), fitted to `corpus.IDENTITY_ATTACK_MAPPING`'s target with `identity_head`'s rows,
  weights, choice of C, calibration and threshold, as the tfidf model's head is.

The result is still a plain Hugging Face checkpoint: the `transformer` provider answers both
labels, `ship_checkpoint.py` stores it in fp16 and `export_onnx.py` exports both logits. Texts
are read as the served providers read them (`INPUT_NORMALIZATION`), cut at the trained window.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ml_prod_api.providers.artifact_files import sha256_file
from training.corpus import add_recipe_arguments, add_weight_argument, load_corpus, recipe_options
from training.data_sources import DEFAULT_DATA_DIR, read_tweeteval
from training.evaluate_transformer import TorchScorer
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
from training.train_transformer import (
    FP32_CHECKPOINT,
    collate,
    find_output_layer,
    served_text,
    write_metadata,
)

TOXIC = "toxic"
WEIGHTS = "model.safetensors"
METADATA = "metadata.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

log = logging.getLogger("train_transformer_head")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.train_transformer_head", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--checkpoint", type=Path, default=FP32_CHECKPOINT)
    parser.add_argument("--output", type=Path, default=None, help="default: --checkpoint")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--seed", type=int, default=20190101)
    parser.add_argument("--grid-c", type=float, nargs="+", default=[0.1, 0.3, 1.0, 3.0, 10.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (for logs and CI)"
    )
    add_weight_argument(parser)
    add_recipe_arguments(parser)
    return parser.parse_args(argv)


def toxic_margin_row(model: Any) -> tuple[np.ndarray, float]:
    """The output layer's toxic margin as one row: the toxic row minus the non-toxic one of a
    two-way softmax layer, or the toxic row of a checkpoint that already has this head."""
    layer = find_output_layer(model)
    weight = layer.weight.detach().double().numpy()
    bias = layer.bias.detach().double().numpy()
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if TOXIC not in names:
        raise SystemExit(f"the checkpoint has no {TOXIC!r} label (labels: {', '.join(names)})")
    toxic = names.index(TOXIC)
    if model.config.problem_type == "multi_label_classification":
        return weight[toxic], float(bias[toxic])
    if len(names) != 2:
        raise SystemExit(f"expected a two-way toxic/non-toxic head, found {len(names)} labels")
    other = 1 - toxic
    return weight[toxic] - weight[other], float(bias[toxic] - bias[other])


def pooled_features(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    batch_size: int,
    desc: str,
    progress: bool,
) -> np.ndarray:
    """The output layer's input for each text (BERT's pooled [CLS] output), read with a forward
    hook, so any architecture whose last Linear is the classifier works alike."""
    import torch
    from tqdm import tqdm

    layer = find_output_layer(model)
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(ids), layer.in_features), dtype=np.float32)
    pad = tokenizer.pad_token_id or 0
    model.eval()
    try:
        with torch.inference_mode():
            for start in tqdm(
                range(0, len(order), batch_size), desc=desc, unit="batch", disable=not progress
            ):
                index = order[start : start + batch_size]
                captured.clear()
                model(**collate([ids[i] for i in index], pad))
                out[index] = captured[0].float().numpy()
    finally:
        hook.remove()
    return out


def fit_logistic(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray, c: float
) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, solver="lbfgs", max_iter=2000, tol=1e-6)
    model.fit(x, y, sample_weight=weight)
    return model.coef_[0].astype(np.float64), float(model.intercept_[0])


def rewrite_output_layer(
    model: Any, toxic: tuple[np.ndarray, float], head: tuple[np.ndarray, float]
) -> None:
    """The output layer becomes [toxic margin; identity_attack], read with sigmoids."""
    import torch

    layer = find_output_layer(model)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.stack([toxic[0], head[0]])).to(layer.weight.dtype))
        layer.bias.copy_(torch.tensor([toxic[1], head[1]], dtype=layer.bias.dtype))
    model.config.id2label = {0: TOXIC, 1: HEAD}
    model.config.label2id = {TOXIC: 0, HEAD: 1}
    model.config.problem_type = "multi_label_classification"


def train(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    checkpoint: Path = args.checkpoint
    output: Path = args.output or checkpoint
    metadata = json.loads((checkpoint / METADATA).read_text(encoding="utf-8"))
    max_length = int(metadata["tokenizer"]["max_length"])
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        checkpoint, local_files_only=True, dtype=torch.float32
    ).eval()
    toxic = toxic_margin_row(model)

    corpus = load_corpus(args.data_dir, seed=args.seed, **recipe_options(args))
    train_texts, y, train_sources = known(corpus.train)
    val_texts, y_val, val_sources = known(corpus.val)
    id_texts, id_terms = identity_sentences()
    log.info("%d training rows (%d attacks), %d validation rows", len(y), y.sum(), len(y_val))
    progress = not args.no_progress

    def features(texts: list[str], desc: str) -> np.ndarray:
        return pooled_features(
            model, tokenizer, served_text(texts), max_length, args.batch_size, desc, progress
        )

    x = features(train_texts, "train")
    x_val = features(val_texts, "val")
    x_id = features(id_texts, "identity")
    overrides = HEAD_WEIGHTS | dict(args.weight)
    weight = row_weights(train_sources, overrides)

    def fit(c: float) -> tuple[np.ndarray, float]:
        return fit_logistic(x, y, weight, c)

    chosen = choose_head(fit, args.grid_c, x_val, y_val, val_sources, x_id, id_terms, log.info)

    # Scored before the rewrite, to check after it that the toxic score has not moved.
    tweets = read_tweeteval(args.data_dir / "tweeteval_offensive", "val", "tweeteval_offensive/val")
    check_texts = served_text(tweets.texts)
    before = TorchScorer(checkpoint, args.threads).predict_proba(check_texts)

    rewrite_output_layer(model, toxic, chosen.folded())
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output, safe_serialization=True)
    if output != checkpoint:
        # metadata.json too, for now: the check below reads the window from it.
        for name in (*TOKENIZER_FILES, METADATA):
            if (checkpoint / name).is_file():
                shutil.copyfile(checkpoint / name, output / name)
    after = TorchScorer(output, args.threads).predict_proba(check_texts)

    digest = sha256_file(output / WEIGHTS)
    family = metadata["model_version"].split("-")[1]  # transformer-<family>-<hash>
    entry = head_metadata(
        chosen, train_sources, y, overrides, chosen.proba(x_val), y_val, chosen.proba(x_id)
    )
    metadata = metadata | {
        "model_version": f"transformer-{family}-{digest[:12]}",
        "artifact": {"file": WEIGHTS, "sha256": digest, "bytes": (output / WEIGHTS).stat().st_size},
        "labels": {"0": TOXIC, "1": HEAD},
        "problem_type": "multi_label_classification",
        "heads": {
            HEAD: entry
            | {
                "features": "the output layer's input (the pooled [CLS] output), "
                "texts as served, cut at the trained window",
                "toxic_score_check": {
                    "rows": len(check_texts),
                    "what": "tweeteval_offensive/val scored before and after the head is added",
                    "max_abs_diff": float(np.abs(before - after).max()),
                },
                "seed": args.seed,
                "training_seconds": round(time.perf_counter() - started, 1),
            }
        },
    }
    write_metadata(output, metadata)
    log.info("wrote %s (%s) with an %s head", output, metadata["model_version"], HEAD)
    return dict(metadata)


def main(argv: list[str] | None = None) -> int:
    return run_head_trainer(parse_args, train, argv)


if __name__ == "__main__":
    sys.exit(main())
