"""The `cascade` provider: the `tfidf` model scores every text, the `onnx` model only the texts
whose tfidf probability falls inside an uncertainty band.

Most texts are plainly benign or plainly abusive and the cheap model is sure of them; only the
ambiguous middle pays for the transformer. The two stages are the `tfidf` and `onnx` providers
themselves, composed, so each scores a text exactly as it does when served alone.

The cascade's artifact is a small `metadata.json` (models/cascade) written by
`training/select_cascade_band.py`, which chose it on every source's validation split:

- `band`: `low <= p_tfidf <= high` sends a text to stage 2 (settings can override it);
- `short_texts` (optional): `max_words`, `low`, `high`, the band of texts of at most `max_words`
  words (split on whitespace), where tfidf's certainty means something else than in a long
  post; `band` then holds for the longer ones. A band set in settings holds for every text;
- `stage2_calibration`: `a`, `b` of `p = sigmoid(a * logit(p_onnx) + b)`, a monotone map fitted
  on the validation texts inside the band, so the scores of both stages stay on one calibrated
  scale (without it, an answer of either stage would mean a different toxic rate);
- `threshold`: the cascade's own decision threshold, chosen on its combined validation scores;
- `stages`: the model version of each stage it was chosen with. Other models make the band,
  map and threshold meaningless, so a mismatch fails the load rather than serving them.

Each `Score` names the stage that answered (`stage`), which the serving layer counts in a metric
and the access log. Its `labels` are stage 1's for every text (tfidf's `identity_attack` head,
decided at tfidf's threshold for it; stage 2's labels are not passed on, so one head decides
each label), with `toxic` set to the cascade's score.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import Field, model_validator

from ml_prod_api.errors import ModelLoadError, ModelNotReady
from ml_prod_api.providers.artifact_files import read_json
from ml_prod_api.providers.base import Contribution, Provider, Score
from ml_prod_api.providers.onnx import OnnxProvider, OnnxRuntimeSettings
from ml_prod_api.providers.tfidf import TfidfProvider

METADATA_FILE = "metadata.json"
STAGE1 = TfidfProvider.name
STAGE2 = OnnxProvider.name
# The explanation's entry for what stage 2 changed (see `CascadeProvider.explain`).
STAGE2_FEATURE = f"stage2:{STAGE2}"
_EPS = 1e-7


def logit(p: float) -> float:
    p = min(max(p, _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@dataclass(frozen=True, slots=True)
class Band:
    """Stage-1 probabilities from `low` to `high` (both included) go to stage 2."""

    low: float
    high: float

    def __contains__(self, p: float) -> bool:
        return self.low <= p <= self.high


@dataclass(frozen=True, slots=True)
class ShortTextBand:
    """The band of texts of at most `max_words` whitespace-separated words."""

    max_words: int
    band: Band


@dataclass(frozen=True, slots=True)
class Stage2Calibration:
    """p = sigmoid(a * logit(p_stage2) + b); a > 0, so it keeps stage 2's order."""

    a: float = 1.0
    b: float = 0.0

    def __call__(self, p: float) -> float:
        if self.a == 1.0 and self.b == 0.0:
            return p
        return sigmoid(self.a * logit(p) + self.b)


@dataclass(frozen=True, slots=True)
class CascadeConfig:
    """What the cascade's metadata.json says, with the band overridden by settings if given."""

    band: Band
    short_texts: ShortTextBand | None
    calibration: Stage2Calibration
    threshold: float | None
    stage_versions: dict[str, str]
    model_version: str | None

    @classmethod
    def read(cls, folder: Path, band_override: Band | None) -> CascadeConfig:
        metadata = read_json(folder / METADATA_FILE, "cascade metadata")
        try:
            raw_band = metadata["band"]
            band = band_override or Band(float(raw_band["low"]), float(raw_band["high"]))
            raw_short = None if band_override else metadata.get("short_texts")
            short = (
                ShortTextBand(
                    int(raw_short["max_words"]),
                    Band(float(raw_short["low"]), float(raw_short["high"])),
                )
                if raw_short
                else None
            )
            raw_cal = metadata.get("stage2_calibration") or {}
            calibration = Stage2Calibration(
                float(raw_cal.get("a", 1.0)), float(raw_cal.get("b", 0.0))
            )
            threshold = metadata.get("threshold")
            stages = {str(k): str(v["model_version"]) for k, v in metadata["stages"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelLoadError(
                f"cascade metadata lacks or mangles {exc}: {folder / METADATA_FILE}"
            ) from None
        bands = [band] if short is None else [band, short.band]
        if (
            not all(0.0 <= b.low <= b.high <= 1.0 for b in bands)
            or calibration.a <= 0.0
            or (short is not None and short.max_words < 1)
        ):
            raise ModelLoadError(
                f"cascade metadata: bands must satisfy 0 <= low <= high <= 1, max_words >= 1, and "
                f"the stage-2 map must keep the order (a > 0): {folder / METADATA_FILE}"
            )
        return cls(
            band=band,
            short_texts=short,
            calibration=calibration,
            threshold=float(threshold) if threshold is not None else None,
            stage_versions=stages,
            model_version=metadata.get("model_version"),
        )

    def band_for(self, text: str) -> Band:
        short = self.short_texts
        if short is not None and len(text.split(None, short.max_words)) <= short.max_words:
            return short.band
        return self.band

    def digest(self) -> str:
        """A short hash of what decides the cascade's answers, for its model version."""
        decides: list[float | None] = [self.band.low, self.band.high]
        if self.short_texts is not None:
            short = self.short_texts
            decides += [short.max_words, short.band.low, short.band.high]
        decides += [self.calibration.a, self.calibration.b, self.threshold]
        text = json.dumps(decides, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


class CascadeProvider(Provider):
    name = "cascade"

    def __init__(
        self,
        folder: Path,
        stage1: TfidfProvider,
        stage2: OnnxProvider,
        *,
        band_override: Band | None = None,
        version: str | None = None,
    ) -> None:
        self.folder = folder
        self.stage1 = stage1
        self.stage2 = stage2
        self._band_override = band_override
        self._version_override = version
        self._config: CascadeConfig | None = None
        self._version: str | None = None

    @property
    def config(self) -> CascadeConfig:
        if self._config is None:
            raise ModelNotReady("the cascade is not loaded")
        return self._config

    @property
    def version(self) -> str:
        if self._version_override:
            return self._version_override
        # Composed once at load: every response, access-log line and metric reads it, and the
        # digest (JSON and SHA-256) cost about 5% of the event loop's time when made per read.
        return self._version or "unloaded"

    @property
    def default_threshold(self) -> float | None:
        return self.config.threshold if self._config is not None else None

    @property
    def label_thresholds(self) -> dict[str, float]:
        return self.stage1.label_thresholds

    @property
    def max_batch_size(self) -> int:
        # Stage 1 takes the whole call; stage 2 is called in chunks of its own limit.
        return self.stage1.max_batch_size

    def load(self) -> None:
        """Both stages load, or the cascade does not: no silent fallback to stage 1 alone."""
        config = CascadeConfig.read(self.folder, self._band_override)
        self.stage1.load()
        self.stage2.load()
        loaded = {STAGE1: self.stage1.version, STAGE2: self.stage2.version}
        for stage, chosen_with in config.stage_versions.items():
            if loaded.get(stage) != chosen_with:
                raise ModelLoadError(
                    f"the cascade's band was chosen with {stage} {chosen_with}, but "
                    f"{loaded.get(stage)} is loaded; choose it again for these models "
                    f"(python -m training.select_cascade_band): {self.folder / METADATA_FILE}"
                )
        own = config.model_version or f"cascade-{config.digest()}"
        self._version = f"{own}+{self.stage1.version}+{self.stage2.version}"
        self._config = config

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        config = self.config
        first = self.stage1.predict_batch(texts)
        out = [replace(score, stage=STAGE1) for score in first]
        chosen = [
            i
            for i, score in enumerate(first)
            if score.probability_toxic in config.band_for(texts[i])
        ]
        if chosen:
            second = self._stage2([texts[i] for i in chosen])
            for i, score in zip(chosen, second, strict=True):
                p = config.calibration(score.probability_toxic)
                # Stage 1's heads answer for every text, so one head (and its threshold)
                # decides each label; `toxic` is the score the cascade answers.
                heads = first[i].labels
                labels = heads | {"toxic": p} if heads else None
                out[i] = Score(probability_toxic=p, stage=STAGE2, labels=labels)
        return out

    def _stage2(self, texts: list[str]) -> list[Score]:
        """Stage 2 scores these texts in one call, or in calls of its own `max_batch_size` when
        there are more."""
        limit = max(1, self.stage2.max_batch_size)
        scores: list[Score] = []
        for start in range(0, len(texts), limit):
            scores.extend(self.stage2.predict_batch(texts[start : start + limit]))
        return scores

    def explain(self, text: str, top_k: int = 10) -> list[Contribution]:
        """Stage 1's explanation: the tfidf n-grams behind its logit (the onnx model has none).

        When stage 2 answered, the first entry is `stage2:onnx`, the shift stage 2 made to the
        logit (final logit minus the tfidf logit), so the contributions still add up, with the
        tfidf intercept, to the logit of the returned `probability_toxic`.
        """
        config = self.config
        contributions = self.stage1.explain(text, top_k)
        p1 = self.stage1.predict_batch([text])[0].probability_toxic
        if p1 not in config.band_for(text):
            return contributions
        p = config.calibration(self._stage2([text])[0].probability_toxic)
        shift = Contribution(feature=STAGE2_FEATURE, weight=logit(p) - logit(p1))
        return [shift, *contributions][: max(top_k, 0)]


class CascadeSettings(OnnxRuntimeSettings):
    """MODEL_PATH is the cascade's folder (its metadata.json); the stages' artifacts are
    CASCADE_TFIDF_PATH and CASCADE_ONNX_PATH (default: MODELS_DIR/tfidf and MODELS_DIR/onnx).
    The onnx settings (ONNX_INTRA_OP_THREADS, MAX_SEQ_LENGTH, FORWARD_BATCH_SIZE, ...) apply to
    stage 2."""

    artifact_folder = CascadeProvider.name

    cascade_tfidf_path: Path | None = Field(
        default=None, description="Stage 1's tfidf artifact; unset: MODELS_DIR/tfidf."
    )
    cascade_onnx_path: Path | None = Field(
        default=None, description="Stage 2's onnx artifact; unset: MODELS_DIR/onnx."
    )
    cascade_band_low: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Overrides the chosen bands' lower end (one band for every text).",
    )
    cascade_band_high: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Overrides the chosen bands' upper end (one band for every text).",
    )

    @model_validator(mode="after")
    def _band_whole(self) -> CascadeSettings:
        low, high = self.cascade_band_low, self.cascade_band_high
        if (low is None) != (high is None):
            raise ValueError(
                "CASCADE_BAND_LOW and CASCADE_BAND_HIGH are set together or not at all"
            )
        if low is not None and high is not None and low > high:
            raise ValueError(f"CASCADE_BAND_LOW={low} is above CASCADE_BAND_HIGH={high}")
        return self

    @property
    def band_override(self) -> Band | None:
        if self.cascade_band_low is None or self.cascade_band_high is None:
            return None
        return Band(self.cascade_band_low, self.cascade_band_high)

    def build_provider(self) -> CascadeProvider:
        # The cascade's MODEL_VERSION names the cascade, not a stage.
        stage1 = TfidfProvider(self.cascade_tfidf_path or self.models_dir / TfidfProvider.name)
        stage2 = self.onnx_provider(
            self.cascade_onnx_path or self.models_dir / OnnxProvider.name, version=None
        )
        return CascadeProvider(
            self.resolved_model_path,
            stage1,
            stage2,
            band_override=self.band_override,
            version=self.model_version,
        )
