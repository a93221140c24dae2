"""What the `transformer` and `onnx` providers share: their settings, the artifact's metadata, the
label mapping, long-text windows and the post-processing of logits. No torch and no onnxruntime
here.

Long texts: a text longer than the model's window is split into overlapping windows (`stride`
tokens shared by neighbours) and the text's score is that of its most toxic window, so a toxic
sentence at the end of a long text is not truncated away.

Over 300 lines on purpose: it is the whole shared half of two providers, each piece small, and
`WindowedClassifier` at the end reads best with the steps it calls above it.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
from pydantic import Field

from ml_prod_api.errors import ModelLoadError, WorkAbandoned
from ml_prod_api.providers.artifact_files import (
    ArtifactSettings,
    head_thresholds,
    read_json,
    sha256_file,
)
from ml_prod_api.providers.base import Provider, Score
from ml_prod_api.providers.textnorm import normalize

CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
DEFAULT_MAX_LENGTH = 128
_SURROGATE = re.compile("[\ud800-\udfff]")
# Label names taken to mean "toxic" when TOXIC_LABEL is not set, in order of preference.
TOXIC_NAMES = ("toxic", "toxicity", "offensive", "off", "abusive", "hate", "label_1")
# How a text is prepared before it is tokenised, named by the artifact's metadata.json
# ("input_normalization") or the INPUT_NORMALIZATION setting. "deobfuscate" is the tfidf model's
# `normalize` (respellings, masks, spaced letters, homoglyphs undone): a WordPiece tokenizer cuts
# `f.u.c.k` or `sh1t` into pieces the model seldom saw in training.
InputNormalization = Literal["none", "deobfuscate"]
INPUT_NORMALIZATIONS: dict[str, Callable[[str], str] | None] = {
    "none": None,
    "deobfuscate": normalize,
}


@dataclass(frozen=True, slots=True)
class LabelMap:
    names: list[str]
    toxic_index: int
    multi_label: bool

    @classmethod
    def from_config(cls, config: dict[str, Any], toxic_label: str | None) -> LabelMap:
        raw = config.get("id2label") or {}
        try:
            id2label = {int(k): str(v) for k, v in raw.items()}
        except ValueError:
            raise ModelLoadError("config.json: id2label keys must be integers") from None
        n = int(config.get("num_labels", len(id2label) or 2))
        names = [id2label.get(i, f"LABEL_{i}") for i in range(n)]
        multi = config.get("problem_type") == "multi_label_classification"
        lowered = [name.lower() for name in names]
        if toxic_label is not None:
            if toxic_label.lower() not in lowered:
                raise ModelLoadError(
                    f"TOXIC_LABEL={toxic_label!r} is not a label of this model "
                    f"(labels: {', '.join(names)})"
                )
            index = lowered.index(toxic_label.lower())
        else:
            found = [lowered.index(t) for t in TOXIC_NAMES if t in lowered]
            if found:
                index = found[0]
            elif n == 2 and not multi:
                index = 1  # a binary head with anonymous labels: class 1 is the positive one
            else:
                raise ModelLoadError(
                    f"cannot tell which label means toxic (labels: {', '.join(names)}); "
                    "set TOXIC_LABEL"
                )
        if n < 2 and not multi:
            raise ModelLoadError("a single-label head needs at least two labels")
        return cls(names=names, toxic_index=index, multi_label=multi)


def encodable(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD. JSON can carry one (`"\\ud800"`,
    which Python's decoder accepts; a valid pair becomes one code point), and the Rust tokenizers
    refuse any string that is not valid UTF-8: scored as the replacement character, as a UTF-8
    decoder reads broken bytes."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def read_metadata(directory: Path) -> dict[str, Any]:
    """metadata.json is optional for a plain Hugging Face checkpoint."""
    path = directory / METADATA_FILE
    return read_json(path, "model metadata") if path.exists() else {}


def file_version(path: Path, prefix: str) -> str:
    return f"{prefix}-{sha256_file(path)[:12]}"


def probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Sigmoid for multi-label heads, softmax for single-label ones."""
    logits = logits.astype(np.float64, copy=False)
    if multi_label:
        out: np.ndarray = 1.0 / (1.0 + np.exp(-logits))
        return out
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    soft: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return soft


def scores_from_windows(
    probs: np.ndarray, window_owner: Sequence[int], n_texts: int, labels: LabelMap
) -> list[Score]:
    """One Score per text: the window with the highest toxic probability speaks for it."""
    toxic = probs[:, labels.toxic_index]
    best: list[int] = [-1] * n_texts
    for row, owner in enumerate(window_owner):
        if best[owner] < 0 or toxic[row] > toxic[best[owner]]:
            best[owner] = row
    out = []
    for row in best:
        if row < 0:  # cannot happen: every text yields at least one window
            raise RuntimeError("a text produced no window")
        per_label = (
            {name: float(probs[row, i]) for i, name in enumerate(labels.names)}
            if labels.multi_label
            else None
        )
        out.append(Score(probability_toxic=float(toxic[row]), labels=per_label))
    return out


def window_token_ids(
    ids: list[int], max_length: int, stride: int, cls_id: int | None, sep_id: int | None
) -> list[list[int]]:
    """Split one text's content ids into overlapping windows, each wrapped in CLS/SEP.

    Both providers tokenise without special tokens and window here, so the `transformer` and the
    `onnx` provider see exactly the same windows (the same layout as `transformers`'
    `return_overflowing_tokens` with `stride`).
    """
    specials = (cls_id is not None) + (sep_id is not None)
    room = max(1, max_length - specials)
    step = max(1, room - stride)
    chunks = []
    start = 0
    while True:
        chunks.append(ids[start : start + room])
        if start + room >= len(ids):
            break
        start += step
    head = [cls_id] if cls_id is not None else []
    tail = [sep_id] if sep_id is not None else []
    return [head + chunk + tail for chunk in chunks]


@dataclass(frozen=True, slots=True)
class Windows:
    """Every window of a list of texts, and the text each one belongs to."""

    ids: list[list[int]]
    owner: list[int]

    @classmethod
    def build(
        cls,
        per_text_ids: Sequence[list[int]],
        max_length: int,
        stride: int,
        cls_id: int | None,
        sep_id: int | None,
    ) -> Windows:
        ids: list[list[int]] = []
        owner: list[int] = []
        for index, text_ids in enumerate(per_text_ids):
            for window in window_token_ids(text_ids, max_length, stride, cls_id, sep_id):
                ids.append(window)
                owner.append(index)
        return cls(ids, owner)

    def length_sorted_chunks(
        self, chunk_size: int, max_growth: float = 1.25, slack: int = 4
    ) -> list[list[int]]:
        """Window indices grouped by similar length, so a forward pass pads little.

        A chunk closes when it is full or when the next window is longer than its shortest one
        times `max_growth` plus `slack` tokens: on a CPU, padding costs more than a smaller
        batch saves, so only length-compatible windows share a forward pass.
        """
        order = sorted(range(len(self.ids)), key=lambda i: len(self.ids[i]))
        chunks: list[list[int]] = []
        current: list[int] = []
        shortest = 0
        for index in order:
            length = len(self.ids[index])
            if current and (len(current) >= chunk_size or length > shortest * max_growth + slack):
                chunks.append(current)
                current = []
            if not current:
                shortest = length
            current.append(index)
        if current:
            chunks.append(current)
        return chunks


def pad_batch(windows: Sequence[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) as int64 arrays padded to the longest window."""
    width = max(len(w) for w in windows)
    input_ids = np.full((len(windows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(windows), width), dtype=np.int64)
    for row, window in enumerate(windows):
        input_ids[row, : len(window)] = window
        mask[row, : len(window)] = 1
    return input_ids, mask


def resolve_max_length(
    setting: int | None, metadata: dict[str, Any], config: dict[str, Any]
) -> int:
    """The window: the setting, else the length the model was trained with, else its limit."""
    if setting is not None:
        return setting
    trained = metadata.get("max_length")
    if isinstance(trained, int) and trained > 0:
        return trained
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        return min(positions, DEFAULT_MAX_LENGTH)
    return DEFAULT_MAX_LENGTH


class ClassifierOptions(TypedDict):
    """The `WindowedClassifier` keyword arguments that come from `SequenceSettings`."""

    toxic_label: str | None
    max_length: int | None
    stride: int
    forward_batch_size: int
    version: str | None
    input_normalization: InputNormalization | None


class SequenceSettings(ArtifactSettings):
    """The settings both sequence-classifier providers read."""

    toxic_label: str | None = Field(
        default=None, description="The label that means toxic; unset: found by name."
    )
    max_seq_length: int | None = Field(
        default=None, ge=8, le=8192, description="Tokens per window; unset: the model's own."
    )
    window_stride: int = Field(
        default=32, ge=0, le=4096, description="Tokens shared by neighbouring windows."
    )
    forward_batch_size: int = Field(default=32, ge=1, le=4096)
    input_normalization: InputNormalization | None = Field(
        default=None,
        description="How texts are prepared before tokenising: none or deobfuscate; unset: as "
        "the artifact's metadata.json says (none if it says nothing).",
    )

    def classifier_options(self) -> ClassifierOptions:
        return ClassifierOptions(
            toxic_label=self.toxic_label,
            max_length=self.max_seq_length,
            stride=self.window_stride,
            forward_batch_size=self.forward_batch_size,
            version=self.model_version,
            input_normalization=self.input_normalization,
        )


class WindowedClassifier(Provider):
    """A sequence classifier over token windows; subclasses bring a tokenizer and a forward.

    Pre-processing (`token_ids` then windows), forward (`forward_chunk` over length-grouped
    chunks) and post-processing (softmax or sigmoid, most toxic window) are separate steps.
    """

    name = "windowed"
    version_prefix = "model"

    def __init__(
        self,
        path: Path,
        *,
        toxic_label: str | None = None,
        max_length: int | None = None,
        stride: int = 32,
        forward_batch_size: int = 32,
        version: str | None = None,
        input_normalization: InputNormalization | None = None,
    ) -> None:
        self.path = path
        self._normalization_setting = input_normalization
        self.input_normalization = "none"
        self._prepare: Callable[[str], str] | None = None
        self._toxic_label = toxic_label
        self._max_length_setting = max_length
        self.stride = stride
        self.forward_batch_size = forward_batch_size
        self._version_override = version
        self._version = "unloaded"
        self._threshold: float | None = None
        self._label_thresholds: dict[str, float] = {}
        self.max_length = DEFAULT_MAX_LENGTH
        self.labels: LabelMap | None = None
        self.cls_id: int | None = None
        self.sep_id: int | None = None
        self.pad_id = 0

    @property
    def version(self) -> str:
        return self._version

    @property
    def default_threshold(self) -> float | None:
        return self._threshold

    @property
    def label_thresholds(self) -> dict[str, float]:
        return self._label_thresholds

    # --- to implement -------------------------------------------------------------------------
    @abstractmethod
    def weights_file(self) -> Path:
        """The file that holds the weights (checked before anything heavy is imported)."""

    @abstractmethod
    def load_backend(self) -> None:
        """Load the tokenizer and the model; set cls_id, sep_id and pad_id."""

    @abstractmethod
    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's content token ids, without special tokens."""

    @abstractmethod
    def forward_chunk(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Logits for one padded chunk of windows."""

    # --- shared -------------------------------------------------------------------------------
    def load(self) -> None:
        if not self.path.is_dir():
            raise ModelLoadError(f"model folder not found: {self.path}")
        weights = self.weights_file()
        config = read_json(self.path / CONFIG_FILE, "model config")
        metadata = read_metadata(self.path)
        self.labels = LabelMap.from_config(config, self._toxic_label)
        self.max_length = resolve_max_length(self._max_length_setting, metadata, config)
        if self.stride >= self.max_length - 2:
            raise ModelLoadError(
                f"WINDOW_STRIDE={self.stride} must be smaller than the window "
                f"({self.max_length} tokens) minus 2"
            )
        normalization = self._normalization_setting or metadata.get("input_normalization", "none")
        if normalization not in INPUT_NORMALIZATIONS:
            raise ModelLoadError(
                f"{self.path / METADATA_FILE}: input_normalization {normalization!r} is not one "
                f"of {', '.join(INPUT_NORMALIZATIONS)}"
            )
        self.load_backend()
        self.input_normalization = normalization
        self._prepare = INPUT_NORMALIZATIONS[normalization]
        self._threshold = metadata.get("threshold")
        self._label_thresholds = head_thresholds(metadata)
        self._version = (
            self._version_override
            or metadata.get("model_version")
            or file_version(weights, self.version_prefix)
        )

    def preprocess(self, texts: Sequence[str]) -> Windows:
        prepare = self._prepare
        ready = [encodable(text) for text in texts]
        return Windows.build(
            self.token_ids([prepare(text) for text in ready] if prepare else ready),
            self.max_length,
            self.stride,
            self.cls_id,
            self.sep_id,
        )

    def forward(self, windows: Windows, abandoned: Callable[[], bool] | None = None) -> np.ndarray:
        """Logits of every window, in forward chunks of at most `forward_batch_size` windows;
        `abandoned` is checked between chunks (raising `WorkAbandoned`)."""
        assert self.labels is not None
        logits = np.zeros((len(windows.ids), len(self.labels.names)), dtype=np.float32)
        for done, chunk in enumerate(windows.length_sorted_chunks(self.forward_batch_size)):
            if done and abandoned is not None and abandoned():
                raise WorkAbandoned("nobody waits for the rest of this call")
            input_ids, mask = pad_batch([windows.ids[i] for i in chunk], self.pad_id)
            logits[chunk] = self.forward_chunk(input_ids, mask)
        return logits

    def postprocess(self, logits: np.ndarray, windows: Windows, n_texts: int) -> list[Score]:
        assert self.labels is not None
        probs = probabilities(logits, self.labels.multi_label)
        return scores_from_windows(probs, windows.owner, n_texts, self.labels)

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        windows = self.preprocess(texts)
        return self.postprocess(self.forward(windows), windows, len(texts))

    def predict_batch_until(
        self, texts: Sequence[str], abandoned: Callable[[], bool]
    ) -> list[Score]:
        windows = self.preprocess(texts)
        return self.postprocess(self.forward(windows, abandoned), windows, len(texts))
