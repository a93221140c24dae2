"""A unique sentinel sent through every error path never comes back in a body or a log line."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.conftest import running_client

SENTINEL = "SENTINEL-7f3a9c-do-not-echo"


def _requests() -> list[tuple[str, str, dict[str, Any]]]:
    s = SENTINEL
    json_h = {"Content-Type": "application/json"}
    return [
        # (method, path, httpx kwargs)
        ("POST", "/v1/predict", {"json": {"text": s}}),  # success path
        ("POST", "/v1/predict", {"json": {"text": s * 400}}),  # too long
        ("POST", "/v1/predict", {"json": {"text": 5, s: s}}),  # wrong type + unknown field
        ("POST", "/v1/predict", {"json": {"text": s, "explain": s}}),  # bad explain
        ("POST", "/v1/predict", {"json": {"text": s, "explain": True}}),  # unsupported explain
        ("POST", "/v1/predict", {"json": [s]}),  # not an object
        ("POST", "/v1/predict", {"content": ('{"text": "' + s).encode(), "headers": json_h}),
        ("POST", "/v1/predict", {"content": ('{"text": ' + s + "}").encode(), "headers": json_h}),
        ("POST", "/v1/predict", {"content": s.encode(), "headers": {"Content-Type": "text/plain"}}),
        ("POST", "/v1/predict", {"json": {"text": s + " FAULT"}}),  # provider raises
        ("POST", "/v1/predict", {"json": {"text": s * 100}, "headers": {}}),  # over body limit
        ("POST", "/v1/predict_batch", {"json": {"texts": [s, 3, ""]}}),
        ("POST", "/v1/predict_batch", {"json": {"texts": [s] * 70}}),
        ("POST", "/v1/predict_batch", {"json": {"texts": [s, s + " FAULT"]}}),
        ("POST", "/v1/moderations", {"json": {"input": [s, "hi"]}}),  # success path
        ("POST", "/v1/moderations", {"json": {"input": s * 400}}),  # too long
        ("POST", "/v1/moderations", {"json": {"input": "hi", "model": s}}),  # unknown model
        ("POST", "/v1/moderations", {"json": {"input": [{"type": "text", "text": s}]}}),
        ("POST", "/v1/moderations", {"json": {"input": [s, s + " FAULT"]}}),
        ("GET", f"/{SENTINEL}", {}),  # 404 with the sentinel in the path
        ("GET", f"/v1/predict?q={SENTINEL}", {}),  # 405
        ("GET", "/healthz", {"headers": {"X-Request-ID": SENTINEL + " <bad>"}}),
    ]


@pytest.mark.parametrize("case", range(len(_requests())))
def test_sentinel_never_echoed(
    case: int, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    method, path, kwargs = _requests()[case]
    caplog.set_level(logging.DEBUG)
    with running_client(
        stub_fail_marker="FAULT", max_text_length=3000, max_body_bytes=2500
    ) as client:
        r = client.request(method, path, **kwargs)
        metrics = client.get("/metrics").text
    assert SENTINEL not in r.text
    assert SENTINEL not in json.dumps(dict(r.headers))
    assert SENTINEL not in metrics
    for record in caplog.records:
        rendered = record.getMessage() + json.dumps(record.__dict__, default=str)
        assert SENTINEL not in rendered, record.name
    out = capsys.readouterr()
    assert SENTINEL not in out.out
    assert SENTINEL not in out.err
