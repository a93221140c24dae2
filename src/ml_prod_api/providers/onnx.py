"""The `onnx` provider: the fine-tuned checkpoint exported to ONNX (int8), run by onnxruntime.

No torch at run time: the fast tokenizer is read from `tokenizer.json` with the `tokenizers`
library, and windows, padding and post-processing are the same functions the `transformer`
provider uses, so both score a text the same way. The artifact folder holds `model.onnx`,
`config.json` (labels), `tokenizer.json` (+ `tokenizer_config.json`) and `metadata.json`.
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
from ml_prod_api.providers.transformer import resolve_max_length

if TYPE_CHECKING:
    from ml_prod_api.settings import Settings

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
# (name in tokenizer_config.json, fallbacks tried in order)
_SPECIALS = {
    "cls_token": ("[CLS]", "<s>"),
    "sep_token": ("[SEP]", "</s>"),
    "pad_token": ("[PAD]", "<pad>"),
}


def _token_content(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


class OnnxProvider(Provider):
    name = "onnx"

    def __init__(
        self,
        path: Path,
        *,
        toxic_label: str | None = None,
        max_length: int | None = None,
        stride: int = 32,
        forward_batch_size: int = 32,
        intra_op_threads: int = 0,
        inter_op_threads: int = 1,
        version: str | None = None,
    ) -> None:
        self.path = path
        self._toxic_label = toxic_label
        self._max_length_setting = max_length
        self.stride = stride
        self.forward_batch_size = forward_batch_size
        self._intra = intra_op_threads
        self._inter = inter_op_threads
        self._version_override = version
        self._version = "unloaded"
        self._threshold: float | None = None
        self.max_length = 128
        self.labels: LabelMap | None = None
        self._session: Any = None
        self._tokenizer: Any = None
        self._input_names: set[str] = set()
        self._output_name = "logits"
        self._cls: int | None = None
        self._sep: int | None = None
        self._pad = 0

    @property
    def version(self) -> str:
        return self._version

    @property
    def default_threshold(self) -> float | None:
        return self._threshold

    def load(self) -> None:
        if not self.path.is_dir():
            raise ModelLoadError(f"model folder not found: {self.path}")
        model_file = self.path / MODEL_FILE
        tokenizer_file = self.path / TOKENIZER_FILE
        if not model_file.is_file():
            raise ModelLoadError(f"ONNX model not found: {model_file}")
        if not tokenizer_file.is_file():
            raise ModelLoadError(f"tokenizer not found: {tokenizer_file}")
        config = read_json(self.path / CONFIG_FILE, "model config")
        metadata = read_metadata(self.path)
        self.labels = LabelMap.from_config(config, self._toxic_label)
        self.max_length = resolve_max_length(self._max_length_setting, metadata, config)
        if self.stride >= self.max_length - 2:
            raise ModelLoadError(
                f"WINDOW_STRIDE={self.stride} must be smaller than the window "
                f"({self.max_length} tokens) minus 2"
            )
        self._load_tokenizer(tokenizer_file)
        self._load_session(model_file)
        self._threshold = metadata.get("threshold")
        self._version = (
            self._version_override
            or metadata.get("model_version")
            or file_version(model_file, "onnx")
        )

    def _load_tokenizer(self, tokenizer_file: Path) -> None:
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:
            raise ModelLoadError(
                f"tokenizer unreadable: {tokenizer_file} ({type(exc).__name__})"
            ) from None
        tokenizer.no_truncation()
        tokenizer.no_padding()
        config_path = self.path / TOKENIZER_CONFIG_FILE
        tok_config = read_json(config_path, "tokenizer config") if config_path.exists() else {}
        ids: dict[str, int | None] = {}
        for key, fallbacks in _SPECIALS.items():
            named = _token_content(tok_config.get(key))
            candidates = ([named] if named else []) + list(fallbacks)
            ids[key] = next(
                (i for c in candidates if (i := tokenizer.token_to_id(c)) is not None), None
            )
        self._tokenizer = tokenizer
        self._cls, self._sep = ids["cls_token"], ids["sep_token"]
        self._pad = ids["pad_token"] or 0

    def _load_session(self, model_file: Path) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelLoadError(
                "the onnx provider needs onnxruntime (requirements-transformer.txt)"
            ) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._intra
        options.inter_op_num_threads = self._inter
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(
                str(model_file), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelLoadError(
                f"not a loadable ONNX model: {model_file} ({type(exc).__name__})"
            ) from None
        self._input_names = {i.name for i in session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= self._input_names:
            raise ModelLoadError(
                f"{model_file}: expected inputs input_ids and attention_mask, "
                f"found {', '.join(sorted(self._input_names))}"
            )
        outputs = [o.name for o in session.get_outputs()]
        self._output_name = "logits" if "logits" in outputs else outputs[0]
        self._session = session

    # --- pre-processing, forward, post-processing --------------------------------------------
    def preprocess(self, texts: Sequence[str]) -> Windows:
        encoded = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return Windows.build(
            [e.ids for e in encoded], self.max_length, self.stride, self._cls, self._sep
        )

    def forward(self, windows: Windows) -> np.ndarray:
        assert self.labels is not None
        logits = np.zeros((len(windows.ids), len(self.labels.names)), dtype=np.float32)
        for chunk in windows.length_sorted_chunks(self.forward_batch_size):
            input_ids, mask = pad_batch([windows.ids[i] for i in chunk], self._pad)
            feed = {"input_ids": input_ids, "attention_mask": mask}
            if "token_type_ids" in self._input_names:
                feed["token_type_ids"] = np.zeros_like(input_ids)
            logits[chunk] = self._session.run([self._output_name], feed)[0]
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


def from_settings(settings: Settings) -> OnnxProvider:
    return OnnxProvider(
        settings.resolved_model_path,
        toxic_label=settings.toxic_label,
        max_length=settings.max_seq_length,
        stride=settings.window_stride,
        forward_batch_size=settings.forward_batch_size,
        intra_op_threads=settings.onnx_intra_op_threads,
        inter_op_threads=settings.onnx_inter_op_threads,
        version=settings.model_version,
    )
