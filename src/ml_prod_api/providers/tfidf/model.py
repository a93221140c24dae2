"""The `tfidf` model: word and character TF-IDF with a calibrated NB-LR linear model, and its
artifact format.

The artifact is a directory holding `model.joblib` and `metadata.json` (written by
`training/train_tfidf.py`). The model is linear end to end: naive-Bayes scaling, logistic
regression and sigmoid calibration are folded into one weight vector at training time, so

    probability_toxic = sigmoid(tfidf_word(x) . w_word + tfidf_char(x) . w_char
                                + w_lexicon * scale * log(1 + abusive_words(x)) + b)

where `abusive_words(x)` counts the words of `x` found in the lexicon stored in the artifact (a copy
of `lexicon.ABUSIVE_WORDS` at training time, so a later edit of that list cannot change a shipped
model). An explanation (each feature's share of that logit) is exact. Training evaluates through
the same `LinearTextModel.predict_proba` that serving uses, so the two cannot disagree.

Loading is defensive because an unpickled model from another scikit-learn version can silently
change its answers (it only emits `InconsistentVersionWarning`): the version recorded in the
metadata is compared with the installed one, and the file's sha256 with the recorded one, before
anything is unpickled. Pickle runs code, so only load artifacts you built or trust.
"""

from __future__ import annotations

import functools
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
from ml_prod_api.providers.artifact_files import read_json, sha256_file
from ml_prod_api.providers.textnorm import normalize
from ml_prod_api.providers.tfidf.fast import FastLinearScorer, supports

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix
    from sklearn.feature_extraction.text import TfidfVectorizer

ARTIFACT_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
ARTIFACT_FORMAT = 2
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
        # The same numbers several times faster (see fast.py); None if the vectorizers use
        # settings it does not implement.
        if not supports(self.word, self.char):
            return None
        return FastLinearScorer(self.word, self.char, self.coef_word, self.coef_char)

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
