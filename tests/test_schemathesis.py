"""Property-based tests generated from the app's own OpenAPI schema (schemathesis).

Every generated request, valid or not, sent to a real server process, must get a documented
status with a body that conforms to the schema, and never a 5xx. `SCHEMATHESIS_MAX_EXAMPLES`
raises the count (default 50 per operation: a few hundred cases in CI).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from ml_prod_api.api import create_app
from tests.conftest import make_settings
from tests.support.servers import ServerProcess, run_server

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "50"))
LIMITS = {"max_texts_per_request": 8, "max_text_length": 500}

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The schema comes from the app built with the same settings as the server below (schemathesis'
# lazy fixture loader does not run under this pytest version).
schema = schemathesis.openapi.from_dict(
    create_app(make_settings(model_provider="tfidf", **LIMITS)).openapi()
)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    env = {k.upper(): str(v) for k, v in LIMITS.items()}
    with run_server(MODEL_PROVIDER="tfidf", LOG_LEVEL="WARNING", **env) as proc:
        proc.wait_ready()
        yield proc


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, server: ServerProcess) -> None:
    case.call_and_validate(base_url=server.url)
