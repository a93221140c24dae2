"""API keys, rate limits, trusted proxies, CORS and security headers, through the real app."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ml_prod_api.api import create_app
from ml_prod_api.settings import ConfigError, load_settings
from tests.conftest import make_settings, running_client, wait_until_loaded

KEYS = "alice:alice-secret-1,bob-secret-2"


def test_auth_off_by_default(client: TestClient) -> None:
    assert client.post("/v1/predict", json={"text": "hi"}).status_code == 200


def _unauthorized(r: Any) -> dict[str, Any]:
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="ml-prod-api"'
    body: dict[str, Any] = r.json()["error"]
    assert body["code"] == "unauthorized"
    return body


def test_missing_and_wrong_key_get_the_same_401() -> None:
    with running_client(api_keys=KEYS) as c:
        missing = _unauthorized(c.post("/v1/predict", json={"text": "hi"}))
        wrong = _unauthorized(
            c.post("/v1/predict", json={"text": "hi"}, headers={"X-API-Key": "nope"})
        )
        bad_bearer = _unauthorized(
            c.post(
                "/v1/predict_batch",
                json={"texts": ["hi"]},
                headers={"Authorization": "Bearer alice-secret-"},
            )
        )
    for body in (wrong, bad_bearer):
        assert {k: v for k, v in body.items() if k != "request_id"} == {
            k: v for k, v in missing.items() if k != "request_id"
        }


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "alice-secret-1"},
        {"X-API-Key": "bob-secret-2"},
        {"Authorization": "Bearer alice-secret-1"},
        {"Authorization": "bearer bob-secret-2"},
    ],
)
def test_each_valid_key_in_either_header(headers: dict[str, str]) -> None:
    with running_client(api_keys=KEYS) as c:
        assert c.post("/v1/predict", json={"text": "hi"}, headers=headers).status_code == 200


def test_probes_root_and_metrics_stay_open_by_default() -> None:
    with running_client(api_keys=KEYS) as c:
        for path in ("/healthz", "/readyz", "/", "/metrics", "/docs", "/openapi.json"):
            assert c.get(path).status_code == 200, path


def test_metrics_protected_and_docs_disabled_by_settings() -> None:
    with running_client(api_keys=KEYS, metrics_require_key=True, docs_enabled=False) as c:
        _unauthorized(c.get("/metrics"))
        assert c.get("/metrics", headers={"X-API-Key": "bob-secret-2"}).status_code == 200
        for path in ("/docs", "/openapi.json", "/redoc"):
            assert c.get(path).status_code == 404
        assert c.get("/healthz").status_code == 200


def test_key_never_logged_and_caller_name_is(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with running_client(api_keys=KEYS) as c:
        c.post("/v1/predict", json={"text": "hi"}, headers={"X-API-Key": "alice-secret-1"})
        c.post("/v1/predict", json={"text": "hi"}, headers={"X-API-Key": "bob-secret-2"})
        c.post("/v1/predict", json={"text": "hi"}, headers={"X-API-Key": "guess-secret-3"})
    dumped = [json.dumps(r.__dict__, default=str) for r in caplog.records]
    for secret in ("alice-secret-1", "bob-secret-2", "guess-secret-3"):
        assert not any(secret in line for line in dumped)
    callers = [
        r.__dict__.get("caller")
        for r in caplog.records
        if r.name == "ml_prod_api.access" and r.__dict__.get("route") == "/v1/predict"
    ]
    assert callers[0] == "alice"
    assert callers[1].startswith("key-")  # unnamed key: a digest prefix
    assert callers[2] is None  # refused: no caller, and the route template is still known


def test_key_file_rotation_without_restart(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# mounted secret\nold-key\n")
    with running_client(api_keys_file=keys, api_keys_reload_seconds=0) as c:
        ok = {"X-API-Key": "old-key"}
        assert c.post("/v1/predict", json={"text": "hi"}, headers=ok).status_code == 200
        keys.write_text("old-key\nnew-key\n")  # rotation step 1: both valid
        later = time.time() + 5
        import os

        os.utime(keys, (later, later))
        new = {"X-API-Key": "new-key"}
        assert c.post("/v1/predict", json={"text": "hi"}, headers=new).status_code == 200
        keys.write_text("new-key\n")  # step 2: the old key retired
        os.utime(keys, (later + 5, later + 5))
        assert c.post("/v1/predict", json={"text": "hi"}, headers=ok).status_code == 401
        assert c.post("/v1/predict", json={"text": "hi"}, headers=new).status_code == 200


def test_missing_key_file_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="API_KEYS_FILE"):
        load_settings(_env_file=None, api_keys_file=tmp_path / "absent")


# --- rate limits ----------------------------------------------------------------------------


def _limited(r: Any, remaining: int = 0) -> None:
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["x-ratelimit-remaining"] == str(remaining)


def test_rate_limit_headers_and_429_per_client() -> None:
    with running_client(rate_limit="5/minute") as c:
        for i in range(5):
            r = c.post("/v1/predict", json={"text": "hi"})
            assert r.status_code == 200
            assert r.headers["x-ratelimit-limit"] == "5"
            assert r.headers["x-ratelimit-remaining"] == str(4 - i)
            assert int(r.headers["x-ratelimit-reset"]) > time.time()
        _limited(c.post("/v1/predict", json={"text": "hi"}))
        assert "rate_limited_total 1.0" in c.get("/metrics").text
        # Probes are never limited.
        assert c.get("/healthz").status_code == 200


def test_batch_costs_one_unit_per_text() -> None:
    with running_client(rate_limit="10/minute") as c:
        assert c.post("/v1/predict_batch", json={"texts": ["a"] * 8}).status_code == 200
        r = c.post("/v1/predict_batch", json={"texts": ["a"] * 3})
        _limited(r, remaining=2)  # 3 texts do not fit in the 2 units left
        assert "costs 3" in r.json()["error"]["message"]
        assert c.post("/v1/predict_batch", json={"texts": ["a"] * 2}).status_code == 200


def test_limits_are_per_key_with_overrides() -> None:
    with running_client(
        api_keys=KEYS, rate_limit="2/minute", rate_limit_overrides={"alice": "4/minute"}
    ) as c:
        alice = {"X-API-Key": "alice-secret-1"}
        bob = {"X-API-Key": "bob-secret-2"}
        for _ in range(4):
            assert c.post("/v1/predict", json={"text": "x"}, headers=alice).status_code == 200
        _limited(c.post("/v1/predict", json={"text": "x"}, headers=alice))
        for _ in range(2):
            assert c.post("/v1/predict", json={"text": "x"}, headers=bob).status_code == 200
        _limited(c.post("/v1/predict", json={"text": "x"}, headers=bob))


def _client_at(address: str, **overrides: Any) -> Any:
    app = create_app(make_settings(**overrides))
    return TestClient(app, client=(address, 40000))


def test_forwarded_for_ignored_from_untrusted_peers() -> None:
    with _client_at("203.0.113.7", rate_limit="2/minute") as c:
        wait_until_loaded(c)
        for i in range(2):
            spoof = {"X-Forwarded-For": f"198.51.100.{i}"}
            assert c.post("/v1/predict", json={"text": "x"}, headers=spoof).status_code == 200
        # A new spoofed address does not buy a new bucket.
        r = c.post("/v1/predict", json={"text": "x"}, headers={"X-Forwarded-For": "198.51.100.99"})
        _limited(r)


def test_forwarded_for_honoured_from_trusted_proxies(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with _client_at("10.1.2.3", rate_limit="1/minute", trusted_proxies="10.0.0.0/8") as c:
        wait_until_loaded(c)
        for i in range(3):  # three real clients behind the proxy: three buckets
            fwd = {"X-Forwarded-For": f"198.51.100.{i}"}
            assert c.post("/v1/predict", json={"text": "x"}, headers=fwd).status_code == 200
        again = {"X-Forwarded-For": "198.51.100.0"}
        _limited(c.post("/v1/predict", json={"text": "x"}, headers=again))
    clients = {
        r.__dict__.get("client")
        for r in caplog.records
        if r.name == "ml_prod_api.access" and r.__dict__.get("route") == "/v1/predict"
    }
    assert clients == {"198.51.100.0", "198.51.100.1", "198.51.100.2"}


# --- CORS and headers -------------------------------------------------------------------------


def test_no_cors_by_default(client: TestClient) -> None:
    r = client.post("/v1/predict", json={"text": "hi"}, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_for_listed_origins_and_preflight_without_key() -> None:
    with running_client(cors_allow_origins="https://app.example", api_keys=KEYS) as c:
        pre = c.options(
            "/v1/predict",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-api-key",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        r = c.post(
            "/v1/predict",
            json={"text": "hi"},
            headers={"Origin": "https://app.example", "X-API-Key": "bob-secret-2"},
        )
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-request-id" in r.headers["access-control-expose-headers"].lower()
        other = c.options(
            "/v1/predict",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert other.status_code == 400


def test_cors_wildcard_with_credentials_is_refused() -> None:
    with pytest.raises(ConfigError, match="CORS_ALLOW_ORIGINS"):
        load_settings(_env_file=None, cors_allow_origins="*", cors_allow_credentials=True)


def test_security_headers(client: TestClient) -> None:
    for r in (
        client.post("/v1/predict", json={"text": "hi"}),
        client.get("/nope"),
        client.get("/healthz"),
    ):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in r.headers["content-security-policy"]
    # The docs pages carry their own: scripts from this origin only (tests/test_docs_assets.py).
    assert "script-src 'self'" in client.get("/docs").headers["content-security-policy"]
    assert client.post("/v1/predict", json={"text": "hi"}).headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("route", "invalid", "valid"),
    [
        ("/v1/predict", {"text": ""}, {"text": "valid, but the budget is spent"}),
        ("/v1/moderations", {"input": ""}, {"input": "valid, but the budget is spent"}),
        ("/v1/moderations", {"input": "hi", "model": "no-such-model"}, {"input": "valid"}),
    ],
)
def test_invalid_requests_are_charged_against_the_rate_limit(
    route: str, invalid: dict[str, str], valid: dict[str, str]
) -> None:
    with running_client(rate_limit="3/minute") as c:
        for _ in range(3):
            assert c.post(route, json=invalid).status_code in (400, 422)  # one unit each
        _limited(c.post(route, json=valid))
        # Once spent, even a large invalid body is refused before it is parsed.
        json_type = {"content-type": "application/json"}
        r = c.post(route, content=b"[" * 100_000, headers=json_type)
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "rate_limited"


def test_a_batch_larger_than_the_whole_limit_is_refused_as_never_possible() -> None:
    with running_client(rate_limit="3/minute") as c:
        r = c.post("/v1/predict_batch", json={"texts": ["a"] * 5})
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "cost_exceeds_rate_limit"
        assert "retry-after" not in r.headers
        # Nothing was charged: the whole budget is still there.
        assert c.post("/v1/predict_batch", json={"texts": ["a"] * 3}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "", "Authorization": "Bearer alice-secret-1"},
        {"X-API-Key": "bob-secret-2", "Authorization": "Bearer alice-secret-1"},
    ],
)
def test_two_credentials_are_refused_not_chosen_between(headers: dict[str, str]) -> None:
    with running_client(api_keys=KEYS) as c:
        r = c.post("/v1/predict", json={"text": "hi"}, headers=headers)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "conflicting_credentials"
