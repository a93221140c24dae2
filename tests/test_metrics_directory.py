"""Several workers and prometheus-client's multiprocess directory on a bad day: a directory that
cannot take the workers' files (a full filesystem, reproduced without root by
`tests/support/full_disk.py`), and a worker that dies without cleaning up.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx2
import pytest

from tests.support.full_disk import file_size_limit_argv, full_tmpfs_argv, user_namespaces_work
from tests.support.servers import ROOT, ServerProcess, run_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Never in a log line: the service logs no request text.
SECRET_TEXT = "zq-secret-text-that-must-not-be-logged"


def _records(output: str) -> list[dict[str, object]]:
    records = []
    for line in output.splitlines():
        record = json.loads(line)  # a plain-text line (a traceback) fails here
        assert isinstance(record, dict), line[:300]
        records.append(record)
    return records


def _sample(text: str, name: str) -> float | None:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


@pytest.mark.parametrize("full", ["tmpfs", "file-size-limit"])
def test_a_full_metrics_directory_leaves_the_workers_serving_and_says_why(
    tmp_path: Path, full: str
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    if full == "tmpfs":
        if not user_namespaces_work():
            pytest.skip("no unprivileged user namespaces here (the file-size-limit case runs)")
        argv, errno_name = full_tmpfs_argv(directory), "ENOSPC"
    else:
        argv, errno_name = file_size_limit_argv(16384), "EFBIG"
    with run_server(
        argv,
        WEB_CONCURRENCY="2",
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        DRAIN_GRACE_SECONDS="0",
    ) as server:
        # The old code crash-looped here: every worker died as it created its first metric, so
        # nothing ever answered.
        server.wait_ready(timeout_s=90)
        assert httpx2.get(server.url + "/healthz", timeout=10).status_code == 200
        r = httpx2.post(server.url + "/v1/predict", json={"text": SECRET_TEXT}, timeout=10)
        assert r.status_code == 200
        metrics = httpx2.get(server.url + "/metrics", timeout=10)
        assert metrics.status_code == 200
        # Whichever worker answers, the scrape says how many workers' numbers are missing.
        assert _sample(metrics.text, "metrics_degraded_workers") == 2.0
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
        output = server.output()
    records = _records(output)
    causes = [r for r in records if r.get("event") == "metrics_degraded"]
    assert len(causes) == 2, causes  # one line per worker, no more
    for cause in causes:
        assert cause["level"] == "ERROR"
        assert cause["errno"] == errno_name
        assert cause["directory"] == str(directory)
        assert isinstance(cause["free_bytes"], int) and isinstance(cause["needed_bytes"], int)
    assert not [r for r in records if "died" in str(r.get("message"))]  # no restart at all
    assert SECRET_TEXT not in output


def _gauge_pids(text: str) -> set[int]:
    return {int(p) for p in re.findall(r'^\w+\{[^}]*pid="(\d+)"', text, re.M)}


def _worker_pids(directory: Path) -> set[int]:
    return {int(p.name.removeprefix("ready-")) for p in directory.glob("ready-*")}


@contextmanager
def _requests_in_flight(url: str, n: int) -> Iterator[list[threading.Thread]]:
    def call() -> None:
        # A new connection each, so the kernel spreads them over the workers; the one whose
        # worker is killed gets no answer.
        with suppress(httpx2.TransportError):
            httpx2.post(url + "/v1/predict", json={"text": "slow"}, timeout=30)

    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    try:
        yield threads
    finally:
        for t in threads:
            t.join(30)


def _wait_for(
    server: ServerProcess, predicate: Callable[[], bool], what: str, timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited: {server.output()[-2000:]}")
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(what)


def test_a_dead_workers_gauges_leave_metrics_and_its_counts_stay(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    with run_server(
        WEB_CONCURRENCY="2",
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        STUB_DELAY_MS="1500",
        DRAIN_GRACE_SECONDS="0",
    ) as server:
        server.wait_ready(timeout_s=90)
        workers = _worker_pids(directory)
        assert len(workers) == 2
        for _ in range(4):
            assert httpx2.post(server.url + "/v1/predict", json={"text": "hi"}).status_code == 200
        with _requests_in_flight(server.url, 6):
            time.sleep(0.5)  # the requests are in the model's 1.5 s
            text = httpx2.get(server.url + "/metrics", timeout=10).text
            in_flight = {
                int(pid): float(value)
                for pid, value in re.findall(
                    r'^http_requests_in_flight\{pid="(\d+)"\} (\S+)$', text, re.M
                )
            }
            # The worker with the most requests in flight dies without any clean-up.
            victim = max(workers, key=lambda pid: in_flight.get(pid, 0.0))
            assert in_flight.get(victim, 0.0) >= 1.0, text
            assert victim in _gauge_pids(text)
            os.kill(victim, signal.SIGKILL)
        # The supervisor starts a replacement; the pod is ready again once it has loaded.
        _wait_for(
            server,
            lambda: (
                len(_worker_pids(directory) - {victim}) == 2
                and httpx2.get(server.url + "/readyz", timeout=5).status_code == 200
            ),
            "no replacement worker became ready",
        )
        for _ in range(6):  # new connections: both workers answer some scrapes
            text = httpx2.get(server.url + "/metrics", timeout=10).text
            assert victim not in _gauge_pids(text), [
                line for line in text.splitlines() if f'pid="{victim}"' in line
            ]
            # Counters keep what the dead worker counted: 4 predictions before the kill.
            served = _sample(text, r'http_requests_total\{route="/v1/predict",status="200"\}')
            assert served is not None and served >= 4.0


def test_the_reserved_files_hold_every_series_the_service_can_write(tmp_path: Path) -> None:
    """A worker reserves its metric files before it writes one; a file that grows past its
    reservation is extended without reserving, so on a full disk it would still kill the worker
    (SIGBUS). Every series the service can write must therefore fit in the reservation."""
    code = r"""
import json, os, struct, sys
from ml_prod_api.http.docs import docs_router
from ml_prod_api.http.routes import router
from ml_prod_api.metrics import Metrics, UNMATCHED_ROUTE

m = Metrics()  # reserves this process's files, as in a worker
# Every route template a request can be labelled with.
docs = docs_router(title="docs", openapi_url="/openapi.json")
routes = {r.path for r in [*router.routes, *docs.routes]} | {"/openapi.json", UNMATCHED_ROUTE}
# Every status the service answers, on every route (more pairs than it can produce).
statuses = (200, 400, 401, 403, 404, 405, 406, 408, 413, 415, 422, 429, 431, 499, 500, 503, 504)
for route in routes:
    for status in statuses:
        m.observe_request(route, status, 0.01)
for provider in ("stub", "tfidf", "onnx", "transformer", "cascade"):
    m.observe_inference(provider, 0.01, 4)
    m.inference_failed(provider)
    m.observe_predictions(provider, ["toxic", "non-toxic"], [10, 20])
    m.observe_stages(provider, ["tfidf", "onnx", "transformer"])
    m.set_model_info(provider, "a-model-version-of-some-length-0123456789")
m.set_queue_depth(1); m.observe_queue_wait(0.1); m.set_ready(True); m.in_flight.inc()
m.rate_limited.inc(); m.rate_limit_storage_errors.inc()
out = {}
for name in os.listdir(sys.argv[1]):
    with open(os.path.join(sys.argv[1], name), "rb") as f:
        out[name] = [struct.unpack("i", f.read(4))[0], os.path.getsize(f.name)]
print(json.dumps(out))
"""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "STUB_"))},
        "MODEL_PROVIDER": "stub",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "PYTHONPATH": str(ROOT / "src"),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    files: dict[str, list[int]] = json.loads(proc.stdout.splitlines()[-1])
    from ml_prod_api.metrics import METRIC_FILE_KINDS
    from ml_prod_api.multiproc import RESERVED_FILE_BYTES

    kinds = {name.rsplit("_", 1)[0] for name in files if name.endswith(".db")}
    assert kinds == set(METRIC_FILE_KINDS)  # no file that was not reserved
    for name, (used, size) in files.items():
        if name.endswith(".db"):
            # Never grown (else: raise RESERVED_FILE_BYTES).
            assert used <= size == RESERVED_FILE_BYTES, (name, used, size)
