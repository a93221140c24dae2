"""Shared fixtures: apps are built per test through the real factory and lifespan."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ml_prod_api.api import create_app
from ml_prod_api.settings import Settings

ClientFactory = Callable[..., Any]

# The test client's own request log (client side, not the service) would quote test URLs.
for _client_logger in ("httpx", "httpx2"):
    logging.getLogger(_client_logger).setLevel(logging.WARNING)


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: the stub provider, no `.env` file, short drain."""
    values: dict[str, Any] = {"model_provider": "stub", "drain_grace_seconds": 0.0}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def wait_until_loaded(client: TestClient, timeout_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = client.get("/readyz").json()
        if body["status"] != "loading" or time.monotonic() > deadline:
            return body
        time.sleep(0.01)


@contextmanager
def running_client(wait: bool = True, **overrides: Any) -> Iterator[TestClient]:
    app = create_app(make_settings(**overrides))
    with TestClient(app, raise_server_exceptions=False) as client:
        if wait:
            wait_until_loaded(client)
        yield client


@pytest.fixture
def client() -> Iterator[TestClient]:
    with running_client() as c:
        yield c


@pytest.fixture
def client_factory() -> Iterator[ClientFactory]:
    """Build clients with other settings; every one is closed at the end of the test."""
    stack: list[Any] = []

    def factory(wait: bool = True, **overrides: Any) -> TestClient:
        cm = running_client(wait=wait, **overrides)
        stack.append(cm)
        return cm.__enter__()

    yield factory
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


@pytest.fixture
def anyio_backend() -> str:
    """`@pytest.mark.anyio` tests run on asyncio only: the serving layer is written against
    asyncio (its queue, futures and `run_in_executor`), not anyio's backend-neutral API."""
    return "asyncio"
