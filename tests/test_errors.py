"""Every error path answers the one envelope, with a stable code and no echo of the input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

JSON = {"Content-Type": "application/json"}


def assert_envelope(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert err["code"] == code
    assert isinstance(err["message"], str) and err["message"]
    assert err["request_id"] == r.headers["x-request-id"]
    return dict(err)


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({"text": ""}, "empty_text", "text"),
        ({"text": "   \n\t "}, "empty_text", "text"),
        ({"text": "x" * 5001}, "text_too_long", "5000"),
        ({"text": 42}, "invalid_type", "text"),
        ({"text": None}, "invalid_type", "text"),
        ({}, "missing_field", "text"),
        ({"text": "ok", "colour": "red"}, "unknown_field", "allowed: text, explain"),
        ({"text": "ok", "explain": "yes"}, "invalid_type", "explain"),
        (["not", "an", "object"], "invalid_body", "object"),
    ],
)
def test_predict_validation(client: TestClient, body: Any, code: str, needle: str) -> None:
    err = assert_envelope(client.post("/v1/predict", json=body), 422, code)
    assert needle in err["message"]


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({"texts": []}, "empty_batch", "texts"),
        ({"texts": ["ok"] * 65}, "batch_too_large", "64"),
        ({"texts": ["ok", "fine", ""]}, "empty_text", "texts[2]"),
        ({"texts": ["ok", "x" * 5001]}, "text_too_long", "texts[1]"),
        ({"texts": ["ok", 7]}, "invalid_type", "texts[1]"),
        ({"texts": "not a list"}, "invalid_type", "texts"),
        ({"text": "wrong field"}, "missing_field", "texts"),
    ],
)
def test_batch_validation(client: TestClient, body: Any, code: str, needle: str) -> None:
    err = assert_envelope(client.post("/v1/predict_batch", json=body), 422, code)
    assert needle in err["message"]


def test_limits_follow_settings(client_factory) -> None:  # type: ignore[no-untyped-def]
    c = client_factory(max_text_length=10, max_texts_per_request=2)
    assert c.post("/v1/predict", json={"text": "x" * 10}).status_code == 200
    err = assert_envelope(c.post("/v1/predict", json={"text": "x" * 11}), 422, "text_too_long")
    assert "10" in err["message"]
    assert_envelope(c.post("/v1/predict_batch", json={"texts": ["a"] * 3}), 422, "batch_too_large")


def test_malformed_json(client: TestClient) -> None:
    r = client.post("/v1/predict", content=b'{"text": "unterminated', headers=JSON)
    assert_envelope(r, 422, "invalid_json")


def test_empty_body(client: TestClient) -> None:
    assert_envelope(client.post("/v1/predict", content=b"", headers=JSON), 422, "missing_body")


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_non_json_content_type(client: TestClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post("/v1/predict", content=b'{"text": "hello"}', headers=headers)
    assert_envelope(r, 415, "unsupported_media_type")


def test_json_content_type_with_charset_is_accepted(client: TestClient) -> None:
    r = client.post(
        "/v1/predict",
        content=b'{"text": "hello"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 200


def test_body_over_limit_with_content_length(client_factory) -> None:  # type: ignore[no-untyped-def]
    c = client_factory(max_body_bytes=1000)
    r = c.post("/v1/predict", json={"text": "x" * 2000})
    err = assert_envelope(r, 413, "payload_too_large")
    assert "1000" in err["message"]


def test_chunked_body_over_limit(client_factory) -> None:  # type: ignore[no-untyped-def]
    # No Content-Length: counted while streaming (that reading stops at the limit is shown on a
    # bare ASGI app in test_middleware.py, since the test client sends the whole body first).
    c = client_factory(max_body_bytes=1000)

    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(20):
            yield b"x" * 100

    r = c.post("/v1/predict", content=chunks(), headers=JSON)
    assert "content-length" not in r.request.headers
    assert_envelope(r, 413, "payload_too_large")


def test_default_body_limit_admits_a_maximal_batch(client: TestClient) -> None:
    texts = ["é" * 5000] * 64  # non-ASCII is escaped by the JSON encoder: 6 bytes a char
    r = client.post("/v1/predict_batch", json={"texts": texts})
    assert r.status_code == 200, r.text


def test_not_found(client: TestClient) -> None:
    assert_envelope(client.get("/v2/nothing"), 404, "not_found")


def test_method_not_allowed(client: TestClient) -> None:
    assert_envelope(client.get("/v1/predict"), 405, "method_not_allowed")
    assert_envelope(client.delete("/healthz"), 405, "method_not_allowed")


def test_provider_exception_is_a_500_envelope_and_service_keeps_serving(
    client_factory,  # type: ignore[no-untyped-def]
) -> None:
    c = client_factory(stub_fail_marker="BOOM")
    assert_envelope(c.post("/v1/predict", json={"text": "BOOM now"}), 500, "inference_error")
    assert c.post("/v1/predict", json={"text": "all good"}).status_code == 200
    assert c.get("/readyz").status_code == 200


def test_unexpected_exception_is_a_500_envelope(client: TestClient) -> None:
    def broken() -> None:
        raise RuntimeError("unexpected")

    client.app.add_api_route("/test-broken", broken)  # type: ignore[attr-defined]
    err = assert_envelope(client.get("/test-broken"), 500, "internal_error")
    assert "unexpected" not in err["message"]
    assert client.get("/healthz").status_code == 200


def test_schema_pattern_matches_the_whitespace_check(client: TestClient) -> None:
    import re

    spec = client.get("/openapi.json").json()
    pattern = spec["components"]["schemas"]["PredictRequest"]["properties"]["text"]["pattern"]
    compiled = re.compile(pattern)
    for code in range(0x110000):
        char = chr(code)
        assert (compiled.search(char) is None) == char.isspace(), hex(code)
