"""The provider contract: pure `texts -> scores`, no HTTP, no threads.

Each provider declares its own settings as a `ProviderSettings` model, which the registry
(`registry.py`) finds by the provider's name and which builds the provider (`build_provider`).
The provider is then loaded once on the inference thread (`load()`); after that, `predict_batch`
is only ever called from that same thread, so providers need no locking of their own (fast
tokenizers are not thread-safe, huggingface/tokenizers#537).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


@dataclass(frozen=True, slots=True)
class Score:
    """One text's score. `labels` holds every label's score for multi-label heads; `stage` names
    the model that answered, for a provider made of several (the `cascade`), else None."""

    probability_toxic: float
    labels: dict[str, float] | None = None
    stage: str | None = None


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
    def label_thresholds(self) -> dict[str, float]:
        """The decision thresholds chosen in training for labels other than `toxic` (a head's
        own, such as `identity_attack`'s), by label; a label missing here is decided at the
        toxic threshold."""
        return {}

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

    def predict_batch_until(
        self, texts: Sequence[str], abandoned: Callable[[], bool]
    ) -> list[Score]:
        """`predict_batch` for the serving runner, which passes `abandoned`: true once nobody
        waits for the result any more (every request of the call past its deadline or gone).

        A provider whose calls can be long (a transformer reading many windows) overrides it to
        check `abandoned()` between its own steps and raise `WorkAbandoned`, so dead work stops
        costing the model; the default scores the whole call.
        """
        return self.predict_batch(texts)

    def explain(self, text: str, top_k: int = 10) -> list[Contribution]:
        """Top features behind one text's score. Optional: the default says it is unsupported."""
        from ml_prod_api.errors import ExplainNotSupported

        raise ExplainNotSupported(f"the {self.name} provider does not support explanations")


# Where `Settings` and every `ProviderSettings` read their values: one definition, so a provider's
# variables always come from the same environment and `.env` file as the service's own.
SETTINGS_SOURCES = SettingsConfigDict(
    env_file=".env",
    env_file_encoding="utf-8",
    extra="ignore",
    case_sensitive=False,
    protected_namespaces=(),
)


class ProviderSettings(BaseSettings, ABC):
    """A provider's own settings, and how to build the provider from them.

    Read like the service's `Settings`, from the same environment (case-insensitive) and `.env`
    file by the same variable names: `Settings` reads the chosen provider's model at start with
    the same keyword arguments, so an invalid value stops start-up with the same one-line error
    naming the variable. Each provider subclasses it with its own fields.
    """

    model_config = SETTINGS_SOURCES

    model_version: str | None = Field(
        default=None, description="Override of the model version reported in responses."
    )

    @abstractmethod
    def build_provider(self) -> Provider:
        """A new, unloaded provider configured by these settings."""
