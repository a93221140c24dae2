"""The `transformer` provider: any Hugging Face sequence-classification checkpoint, with torch.

`MODEL_PATH` is a checkpoint folder (config.json, weights, tokenizer files), loaded offline with
`AutoModelForSequenceClassification` and `AutoTokenizer`. Windows, padding and post-processing
are shared with the `onnx` provider (`sequence.WindowedClassifier`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from ml_prod_api.errors import ModelLoadError
from ml_prod_api.providers.sequence import SequenceSettings, WindowedClassifier

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class TransformerProvider(WindowedClassifier):
    name = "transformer"
    version_prefix = "transformer"

    def __init__(self, path: Path, *, threads: int = 0, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._threads = threads
        self._model: Any = None
        self._tokenizer: Any = None

    def weights_file(self) -> Path:
        weights = next((self.path / f for f in _WEIGHT_FILES if (self.path / f).is_file()), None)
        if weights is None:
            raise ModelLoadError(
                f"no model weights in {self.path} (expected {' or '.join(_WEIGHT_FILES)})"
            )
        return weights

    def load_backend(self) -> None:
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:
            raise ModelLoadError(
                f"{exc.name} is missing: the transformer provider needs torch and transformers "
                f"(`make install-transformer`, or pip install -r requirements-transformer.txt)"
            ) from None
        if self._threads:
            torch.set_num_threads(self._threads)
        try:
            # A local folder with local_files_only: nothing is downloaded, so no revision to pin.
            self._tokenizer = AutoTokenizer.from_pretrained(  # nosec B615
                self.path, local_files_only=True
            )
        except Exception as exc:
            raise ModelLoadError(
                f"tokenizer files missing or unreadable in {self.path} ({type(exc).__name__})"
            ) from None
        if not getattr(self._tokenizer, "is_fast", False):
            raise ModelLoadError(f"{self.path}: a fast tokenizer (tokenizer.json) is required")
        try:
            # float32 whatever the stored dtype: the shipped checkpoint keeps fp16 weights to
            # halve the file, transformers 5 loads a checkpoint in its stored dtype by default,
            # and CPU kernels are fastest and exact in float32.
            model = AutoModelForSequenceClassification.from_pretrained(  # nosec B615
                self.path, local_files_only=True, dtype=torch.float32
            )
        except Exception as exc:
            raise ModelLoadError(
                f"model weights unreadable in {self.path} ({type(exc).__name__})"
            ) from None
        model.eval()
        self._model = model
        self.cls_id = self._tokenizer.cls_token_id
        self.sep_id = self._tokenizer.sep_token_id
        self.pad_id = self._tokenizer.pad_token_id or 0

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        encoded = self._tokenizer(list(texts), add_special_tokens=False, truncation=False)
        ids: list[list[int]] = encoded["input_ids"]
        return ids

    def forward_chunk(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self._model(
                input_ids=torch.from_numpy(input_ids),
                attention_mask=torch.from_numpy(attention_mask),
            )
        logits: np.ndarray = out.logits.float().numpy()
        return logits


class TransformerSettings(SequenceSettings):
    artifact_folder = TransformerProvider.name

    torch_threads: int = Field(default=0, ge=0, le=256)

    def build_provider(self) -> TransformerProvider:
        return TransformerProvider(
            self.resolved_model_path, threads=self.torch_threads, **self.classifier_options()
        )
