"""The `tfidf` provider: serves a `LinearTextModel` artifact and explains its scores exactly.

The model, its artifact format and the checks made before anything is unpickled are in
`model.py`; the text normalisation shared with training is in `textnorm.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ml_prod_api.providers.artifact_files import ArtifactSettings, head_thresholds
from ml_prod_api.providers.base import Contribution, Provider, Score
from ml_prod_api.providers.textnorm import normalize
from ml_prod_api.providers.tfidf.model import LinearTextModel, lexicon_hits, load_artifact

CHAR_PREFIX = "char:"
LEXICON_FEATURE = "lexicon:abusive_words"


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
    def label_thresholds(self) -> dict[str, float]:
        return head_thresholds(self._metadata)

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
        toxic, heads = self.model.predict_scores(texts)
        if not heads:
            return [Score(probability_toxic=float(p)) for p in toxic]
        return [
            Score(
                probability_toxic=float(p),
                labels={"toxic": float(p)} | {name: float(q[i]) for name, q in heads.items()},
            )
            for i, p in enumerate(toxic)
        ]

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


class TfidfSettings(ArtifactSettings):
    artifact_folder = TfidfProvider.name

    def build_provider(self) -> TfidfProvider:
        return TfidfProvider(self.resolved_model_path, version_override=self.model_version)
