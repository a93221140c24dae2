"""The inference service on its own: batching, routing, backpressure, deadlines, faults."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import pytest

from ml_prod_api.errors import (
    DeadlineExceeded,
    InferenceError,
    ModelNotReady,
    Overloaded,
)
from ml_prod_api.providers.base import Provider
from ml_prod_api.serving import InferenceService, ReadyState
from tests.support.fakes import FakeProvider


def recording(**options: Any) -> FakeProvider:
    """Scores len(text)/100 and records every batch; raises on a text holding "raise"."""
    return FakeProvider(
        score=lambda text: min(1.0, len(text) / 100), fail_marker="raise", **options
    )


async def _started(provider: Provider, **kw: float) -> InferenceService:
    service = InferenceService(lambda: provider, **kw)  # type: ignore[arg-type]
    service.start()
    readiness = await service.wait_loaded()
    assert readiness.state is ReadyState.READY
    return service


async def _hold_the_model(
    service: InferenceService, provider: FakeProvider, text: str
) -> asyncio.Future[object]:
    """Send `text` and return once the model thread is blocked inside its call (until
    `provider.gate` is set again), so what is sent next waits in the queue."""
    provider.gate.clear()
    provider.entered.clear()
    held: asyncio.Future[object] = asyncio.ensure_future(service.predict([text]))
    assert await asyncio.get_running_loop().run_in_executor(None, provider.entered.wait, 5)
    return held


@pytest.mark.anyio
async def test_concurrent_requests_are_gathered_and_routed_back() -> None:
    provider = recording()
    service = await _started(provider, batch_max_wait_ms=200, batch_max_size=64)
    provider.batches.clear()
    texts = [["a" * n] for n in range(1, 11)]
    results = await asyncio.gather(*(service.predict(t) for t in texts))
    for t, res in zip(texts, results, strict=True):
        assert res.scores[0].probability_toxic == len(t[0]) / 100
    assert len(provider.batches) < 10  # gathered, not one call each
    assert sum(len(b) for b in provider.batches) == 10
    service.stop()


@pytest.mark.anyio
async def test_batch_request_is_one_call_and_order_is_kept() -> None:
    provider = recording()
    service = await _started(provider)
    provider.batches.clear()
    texts = ["x" * n for n in (5, 1, 9, 3)]
    res = await service.predict(texts)
    assert [s.probability_toxic for s in res.scores] == [0.05, 0.01, 0.09, 0.03]
    assert provider.batches == [texts]
    service.stop()


@pytest.mark.anyio
async def test_full_queue_refuses_at_once_with_retry_after() -> None:
    provider = recording()
    service = await _started(provider, queue_max_items=2)
    first = await _hold_the_model(service, provider, "one")
    queued = [asyncio.ensure_future(service.predict([f"q{i}"])) for i in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as info:
        await service.predict(["refused"])
    assert info.value.retry_after_s >= 1
    provider.gate.set()
    await asyncio.gather(first, *queued)
    service.stop()


@pytest.mark.anyio
async def test_work_that_cannot_finish_before_its_deadline_is_refused_at_once() -> None:
    provider = recording(seconds_per_text=0.05)  # at most 20 texts a second
    service = await _started(
        provider, queue_max_items=1000, request_timeout_ms=1000, batch_max_size=1
    )
    for i in range(3):  # the service learns the model's speed from real calls
        await service.predict([f"warm {i}"])
    blocked = await _hold_the_model(service, provider, "blocker")
    attempts = [asyncio.ensure_future(service.predict([f"q{i}"])) for i in range(50)]
    await asyncio.sleep(0)
    refused = [a for a in attempts if a.done() and isinstance(a.exception(), Overloaded)]
    # 50 texts at <= 20 a second cannot all finish within 1 s: the tail is refused on
    # arrival, long before the queue's own limit of 1000 items.
    assert 0 < len(refused) < 50
    assert "deadline" in str(refused[0].exception())
    assert refused[0].exception().retry_after_s >= 1  # type: ignore[union-attr]
    provider.gate.set()
    await asyncio.gather(blocked, *attempts, return_exceptions=True)
    rejected = service.stats.registry.get_sample_value(
        "inference_rejected_total", {"reason": "deadline_unreachable"}
    )
    assert rejected == len(refused)
    service.stop()


@pytest.mark.anyio
async def test_work_nobody_waits_for_stops_counting_against_the_queue_at_once() -> None:
    provider = recording()
    service = await _started(provider, queue_max_items=2)
    first = await _hold_the_model(service, provider, "one")
    abandoned = [asyncio.ensure_future(service.predict([f"gone{i}"])) for i in range(2)]
    await asyncio.sleep(0)
    assert service.queued_items == 2
    for task in abandoned:
        task.cancel()  # as when their callers disconnect
    await asyncio.gather(*abandoned, return_exceptions=True)
    # The model has not reached them yet, but they no longer take the queue's room.
    assert service.queued_items == 0
    kept = asyncio.ensure_future(service.predict(["kept"]))
    await asyncio.sleep(0)
    provider.gate.set()
    await asyncio.gather(first, kept)
    assert all("gone" not in t for batch in provider.batches for t in batch)
    service.stop()


@pytest.mark.anyio
async def test_deadline_answers_timeout_and_drops_the_work() -> None:
    provider = recording()
    service = await _started(provider, request_timeout_ms=100)
    blocked = await _hold_the_model(service, provider, "blocker")
    with pytest.raises(DeadlineExceeded):
        await service.predict(["late"])
    provider.batches.clear()
    provider.gate.set()
    with pytest.raises(DeadlineExceeded):
        await blocked  # its own deadline passed while the model was stuck
    await service.predict(["after"])
    # The timed-out job was never scored.
    assert all("late" not in batch for batch in provider.batches)
    service.stop()


@pytest.mark.anyio
async def test_provider_exception_fails_only_its_own_batch() -> None:
    provider = recording()
    service = await _started(provider)
    with pytest.raises(InferenceError) as info:
        await service.predict(["please raise"])
    assert "raise" not in str(info.value)  # the input is not quoted back
    res = await service.predict(["fine"])
    assert res.scores[0].probability_toxic == 0.04
    service.stop()


@pytest.mark.anyio
async def test_cancelled_request_is_skipped() -> None:
    provider = recording()
    service = await _started(provider)
    blocker = await _hold_the_model(service, provider, "blocker")
    gone = asyncio.ensure_future(service.predict(["caller went away"]))
    while service.queued_items < 1:  # queued behind the blocked call
        await asyncio.sleep(0.001)
    gone.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await gone  # the cancellation has reached the service
    provider.batches.clear()
    provider.gate.set()
    await blocker
    await service.predict(["next"])
    assert all("caller went away" not in b for b in provider.batches), provider.batches
    service.stop()


@pytest.mark.anyio
async def test_stop_does_not_hang_on_a_stuck_model() -> None:
    provider = recording()
    service = await _started(provider)
    stuck = await _hold_the_model(service, provider, "stuck")
    assert service.stop(timeout_s=0.2) is False  # gave up waiting, did not hang
    with pytest.raises(ModelNotReady):
        await service.predict(["after stop"])
    provider.gate.set()
    stuck.cancel()


@pytest.mark.anyio
async def test_instances_each_own_a_model_and_thread_and_share_the_queue() -> None:
    made: list[FakeProvider] = []

    def factory() -> FakeProvider:
        made.append(recording())
        return made[-1]

    service = InferenceService(factory, instances=2)
    service.start()
    assert (await service.wait_loaded()).state is ReadyState.READY
    assert len(made) == 2 and service.provider is made[0]
    # Hold one instance inside its model call: the other keeps serving the queue.
    for provider in made:
        provider.gate.clear()
        provider.entered.clear()  # set by the warm-up
    loop = asyncio.get_running_loop()
    first = asyncio.ensure_future(service.predict(["first"]))
    assert await loop.run_in_executor(None, wait_any_entered, made, 5)
    held = next(p for p in made if p.entered.is_set())
    other = made[1] if held is made[0] else made[0]
    other.gate.set()
    second = await asyncio.wait_for(service.predict(["second"]), 5)
    assert second.scores[0].probability_toxic == 0.06
    assert not first.done()  # still inside the held instance
    held.gate.set()
    assert (await first).scores[0].probability_toxic == 0.05
    # Each model was only ever called from its own thread (warm-up included).
    assert all(len(p.threads) == 1 for p in made)
    assert made[0].threads != made[1].threads
    assert service.stop(timeout_s=5) is True


def wait_any_entered(providers: Sequence[FakeProvider], timeout_s: float) -> bool:
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        if any(p.entered.is_set() and not p.gate.is_set() for p in providers):
            return True
        time.sleep(0.001)
    return False


@pytest.mark.anyio
async def test_an_instance_that_cannot_load_fails_readiness_for_all() -> None:
    made: list[FakeProvider] = []

    def factory() -> FakeProvider:
        made.append(recording(load_error="instance cannot load" if len(made) == 1 else None))
        return made[-1]

    service = InferenceService(factory, instances=3)
    service.start()
    readiness = await service.wait_loaded()
    assert readiness.state is ReadyState.FAILED
    assert readiness.reason == "instance cannot load"
    assert service.provider is None
    with pytest.raises(ModelNotReady):
        await service.predict(["never scored"])
    assert service.stop(timeout_s=5) is True  # every instance's thread has exited
    assert all("never scored" not in b for p in made for b in p.batches)


@pytest.mark.anyio
async def test_no_call_exceeds_the_providers_max_batch_size() -> None:
    provider = recording(max_batch_size=3)  # wants at most 3 texts in one call
    service = await _started(provider, batch_max_wait_ms=200, batch_max_size=64)
    provider.batches.clear()
    held = await _hold_the_model(service, provider, "held")
    # Queued behind the held call: 8 single texts and one request of 7, room for one batch.
    singles = [asyncio.ensure_future(service.predict(["s" * n])) for n in range(1, 9)]
    big_texts = ["b" * n for n in range(1, 8)]
    big = asyncio.ensure_future(service.predict(big_texts))
    while service.queued_items < 15:
        await asyncio.sleep(0.001)
    provider.gate.set()
    await held
    results = await asyncio.gather(*singles)
    assert [r.scores[0].probability_toxic for r in results] == [n / 100 for n in range(1, 9)]
    assert [s.probability_toxic for s in (await big).scores] == [n / 100 for n in range(1, 8)]
    assert provider.batches[0] == ["held"]
    calls = provider.batches[1:]
    assert sum(len(b) for b in calls) == 15
    assert max(len(b) for b in calls) == 3, calls
    service.stop()
