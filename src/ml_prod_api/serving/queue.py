"""The inference queue: bounded, deadline-aware admission and the gathering of batches.

Requests become jobs on one queue that every model instance's thread takes batches from. A job
is refused at once (`Overloaded`, with a Retry-After) when the queue is full or when the model's
recent speed says it could not be scored before its deadline; a job whose caller stopped waiting
is withdrawn at once, so work nobody waits for never holds the queue's room. This is the part of
TEI's `core/src/queue.rs` an in-process model needs; it is hand-written because no maintained
Python library offers a bounded, deadline-aware batching queue for an in-process model thread.

Work is measured by cost as well as by texts: a text costs its length in characters plus a fixed
share for the call (`text_cost`). A model's time grows with the length of what it reads (tokens,
windows, n-grams), so counting texts alone let one batch of long texts hold the model far past its
deadline while it looked as small as a batch of short ones. TEI budgets its batches by tokens
(`max_batch_tokens`); characters are the same idea without tokenising on the event loop. The
model's recent speed is kept in cost per second, so it adapts to the provider and the machine.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from ml_prod_api.errors import ModelNotReady, Overloaded, RequestTooCostly
from ml_prod_api.metrics import Metrics
from ml_prod_api.providers.base import Contribution, Score

# Admit a request only if the work ahead of it fits in this share of its remaining time.
ADMISSION_HEADROOM = 0.8
# What a text costs beyond its characters: the per-text work of a call (special tokens, a window,
# a row of the batch), so that many short texts are not counted as nearly free.
PER_TEXT_COST = 32


def text_cost(texts: Sequence[str]) -> int:
    """The cost of scoring `texts`: their characters plus PER_TEXT_COST each."""
    return sum(map(len, texts)) + PER_TEXT_COST * len(texts)


# What a job's future resolves to: one score per text, and the explanation if one was asked for.
Outcome = tuple[list[Score], list[Contribution] | None]


@dataclass(slots=True)
class Job:
    texts: Sequence[str]
    explain_top_k: int | None
    deadline: float  # time.monotonic()
    future: asyncio.Future[Outcome]
    loop: asyncio.AbstractEventLoop
    enqueued_at: float = field(default_factory=time.monotonic)
    cost: int = 0  # text_cost(texts), set by whoever builds the job
    started_at: float = 0.0
    compute_s: float = 0.0
    cancelled: bool = False
    queued: bool = True  # still counted in the queue's items (withdrawn when answered early)


class InferenceQueue:
    """Jobs waiting for a model instance, the items they hold, and the model's recent speed.

    One lock (a `threading.Condition`) guards the queue for the event loop that admits and
    withdraws jobs and for the inference threads that take batches.
    """

    def __init__(
        self,
        *,
        instances: int,
        max_items: int,
        batch_max_wait_ms: float,
        metrics: Metrics,
    ) -> None:
        self.instances = instances
        self.max_items = max_items
        self.batch_max_wait_s = batch_max_wait_ms / 1000.0
        self.stats = metrics
        self._jobs: deque[Job] = deque()
        self._queued_items = 0
        self._cond = threading.Condition()
        self._closed = False
        self._queued_cost = 0
        self._running_cost = [0] * instances  # of the batch each instance is computing
        self._running_since = [0.0] * instances  # time.monotonic() the batch was taken
        # Cost per second one instance has been finishing (EWMA); times `instances`, the
        # service's speed under load: admission and Retry-After.
        self._throughput = 0.0

    @property
    def queued_items(self) -> int:
        return self._queued_items

    # --- the event loop's side ---------------------------------------------------------------
    def admit(self, job: Job) -> None:
        """Queue the job, or raise: `ModelNotReady` once closed, `Overloaded` when refused."""
        texts = job.texts
        with self._cond:
            if self._closed:
                raise ModelNotReady("model not ready (stopped)")
            # A job bigger than the whole queue is still admitted when the queue is empty, so a
            # maximal batch request is never refused on an idle server.
            if self._queued_items and self._queued_items + len(texts) > self.max_items:
                self.stats.rejected_count("queue_full")
                raise Overloaded(
                    f"inference queue full ({self._queued_items} items queued, "
                    f"limit {self.max_items})",
                    retry_after_s=max(1, round(self._estimated_drain_s())),
                )
            # Deadline-aware admission: when the model's recent speed says this request would not
            # be scored before its deadline, refuse now rather than queue it to answer 503 later.
            # Alone (its own cost on an idle instance): nothing but a smaller request can help,
            # so the refusal says so (413). Behind other work (the rest of the batches being
            # computed and the queue ahead): 429, to be retried. It adapts the item limit to a
            # model that slows down under load (onnx on shared cores). ADMISSION_HEADROOM keeps a
            # margin: the speed is a moving average that swings widely under overload, and
            # admitting right up to the deadline turns much of the model's work into late 503s.
            speed = self._throughput
            if speed > 0:
                budget_s = ADMISSION_HEADROOM * (job.deadline - job.enqueued_at)
                own_s = job.cost / speed
                if own_s > budget_s:
                    self.stats.rejected_count("too_costly")
                    raise RequestTooCostly(
                        f"this request ({len(texts)} texts, {job.cost} characters and "
                        f"{PER_TEXT_COST} a text) is about {own_s:.1f} s of work at the model's "
                        "recent speed, more than its deadline allows (REQUEST_TIMEOUT_MS); send "
                        "fewer or shorter texts"
                    )
                ahead = self._running_cost_left(speed) + self._queued_cost
                finish_s = (ahead + job.cost) / (speed * self.instances)
                if ahead and finish_s > budget_s:
                    self.stats.rejected_count("deadline_unreachable")
                    raise Overloaded(
                        f"inference queue too long to finish before the deadline "
                        f"({ahead:.0f} cost units ahead, about {finish_s:.1f} s of work)",
                        retry_after_s=max(1, round(self._estimated_drain_s())),
                    )
            self._jobs.append(job)
            self._queued_items += len(texts)
            self._queued_cost += job.cost
            self.stats.set_queue_depth(self._queued_items)
            self._cond.notify()

    def withdraw(self, job: Job) -> None:
        """Answered before the model reached it: the thread skips it, and its items stop counting
        at once, so work nobody waits for cannot make the queue refuse new work."""
        job.cancelled = True
        with self._cond:
            if job.queued:
                job.queued = False
                self._queued_items -= len(job.texts)
                self._queued_cost -= job.cost
                self.stats.set_queue_depth(self._queued_items)

    def close(self) -> None:
        """Refuse new jobs; the threads finish what is queued, then `next_batch` returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # --- the inference threads' side ---------------------------------------------------------
    def next_batch(self, index: int, max_items: int, max_cost: int) -> list[Job] | None:
        """Wait for work and take the next batch for instance `index`: jobs in order, up to
        `max_items` texts and `max_cost` (a single larger job is taken alone), waiting up to
        `batch_max_wait_ms` for more. None once the queue is closed and empty."""
        with self._cond:
            self._running_cost[index] = 0
            while self._head() is None:
                if self._closed:
                    return None
                self._cond.wait()
            batch = [self._pop()]
            items, cost = len(batch[0].texts), batch[0].cost

            def fits(job: Job) -> bool:
                return items + len(job.texts) <= max_items and cost + job.cost <= max_cost

            if self.batch_max_wait_s > 0 and items < max_items:
                wait_until = time.monotonic() + self.batch_max_wait_s
                while items < max_items and not self._closed:
                    head = self._head()
                    if head is None:
                        remaining = wait_until - time.monotonic()
                        if remaining <= 0 or not self._cond.wait(remaining):
                            break
                        continue
                    if not fits(head):
                        break
                    batch.append(self._pop())
                    items, cost = items + len(head.texts), cost + head.cost
            while (head := self._head()) is not None and fits(head):
                batch.append(self._pop())
                items, cost = items + len(head.texts), cost + head.cost
            self._running_cost[index] = cost
            self._running_since[index] = time.monotonic()
            self.stats.set_queue_depth(self._queued_items)
            return batch

    def take_all(self) -> list[Job]:
        """Empty the queue (the model cannot serve): the caller answers every job taken."""
        with self._cond:
            jobs = list(self._jobs)
            self._jobs.clear()
            for job in jobs:
                job.queued = False
            self._queued_items = 0
            self._queued_cost = 0
            return jobs

    def record_speed(self, cost: int, elapsed_s: float) -> None:
        """One instance scored texts of `cost` in `elapsed_s` seconds."""
        if elapsed_s <= 0:
            return
        rate = cost / elapsed_s
        # Several instances may update this at once without the lock: a lost update of a moving
        # average is harmless, and the lock is the queue's.
        self._throughput = rate if self._throughput == 0 else 0.8 * self._throughput + 0.2 * rate

    def _head(self) -> Job | None:
        """The first job still waiting (with the lock held); withdrawn ones are dropped."""
        while self._jobs and not self._jobs[0].queued:
            self._jobs.popleft()
        return self._jobs[0] if self._jobs else None

    def _pop(self) -> Job:
        job = self._jobs.popleft()
        job.queued = False
        self._queued_items -= len(job.texts)
        self._queued_cost -= job.cost
        return job

    def _running_cost_left(self, speed: float) -> float:
        """What the batches being computed still cost, at `speed` (with the lock held)."""
        now = time.monotonic()
        return sum(
            max(0.0, cost - (now - since) * speed)
            for cost, since in zip(self._running_cost, self._running_since, strict=True)
            if cost
        )

    def _estimated_drain_s(self) -> float:
        if self._throughput <= 0:
            return 1.0
        return min(60.0, self._queued_cost / (self._throughput * self.instances))
