"""Readiness states through the HTTP app: loading, failed, ready, draining."""

from __future__ import annotations

import sys

import pytest
from fastapi.testclient import TestClient

from ml_prod_api.api import create_app
from ml_prod_api.http.state import app_state
from ml_prod_api.lifecycle import StartupError
from tests.conftest import make_settings, wait_until_loaded


def test_loading_then_ready(client_factory) -> None:  # type: ignore[no-untyped-def]
    # The warm-up prediction sleeps 1.5 s: until it succeeds the service is not ready (long
    # enough for the checks below to run inside it on a busy machine).
    c = client_factory(wait=False, stub_delay_ms=1500)
    r = c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["status"] == "loading"
    assert c.head("/readyz").status_code == 503  # a HEAD health check sees the same
    assert c.get("/").json()["threshold"] is None  # the model that decides it is not loaded
    assert c.get("/healthz").status_code == 200
    r = c.post("/v1/predict", json={"text": "hello"})
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "model_not_ready"
    assert "loading" in r.json()["error"]["message"]
    assert r.headers["retry-after"]
    assert wait_until_loaded(c)["status"] == "ready"
    assert c.get("/readyz").status_code == 200
    assert c.post("/v1/predict", json={"text": "hello"}).status_code == 200


def test_failed_load_stays_alive_and_says_why(client_factory) -> None:  # type: ignore[no-untyped-def]
    c = client_factory(stub_load_error="model file not found: /nowhere/model.bin")
    r = c.get("/readyz")
    assert r.status_code == 503
    # The reason without the deployment's paths (the log line keeps them).
    assert r.json()["status"] == "failed: model file not found: model.bin"
    assert c.head("/readyz").status_code == 503
    assert c.get("/healthz").status_code == 200
    assert c.head("/healthz").status_code == 200
    for path, body in (("/v1/predict", {"text": "hi"}), ("/v1/predict_batch", {"texts": ["hi"]})):
        r = c.post(path, json=body)
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "model_not_ready"
    assert c.get("/").json()["ready"] is False
    assert "model_ready 0.0" in c.get("/metrics").text


def test_a_failed_load_shows_no_paths_or_digests(client_factory, caplog) -> None:  # type: ignore[no-untyped-def]
    reason = (
        "model file /srv/app/models/tfidf/model.joblib is corrupt or was replaced: sha256 "
        "65f708676c1a... does not match fd19857b2008aa11 recorded in metadata.json"
    )
    c = client_factory(stub_load_error=reason)
    status = c.get("/readyz").json()["status"]
    assert status == (
        "failed: model file model.joblib is corrupt or was replaced: sha256 <digest> does not "
        "match <digest> recorded in metadata.json"
    )
    message = c.post("/v1/predict", json={"text": "hi"}).json()["error"]["message"]
    assert "/srv/app" not in message and "65f708676c1a" not in message
    lines = [r for r in caplog.records if getattr(r, "event", None) == "model_load_failed"]
    assert reason in lines[0].getMessage()


def test_failed_load_logs_one_clear_line(client_factory, caplog) -> None:  # type: ignore[no-untyped-def]
    client_factory(stub_load_error="corrupt artifact")
    lines = [r for r in caplog.records if getattr(r, "event", None) == "model_load_failed"]
    assert len(lines) == 1
    assert "corrupt artifact" in lines[0].getMessage()


def test_fail_fast_aborts_start_up() -> None:
    app = create_app(make_settings(stub_load_error="broken", startup_fail_fast=True))
    with pytest.raises(StartupError, match="broken"), TestClient(app):
        pass


def test_transformer_without_torch_names_the_install_command(  # type: ignore[no-untyped-def]
    client_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An install made with `make install` (no torch) serving the shipped transformer checkpoint:
    # `None` in sys.modules makes `import torch` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "torch", None)
    c = client_factory(model_provider="transformer")
    status = c.get("/readyz").json()["status"]
    assert status.startswith("failed: torch is missing")
    assert "make install-transformer" in status


def test_unknown_provider_module_fails_readiness_not_process(client_factory) -> None:  # type: ignore[no-untyped-def]
    # `onnx` is a valid name; if its module or artifact is missing, the reason is in /readyz.
    c = client_factory(model_provider="onnx", model_path="/nonexistent/model-dir")
    body = c.get("/readyz").json()
    assert body["status"].startswith("failed: ")
    assert c.get("/healthz").status_code == 200


def test_draining_turns_readiness_off_but_still_serves(client: TestClient) -> None:
    app_state(client.app).service.begin_drain()  # type: ignore[arg-type]
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["status"] == "draining"
    assert "model_ready 0.0" in client.get("/metrics").text
    # During the grace period the load balancer may still send: those requests are served.
    assert client.post("/v1/predict", json={"text": "hello"}).status_code == 200


def test_readiness_waits_for_every_worker(client: TestClient, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    from ml_prod_api.multiproc import WorkerBoard

    board = WorkerBoard(tmp_path, expected=2)
    state = app_state(client.app)  # type: ignore[arg-type]
    state.worker_board = board
    board.publish(state.service.readiness)
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["status"] == "loading (1 of 2 workers ready)"
    (tmp_path / "ready-999999999").touch()  # a worker that died without cleaning up
    assert client.get("/readyz").status_code == 503
    assert not (tmp_path / "ready-999999999").exists()
    (tmp_path / f"ready-{os.getppid()}").touch()  # a live second worker
    assert client.get("/readyz").status_code == 200
    # The sibling drains first (SIGTERM reaches the workers one at a time): this worker, still
    # ready itself, answers "draining" too, not "loading".
    (tmp_path / f"ready-{os.getppid()}").unlink()
    (tmp_path / f"draining-{os.getppid()}").touch()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["status"] == "draining"
    (tmp_path / f"ready-{os.getppid()}").touch()
    state.service.begin_drain()
    board.publish(state.service.readiness)
    assert not board.marker.exists()
    assert board.draining_marker.exists()
