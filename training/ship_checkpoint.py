"""Ship a fine-tuned checkpoint for the `transformer` provider: fp16 safetensors, half the size.

    python -m training.ship_checkpoint [--checkpoint models/.checkpoints/transformer-fp32]
        [--output models/transformer]

`train_transformer.py` writes an fp32 checkpoint (the one `export_onnx.py` exports). This copies
it with the weights stored in fp16 (the provider loads them as float32), the tokenizer files
unchanged, and `metadata.json` updated: the artifact's sha256 and size, a `model_version` from the
new file's hash, and the largest probability change fp16 storage causes on the validation
sentences given (tweeteval_offensive/val by default).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from training.data_sources import DEFAULT_DATA_DIR, read_tweeteval, sha256_file
from training.evaluate_transformer import TorchScorer
from training.train_transformer import FP32_CHECKPOINT, with_input_normalization

REPO_ROOT = Path(__file__).resolve().parents[1]

WEIGHTS = "model.safetensors"
METADATA = "metadata.json"


def ship(checkpoint: Path, output: Path, check_texts: list[str]) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    output.mkdir(parents=True, exist_ok=True)
    for stale in output.iterdir():
        if stale.is_file():
            stale.unlink()
    model = AutoModelForSequenceClassification.from_pretrained(
        checkpoint, local_files_only=True, dtype=torch.float32
    )
    model.half().save_pretrained(output, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (checkpoint / name).is_file():
            shutil.copyfile(checkpoint / name, output / name)
    weights = output / WEIGHTS
    weights.chmod(0o644)
    digest = sha256_file(weights)
    metadata = with_input_normalization(
        json.loads((checkpoint / METADATA).read_text(encoding="utf-8"))
    )
    reference = TorchScorer(checkpoint).predict_proba(check_texts)
    stored = TorchScorer(output).predict_proba(check_texts)
    threshold = float(metadata["threshold"])
    family = metadata["model_version"].split("-")[1]  # transformer-<family>-<hash>
    metadata["model_version"] = f"transformer-{family}-{digest[:12]}"
    metadata["artifact"] = {"file": WEIGHTS, "sha256": digest, "bytes": weights.stat().st_size}
    metadata["weights_storage"] = {
        "dtype": "float16 on disk, loaded as float32 by the provider",
        "fp32_sha256": sha256_file(checkpoint / WEIGHTS),
        "check_rows": len(check_texts),
        "max_abs_proba_diff_vs_fp32": round(float(np.abs(reference - stored).max()), 6),
        "decisions_changed": int(((reference >= threshold) != (stored >= threshold)).sum()),
    }
    (output / METADATA).write_text(
        json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.ship_checkpoint", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=FP32_CHECKPOINT,
        help="the fp32 checkpoint train_transformer.py wrote",
    )
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "models" / "transformer")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    folder = args.data_dir / "tweeteval_offensive"
    texts = read_tweeteval(folder, "val", "tweeteval_offensive/val").texts
    metadata = ship(args.checkpoint, args.output, texts)
    storage = metadata["weights_storage"]
    print(
        f"wrote {args.output / WEIGHTS} ({metadata['artifact']['bytes'] / 1e6:.1f} MB), "
        f"{metadata['model_version']}; fp16 vs fp32 on {storage['check_rows']} texts: max "
        f"|diff| {storage['max_abs_proba_diff_vs_fp32']}, {storage['decisions_changed']} "
        "decisions changed"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
