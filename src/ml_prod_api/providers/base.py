"""The provider contract: pure `texts -> scores`, no HTTP, no threads.

A provider is built by a factory from the Settings, then `load()` is called once on the inference
thread; after that, `predict_batch` is only ever called from that same thread, so providers need
no locking of their own (fast tokenizers are not thread-safe, huggingface/tokenizers#537).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


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
        """The most texts this provider is given in one `predict_batch` call.

        The serving runner (`serving/runner.py`) reads it once after `load()`: the queue never
        gathers a larger batch for this provider, and a single request with more texts is
        scored in several calls of at most this many.
        """
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
