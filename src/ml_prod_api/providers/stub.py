"""A deterministic lexicon provider for tests and fault drills.

It scores by counting words from a short list, so tests can predict its answers exactly. Two
settings inject faults on purpose: `STUB_DELAY_MS` (a slow model) and `STUB_FAIL_MARKER` (a model
that raises on some inputs); `STUB_LOAD_ERROR` makes loading fail.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from pydantic import Field

from ml_prod_api.errors import ModelLoadError
from ml_prod_api.providers.base import Provider, ProviderSettings, Score

TOXIC_WORDS = frozenset(
    {"awful", "idiot", "stupid", "hate", "moron", "dumb", "ugly", "loser", "trash", "pathetic"}
)
_WORD = re.compile(r"[a-z]+")


class StubFault(RuntimeError):
    """Raised on purpose when a text carries the configured fail marker."""


def stub_probability(text: str) -> float:
    hits = sum(1 for word in _WORD.findall(text.lower()) if word in TOXIC_WORDS)
    return 1.0 - 0.95 * 0.25**hits


class StubProvider(Provider):
    name = "stub"

    def __init__(
        self,
        delay_ms: float = 0.0,
        fail_marker: str | None = None,
        load_error: str | None = None,
        version: str = "stub-1",
    ) -> None:
        self._delay_s = delay_ms / 1000.0
        self._fail_marker = fail_marker
        self._load_error = load_error
        self._version = version

    @property
    def version(self) -> str:
        return self._version

    def load(self) -> None:
        if self._load_error:
            raise ModelLoadError(self._load_error)

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        if self._delay_s:
            time.sleep(self._delay_s)
        if self._fail_marker and any(self._fail_marker in text for text in texts):
            raise StubFault("stub fault injected by STUB_FAIL_MARKER")
        return [Score(probability_toxic=stub_probability(text)) for text in texts]


class StubSettings(ProviderSettings):
    stub_delay_ms: float = Field(default=0.0, ge=0.0, le=600_000.0)
    stub_fail_marker: str | None = Field(
        default=None, description="A text containing this marker makes the stub raise."
    )
    stub_load_error: str | None = Field(
        default=None, description="Makes the stub's load() fail with this reason."
    )

    def build_provider(self) -> StubProvider:
        return StubProvider(
            delay_ms=self.stub_delay_ms,
            fail_marker=self.stub_fail_marker,
            load_error=self.stub_load_error,
            version=self.model_version or "stub-1",
        )
