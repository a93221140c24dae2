"""One configurable fake provider, for tests of what surrounds a provider (the serving queue, the
batch scorer), where a real model would only add time and noise."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from ml_prod_api.errors import ModelLoadError
from ml_prod_api.providers.base import Provider, Score


class FakeProvider(Provider):
    """Scores each text with `score` and records every call: its texts in `batches`, its thread
    in `threads`. Each call sets `entered`, then waits (up to 10 s) while `gate` is clear, so a
    test can hold the model thread inside a call.

    Faults on demand: `fail_marker` makes a call whose texts hold it raise, `load_error` makes
    `load()` fail, `seconds_per_text` and `seconds_per_char` make it slow; `max_batch_size` caps
    the batches it wants.
    """

    name = "fake"

    def __init__(
        self,
        *,
        score: Callable[[str], float] = lambda text: 0.0,
        fail_marker: str | None = None,
        load_error: str | None = None,
        seconds_per_text: float = 0.0,
        seconds_per_char: float = 0.0,
        max_batch_size: int = 1024,
        version: str = "fake-1",
    ) -> None:
        self._score = score
        self._fail_marker = fail_marker
        self._load_error = load_error
        self._seconds_per_text = seconds_per_text
        self._seconds_per_char = seconds_per_char
        self._max_batch_size = max_batch_size
        self._version = version
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    @property
    def version(self) -> str:
        return self._version

    @property
    def max_batch_size(self) -> int:
        return self._max_batch_size

    def load(self) -> None:
        if self._load_error is not None:
            raise ModelLoadError(self._load_error)

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        self.threads.add(threading.current_thread().name)
        if self._seconds_per_text:
            time.sleep(self._seconds_per_text * len(texts))
        if self._seconds_per_char:
            time.sleep(self._seconds_per_char * sum(len(t) for t in texts))
        self.entered.set()
        self.gate.wait(10)
        self.batches.append(list(texts))
        if self._fail_marker is not None and any(self._fail_marker in t for t in texts):
            raise ValueError(f"fake fault: a text holds {self._fail_marker!r}")
        return [Score(probability_toxic=self._score(t)) for t in texts]
