"""What one request may cost the model: admission by length, deadlines checked inside long work,
and calls bounded in characters (so in memory)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from ml_prod_api.errors import DeadlineExceeded, Overloaded, RequestTooCostly, WorkAbandoned
from ml_prod_api.providers.base import Provider, Score
from ml_prod_api.providers.sequence import WindowedClassifier
from ml_prod_api.serving import InferenceService, ReadyState
from tests.support.fakes import FakeProvider


async def _started(provider: Provider, **kw: float) -> InferenceService:
    service = InferenceService(lambda: provider, **kw)  # type: ignore[arg-type]
    service.start()
    assert (await service.wait_loaded()).state is ReadyState.READY
    return service


async def _learn_speed(service: InferenceService) -> None:
    for i in range(3):  # the service learns the model's speed from real calls
        await service.predict([f"warm-up text number {i} " * 4])


@pytest.mark.anyio
async def test_a_request_that_alone_cannot_finish_before_its_deadline_is_refused_at_once() -> None:
    provider = FakeProvider(seconds_per_char=0.0001)  # about 10,000 characters a second
    service = await _started(provider, request_timeout_ms=1000)
    await _learn_speed(service)
    provider.batches.clear()
    # 64 texts of 5,000 characters: about 32 s of work for a 1 s deadline, on an idle model.
    with pytest.raises(RequestTooCostly) as info:
        await service.predict(["x" * 5000] * 64)
    assert "REQUEST_TIMEOUT_MS" in info.value.message
    assert provider.batches == []  # the model never saw it
    rejected = service.stats.registry.get_sample_value(
        "inference_rejected_total", {"reason": "too_costly"}
    )
    assert rejected == 1
    # A short request is still served.
    assert len((await service.predict(["short"])).scores) == 1
    service.stop()


@pytest.mark.anyio
async def test_work_behind_a_long_running_call_is_refused_at_once_even_with_an_empty_queue() -> (
    None
):
    provider = FakeProvider(seconds_per_char=0.0001)
    service = await _started(provider, request_timeout_ms=2000)
    await _learn_speed(service)
    provider._seconds_per_char = 0.0  # the call below waits at the gate instead of sleeping
    provider.gate.clear()
    provider.entered.clear()
    # About 1.2 s of work, admitted (it fits in its own 2 s), and held inside the model.
    running = asyncio.ensure_future(service.predict(["y" * 1000] * 12))
    assert await asyncio.get_running_loop().run_in_executor(None, provider.entered.wait, 5)
    assert service.queued_items == 0
    # A request that arrived 1.5 s ago has 0.5 s left: it cannot be served after that call.
    with pytest.raises(Overloaded) as info:
        await service.predict(["late"], arrived_at=time.monotonic() - 1.5)
    assert "deadline" in info.value.message
    provider.gate.set()
    await asyncio.gather(running, return_exceptions=True)
    service.stop()


class SlowChunks(Provider):
    """Every text is one step of `seconds` that checks `abandoned` before it starts."""

    name = "slow-chunks"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.steps = 0
        self.done = threading.Event()

    @property
    def version(self) -> str:
        return "slow-chunks-1"

    def load(self) -> None:
        pass

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        return [Score(0.0) for _ in texts]

    def predict_batch_until(
        self, texts: Sequence[str], abandoned: Callable[[], bool]
    ) -> list[Score]:
        try:
            for _ in texts:
                if abandoned():
                    raise WorkAbandoned("nobody waits for this call any more")
                self.steps += 1
                time.sleep(self.seconds)
            return self.predict_batch(texts)
        finally:
            self.done.set()


@pytest.mark.anyio
async def test_a_call_stops_between_its_steps_once_its_deadline_has_passed() -> None:
    provider = SlowChunks(seconds=0.05)
    service = await _started(provider, request_timeout_ms=300)
    provider.steps = 0
    provider.done.clear()
    with pytest.raises(DeadlineExceeded):
        await service.predict([f"t{i}" for i in range(60)])  # 3 s of steps, a 0.3 s deadline
    assert await asyncio.get_running_loop().run_in_executor(None, provider.done.wait, 10)
    # The model stopped soon after the deadline instead of finishing all 60 steps.
    assert provider.steps < 30
    # ...and serves the next request.
    assert len((await service.predict(["next"])).scores) == 1
    service.stop()


@pytest.mark.anyio
async def test_a_long_request_is_scored_in_calls_within_the_character_budget() -> None:
    provider = FakeProvider(score=lambda text: len(text) / 1000)
    service = await _started(provider, batch_max_chars=400)
    provider.batches.clear()
    texts = ["z" * n for n in (100, 150, 200, 120, 90, 600, 30)]
    result = await service.predict(texts)
    assert [s.probability_toxic for s in result.scores] == [len(t) / 1000 for t in texts]
    assert [t for batch in provider.batches for t in batch] == texts
    for batch in provider.batches:  # a text over the budget is a call of its own
        assert len(batch) == 1 or sum(len(t) for t in batch) <= 400, provider.batches
    assert len(provider.batches) > 1
    service.stop()


class CountingWindows(WindowedClassifier):
    """A windowed classifier whose tokens are characters and whose forward counts its chunks."""

    name = "counting"

    def __init__(self) -> None:
        super().__init__(Path("."), max_length=10, stride=2, forward_batch_size=1)
        self.chunks = 0
        self.max_length = 10  # what load() would set from the setting

    def weights_file(self) -> Path:
        return self.path

    def load_backend(self) -> None:
        pass

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [[ord(c) for c in text] for text in texts]

    def forward_chunk(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        self.chunks += 1
        return np.zeros((len(input_ids), 2), dtype=np.float32)


def test_a_windowed_classifier_checks_between_its_forward_chunks() -> None:
    from ml_prod_api.providers.sequence import LabelMap

    provider = CountingWindows()
    provider.labels = LabelMap(names=["ok", "toxic"], toxic_index=1, multi_label=False)
    text = "a" * 200  # many windows, one forward chunk each
    assert len(provider.predict_batch([text])) == 1
    all_chunks = provider.chunks
    assert all_chunks > 10
    provider.chunks = 0
    with pytest.raises(WorkAbandoned):
        provider.predict_batch_until([text], lambda: provider.chunks >= 3)
    assert provider.chunks == 3
