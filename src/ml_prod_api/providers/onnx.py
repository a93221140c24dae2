"""The `onnx` provider: the fine-tuned checkpoint exported to ONNX (int8), run by onnxruntime.

No torch at run time: the fast tokenizer is read from `tokenizer.json` with the `tokenizers`
library, and windows, padding and post-processing are the ones the `transformer` provider uses
(`sequence.WindowedClassifier`), so both score a text the same way. The artifact folder holds
`model.onnx`, `config.json` (labels), `tokenizer.json` (+ `tokenizer_config.json`) and
`metadata.json`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from ml_prod_api.errors import ModelLoadError
from ml_prod_api.providers.artifact_files import read_json
from ml_prod_api.providers.sequence import SequenceSettings, WindowedClassifier

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


class OnnxProvider(WindowedClassifier):
    name = "onnx"
    version_prefix = "onnx"

    def __init__(
        self, path: Path, *, intra_op_threads: int = 0, inter_op_threads: int = 1, **kwargs: Any
    ) -> None:
        super().__init__(path, **kwargs)
        self._intra = intra_op_threads
        self._inter = inter_op_threads
        self._session: Any = None
        self._tokenizer: Any = None
        self._input_names: set[str] = set()
        self._output_name = "logits"

    def weights_file(self) -> Path:
        model_file = self.path / MODEL_FILE
        if not model_file.is_file():
            raise ModelLoadError(f"ONNX model not found: {model_file}")
        if not (self.path / TOKENIZER_FILE).is_file():
            raise ModelLoadError(f"tokenizer not found: {self.path / TOKENIZER_FILE}")
        return model_file

    def load_backend(self) -> None:
        self._load_tokenizer(self.path / TOKENIZER_FILE)
        self._load_session(self.path / MODEL_FILE)

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
        self.cls_id, self.sep_id = ids["cls_token"], ids["sep_token"]
        self.pad_id = ids["pad_token"] or 0

    def _load_session(self, model_file: Path) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelLoadError(
                "the onnx provider needs onnxruntime (requirements-onnx.txt)"
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

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        encoded = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [e.ids for e in encoded]

    def forward_chunk(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self._input_names:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        logits: np.ndarray = self._session.run([self._output_name], feed)[0]
        return logits


def intra_op_threads(setting: int, instances: int) -> int:
    """0 lets onnxruntime take one thread per core, which is right for one session; with several
    model instances each session gets its share of the cores instead, since every session would
    otherwise put a spinning thread on every core."""
    if setting or instances == 1:
        return setting
    return max(1, len(os.sched_getaffinity(0)) // instances)


class OnnxRuntimeSettings(SequenceSettings):
    """The settings of an onnx model wherever it is served: alone (`OnnxSettings`) or as a
    stage of another provider (the `cascade`)."""

    onnx_intra_op_threads: int = Field(default=0, ge=0, le=256)
    onnx_inter_op_threads: int = Field(default=1, ge=0, le=256)
    model_instances: int = Field(
        default=1,
        ge=1,
        le=64,
        description="MODEL_INSTANCES, the service's setting, read here too: with several "
        "instances each session takes its share of the cores.",
    )

    def onnx_provider(self, path: Path, version: str | None) -> OnnxProvider:
        options = self.classifier_options()
        options["version"] = version
        return OnnxProvider(
            path,
            intra_op_threads=intra_op_threads(self.onnx_intra_op_threads, self.model_instances),
            inter_op_threads=self.onnx_inter_op_threads,
            **options,
        )


class OnnxSettings(OnnxRuntimeSettings):
    artifact_folder = OnnxProvider.name

    def build_provider(self) -> OnnxProvider:
        return self.onnx_provider(self.resolved_model_path, self.model_version)
