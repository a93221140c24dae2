"""The HTTP contract as a caller sees it, through the real app and its lifespan."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient

from ml_prod_api.providers.stub import stub_probability
from tests.support.servers import ROOT


def _metric(client: TestClient, name: str) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_seed_curl_example(client: TestClient) -> None:
    # curl -X POST http://localhost:8000/v1/predict -H "Content-Type: application/json"
    #      -d '{"text":"you are awful"}'
    r = client.post(
        "/v1/predict",
        content=b'{"text":"you are awful"}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200
    pred = r.json()["prediction"]
    assert set(pred) == {"label", "probability_toxic", "threshold", "model_version", "provider"}
    assert pred["label"] == "toxic"
    assert pred["threshold"] == 0.5  # the stub records no threshold of its own
    assert pred["probability_toxic"] == stub_probability("you are awful")
    assert pred["provider"] == "stub"
    assert pred["model_version"] == "stub-1"


def test_benign_text_is_non_toxic(client: TestClient) -> None:
    pred = client.post("/v1/predict", json={"text": "have a lovely day"}).json()["prediction"]
    assert pred["label"] == "non-toxic"
    assert 0.0 <= pred["probability_toxic"] < 0.5


def test_threshold_setting_moves_the_label(client_factory) -> None:  # type: ignore[no-untyped-def]
    strict = client_factory(toxic_threshold=0.99)
    pred = strict.post("/v1/predict", json={"text": "you are awful"}).json()["prediction"]
    assert pred["label"] == "non-toxic"  # 0.76 < 0.99
    # The answer says which threshold decided it, and so does GET /.
    assert pred["threshold"] == 0.99
    assert strict.get("/").json()["threshold"] == 0.99


def test_the_models_own_threshold_is_in_every_answer(client_factory) -> None:  # type: ignore[no-untyped-def]
    # Without TOXIC_THRESHOLD the label follows the threshold chosen in training
    # (metadata.json), and each prediction says so: a caller can tell why 0.4 is `toxic`.
    metadata = json.loads((ROOT / "models" / "tfidf" / "metadata.json").read_text())
    tfidf = client_factory(model_provider="tfidf")
    texts = ["you are awful", "I am a proud gay man", "what a lovely day"]
    preds = tfidf.post("/v1/predict_batch", json={"texts": texts}).json()["predictions"]
    assert {p["threshold"] for p in preds} == {metadata["threshold"]}
    for p in preds:
        assert p["label"] == ("toxic" if p["probability_toxic"] >= p["threshold"] else "non-toxic")
    assert tfidf.get("/").json()["threshold"] == metadata["threshold"]


def test_batch_keeps_input_order_in_one_model_call(client: TestClient) -> None:
    texts = ["have a nice day", "you idiot", "stupid ugly loser", "lovely weather"]
    calls_before = _metric(client, "inference_latency_seconds_count")
    r = client.post("/v1/predict_batch", json={"texts": texts})
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert [p["probability_toxic"] for p in preds] == [stub_probability(t) for t in texts]
    assert [p["label"] for p in preds] == ["non-toxic", "toxic", "toxic", "non-toxic"]
    assert _metric(client, "inference_latency_seconds_count") == calls_before + 1


def test_batch_equals_singles(client: TestClient) -> None:
    texts = ["you are awful", "a calm sentence", "hate hate hate"]
    batch = client.post("/v1/predict_batch", json={"texts": texts}).json()["predictions"]
    singles = [client.post("/v1/predict", json={"text": t}).json()["prediction"] for t in texts]
    assert batch == singles


def test_root_metadata(client: TestClient) -> None:
    body = client.get("/").json()
    assert body["service"] == "ml-prod-api"
    assert body["provider"] == "stub"
    assert body["model_version"] == "stub-1"
    assert body["api_version"] == "v1"
    assert body["ready"] is True
    assert body["threshold"] == 0.5
    for link in ("/docs", "/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert link in body["links"].values()
        assert client.get(link).status_code == 200


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_readyz_ready(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["status"] == "ready"


def test_head_on_the_probes_answers_like_get_without_a_body(client: TestClient) -> None:
    for path in ("/healthz", "/readyz"):
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code == 200, path
        assert head.headers["content-type"] == get.headers["content-type"]
        assert head.headers["x-request-id"]
    # Only the probes: HEAD elsewhere is still the envelope's 405.
    assert client.head("/v1/predict").status_code == 405
    assert 'http_requests_total{route="/healthz",status="200"} 2.0' in client.get("/metrics").text


def test_metrics_exposes_the_named_metrics_by_route_template(client: TestClient) -> None:
    client.post("/v1/predict", json={"text": "hello"})
    client.get("/no/such/path/12345")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'http_requests_total{route="/v1/predict",status="200"} 1.0' in text
    assert 'http_request_latency_seconds_bucket{le="0.001",route="/v1/predict"}' in text
    assert 'inference_latency_seconds_count{provider="stub"}' in text
    # Unknown paths share one label value: the raw path never becomes a label.
    assert 'route="<unmatched>",status="404"' in text
    assert "12345" not in text


def test_request_id_generated_and_echoed(client: TestClient) -> None:
    r = client.get("/healthz")
    generated = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    r = client.get("/healthz", headers={"X-Request-ID": "caller-id.42:abc"})
    assert r.headers["x-request-id"] == "caller-id.42:abc"


def test_insane_request_id_is_replaced(client: TestClient) -> None:
    for bad in ["a" * 129, "has space", "line\\nbreak", "<script>", ""]:
        r = client.get("/healthz", headers={"X-Request-ID": bad})
        assert r.headers["x-request-id"] != bad
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


def test_error_request_id_matches_header(client: TestClient) -> None:
    r = client.post("/v1/predict", json={"text": ""}, headers={"X-Request-ID": "req-1"})
    assert r.headers["x-request-id"] == "req-1"
    assert r.json()["error"]["request_id"] == "req-1"


def test_openapi_has_examples_for_requests_responses_and_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for name in (
        "PredictRequest",
        "BatchPredictRequest",
        "PredictResponse",
        "BatchPredictResponse",
        "HealthResponse",
        "ReadyResponse",
        "ModerationRequest",
        "ModerationResponse",
    ):
        assert schemas[name].get("examples"), name
    for path in ("/v1/predict", "/v1/predict_batch", "/v1/moderations"):
        responses = spec["paths"][path]["post"]["responses"]
        for status in ("413", "415", "422", "429", "500", "503"):
            example = responses[status]["content"]["application/json"]["example"]
            assert set(example["error"]) >= {"code", "message", "request_id"}
    assert client.get("/docs").status_code == 200


def test_explain_is_refused_clearly_by_a_provider_without_it(client: TestClient) -> None:
    r = client.post("/v1/predict", json={"text": "you are awful", "explain": True})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "explain_not_supported"
