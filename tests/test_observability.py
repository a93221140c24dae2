"""Logs and metrics as an on-call engineer reads them: JSON lines, exact metric shapes,
exact totals across worker processes."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import run_server

EXPECTED = {
    # name: (type, label names)
    "http_requests": ("counter", {"route", "status"}),
    "http_request_latency_seconds": ("histogram", {"route"}),
    "inference_latency_seconds": ("histogram", {"provider"}),
    "predictions": ("counter", {"provider", "label"}),
    "inference_batch_size": ("histogram", set()),
    "http_requests_in_flight": ("gauge", set()),
    "model_ready": ("gauge", set()),
    "model_info": ("gauge", {"provider", "version"}),
    "text_length_chars": ("histogram", set()),
    "inference_queue_depth": ("gauge", set()),
    "inference_queue_wait_seconds": ("histogram", set()),
    "inference_rejected": ("counter", {"reason"}),
}


def test_metric_names_types_and_labels(client: TestClient) -> None:
    client.post("/v1/predict", json={"text": "you are awful"})
    client.post("/v1/predict_batch", json={"texts": ["a", "b"]})
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    for name, (kind, labels) in EXPECTED.items():
        assert name in families, name
        family = families[name]
        assert family.type == kind, name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample.labels)
    info = [s for s in families["model_info"].samples]
    assert info[0].labels == {"provider": "stub", "version": "stub-1"}
    assert families["model_ready"].samples[0].value == 1.0


def test_server_timing_header(client: TestClient) -> None:
    r = client.post("/v1/predict", json={"text": "hello"})
    assert re.fullmatch(
        r"queue;dur=\d+\.\d{3}, inference;dur=\d+\.\d{3}", r.headers["server-timing"]
    )
    assert r.headers["cache-control"] == "no-store"


ACCESS_FIELDS = {
    "timestamp",
    "level",
    "request_id",
    "method",
    "route",
    "status_code",
    "latency_ms",
    "provider",
    "model_version",
    "client",
}


@pytest.mark.integration
@pytest.mark.slow
def test_every_stdout_line_is_json_with_the_access_fields() -> None:
    with run_server() as server:
        server.wait_ready()
        httpx2.post(
            server.url + "/v1/predict_batch",
            json={"texts": ["you idiot", "hi there"]},
            headers={"X-Request-ID": "join-me-42"},
        )
        httpx2.get(server.url + "/nope")
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(30)
        out = server.output()
    records = [json.loads(line) for line in out.strip().splitlines()]  # every line parses
    access = [r for r in records if r.get("logger") == "ml_prod_api.access"]
    batch = next(r for r in access if r["request_id"] == "join-me-42")
    assert set(batch) >= ACCESS_FIELDS
    assert batch["route"] == "/v1/predict_batch"
    assert batch["batch_size"] == 2
    assert batch["labels"] == {"toxic": 1, "non-toxic": 1}
    assert any(r["route"] == "<unmatched>" and r["status_code"] == 404 for r in access)
    assert any(r.get("logger", "").startswith("uvicorn") for r in records)  # uvicorn's, as JSON
    startup = next(r for r in records if r.get("event") == "startup")
    assert startup["settings"]["model_provider"] == "stub"
    loaded = next(r for r in records if r.get("message") == "model loaded")
    assert loaded["model_version"] == "stub-1" and "load_ms" in loaded


def _total(text: str, route: str, status: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "http_requests":
            for s in family.samples:
                if s.name == "http_requests_total" and s.labels == {
                    "route": route,
                    "status": status,
                }:
                    return float(s.value)
    return 0.0


@pytest.mark.integration
@pytest.mark.slow
def test_multiprocess_totals_are_exact_across_workers(tmp_path: Path) -> None:
    sent = 60
    with run_server(WEB_CONCURRENCY="2", PROMETHEUS_MULTIPROC_DIR=str(tmp_path)) as server:
        server.wait_ready(timeout_s=60)
        for i in range(sent):
            # A new connection each time, so the kernel spreads them over both workers.
            with httpx2.Client() as c:
                assert c.post(server.url + "/v1/predict", json={"text": f"t{i}"}).status_code == 200
        pids = {p.stem.rsplit("_", 1)[1] for p in tmp_path.glob("counter_*.db")}
        assert len(pids) >= 2, "both workers should have served"
        # Whichever worker answers the scrape, the total is the sum over all workers.
        for _ in range(4):
            with httpx2.Client() as c:
                text = c.get(server.url + "/metrics").text
            assert _total(text, "/v1/predict", "200") == sent
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(60) == 0
