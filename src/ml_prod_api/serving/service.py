"""The inference service: the one object the HTTP layer talks to; the async side only awaits.

`predict` turns a request into a job on the bounded queue (`serving/queue.py`), which the
thread of each model instance (`serving/runner.py`) gathers into `predict_batch` calls; readiness
moves as `serving/readiness.py` allows. What lives here is the request's life on the event loop:
its deadline timer, the watch for a caller that went away, and the answer it awaits. This is the
shape of TEI's `core/src/infer.rs`; it is hand-written because no maintained Python library
offers a bounded, deadline-aware batching queue for an in-process model thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ml_prod_api.errors import CallerGone, DeadlineExceeded, ModelNotReady
from ml_prod_api.metrics import Metrics
from ml_prod_api.providers.base import Contribution, Provider, Score
from ml_prod_api.serving.queue import InferenceQueue, Job, text_cost
from ml_prod_api.serving.readiness import Readiness, ReadinessMachine, ReadyState
from ml_prod_api.serving.runner import InstanceLoads, InstanceRunner

__all__ = ["InferenceResult", "InferenceService", "Readiness", "ReadyState"]

# How long a request waits before its caller's connection is watched for a disconnect.
CALLER_WATCH_DELAY_S = 0.02


@dataclass(frozen=True, slots=True)
class InferenceResult:
    scores: list[Score]
    explanation: list[Contribution] | None
    queue_seconds: float
    compute_seconds: float


class InferenceService:
    """Owns the model instances' threads, the bounded queue and the readiness state."""

    def __init__(
        self,
        provider_factory: Callable[[], Provider],
        *,
        instances: int = 1,
        batch_max_size: int = 64,
        batch_max_wait_ms: float = 0.0,
        batch_max_chars: int = 65_536,
        queue_max_items: int = 2048,
        request_timeout_ms: int = 10_000,
        metrics: Metrics | None = None,
        on_readiness: Callable[[Readiness], None] | None = None,
    ) -> None:
        if instances < 1:
            raise ValueError("instances must be at least 1")
        self._provider_factory = provider_factory
        self._on_readiness = on_readiness
        self.instances = instances
        self.batch_max_size = batch_max_size
        self.batch_max_chars = batch_max_chars
        self.request_timeout_s = request_timeout_ms / 1000.0
        self.stats = metrics or Metrics()
        self._readiness = ReadinessMachine(self._readiness_changed)
        self._queue = InferenceQueue(
            instances=instances,
            max_items=queue_max_items,
            batch_max_wait_ms=batch_max_wait_ms,
            metrics=self.stats,
        )
        self._loads = InstanceLoads(
            instances, queue=self._queue, readiness=self._readiness, metrics=self.stats
        )
        self._threads: list[threading.Thread] = []
        # time.monotonic() of the first begin_drain(): the shutdown budget counts from there.
        self.drain_started_at: float | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def provider(self) -> Provider | None:
        """Instance 0, which names the model for the HTTP layer, once loading has finished."""
        if self._readiness.current.state is ReadyState.LOADING:
            return None
        return self._loads.provider

    @property
    def readiness(self) -> Readiness:
        return self._readiness.current

    @property
    def queued_items(self) -> int:
        return self._queue.queued_items

    def start(self) -> None:
        """Start the inference threads; each loads its model instance and warms it up, then
        serves the queue once every instance is ready."""
        self._loads.started_at = time.perf_counter()
        self._threads = [
            threading.Thread(
                target=InstanceRunner(
                    index,
                    self._provider_factory,
                    queue=self._queue,
                    loads=self._loads,
                    batch_max_size=self.batch_max_size,
                    batch_max_cost=self.batch_max_chars,
                    metrics=self.stats,
                ).run,
                name="inference" if self.instances == 1 else f"inference-{index}",
                daemon=True,
            )
            for index in range(self.instances)
        ]
        for thread in self._threads:
            thread.start()

    async def wait_loaded(self) -> Readiness:
        """Wait until loading finished (successfully or not) without blocking the loop."""
        await asyncio.get_running_loop().run_in_executor(None, self._loads.done.wait)
        return self._readiness.current

    def begin_drain(self) -> None:
        """Readiness turns 503 so the load balancer stops sending; queued work still runs."""
        if self.drain_started_at is None:
            self.drain_started_at = time.monotonic()
        self._readiness.draining()

    def stop(self, timeout_s: float = 20.0) -> bool:
        """Finish queued work, stop the threads. Returns False if one did not stop in time
        (a hung model call: daemon threads are abandoned so shutdown still completes)."""
        self._queue.close()
        self._readiness.stopped()
        give_up_at = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, give_up_at - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _readiness_changed(self, readiness: Readiness) -> None:
        self.stats.set_ready(readiness.ready)
        if self._on_readiness is not None:
            self._on_readiness(readiness)

    # --- one request -------------------------------------------------------------------------
    async def predict(
        self,
        texts: Sequence[str],
        *,
        explain_top_k: int | None = None,
        caller_gone: Callable[[], Awaitable[object]] | None = None,
        arrived_at: float | None = None,
    ) -> InferenceResult:
        """Queue texts for the model and await their scores (input order kept).

        `caller_gone` makes an awaitable that completes when the caller is gone (the HTTP layer
        passes one that waits for the client's disconnect): the job is then dropped before it
        reaches the model, and `CallerGone` is raised.
        """
        state = self._readiness.current
        if not self._loads.ok or not state.accepts_work:
            raise ModelNotReady(f"model not ready ({state.describe()})")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        job = Job(
            texts=texts,
            explain_top_k=explain_top_k,
            # The deadline counts from the request's arrival (time.monotonic) when the caller
            # knows it, so time spent waiting for the event loop counts too.
            deadline=(arrived_at if arrived_at is not None else now) + self.request_timeout_s,
            future=loop.create_future(),
            loop=loop,
            enqueued_at=now,
            cost=text_cost(texts),
        )
        self._queue.admit(job)
        future = job.future

        def expire() -> None:
            # The deadline passed: answer now; the thread skips the job if it has not started.
            if not future.done():
                self._queue.withdraw(job)
                future.set_exception(
                    DeadlineExceeded(
                        f"inference did not finish within {self.request_timeout_s * 1000:.0f} ms"
                    )
                )

        def gone(watch: asyncio.Future[object]) -> None:
            if not watch.cancelled() and watch.exception() is None and not future.done():
                self._queue.withdraw(job)
                future.set_exception(CallerGone("the caller went away"))

        watcher: asyncio.Future[object] | None = None

        def watch_caller() -> None:
            nonlocal watcher
            assert caller_gone is not None
            watcher = asyncio.ensure_future(caller_gone())
            watcher.add_done_callback(gone)

        # Plain timer callbacks on the job's future rather than `asyncio.wait` over it, a timeout
        # and a watcher task: that construction costs a noticeable share of a small prediction
        # under load. The disconnect watcher starts only once a request has waited
        # CALLER_WATCH_DELAY_S: work that is answered sooner is not worth dropping, and most
        # answers come sooner.
        deadline_timer = loop.call_later(max(0.0, job.deadline - time.monotonic()), expire)
        watch_timer = (
            loop.call_later(CALLER_WATCH_DELAY_S, watch_caller) if caller_gone is not None else None
        )
        try:
            scores, explanation = await future
        except DeadlineExceeded:
            self.stats.rejected_count("deadline")
            raise
        except CallerGone:
            self.stats.rejected_count("cancelled")
            raise
        except asyncio.CancelledError:
            self._queue.withdraw(job)  # the request task was cancelled: the thread skips this job
            self.stats.rejected_count("cancelled")
            raise
        finally:
            deadline_timer.cancel()
            if watch_timer is not None:
                watch_timer.cancel()
            if watcher is not None:
                watcher.cancel()
        return InferenceResult(scores, explanation, job.started_at - job.enqueued_at, job.compute_s)
