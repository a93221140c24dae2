"""The inference service: one thread owns each model instance; the async side only awaits.

Requests become jobs on a bounded queue. An inference thread gathers queued jobs into one
`predict_batch` call (up to `batch_max_size` texts, waiting at most `batch_max_wait_ms` for more),
drops jobs whose deadline passed or whose caller went away, and hands results back to the event
loop with `call_soon_threadsafe`. This is the shape of TEI's `core/src/infer.rs` (a permit-bounded
queue feeding a batching task); it is hand-written because no maintained Python library offers a
bounded, deadline-aware batching queue for an in-process model thread.

`instances` > 1 loads that many copies of the model, each with its own thread (and its own
tokenizer: fast tokenizers are not thread-safe), all fed by the one queue: Triton's
`instance_group { count: N, kind: KIND_CPU }`. On a CPU, two single-threaded onnxruntime sessions
working on different batches do more than one session splitting every operator over two threads,
which waits at each operator for its slower thread (issue 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from ml_prod_api.errors import (
    CallerGone,
    DeadlineExceeded,
    InferenceError,
    ModelLoadError,
    ModelNotReady,
    Overloaded,
    ServiceError,
)
from ml_prod_api.metrics import Metrics
from ml_prod_api.providers.base import Contribution, Provider, Score

log = logging.getLogger("ml_prod_api.serving")

WARMUP_TEXT = "warm-up: hello world"


class ReadyState(enum.StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    DRAINING = "draining"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Readiness:
    state: ReadyState
    reason: str | None = None

    @property
    def ready(self) -> bool:
        return self.state is ReadyState.READY

    def describe(self) -> str:
        if self.state is ReadyState.FAILED:
            return f"failed: {self.reason}"
        return str(self.state.value)


# Admit a request only if the work ahead of it fits in this share of its remaining time.
ADMISSION_HEADROOM = 0.8
# How long a request waits before its caller's connection is watched for a disconnect.
CALLER_WATCH_DELAY_S = 0.02


@dataclass(slots=True)
class _Job:
    texts: Sequence[str]
    explain_top_k: int | None
    deadline: float  # time.monotonic()
    future: asyncio.Future[tuple[list[Score], list[Contribution] | None]]
    loop: asyncio.AbstractEventLoop
    enqueued_at: float = field(default_factory=time.monotonic)
    started_at: float = 0.0
    compute_s: float = 0.0
    cancelled: bool = False
    queued: bool = True  # still counted in the queue's items (withdrawn when answered early)


@dataclass(frozen=True, slots=True)
class InferenceResult:
    scores: list[Score]
    explanation: list[Contribution] | None
    queue_seconds: float
    compute_seconds: float


class InferenceService:
    """Owns the provider, its thread, the bounded queue and the readiness state."""

    def __init__(
        self,
        provider_factory: Callable[[], Provider],
        *,
        instances: int = 1,
        batch_max_size: int = 64,
        batch_max_wait_ms: float = 0.0,
        queue_max_items: int = 2048,
        request_timeout_ms: int = 10_000,
        metrics: Metrics | None = None,
        on_readiness: Callable[[Readiness], None] | None = None,
    ) -> None:
        self._provider_factory = provider_factory
        self._on_readiness = on_readiness
        self._provider: Provider | None = None  # instance 0: names the model for the HTTP layer
        if instances < 1:
            raise ValueError("instances must be at least 1")
        self.instances = instances
        self.batch_max_size = batch_max_size
        self.batch_max_wait_s = batch_max_wait_ms / 1000.0
        self.queue_max_items = queue_max_items
        self.request_timeout_s = request_timeout_ms / 1000.0
        self.stats = metrics or Metrics()

        self._queue: deque[_Job] = deque()
        self._queued_items = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._state = Readiness(ReadyState.LOADING)
        self._loaded = threading.Event()
        self._load_ok = False
        self._loads_pending = instances
        self._load_failure: str | None = None
        self._first_instance: Provider | None = None
        self._load_started = 0.0
        # time.monotonic() of the first begin_drain(): the shutdown budget counts from there.
        self.drain_started_at: float | None = None
        # Items per second one instance has been finishing (EWMA); times `instances`, the
        # service's speed under load: admission and Retry-After.
        self._throughput = 0.0
        self._running_items = [0] * instances  # in the batch each instance is computing

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def provider(self) -> Provider | None:
        return self._provider if self._state.state is not ReadyState.LOADING else None

    @property
    def readiness(self) -> Readiness:
        return self._state

    def start(self) -> None:
        """Start the inference threads; each loads its model instance and warms it up, then
        serves the queue once every instance is ready."""
        self._load_started = time.perf_counter()
        self._threads = [
            threading.Thread(
                target=self._run,
                args=(index,),
                name="inference" if self.instances == 1 else f"inference-{index}",
                daemon=True,
            )
            for index in range(self.instances)
        ]
        for thread in self._threads:
            thread.start()

    async def wait_loaded(self) -> Readiness:
        """Wait until loading finished (successfully or not) without blocking the loop."""
        await asyncio.get_running_loop().run_in_executor(None, self._loaded.wait)
        return self._state

    def begin_drain(self) -> None:
        """Readiness turns 503 so the load balancer stops sending; queued work still runs."""
        if self.drain_started_at is None:
            self.drain_started_at = time.monotonic()
        if self._state.state in (ReadyState.READY, ReadyState.LOADING):
            self._set_state(Readiness(ReadyState.DRAINING))

    def stop(self, timeout_s: float = 20.0) -> bool:
        """Finish queued work, stop the threads. Returns False if one did not stop in time
        (a hung model call: daemon threads are abandoned so shutdown still completes)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._state.state is not ReadyState.FAILED:
            self._set_state(Readiness(ReadyState.STOPPED))
        give_up_at = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, give_up_at - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _set_state(self, state: Readiness) -> None:
        self._state = state
        self.stats.set_ready(state.ready)
        if self._on_readiness is not None:
            self._on_readiness(state)

    # --- the async side ----------------------------------------------------------------------
    @property
    def queued_items(self) -> int:
        return self._queued_items

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
        state = self._state
        # While draining, work is still accepted: the load balancer needs the grace period to
        # notice the failing readiness probe.
        if not self._load_ok or state.state not in (ReadyState.READY, ReadyState.DRAINING):
            raise ModelNotReady(f"model not ready ({state.describe()})")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        job = _Job(
            texts=texts,
            explain_top_k=explain_top_k,
            # The deadline counts from the request's arrival (time.monotonic) when the caller
            # knows it, so time spent waiting for the event loop counts too.
            deadline=(arrived_at if arrived_at is not None else now) + self.request_timeout_s,
            future=loop.create_future(),
            loop=loop,
            enqueued_at=now,
        )
        with self._cond:
            if self._stopping:
                raise ModelNotReady("model not ready (stopped)")
            # A job bigger than the whole queue is still admitted when the queue is empty, so a
            # maximal batch request is never refused on an idle server.
            if self._queued_items and self._queued_items + len(texts) > self.queue_max_items:
                self.stats.rejected_count("queue_full")
                raise Overloaded(
                    f"inference queue full ({self._queued_items} items queued, "
                    f"limit {self.queue_max_items})",
                    retry_after_s=max(1, round(self._estimated_drain_s())),
                )
            # Deadline-aware admission: when the model's recent speed says this request would not
            # be scored before its deadline (the batch being computed, the queue ahead and its
            # own texts), refuse now (429) rather than queue it to answer 503 later. It adapts
            # QUEUE_MAX_ITEMS to a model that slows down under load (onnx on shared cores,
            # reliability drill 1). ADMISSION_HEADROOM keeps a margin: the speed is a moving
            # average that swings by a fifth under overload, and admitting right up to the
            # deadline turned most of the model's work into late 503s. An empty queue admits.
            if self._queued_items and self._throughput > 0:
                ahead = sum(self._running_items) + self._queued_items
                finish_s = (ahead + len(texts)) / (self._throughput * self.instances)
                if finish_s > ADMISSION_HEADROOM * (job.deadline - now):
                    self.stats.rejected_count("deadline_unreachable")
                    raise Overloaded(
                        f"inference queue too long to finish before the deadline "
                        f"({ahead} items ahead, about {finish_s:.1f} s of work)",
                        retry_after_s=max(1, round(self._estimated_drain_s())),
                    )
            self._queue.append(job)
            self._queued_items += len(texts)
            self.stats.set_queue_depth(self._queued_items)
            self._cond.notify()
        future = job.future

        def expire() -> None:
            # The deadline passed: answer now; the thread skips the job if it has not started.
            if not future.done():
                self._withdraw(job)
                future.set_exception(
                    DeadlineExceeded(
                        f"inference did not finish within {self.request_timeout_s * 1000:.0f} ms"
                    )
                )

        def gone(watch: asyncio.Future[object]) -> None:
            if not watch.cancelled() and watch.exception() is None and not future.done():
                self._withdraw(job)
                future.set_exception(CallerGone("the caller went away"))

        watcher: asyncio.Future[object] | None = None

        def watch_caller() -> None:
            nonlocal watcher
            assert caller_gone is not None
            watcher = asyncio.ensure_future(caller_gone())
            watcher.add_done_callback(gone)

        # Plain timer callbacks on the job's future rather than `asyncio.wait` over it, a timeout
        # and a watcher task: that construction cost about a tenth of a small prediction under
        # load (py-spy, issue 8). The disconnect watcher starts only once a request has waited
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
            self._withdraw(job)  # the request task was cancelled: the thread skips this job
            self.stats.rejected_count("cancelled")
            raise
        finally:
            deadline_timer.cancel()
            if watch_timer is not None:
                watch_timer.cancel()
            if watcher is not None:
                watcher.cancel()
        return InferenceResult(scores, explanation, job.started_at - job.enqueued_at, job.compute_s)

    def _withdraw(self, job: _Job) -> None:
        """Answered before the model reached it: the thread skips it, and its items stop counting
        at once, so work nobody waits for cannot make the queue refuse new work."""
        job.cancelled = True
        with self._cond:
            if job.queued:
                job.queued = False
                self._queued_items -= len(job.texts)
                self.stats.set_queue_depth(self._queued_items)

    def _estimated_drain_s(self) -> float:
        if self._throughput <= 0:
            return 1.0
        return min(60.0, self._queued_items / (self._throughput * self.instances))

    # --- the inference thread ----------------------------------------------------------------
    def _run(self, index: int) -> None:
        provider = self._load(index)
        if provider is None:
            return
        while True:
            batch = self._next_batch(index)
            if batch is None:
                return
            self._process(provider, batch)

    def _load(self, index: int) -> Provider | None:
        """Load and warm this thread's instance; the last instance to finish decides readiness.
        Returns the provider to serve with, or None when any instance failed to load."""
        reason: str | None = None
        provider: Provider | None = None
        try:
            provider = self._provider_factory()
            provider.load()
            provider.predict_batch([WARMUP_TEXT])
        except ModelLoadError as exc:
            reason = exc.message
        except Exception as exc:  # a broken artifact must not kill the process
            reason = f"{type(exc).__name__}: {exc}"
        with self._cond:
            if reason is not None and self._load_failure is None:
                self._load_failure = reason
            if index == 0:
                self._first_instance = provider
            self._loads_pending -= 1
            last = self._loads_pending == 0
        if not last:
            self._loaded.wait()
            return provider if self._load_ok else None
        failure = self._load_failure
        if failure is None:
            assert self._first_instance is not None
            self._provider = self._first_instance
            self._load_ok = True
            # The model and the app live as long as the process: move them out of the garbage
            # collector's sight (gc.freeze), so its full collections stop walking the model's
            # vocabularies and the framework's objects while requests wait. Under load this cut
            # tfidf's p99 from 75 to 14 ms and raised its throughput by a quarter (issue 8).
            gc.collect()
            gc.freeze()
            self.stats.set_model_info(self._provider.name, self._provider.version)
            log.info(
                "model loaded",
                extra={
                    "provider": self._provider.name,
                    "model_version": self._provider.version,
                    "instances": self.instances,
                    "load_ms": round((time.perf_counter() - self._load_started) * 1000, 1),
                },
            )
            if self._state.state is ReadyState.LOADING:
                self._set_state(Readiness(ReadyState.READY))
            self._loaded.set()
            return provider
        log.error("model failed to load: %s", failure, extra={"event": "model_load_failed"})
        self._set_state(Readiness(ReadyState.FAILED, failure))
        self._loaded.set()
        # Fail every job that slipped in; every instance's thread exits.
        with self._cond:
            self._fail_queued(ModelNotReady(f"model not ready (failed: {failure})"))
        return None

    def _next_batch(self, index: int) -> list[_Job] | None:
        with self._cond:
            self._running_items[index] = 0
            while self._head() is None:
                if self._stopping:
                    return None
                self._cond.wait()
            batch = [self._pop()]
            items = len(batch[0].texts)
            if self.batch_max_wait_s > 0 and items < self.batch_max_size:
                wait_until = time.monotonic() + self.batch_max_wait_s
                while items < self.batch_max_size and not self._stopping:
                    head = self._head()
                    if head is None:
                        remaining = wait_until - time.monotonic()
                        if remaining <= 0 or not self._cond.wait(remaining):
                            break
                        continue
                    if items + len(head.texts) > self.batch_max_size:
                        break
                    batch.append(self._pop())
                    items += len(head.texts)
            while (head := self._head()) is not None and items + len(
                head.texts
            ) <= self.batch_max_size:
                batch.append(self._pop())
                items += len(head.texts)
            self._running_items[index] = items
            self.stats.set_queue_depth(self._queued_items)
            return batch

    def _head(self) -> _Job | None:
        """The first job still waiting (with the lock held); withdrawn ones are dropped."""
        while self._queue and not self._queue[0].queued:
            self._queue.popleft()
        return self._queue[0] if self._queue else None

    def _pop(self) -> _Job:
        job = self._queue.popleft()
        job.queued = False
        self._queued_items -= len(job.texts)
        return job

    def _process(self, provider: Provider, batch: list[_Job]) -> None:
        now = time.monotonic()
        live: list[_Job] = []
        for job in batch:
            if job.cancelled or job.future.cancelled():
                continue
            if job.deadline <= now:
                job.cancelled = True
                self._resolve(job, exc=DeadlineExceeded("deadline passed while queued"))
                continue
            live.append(job)
            self.stats.observe_queue_wait(now - job.enqueued_at)
        if live:
            self._score(provider, live, now)

    def _score(self, provider: Provider, live: list[_Job], now: float) -> None:
        texts: list[str] = [text for job in live for text in job.texts]
        started = time.perf_counter()
        try:
            scores = provider.predict_batch(texts)
            if len(scores) != len(texts):
                raise RuntimeError(f"provider returned {len(scores)} scores for {len(texts)} texts")
        except Exception as exc:
            # The exception text may quote input, so log its type only.
            log.error(
                "inference failed",
                extra={
                    "event": "inference_error",
                    "error_type": type(exc).__name__,
                    "batch_size": len(texts),
                    "requests": len(live),
                },
            )
            self.stats.inference_failed(provider.name)
            if len(live) == 1:
                self._resolve(live[0], exc=InferenceError("the model failed to score this request"))
                return
            # Requests gathered into one call must not fail for another's input (issue 9: one
            # poisoned text failed every request it shared a call with): score each on its own.
            for job in live:
                if job.cancelled or job.future.cancelled():
                    continue
                if job.deadline <= time.monotonic():
                    job.cancelled = True
                    self._resolve(job, exc=DeadlineExceeded("deadline passed while retried"))
                    continue
                self._score(provider, [job], now)
            return
        elapsed = time.perf_counter() - started
        self.stats.observe_inference(provider.name, elapsed, len(texts))
        if elapsed > 0:
            rate = len(texts) / elapsed
            # Several instances may update this at once without the lock: a lost update of a
            # moving average is harmless, and the lock is the queue's.
            self._throughput = (
                rate if self._throughput == 0 else 0.8 * self._throughput + 0.2 * rate
            )
        offset = 0
        for job in live:
            job.started_at = now
            job.compute_s = elapsed
            n = len(job.texts)
            explanation: list[Contribution] | None = None
            if job.explain_top_k is not None:
                try:
                    explanation = provider.explain(job.texts[0], job.explain_top_k)
                except ServiceError as exc:
                    self._resolve(job, exc=exc)
                    offset += n
                    continue
                except Exception as exc:
                    log.error("explanation failed", extra={"error_type": type(exc).__name__})
                    self._resolve(job, exc=InferenceError("the model failed to explain"))
                    offset += n
                    continue
            self._resolve(job, result=(scores[offset : offset + n], explanation))
            offset += n

    def _fail_queued(self, exc: ServiceError) -> None:
        while self._queue:
            job = self._queue.popleft()
            job.queued = False
            self._resolve(job, exc=exc)
        self._queued_items = 0

    @staticmethod
    def _resolve(
        job: _Job,
        *,
        result: tuple[list[Score], list[Contribution] | None] | None = None,
        exc: Exception | None = None,
    ) -> None:
        def deliver() -> None:
            if job.future.done():
                return
            if exc is not None:
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)  # type: ignore[arg-type]

        # A closed loop means nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            job.loop.call_soon_threadsafe(deliver)
