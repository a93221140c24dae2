"""Prometheus metrics (prometheus-client), one registry per app so tests stay isolated.

With several worker processes, prometheus-client's multiprocess mode is used: the launcher sets
`PROMETHEUS_MULTIPROC_DIR` before any worker imports the client, every worker writes its values
there, and `/metrics` aggregates the files of all workers, so totals are exact whichever worker
answers the scrape. Gauges are `liveall`: one series per live worker (label `pid`), and a dead
worker's series go with it (prometheus-client's `mark_process_dead` removes the files of `live*`
gauges only: with the default `all`, a killed worker's in-flight count and readiness stayed in
`/metrics` for good). Counters and histograms keep what a dead worker counted.

A worker whose files cannot be allocated (a full filesystem) logs why, once, and keeps its
numbers in its own memory: it serves, and `metrics_degraded_workers` in every scrape says how many
workers' numbers are missing from the totals.

Labels are bounded: `route` is the route template (unknown paths share one value), `status` the
numeric code, `provider`, `label` and `stage` (a stage's provider name) come from fixed sets.
No label ever carries request data.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from ml_prod_api.multiproc import (
    DEGRADED_PREFIX,
    RESERVED_FILE_BYTES,
    degraded_workers,
    mark_dead_workers,
    mark_degraded,
    multiprocess_dir,
    reserve_metric_files,
)

# From sub-millisecond (tfidf, stub) up to seconds (a transformer batch on CPU).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
LENGTH_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 5000, 10000)

UNMATCHED_ROUTE = "<unmatched>"

GAUGE_MODE: Final = "liveall"
# The files prometheus-client writes for these metrics in multiprocess mode, one of each per
# process: a new kind of metric (a Summary, another gauge mode) adds one here.
METRIC_FILE_KINDS = ("counter", "histogram", f"gauge_{GAUGE_MODE}")

log = logging.getLogger(__name__)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "UNMATCHED_ROUTE", "serving_metrics"]

# The metrics of the app this process serves, for what happens before a request reaches it (the
# HTTP protocol's refusals of requests it could not parse): a weak reference, set by the app.
_serving: weakref.ref[Metrics] | None = None


def serving_metrics() -> Metrics | None:
    return _serving() if _serving is not None else None


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # In multiprocess mode this registry only owns the metric objects; `render` reads the
        # shared directory instead.
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = multiprocess_dir()
        self.degraded = False  # multiprocess mode, but this process's values stay in memory
        if self.multiprocess_dir is not None:
            self._reserve_files(self.multiprocess_dir)
        r = self.registry
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests by route template and status code.",
            ["route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "http_request_latency_seconds",
            "HTTP request latency by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "HTTP requests being served.",
            multiprocess_mode=GAUGE_MODE,
            registry=r,
        )
        self.inference_latency = Histogram(
            "inference_latency_seconds",
            "Model compute time per batch call.",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_batch_size = Histogram(
            "inference_batch_size",
            "Texts per model call.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inference_errors = Counter(
            "inference_errors_total",
            "Model calls that raised.",
            ["provider"],
            registry=r,
        )
        self.stage_texts = Counter(
            "inference_stage_texts_total",
            "Texts answered by each stage of a provider made of several (the cascade); the share "
            "a stage answered is its rate over the sum of both.",
            ["provider", "stage"],
            registry=r,
        )
        self.predictions = Counter(
            "predictions_total",
            "Texts scored, by predicted label.",
            ["provider", "label"],
            registry=r,
        )
        self.text_length = Histogram(
            "text_length_chars",
            "Length of scored texts in characters.",
            buckets=LENGTH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "inference_queue_depth",
            "Texts waiting for the model thread.",
            multiprocess_mode=GAUGE_MODE,
            registry=r,
        )
        self.queue_wait = Histogram(
            "inference_queue_wait_seconds",
            "Time a request waited before its model call.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "inference_rejected_total",
            "Requests refused or dropped by the queue (queue_full, deadline_unreachable, deadline, "
            "cancelled).",
            ["reason"],
            registry=r,
        )
        self.model_ready = Gauge(
            "model_ready",
            "1 when the model is loaded and warm.",
            multiprocess_mode=GAUGE_MODE,
            registry=r,
        )
        self.model_info = Gauge(
            "model_info",
            "The served provider and model version.",
            ["provider", "version"],
            multiprocess_mode=GAUGE_MODE,
            registry=r,
        )
        self.rate_limited = Counter(
            "rate_limited_total",
            "Requests refused by a rate limit.",
            registry=r,
        )
        self.rate_limit_storage_errors = Counter(
            "rate_limit_storage_errors_total",
            "Rate-limit checks that failed because the storage (Redis) was unavailable.",
            registry=r,
        )
        self._request_children: dict[tuple[str, int], tuple[Any, Any]] = {}
        for reason in ("queue_full", "deadline_unreachable", "too_costly", "deadline", "cancelled"):
            self.rejected.labels(reason)

    def _reserve_files(self, directory: str) -> None:
        try:
            reserve_metric_files(directory, METRIC_FILE_KINDS)
        except OSError as exc:
            log.error(
                "cannot allocate this worker's metrics files in PROMETHEUS_MULTIPROC_DIR (%s): "
                "it serves, but its numbers stay in its own memory and are missing from /metrics",
                exc.strerror or exc,
                extra={
                    "event": "metrics_degraded",
                    "errno": errno.errorcode.get(exc.errno or 0, str(exc.errno)),
                    "directory": directory,
                    "free_bytes": _free_bytes(directory),
                    "needed_bytes": RESERVED_FILE_BYTES * len(METRIC_FILE_KINDS),
                },
            )
            # prometheus-client chooses where values live once, when imported (from
            # PROMETHEUS_MULTIPROC_DIR), in `values.ValueClass`; its single-process class keeps
            # them in memory, so no metric of this process touches the full directory.
            values.ValueClass = values.MutexValue
            self.degraded = True
            mark_degraded(directory)

    def serve_process(self) -> None:
        """Make these the metrics that `serving_metrics()` returns in this process."""
        global _serving
        _serving = weakref.ref(self)

    # --- called by the serving layer ---------------------------------------------------------
    def set_ready(self, ready: bool) -> None:
        self.model_ready.set(1 if ready else 0)

    def set_model_info(self, provider: str, version: str) -> None:
        # Set once, when the model has loaded: a process serves one model for its whole life,
        # so there is no earlier series to clear (and `clear()` only warns in prometheus-client's
        # multiprocess mode, where it is not implemented).
        self.model_info.labels(provider, version).set(1)

    def set_queue_depth(self, items: int) -> None:
        self.queue_depth.set(items)

    def observe_queue_wait(self, seconds: float) -> None:
        self.queue_wait.observe(seconds)

    def observe_inference(self, provider: str, seconds: float, batch_size: int) -> None:
        self.inference_latency.labels(provider).observe(seconds)
        self.inference_batch_size.observe(batch_size)

    def observe_stages(self, provider: str, stages: Sequence[str | None]) -> None:
        """Count the texts each stage answered; scores without a stage are not counted."""
        for stage, count in collections.Counter(stages).items():
            if stage is not None:
                self.stage_texts.labels(provider, stage).inc(count)

    def inference_failed(self, provider: str) -> None:
        self.inference_errors.labels(provider).inc()

    def rejected_count(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    # --- called by the HTTP layer ------------------------------------------------------------
    def observe_request(self, route: str, status: int, seconds: float) -> None:
        # Label children are cached: `labels()` takes a lock and builds a key on every call.
        key = (route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.http_requests.labels(route, str(status)),
                self.http_latency.labels(route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_predictions(self, provider: str, labels: list[str], lengths: list[int]) -> None:
        toxic = sum(1 for label in labels if label == "toxic")
        if toxic:
            self.predictions.labels(provider, "toxic").inc(toxic)
        if len(labels) - toxic:
            self.predictions.labels(provider, "non-toxic").inc(len(labels) - toxic)
        for n in lengths:
            self.text_length.observe(n)

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        mark_dead_workers(self.multiprocess_dir)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        registry.register(DegradedWorkers(self.multiprocess_dir))
        return generate_latest(registry)

    def close(self) -> None:
        """On worker exit: its live gauges stop counting (its counters stay in the totals)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]
            if self.degraded:
                path = os.path.join(self.multiprocess_dir, f"{DEGRADED_PREFIX}{os.getpid()}")
                with contextlib.suppress(OSError):
                    os.unlink(path)


class DegradedWorkers(Collector):
    """`metrics_degraded_workers`, read from the shared directory at each scrape."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "metrics_degraded_workers",
            "Live worker processes whose metrics files could not be allocated (a full "
            "PROMETHEUS_MULTIPROC_DIR): their numbers are missing from this scrape.",
            value=degraded_workers(self.directory),
        )


def _free_bytes(directory: str) -> int | None:
    try:
        stat = os.statvfs(directory)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize
