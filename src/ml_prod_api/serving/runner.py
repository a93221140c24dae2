"""The model instances: one thread owns each, loads and warms it, then scores the queue's batches.

Only that thread ever calls its provider, so a provider needs no lock of its own (fast tokenizers
are not thread-safe, huggingface/tokenizers#537); results go back to the event loop with
`call_soon_threadsafe`. Several instances are Triton's
`instance_group { count: N, kind: KIND_CPU }`: on a CPU, two single-threaded onnxruntime sessions
working on different batches do more than one session splitting every operator over two threads,
which waits at each operator for its slower thread. This is TEI's backend thread, hand-written
together with the queue it feeds on: no maintained Python library offers a bounded,
deadline-aware batching queue for an in-process model thread.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from ml_prod_api.errors import (
    DeadlineExceeded,
    InferenceError,
    ModelLoadError,
    ModelNotReady,
    ServiceError,
    WorkAbandoned,
)
from ml_prod_api.metrics import Metrics
from ml_prod_api.providers.base import Provider, Score
from ml_prod_api.serving.queue import PER_TEXT_COST, InferenceQueue, Job, Outcome, text_cost
from ml_prod_api.serving.readiness import ReadinessMachine, public_reason

log = logging.getLogger("ml_prod_api.serving")

WARMUP_TEXT = "warm-up: hello world"


def resolve(job: Job, *, result: Outcome | None = None, exc: Exception | None = None) -> None:
    """Answer a job on its event loop (from any thread); a job already answered stays as it is."""

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


class InstanceLoads:
    """Every instance reports its load here; the last one to finish decides for all of them."""

    def __init__(
        self,
        instances: int,
        *,
        queue: InferenceQueue,
        readiness: ReadinessMachine,
        metrics: Metrics,
    ) -> None:
        self.instances = instances
        self.queue = queue
        self.readiness = readiness
        self.stats = metrics
        self.done = threading.Event()
        self.ok = False
        self.provider: Provider | None = None  # instance 0, once every instance has loaded
        self.started_at = 0.0  # time.perf_counter() when the threads were started
        self._lock = threading.Lock()
        self._pending = instances
        self._failure: str | None = None
        self._first: Provider | None = None

    def report(self, index: int, provider: Provider | None, failure: str | None) -> bool:
        """Record one instance's load; wait for the others. True when every instance loaded."""
        with self._lock:
            if failure is not None and self._failure is None:
                self._failure = failure
            if index == 0:
                self._first = provider
            self._pending -= 1
            last = self._pending == 0
        if not last:
            self.done.wait()
            return self.ok
        if self._failure is None:
            self._all_loaded()
        else:
            self._failed(self._failure)
        return self.ok

    def _all_loaded(self) -> None:
        assert self._first is not None
        self.provider = self._first
        self.ok = True
        # The model and the app live as long as the process: move them out of the garbage
        # collector's sight (gc.freeze), so its full collections stop walking the model's
        # vocabularies and the framework's objects while requests wait (tail latency).
        gc.collect()
        gc.freeze()
        self.stats.set_model_info(self.provider.name, self.provider.version)
        log.info(
            "model loaded",
            extra={
                "provider": self.provider.name,
                "model_version": self.provider.version,
                "instances": self.instances,
                "load_ms": round((time.perf_counter() - self.started_at) * 1000, 1),
            },
        )
        self.readiness.loaded()
        self.done.set()

    def _failed(self, failure: str) -> None:
        log.error("model failed to load: %s", failure, extra={"event": "model_load_failed"})
        self.readiness.failed(failure)
        self.done.set()
        # Fail every job that slipped in; every instance's thread exits.
        for job in self.queue.take_all():
            resolve(job, exc=ModelNotReady(f"model not ready (failed: {public_reason(failure)})"))


class InstanceRunner:
    """The body of one instance's thread: load and warm up, then score batches until stopped."""

    def __init__(
        self,
        index: int,
        provider_factory: Callable[[], Provider],
        *,
        queue: InferenceQueue,
        loads: InstanceLoads,
        batch_max_size: int,
        batch_max_cost: int,
        metrics: Metrics,
    ) -> None:
        self.index = index
        self.provider_factory = provider_factory
        self.queue = queue
        self.loads = loads
        self.batch_max_size = batch_max_size
        self.batch_max_cost = batch_max_cost
        self.stats = metrics

    def run(self) -> None:
        provider = self._load()
        if provider is None:
            return
        # The provider's own limit caps every call it receives, as TEI caps its batches by the
        # backend's `max_batch_size`; it is read once the model is loaded.
        call_max = max(1, provider.max_batch_size)
        batch_max = min(self.batch_max_size, call_max)
        next_batch = self.queue.next_batch
        while (batch := next_batch(self.index, batch_max, self.batch_max_cost)) is not None:
            self._process(provider, batch, call_max)

    def _load(self) -> Provider | None:
        """Load and warm this instance. Returns the provider to serve with, or None when any
        instance failed to load."""
        failure: str | None = None
        provider: Provider | None = None
        try:
            provider = self.provider_factory()
            provider.load()
            provider.predict_batch([WARMUP_TEXT])
        except ModelLoadError as exc:
            failure = exc.message
        except Exception as exc:  # a broken artifact must not kill the process
            failure = f"{type(exc).__name__}: {exc}"
        return provider if self.loads.report(self.index, provider, failure) else None

    def _process(self, provider: Provider, batch: list[Job], call_max: int) -> None:
        now = time.monotonic()
        live: list[Job] = []
        for job in batch:
            if job.cancelled or job.future.cancelled():
                continue
            if job.deadline <= now:
                job.cancelled = True
                resolve(job, exc=DeadlineExceeded("deadline passed while queued"))
                continue
            live.append(job)
            self.stats.observe_queue_wait(now - job.enqueued_at)
        if live:
            self._score(provider, live, now, call_max)

    def _score(self, provider: Provider, live: list[Job], now: float, call_max: int) -> None:
        texts: list[str] = [text for job in live for text in job.texts]

        def abandoned() -> bool:
            # Nobody waits for any of these jobs any more (deadline passed, caller gone): the
            # rest of the work would cost the model for nothing.
            at = time.monotonic()
            return all(job.cancelled or job.deadline <= at for job in live)

        started = time.perf_counter()
        try:
            scores = _predict(provider, texts, call_max, self.batch_max_cost, abandoned)
        except WorkAbandoned:
            log.info(
                "inference abandoned: every request of the call is past its deadline or gone",
                extra={"event": "inference_abandoned", "batch_size": len(texts)},
            )
            for job in live:
                job.cancelled = True
                resolve(job, exc=DeadlineExceeded("deadline passed while scored"))
            return
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
                resolve(live[0], exc=InferenceError("the model failed to score this request"))
                return
            self._isolate(provider, live, now, call_max)
            return
        elapsed = time.perf_counter() - started
        self.stats.observe_inference(provider.name, elapsed, len(texts))
        if scores and scores[0].stage is not None:
            self.stats.observe_stages(provider.name, [score.stage for score in scores])
        self.queue.record_speed(text_cost(texts), elapsed)
        offset = 0
        for job in live:
            job.started_at = now
            job.compute_s = elapsed
            job_scores = scores[offset : offset + len(job.texts)]
            offset += len(job.texts)
            if job.explain_top_k is None:
                resolve(job, result=(job_scores, None))
            else:
                self._explain(provider, job, job_scores)

    def _isolate(self, provider: Provider, live: list[Job], now: float, call_max: int) -> None:
        """A call that gathered several requests failed: score each request on its own, so one
        bad text fails only the request that sent it, not every request it shared a call with."""
        for job in live:
            if job.cancelled or job.future.cancelled():
                continue
            if job.deadline <= time.monotonic():
                job.cancelled = True
                resolve(job, exc=DeadlineExceeded("deadline passed while retried"))
                continue
            self._score(provider, [job], now, call_max)

    @staticmethod
    def _explain(provider: Provider, job: Job, scores: list[Score]) -> None:
        """Answer a job that asked for an explanation of its (single) text."""
        assert job.explain_top_k is not None
        try:
            explanation = provider.explain(job.texts[0], job.explain_top_k)
        except ServiceError as exc:
            resolve(job, exc=exc)
        except Exception as exc:
            log.error("explanation failed", extra={"error_type": type(exc).__name__})
            resolve(job, exc=InferenceError("the model failed to explain"))
        else:
            resolve(job, result=(scores, explanation))


def _calls(texts: Sequence[str], call_max: int, cost_max: int) -> Iterator[Sequence[str]]:
    """Consecutive slices of `texts` of at most `call_max` texts and `cost_max` cost (a text
    that costs more on its own is a call of its own): one request may hold more than one call
    should take, and the memory of a call grows with what it reads."""
    start = 0
    while start < len(texts):
        end, cost = start, 0
        while end < len(texts) and end - start < call_max:
            text_cost = len(texts[end]) + PER_TEXT_COST
            if end > start and cost + text_cost > cost_max:
                break
            cost += text_cost
            end += 1
        yield texts[start:end]
        start = end


def _predict(
    provider: Provider,
    texts: Sequence[str],
    call_max: int,
    cost_max: int,
    abandoned: Callable[[], bool],
) -> list[Score]:
    """Score texts in calls within the budgets, giving up between (and, where the provider
    checks, inside) calls once `abandoned()` says nobody waits for the result."""
    scores: list[Score] = []
    for chunk in _calls(texts, call_max, cost_max):
        if scores and abandoned():
            raise WorkAbandoned("nobody waits for the rest of this work")
        chunk_scores = provider.predict_batch_until(chunk, abandoned)
        if len(chunk_scores) != len(chunk):
            raise RuntimeError(
                f"provider returned {len(chunk_scores)} scores for {len(chunk)} texts"
            )
        scores.extend(chunk_scores)
    return scores
