"""The provider contract: pure `texts -> scores`, no HTTP, no threads.

A provider is built by a factory from the Settings, then `load()` is called once on the inference
thread; after that, `predict_batch` is only ever called from that same thread, so providers need
no locking of their own (fast tokenizers are not thread-safe, huggingface/tokenizers#537).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Score:
    """One text's score. `labels` holds every label's score for multi-label heads."""

    probability_toxic: float
    labels: dict[str, float] | None = None


@dataclass(frozen=True, slots=True)
class Contribution:
    """One feature's signed contribution to the toxic logit (for explanations)."""

    feature: str
    weight: float


@dataclass(slots=True)
class ProviderInfo:
    name: str
    version: str
    default_threshold: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Provider(ABC):
    """Base class of every model provider."""

    name: str = "base"

    @property
    @abstractmethod
    def version(self) -> str:
        """The model version served (valid after `load()`)."""

    @property
    def default_threshold(self) -> float | None:
        """The decision threshold chosen in training, if the artifact records one."""
        return None

    @property
    def max_batch_size(self) -> int:
        """The largest batch this provider wants in one call (the queue never exceeds it)."""
        return 1024

    @abstractmethod
    def load(self) -> None:
        """Load the artifact. Raises `ModelLoadError` with a reason that names the file."""

    @abstractmethod
    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        """Score texts, returning one Score per text, in input order."""

    def explain(self, text: str, top_k: int = 10) -> list[Contribution]:
        """Top features behind one text's score. Optional: the default says it is unsupported."""
        from ml_prod_api.errors import ExplainNotSupported

        raise ExplainNotSupported(f"the {self.name} provider does not support explanations")

    def info(self) -> ProviderInfo:
        return ProviderInfo(
            name=self.name, version=self.version, default_threshold=self.default_threshold
        )
