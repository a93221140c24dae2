"""The `transformer` provider: any Hugging Face sequence-classification checkpoint, with torch.

`MODEL_PATH` is a checkpoint folder (config.json, weights, tokenizer files), loaded offline with
`AutoModelForSequenceClassification` and `AutoTokenizer`. Pre-processing (tokenise, window),
forward and post-processing (softmax or sigmoid, most toxic window) are separate steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ml_prod_api.errors import ModelLoadError
from ml_prod_api.providers.base import Provider, ProviderInfo, Score
from ml_prod_api.providers.sequence import (
    CONFIG_FILE,
    LabelMap,
    Windows,
    file_version,
    pad_batch,
    probabilities,
    read_json,
    read_metadata,
    scores_from_windows,
)

if TYPE_CHECKING:
    from ml_prod_api.settings import Settings

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
DEFAULT_MAX_LENGTH = 128


def resolve_max_length(
    setting: int | None, metadata: dict[str, Any], config: dict[str, Any]
) -> int:
    if setting is not None:
        return setting
    trained = metadata.get("max_length")
    if isinstance(trained, int) and trained > 0:
        return trained
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        return min(positions, DEFAULT_MAX_LENGTH)
    return DEFAULT_MAX_LENGTH


class TransformerProvider(Provider):
    name = "transformer"

    def __init__(
        self,
        path: Path,
        *,
        toxic_label: str | None = None,
        max_length: int | None = None,
        stride: int = 32,
        forward_batch_size: int = 32,
        threads: int = 0,
        version: str | None = None,
    ) -> None:
        self.path = path
        self._toxic_label = toxic_label
        self._max_length_setting = max_length
        self.stride = stride
        self.forward_batch_size = forward_batch_size
        self._threads = threads
        self._version_override = version
        self._version = "unloaded"
        self._threshold: float | None = None
        self.max_length = DEFAULT_MAX_LENGTH
        self.labels: LabelMap | None = None
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def version(self) -> str:
        return self._version

    @property
    def default_threshold(self) -> float | None:
        return self._threshold

    def load(self) -> None:
        if not self.path.is_dir():
            raise ModelLoadError(f"model folder not found: {self.path}")
        config = read_json(self.path / CONFIG_FILE, "model config")
        weights = next((self.path / f for f in _WEIGHT_FILES if (self.path / f).is_file()), None)
        if weights is None:
            raise ModelLoadError(
                f"no model weights in {self.path} (expected {' or '.join(_WEIGHT_FILES)})"
            )
        metadata = read_metadata(self.path)
        self.labels = LabelMap.from_config(config, self._toxic_label)
        self.max_length = resolve_max_length(self._max_length_setting, metadata, config)
        if self.stride >= self.max_length - 2:
            raise ModelLoadError(
                f"WINDOW_STRIDE={self.stride} must be smaller than the window "
                f"({self.max_length} tokens) minus 2"
            )
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:
            raise ModelLoadError(
                f"the transformer provider needs torch and transformers "
                f"(requirements-transformer.txt): {exc.name} is missing"
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
            model = AutoModelForSequenceClassification.from_pretrained(  # nosec B615
                self.path, local_files_only=True
            )
        except Exception as exc:
            raise ModelLoadError(
                f"model weights unreadable in {self.path} ({type(exc).__name__})"
            ) from None
        model.eval()
        self._model = model
        self._threshold = metadata.get("threshold")
        self._version = (
            self._version_override
            or metadata.get("model_version")
            or file_version(weights, "transformer")
        )

    # --- pre-processing, forward, post-processing --------------------------------------------
    def preprocess(self, texts: Sequence[str]) -> Windows:
        encoded = self._tokenizer(list(texts), add_special_tokens=False, truncation=False)
        return Windows.build(
            encoded["input_ids"],
            self.max_length,
            self.stride,
            self._tokenizer.cls_token_id,
            self._tokenizer.sep_token_id,
        )

    def forward(self, windows: Windows) -> np.ndarray:
        import torch

        assert self.labels is not None
        pad_id = self._tokenizer.pad_token_id or 0
        logits = np.zeros((len(windows.ids), len(self.labels.names)), dtype=np.float32)
        with torch.inference_mode():
            for chunk in windows.length_sorted_chunks(self.forward_batch_size):
                input_ids, mask = pad_batch([windows.ids[i] for i in chunk], pad_id)
                out = self._model(
                    input_ids=torch.from_numpy(input_ids),
                    attention_mask=torch.from_numpy(mask),
                )
                logits[chunk] = out.logits.float().numpy()
        return logits

    def postprocess(self, logits: np.ndarray, windows: Windows, n_texts: int) -> list[Score]:
        assert self.labels is not None
        probs = probabilities(logits, self.labels.multi_label)
        return scores_from_windows(probs, windows.owner, n_texts, self.labels)

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        windows = self.preprocess(texts)
        return self.postprocess(self.forward(windows), windows, len(texts))

    def info(self) -> ProviderInfo:
        info = super().info()
        info.details = {"max_length": self.max_length, "stride": self.stride}
        return info


def from_settings(settings: Settings) -> TransformerProvider:
    return TransformerProvider(
        settings.resolved_model_path,
        toxic_label=settings.toxic_label,
        max_length=settings.max_seq_length,
        stride=settings.window_stride,
        forward_batch_size=settings.forward_batch_size,
        threads=settings.torch_threads,
        version=settings.model_version,
    )
