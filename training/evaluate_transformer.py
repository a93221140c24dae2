"""Evaluate the transformer models with the same figures as the TF-IDF model.

    python -m training.evaluate_transformer [--model models/onnx] [--checkpoint models/transformer]
        [--write-metadata]

`--model` is the shipped int8 ONNX artifact (scored with `tokenizers` + onnxruntime, no torch);
`--checkpoint` the fp32 Hugging Face checkpoint (scored with torch). The metrics and plots are
`evaluate.py`'s own functions (`split_metrics`, `bias_report`, `plot_curves`, `plot_bias`),
so both model families are measured the same way; the plots go to docs/model/ with a prefix
(`onnx_roc.png`, `transformer_roc.png`, ...) so they sit beside the TF-IDF ones.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ml_prod_api.providers.sequence import LabelMap, probabilities
from training.data_sources import (
    DEFAULT_DATA_DIR,
    DataFileMissing,
    read_bias_madlibs,
    read_tweeteval,
)
from training.evaluate import (
    ECE_BINS,
    bias_report,
    plot_bias,
    plot_curves,
    print_report,
    split_metrics,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

METADATA_FILE = "metadata.json"
ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
PLOT_NAMES = ("roc.png", "precision_recall.png", "reliability.png", "bias_madlibs.png")


class Scorer(Protocol):
    version: str

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


def toxic_proba(logits: np.ndarray, labels: LabelMap) -> np.ndarray:
    """The toxic probability as the providers compute it: softmax for a single-label head,
    sigmoid for a multi-label one (a checkpoint with an `identity_attack` head)."""
    proba: np.ndarray = probabilities(logits, labels.multi_label)[:, labels.toxic_index]
    return proba


def read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def label_map(config: dict[str, Any]) -> LabelMap:
    return LabelMap.from_config(config, "toxic")


class OnnxScorer:
    """What `MODEL_PROVIDER=onnx` runs: `tokenizers` from tokenizer.json, onnxruntime, no torch."""

    def __init__(
        self,
        folder: Path,
        model_path: Path | None = None,
        threads: int = 2,
        batch_size: int = 64,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder = folder
        config = read_json(folder / "config.json")
        self.labels = label_map(config)
        metadata_path = folder / METADATA_FILE
        metadata = read_json(metadata_path) if metadata_path.is_file() else {}
        model_path = model_path or folder / ONNX_FILE
        self.version = str(metadata.get("model_version", f"onnx-{model_path.name}"))
        self.threshold = metadata.get("threshold")
        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self.tokenizer.no_padding()  # padding per length-sorted batch below
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def logits_for_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        width = max(len(x) for x in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        logits: np.ndarray = self.session.run(["logits"], feed)[0]
        return logits

    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        ids = self.encode(texts)
        order = np.argsort([len(x) for x in ids], kind="stable")
        out: np.ndarray | None = None
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            logits = self.logits_for_ids([ids[i] for i in index])
            if out is None:
                out = np.zeros((len(ids), logits.shape[1]), dtype=np.float32)
            out[index] = logits
        assert out is not None
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return toxic_proba(self.predict_logits(texts), self.labels)


class TorchScorer:
    """The fp32 Hugging Face checkpoint, scored with torch (the reference for the int8 check)."""

    def __init__(self, folder: Path, threads: int = 2, batch_size: int = 64) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.set_num_threads(threads)
        self.folder = folder
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        # float32 whatever the stored dtype, as the transformer provider loads it.
        self.model = AutoModelForSequenceClassification.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32
        ).eval()
        self.labels = label_map(self.model.config.to_dict())
        metadata_path = folder / METADATA_FILE
        metadata = read_json(metadata_path) if metadata_path.is_file() else {}
        self.version = str(metadata.get("model_version", folder.name))
        self.threshold = metadata.get("threshold")
        self.max_length = int((metadata.get("tokenizer") or {}).get("max_length", 128))
        self.batch_size = batch_size

    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.zeros((len(ids), self.model.config.num_labels), dtype=np.float32)
        pad = self.tokenizer.pad_token_id
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                index = order[start : start + self.batch_size]
                width = max(len(ids[i]) for i in index)
                input_ids = torch.full((len(index), width), pad, dtype=torch.long)
                mask = torch.zeros((len(index), width), dtype=torch.long)
                for row, i in enumerate(index):
                    input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                    mask[row, : len(ids[i])] = 1
                out[index] = self.model(input_ids=input_ids, attention_mask=mask).logits.numpy()
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return toxic_proba(self.predict_logits(texts), self.labels)


def save_plots(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    bias: dict[str, Any],
    plots_dir: Path,
    prefix: str,
) -> list[Path]:
    """evaluate.py's plots, renamed `{prefix}_{name}` so they do not overwrite the TF-IDF ones."""
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        plot_curves(curves, Path(tmp))
        plot_bias(bias, Path(tmp))
        plots_dir.mkdir(parents=True, exist_ok=True)
        for name in PLOT_NAMES:
            target = plots_dir / f"{prefix}_{name}"
            shutil.move(str(Path(tmp) / name), target)
            written.append(target)
    return written


def evaluate_scorer(
    scorer: Scorer,
    threshold: float,
    data_dir: Path,
    plots_dir: Path | None,
    prefix: str,
) -> dict[str, Any]:
    """val and test of tweeteval_offensive, and bias_madlibs, at `threshold`."""
    offensive = data_dir / "tweeteval_offensive"
    metrics: dict[str, Any] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in ("val", "test"):
        part = read_tweeteval(offensive, split, f"tweeteval_offensive/{split}")
        y = np.asarray(part.labels)
        proba = scorer.predict_proba(part.texts)
        metrics[split] = split_metrics(proba, y, threshold)
        curves[split] = (proba, y)
    madlibs = read_bias_madlibs(data_dir / "bias_madlibs" / "bias_madlibs_77k.csv")
    m_proba = scorer.predict_proba(madlibs.texts)
    metrics["bias_madlibs"] = bias_report(
        m_proba, np.asarray(madlibs.labels), madlibs.texts, threshold
    )
    if plots_dir is not None:
        save_plots(curves, metrics["bias_madlibs"], plots_dir, prefix)
    metrics["evaluated"] = {"model_version": scorer.version, "ece_bins": ECE_BINS}
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate_transformer",
        description="Evaluate the transformer models.",
    )
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "onnx")
    parser.add_argument(
        "--checkpoint", type=Path, help="also evaluate this fp32 checkpoint (needs torch)"
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--plots-dir", type=Path, default=REPO_ROOT / "docs" / "model")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--write-metadata",
        action="store_true",
        help="store the metrics in models/onnx/metadata.json (metrics.int8 / metrics.fp32)",
    )
    args = parser.parse_args(argv)
    plots = None if args.no_plots else args.plots_dir
    scorers: list[tuple[str, str, Scorer]] = [("int8", "onnx", OnnxScorer(args.model))]
    if args.checkpoint:
        scorers.append(("fp32", "transformer", TorchScorer(args.checkpoint, args.threads)))
    threshold = float(read_json(args.model / METADATA_FILE)["threshold"])
    results: dict[str, Any] = {}
    try:
        for key, prefix, scorer in scorers:
            results[key] = evaluate_scorer(scorer, threshold, args.data_dir, plots, prefix)
            print(f"--- {key} ---")
            print_report(results[key])
    except DataFileMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.write_metadata:
        path = args.model / METADATA_FILE
        metadata = read_json(path)
        metadata.setdefault("metrics", {}).update(results)
        path.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
