"""Tiny randomly-initialised DistilBERT checkpoints for provider tests (built, never downloaded).

The tokenizer is a real WordPiece tokenizer over a small vocabulary written here: special tokens,
some words, and every letter alone and as a `##` continuation, so any lower-case text tokenises.
"""

from __future__ import annotations

import json
import shutil
import string
import warnings
from pathlib import Path

WORDS = [
    "you",
    "are",
    "awful",
    "idiot",
    "stupid",
    "have",
    "a",
    "nice",
    "day",
    "hate",
    "the",
    "this",
    "is",
    "and",
    "i",
    "love",
    "great",
    "weather",
    "people",
    "all",
    "of",
    "them",
    "what",
    "morning",
    "thanks",
    "for",
    "help",
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
JIGSAW_LABELS = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


def vocabulary() -> dict[str, int]:
    tokens = SPECIALS + sorted(set(WORDS)) + list(string.ascii_lowercase + string.digits)
    tokens += [f"##{c}" for c in string.ascii_lowercase + string.digits]
    tokens += list(".,!?'")
    return {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}


def build_checkpoint(
    folder: Path,
    *,
    labels: list[str] | None = None,
    multi_label: bool = False,
    seed: int = 0,
    max_positions: int = 64,
    metadata: dict[str, object] | None = None,
) -> Path:
    """Save a tiny sequence-classification checkpoint (config, weights, tokenizer) to folder."""
    import torch
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        DistilBertTokenizerFast,
    )

    labels = labels or ["non-toxic", "toxic"]
    vocab = vocabulary()
    torch.manual_seed(seed)
    config = DistilBertConfig(
        vocab_size=len(vocab),
        dim=32,
        n_layers=1,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=max_positions,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        problem_type="multi_label_classification" if multi_label else None,
    )
    model = DistilBertForSequenceClassification(config).eval()
    # Random heads score everything near 0.5; a larger output scale spreads the scores so
    # that tests can tell texts apart.
    with torch.no_grad():
        model.classifier.weight.mul_(40)
    # transformers 5.x: pass the vocabulary as a dict (a vocab_file argument is ignored).
    tokenizer = DistilBertTokenizerFast(vocab=vocab)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if metadata is not None:
        (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


def export_onnx(checkpoint: Path, folder: Path, *, quantize: bool = False) -> Path:
    """Export the checkpoint to folder/model.onnx with the files the onnx provider reads."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    folder.mkdir(parents=True, exist_ok=True)
    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    target = folder / ("model.fp32.onnx" if quantize else "model.onnx")
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript; the legacy path is enough for a one-layer test model.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, mask),
            str(target),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(target), str(folder / "model.onnx"), weight_type=QuantType.QInt8)
        target.unlink()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "metadata.json"):
        if (checkpoint / name).exists():
            shutil.copy(checkpoint / name, folder / name)
    return folder
