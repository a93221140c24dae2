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
from dataclasses import dataclass, field
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
class LinearHead:
    """A second score on the same features: its own folded weights and intercept."""

    coef_word: np.ndarray
    coef_char: np.ndarray
    coef_lexicon: float
    intercept: float

    def to_payload(self) -> dict[str, Any]:
        return {
            "coef_word": self.coef_word,
            "coef_char": self.coef_char,
            "coef_lexicon": self.coef_lexicon,
            "intercept": self.intercept,
        }

    @classmethod
    def from_payload(cls, payload: Any) -> LinearHead:
        return cls(
            coef_word=np.asarray(payload["coef_word"], dtype=np.float64),
            coef_char=np.asarray(payload["coef_char"], dtype=np.float64),
            coef_lexicon=float(payload["coef_lexicon"]),
            intercept=float(payload["intercept"]),
        )


@dataclass(frozen=True, eq=False)
class LinearTextModel:
    """The fitted model: two stock TfidfVectorizers, a lexicon and one folded weight vector for
    toxicity, plus optional `heads` (e.g. `identity_attack`) scored from the same features."""

    word: TfidfVectorizer
    char: TfidfVectorizer
    coef_word: np.ndarray
    coef_char: np.ndarray
    intercept: float
    lexicon: frozenset[str]
    lexicon_scale: float
    coef_lexicon: float
    heads: dict[str, LinearHead] = field(default_factory=dict)

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
            # Optional: an artifact without heads loads as before, and a loader that does not
            # know heads ignores the key.
            **(
                {"heads": {name: head.to_payload() for name, head in sorted(self.heads.items())}}
                if self.heads
                else {}
            ),
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
            heads={
                str(name): LinearHead.from_payload(head)
                for name, head in (payload.get("heads") or {}).items()
            },
        )
        shapes = [(model.coef_word, model.coef_char)] + [
            (head.coef_word, head.coef_char) for head in model.heads.values()
        ]
        expected = ((len(model.word.vocabulary_),), (len(model.char.vocabulary_),))
        if any((word.shape, char.shape) != expected for word, char in shapes):
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

    @functools.cached_property
    def _weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Word, character and lexicon weights and intercepts, one column per score (toxicity
        first, then each head)."""
        heads = list(self.heads.values())
        return (
            np.column_stack([self.coef_word] + [h.coef_word for h in heads]),
            np.column_stack([self.coef_char] + [h.coef_char for h in heads]),
            np.asarray([self.coef_lexicon] + [h.coef_lexicon for h in heads]),
            np.asarray([self.intercept] + [h.intercept for h in heads]),
        )

    def logits(self, normalized: Sequence[str]) -> np.ndarray:
        """The reference computation, with scikit-learn's transform: one column per score."""
        x_word, x_char = self.features(normalized)
        coef_word, coef_char, coef_lexicon, intercept = self._weights
        lexicon = self.lexicon_feature(normalized)[:, None]
        logits: np.ndarray = x_word @ coef_word + x_char @ coef_char + lexicon * coef_lexicon
        logits += intercept
        return logits

    @functools.cached_property
    def fast(self) -> FastLinearScorer | None:
        # The same numbers several times faster (see fast.py); None if the vectorizers use
        # settings it does not implement.
        if not supports(self.word, self.char):
            return None
        coef_word, coef_char, _, _ = self._weights
        return FastLinearScorer(self.word, self.char, coef_word, coef_char)

    def fast_logits(self, normalized: Sequence[str]) -> np.ndarray:
        """`logits`, by the fast path where it applies: one column per score."""
        if self.fast is None:
            return self.logits(normalized)
        _, _, coef_lexicon, intercept = self._weights
        lexicon = self.lexicon_feature(normalized)[:, None]
        logits: np.ndarray = self.fast.linear(normalized) + lexicon * coef_lexicon + intercept
        return logits

    def predict_scores(self, texts: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Probability of the toxic class for raw texts (normalised here), and each head's."""
        logits = self.fast_logits([normalize(text) for text in texts])
        proba: np.ndarray = 1.0 / (1.0 + np.exp(-logits))
        return proba[:, 0], {name: proba[:, i] for i, name in enumerate(self.heads, 1)}

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probability of the toxic class for raw texts (normalised here)."""
        return self.predict_scores(texts)[0]


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
