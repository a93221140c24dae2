"""The `tfidf` provider: word and character TF-IDF with a calibrated NB-LR linear model (issue 3).

The artifact is a directory holding `model.joblib` and `metadata.json` (written by
`training/train_tfidf.py`). The model is linear end to end: naive-Bayes scaling, logistic
regression and sigmoid calibration are folded into one weight vector at training time, so

    probability_toxic = sigmoid(tfidf_word(x) . w_word + tfidf_char(x) . w_char
                                + w_lexicon * scale * log(1 + abusive_words(x)) + b)

where `abusive_words(x)` counts the words of `x` found in the lexicon stored in the artifact (a copy
of `ml_prod_api.lexicon.ABUSIVE_WORDS` at training time, so a later edit of that list cannot change
a shipped model). An explanation (each feature's share of that logit) is exact. Training
evaluates through the same `LinearTextModel.predict_proba` that serving uses, so the two cannot
disagree.

Loading is defensive because an unpickled model from another scikit-learn version can silently
change its answers (it only emits `InconsistentVersionWarning`): the version recorded in the
metadata is compared with the installed one, and the file's sha256 with the recorded one, before
anything is unpickled. Pickle runs code, so only load artifacts you built or trust.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sklearn
from sklearn.exceptions import InconsistentVersionWarning

from ml_prod_api.errors import ModelLoadError
from ml_prod_api.providers import tfidf_fast
from ml_prod_api.providers.artifact_files import read_json, sha256_file
from ml_prod_api.providers.base import Contribution, Provider, Score
from ml_prod_api.providers.tfidf_fast import FastLinearScorer
from ml_prod_api.textnorm import normalize

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix
    from sklearn.feature_extraction.text import TfidfVectorizer

    from ml_prod_api.settings import Settings

__all__ = [
    "ARTIFACT_FILE",
    "ARTIFACT_FORMAT",
    "METADATA_FILE",
    "LinearTextModel",
    "TfidfProvider",
    "from_settings",
    "load_artifact",
]

ARTIFACT_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
ARTIFACT_FORMAT = 2
CHAR_PREFIX = "char:"
LEXICON_FEATURE = "lexicon:abusive_words"
# Words as the lexicon feature counts them: runs of letters of the normalised text.
_LEXICON_TOKEN = re.compile(r"[^\W\d_]+")


def lexicon_hits(normalized: str, lexicon: frozenset[str]) -> int:
    """How many words of a normalised text are in `lexicon`."""
    return sum(1 for word in _LEXICON_TOKEN.findall(normalized) if word in lexicon)


@dataclass(frozen=True, eq=False)
class LinearTextModel:
    """The fitted model: two stock TfidfVectorizers, a lexicon and one folded weight vector."""

    word: TfidfVectorizer
    char: TfidfVectorizer
    coef_word: np.ndarray
    coef_char: np.ndarray
    intercept: float
    lexicon: frozenset[str]
    lexicon_scale: float
    coef_lexicon: float

    def to_payload(self) -> dict[str, Any]:
        # A plain dict of stock scikit-learn objects and arrays: the pickle does not reference this
        # module, so renaming it never breaks a shipped artifact.
        return {
            "format": ARTIFACT_FORMAT,
            "word": self.word,
            "char": self.char,
            "coef_word": self.coef_word,
            "coef_char": self.coef_char,
            "intercept": self.intercept,
            # Sorted, so the same model always pickles to the same bytes.
            "lexicon": sorted(self.lexicon),
            "lexicon_scale": self.lexicon_scale,
            "coef_lexicon": self.coef_lexicon,
        }

    @classmethod
    def from_payload(cls, payload: Any) -> LinearTextModel:
        if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
            found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
            raise ValueError(f"unsupported artifact format {found!r}, expected {ARTIFACT_FORMAT}")
        model = cls(
            word=payload["word"],
            char=payload["char"],
            coef_word=np.asarray(payload["coef_word"], dtype=np.float64),
            coef_char=np.asarray(payload["coef_char"], dtype=np.float64),
            intercept=float(payload["intercept"]),
            lexicon=frozenset(payload["lexicon"]),
            lexicon_scale=float(payload["lexicon_scale"]),
            coef_lexicon=float(payload["coef_lexicon"]),
        )
        if model.coef_word.shape != (len(model.word.vocabulary_),) or model.coef_char.shape != (
            len(model.char.vocabulary_),
        ):
            raise ValueError("weight vectors do not match the vocabularies")
        return model

    def features(self, normalized: Sequence[str]) -> tuple[csr_matrix, csr_matrix]:
        # Parameter validation and finiteness checks cost more than the arithmetic for one short
        # text; the inputs here are always our own vectorizers' output, so skip them.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return self.word.transform(normalized), self.char.transform(normalized)

    def lexicon_feature(self, normalized: Sequence[str]) -> np.ndarray:
        hits = [lexicon_hits(text, self.lexicon) for text in normalized]
        feature: np.ndarray = self.lexicon_scale * np.log1p(np.asarray(hits, dtype=np.float64))
        return feature

    def logits(self, normalized: Sequence[str]) -> np.ndarray:
        """The reference computation, with scikit-learn's transform."""
        x_word, x_char = self.features(normalized)
        logits: np.ndarray = (
            x_word @ self.coef_word
            + x_char @ self.coef_char
            + self.coef_lexicon * self.lexicon_feature(normalized)
            + self.intercept
        )
        return logits

    @functools.cached_property
    def fast(self) -> FastLinearScorer | None:
        # The same numbers several times faster (see tfidf_fast); None if the vectorizers use
        # settings it does not implement.
        return FastLinearScorer(self) if tfidf_fast.supports(self) else None

    def fast_logits(self, normalized: Sequence[str]) -> np.ndarray:
        if self.fast is None:
            return self.logits(normalized)
        logits: np.ndarray = (
            self.fast.linear(normalized)
            + self.coef_lexicon * self.lexicon_feature(normalized)
            + self.intercept
        )
        return logits

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probability of the toxic class for raw texts (normalised here)."""
        logits = self.fast_logits([normalize(text) for text in texts])
        proba: np.ndarray = 1.0 / (1.0 + np.exp(-logits))
        return proba


def resolve_artifact(path: Path) -> tuple[Path, Path]:
    """Accept the artifact directory or the model file inside it; return (model, metadata)."""
    if path.is_dir():
        return path / ARTIFACT_FILE, path / METADATA_FILE
    return path, path.with_name(METADATA_FILE)


def load_artifact(path: Path) -> tuple[LinearTextModel, dict[str, Any]]:
    """Load and verify an artifact. Every failure is a `ModelLoadError` naming the file."""
    model_path, metadata_path = resolve_artifact(path)
    if not model_path.is_file():
        raise ModelLoadError(f"model file not found: {model_path}")
    metadata = read_json(metadata_path, "model metadata")

    # Checked before unpickling, so a mismatch is one clear error and never a warning.
    trained_with = metadata.get("sklearn_version")
    if trained_with != sklearn.__version__:
        raise ModelLoadError(
            f"{model_path} was trained with scikit-learn {trained_with} but {sklearn.__version__} "
            "is installed; install the same version or retrain the model"
        )
    expected_sha = (metadata.get("artifact") or {}).get("sha256")
    if not expected_sha:
        raise ModelLoadError(f"model metadata {metadata_path} records no artifact sha256")
    actual_sha = sha256_file(model_path)
    if actual_sha != expected_sha:
        raise ModelLoadError(
            f"model file {model_path} is corrupt or was replaced: sha256 {actual_sha[:12]}... does "
            f"not match {expected_sha[:12]}... recorded in {metadata_path.name}"
        )

    import joblib  # imported here: only this path needs it, and it is the slowest import

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", InconsistentVersionWarning)
            payload = joblib.load(model_path)
        model = LinearTextModel.from_payload(payload)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ModelLoadError(
            f"model file {model_path} could not be loaded: {type(exc).__name__}: {exc}"
        ) from None
    return model, metadata


class TfidfProvider(Provider):
    name = "tfidf"

    def __init__(self, model_path: Path, version_override: str | None = None) -> None:
        self._model_path = model_path
        self._version_override = version_override
        self._model: LinearTextModel | None = None
        self._metadata: dict[str, Any] = {}
        self._feature_names: np.ndarray | None = None

    @property
    def version(self) -> str:
        if self._version_override:
            return self._version_override
        return str(self._metadata.get("model_version", "unloaded"))

    @property
    def default_threshold(self) -> float | None:
        threshold = self._metadata.get("threshold")
        return float(threshold) if threshold is not None else None

    @property
    def metadata(self) -> dict[str, Any]:
        return self._metadata

    @property
    def model(self) -> LinearTextModel:
        if self._model is None:
            from ml_prod_api.errors import ModelNotReady

            raise ModelNotReady("the tfidf model is not loaded")
        return self._model

    def load(self) -> None:
        self._model, self._metadata = load_artifact(self._model_path)

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        if not texts:
            return []
        proba = self.model.predict_proba(texts)
        return [Score(probability_toxic=float(p)) for p in proba]

    def explain(self, text: str, top_k: int = 10) -> list[Contribution]:
        """The n-grams with the largest share of the toxic logit, largest magnitude first.

        Contributions are exact: they add up, with the intercept, to the logit whose sigmoid is
        `probability_toxic`. Character n-grams are prefixed `char:`; the lexicon feature (how many
        known abusive words the text holds) is `lexicon:abusive_words`.
        """
        model = self.model
        normalized = normalize(text)
        x_word, x_char = model.features([normalized])
        names = self._names()
        n_word = len(model.coef_word)
        n_features = n_word + len(model.coef_char)
        hits = lexicon_hits(normalized, model.lexicon)
        lexicon_index = [n_features] if hits else []
        lexicon_value = (
            [model.coef_lexicon * model.lexicon_scale * math.log1p(hits)] if hits else []
        )
        indices = np.concatenate(
            [x_word.indices, x_char.indices + n_word, np.asarray(lexicon_index, dtype=np.int64)]
        )
        values = np.concatenate(
            [
                x_word.data * model.coef_word[x_word.indices],
                x_char.data * model.coef_char[x_char.indices],
                np.asarray(lexicon_value, dtype=np.float64),
            ]
        )
        order = np.argsort(-np.abs(values), kind="stable")[: max(top_k, 0)]
        return [
            Contribution(feature=str(names[indices[i]]), weight=float(values[i])) for i in order
        ]

    def _names(self) -> np.ndarray:
        # Built on the first explanation only: it costs memory and ~0.1 s that serving may not need.
        if self._feature_names is None:
            model = self.model
            char_names = [CHAR_PREFIX + name for name in model.char.get_feature_names_out()]
            self._feature_names = np.concatenate(
                [
                    model.word.get_feature_names_out(),
                    np.asarray(char_names, dtype=object),
                    np.asarray([LEXICON_FEATURE], dtype=object),
                ]
            )
        return self._feature_names


def from_settings(settings: Settings) -> TfidfProvider:
    return TfidfProvider(settings.resolved_model_path, version_override=settings.model_version)
