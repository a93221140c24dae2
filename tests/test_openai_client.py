"""`POST /v1/moderations` through the official `openai` client, against real server processes.

The client is pointed at the service by `base_url` alone, as a team switching from OpenAI's
moderation endpoint would do, and what it parses is checked against the service's own routes:
`flagged` is `label == "toxic"` of `/v1/predict_batch` and the `harassment` score is its
probability, categories the model does not judge come back as `None`, and every error arrives as
the client's own exception type with the service's code and request id in its body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

openai = pytest.importorskip("openai", reason="openai not installed (requirements-dev.txt)")

from openai import (  # noqa: E402
    APIResponseValidationError,
    AsyncOpenAI,
    AuthenticationError,
    InternalServerError,
    OpenAI,
    RateLimitError,
    UnprocessableEntityError,
)
from openai.types import ModerationCreateResponse  # noqa: E402

from ml_prod_api.http.schemas import MODERATION_CATEGORIES  # noqa: E402
from tests.support.servers import LoggedServer, ServerProcess, run_logged_server  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAIN_KEY = "key-main-0123456789"
LIMITED_KEY = "key-limited-0123456789"
SENTINEL = "SENTINEL-5d1e7b-do-not-log"
MIXED = ["you are awful", "I am a proud gay man", "what a stupid idiot", "have a nice day"]
# The client's attribute for each OpenAI category name (`self-harm/intent` -> `self_harm_intent`).
ATTRS = {name: name.replace("/", "_").replace("-", "_") for name in MODERATION_CATEGORIES}


def _client(server: ServerProcess, key: str = "unused", **kwargs: Any) -> OpenAI:
    # A service without API_KEYS takes any key; the client insists on one.
    return OpenAI(base_url=server.url + "/v1", api_key=key, **kwargs)


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedServer]:
    """The shipped tfidf model, no keys, small input limits; its log goes to a file."""
    log = tmp_path_factory.mktemp("open") / "server.log"
    with run_logged_server(
        log, MODEL_PROVIDER="tfidf", MAX_TEXT_LENGTH="200", MAX_TEXTS_PER_REQUEST="4"
    ) as server:
        server.wait_ready()
        yield server


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedServer]:
    """The stub with API keys, a rate limit (tight for the `limited` key) and a fault marker."""
    log = tmp_path_factory.mktemp("guarded") / "server.log"
    with run_logged_server(
        log,
        API_KEYS=f"main:{MAIN_KEY},limited:{LIMITED_KEY}",
        RATE_LIMIT="1000/minute",
        RATE_LIMIT_OVERRIDES=json.dumps({"limited": "3 per 2 seconds"}),
        # Fixed windows: once the Retry-After has passed, the caller's whole budget is back.
        RATE_LIMIT_STRATEGY="fixed-window",
        STUB_FAIL_MARKER="FAULT",
    ) as server:
        server.wait_ready()
        yield server


def _predictions(server: ServerProcess, texts: list[str]) -> list[dict[str, Any]]:
    r = httpx2.post(server.url + "/v1/predict_batch", json={"texts": texts}, timeout=10)
    assert r.status_code == 200, r.text
    predictions: list[dict[str, Any]] = r.json()["predictions"]
    return predictions


def _head_threshold(server: ServerProcess) -> float:
    """The threshold the served model chose in training for its identity_attack head."""
    thresholds: dict[str, float] = httpx2.get(server.url + "/").json()["label_thresholds"]
    return thresholds["identity_attack"]


def _assert_matches(result: Any, prediction: dict[str, Any], head_threshold: float) -> None:
    """One parsed result against the same text's prediction on /v1/predict_batch."""
    flagged = prediction["label"] == "toxic"
    assert result.flagged is flagged
    assert result.categories.harassment is flagged
    assert result.category_scores.harassment == pytest.approx(prediction["probability_toxic"])
    assert result.category_applied_input_types.harassment == ["text"]
    # The shipped tfidf model's identity_attack head judges `hate`, at its own threshold.
    head = prediction["labels"]["identity_attack"]
    assert result.category_scores.hate == pytest.approx(head)
    assert result.categories.hate is (flagged and head >= head_threshold)
    assert result.category_applied_input_types.hate == ["text"]
    for name, attr in ATTRS.items():
        if name in ("harassment", "hate"):
            continue
        # Not judged by the model: None, never a confident False / 0.0.
        assert getattr(result.categories, attr) is None, name
        assert getattr(result.category_scores, attr) is None, name
        assert getattr(result.category_applied_input_types, attr) == [], name


# --- answers -------------------------------------------------------------------------------------


def test_one_string_parses_into_the_clients_types(open_server: LoggedServer) -> None:
    raw = _client(open_server).moderations.with_raw_response.create(input="you are awful")
    parsed = raw.parse()
    assert isinstance(parsed, ModerationCreateResponse)
    ready = httpx2.get(open_server.url + "/readyz").json()
    assert parsed.model == ready["model_version"]
    assert parsed.id == "modr-" + raw.headers["x-request-id"]
    assert raw.headers["server-timing"].startswith("queue;dur=")
    assert len(parsed.results) == 1
    [prediction] = _predictions(open_server, ["you are awful"])
    assert prediction["label"] == "toxic"
    _assert_matches(parsed.results[0], prediction, _head_threshold(open_server))


def test_a_list_answers_in_order_with_the_decisions_of_predict_batch(
    open_server: LoggedServer,
) -> None:
    parsed = _client(open_server).moderations.create(input=MIXED)
    predictions = _predictions(open_server, MIXED)
    assert {p["label"] for p in predictions} == {"toxic", "non-toxic"}  # both kinds in the list
    assert len(parsed.results) == len(MIXED)
    head_threshold = _head_threshold(open_server)
    for result, prediction in zip(parsed.results, predictions, strict=True):
        _assert_matches(result, prediction, head_threshold)


@pytest.mark.parametrize(
    "model",
    [
        "<version>",
        "tfidf",
        "omni-moderation-latest",
        "text-moderation-latest",
        "text-moderation-stable",
    ],
)
def test_accepted_model_names_all_mean_the_served_model(
    open_server: LoggedServer, model: str
) -> None:
    version = httpx2.get(open_server.url + "/readyz").json()["model_version"]
    name = version if model == "<version>" else model
    parsed = _client(open_server).moderations.create(input="have a nice day", model=name)
    assert parsed.model == version
    assert parsed.results[0].flagged is False


def test_async_client_gets_every_answer_in_order(open_server: LoggedServer) -> None:
    batches = [MIXED, MIXED[::-1], MIXED[1:3]]

    async def run() -> list[Any]:
        async with AsyncOpenAI(base_url=open_server.url + "/v1", api_key="unused") as client:
            return list(
                await asyncio.gather(*(client.moderations.create(input=b) for b in batches))
            )

    answers = asyncio.run(run())
    head_threshold = _head_threshold(open_server)
    for batch, parsed in zip(batches, answers, strict=True):
        for result, prediction in zip(
            parsed.results, _predictions(open_server, batch), strict=True
        ):
            _assert_matches(result, prediction, head_threshold)


def test_strict_response_validation_refuses_the_not_judged_categories(
    open_server: LoggedServer,
) -> None:
    """The limit of the null representation, as documented: the client's opt-in strict mode
    validates `Categories` against its declared `bool` and refuses `None`."""
    strict = _client(open_server, _strict_response_validation=True)
    with pytest.raises(APIResponseValidationError):
        strict.moderations.create(input="have a nice day")


# --- errors --------------------------------------------------------------------------------------


def _refused(call: Any, kind: type[openai.APIStatusError], code: str) -> openai.APIStatusError:
    with pytest.raises(kind) as info:
        call()
    err = info.value
    assert err.code == code
    assert isinstance(err.body, dict)
    assert err.body["request_id"] == err.response.headers["x-request-id"]
    assert err.body["message"] in str(err)  # readable, and the client shows it
    return err


def test_over_the_input_limits_is_unprocessable(open_server: LoggedServer) -> None:
    client = _client(open_server, max_retries=0)
    moderate = client.moderations.create
    err = _refused(
        lambda: moderate(input=["ok", "x" * 201]), UnprocessableEntityError, "text_too_long"
    )
    assert "input[1]" in err.message and "200" in err.message
    err = _refused(lambda: moderate(input=["a"] * 5), UnprocessableEntityError, "batch_too_large")
    assert "limit is 4" in err.message
    _refused(lambda: moderate(input=[]), UnprocessableEntityError, "empty_batch")
    _refused(lambda: moderate(input="   "), UnprocessableEntityError, "empty_text")
    err = _refused(
        lambda: moderate(input=[{"type": "text", "text": "hello"}]),
        UnprocessableEntityError,
        "unsupported_input",
    )
    assert "input[0]" in err.message
    err = _refused(
        lambda: moderate(input="hi", model="gpt-4o"), UnprocessableEntityError, "unknown_model"
    )
    assert "omni-moderation-latest" in err.message and "gpt-4o" not in err.message


def test_keys_are_checked_on_the_bearer_header(guarded_server: LoggedServer) -> None:
    ok = _client(guarded_server, MAIN_KEY).moderations.create(input=["hello", "you idiot"])
    assert [r.flagged for r in ok.results] == [False, True]
    wrong = _client(guarded_server, "not-a-key", max_retries=0)
    _refused(lambda: wrong.moderations.create(input="hi"), AuthenticationError, "unauthorized")
    # No key at all: the client always sends its key, so drop the header from this request.
    client = _client(guarded_server, MAIN_KEY, max_retries=0)
    err = _refused(
        lambda: client.moderations.create(input="hi", extra_headers={"Authorization": openai.omit}),
        AuthenticationError,
        "unauthorized",
    )
    assert "authorization" not in err.response.request.headers


def test_a_model_error_is_an_internal_server_error(guarded_server: LoggedServer) -> None:
    client = _client(guarded_server, MAIN_KEY, max_retries=0)
    _refused(
        lambda: client.moderations.create(input=["fine", "FAULT"]),
        InternalServerError,
        "inference_error",
    )


def test_the_clients_retries_wait_out_a_spent_rate_limit(guarded_server: LoggedServer) -> None:
    """Each input costs one unit of the `limited` key's 3 per 2 seconds. Once it is spent, a
    client without retries gets RateLimitError with Retry-After; the client's own retries wait
    that long and then succeed."""
    once = _client(guarded_server, LIMITED_KEY, max_retries=0)
    seen: list[int] = []
    hooks = {"response": [lambda response: seen.append(response.status_code)]}
    with httpx2.Client(event_hooks=hooks) as http:
        retrying = _client(guarded_server, LIMITED_KEY, max_retries=3, http_client=http)
        for _ in range(3):  # again only if the window turned between the two calls below
            # Spends the window (or finds it still spent from the previous round).
            with contextlib.suppress(RateLimitError):
                once.moderations.create(input=["a", "b", "c"])
            err = _refused(
                lambda: once.moderations.create(input="a"), RateLimitError, "rate_limited"
            )
            assert int(err.response.headers["retry-after"]) >= 1
            assert err.response.headers["x-ratelimit-limit"] == "3"
            seen.clear()
            parsed = retrying.moderations.create(input=["you are awful", "hello"])
            if seen[0] == 429:
                break
    assert seen[0] == 429 and seen[-1] == 200
    assert [r.flagged for r in parsed.results] == [True, False]
    metrics = httpx2.get(guarded_server.url + "/metrics").text
    assert 'http_requests_total{route="/v1/moderations",status="429"}' in metrics


# --- logs ----------------------------------------------------------------------------------------


def test_access_log_has_the_route_and_no_text(open_server: LoggedServer) -> None:
    client = _client(open_server, max_retries=0)
    client.moderations.create(input=[SENTINEL, "hello", "you are awful"])
    with pytest.raises(UnprocessableEntityError):
        client.moderations.create(input=SENTINEL * 20)  # too long
    with pytest.raises(UnprocessableEntityError):
        client.moderations.create(input="hi", model=SENTINEL)  # unknown model
    assert SENTINEL not in open_server.output()
    lines = [r for r in open_server.log_records() if r.get("route") == "/v1/moderations"]
    assert any(r["status_code"] == 200 and r.get("batch_size") == 3 for r in lines)
    assert any(r["status_code"] == 422 for r in lines)
    metrics = httpx2.get(open_server.url + "/metrics").text
    assert 'http_requests_total{route="/v1/moderations",status="200"}' in metrics
    assert SENTINEL not in metrics


# --- a model with an identity-attack label ------------------------------------------------------


def test_hate_comes_from_an_identity_label(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="torch not installed (requirements-transformer.txt)")
    from tests.tiny_models import JIGSAW_LABELS, build_checkpoint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ckpt = build_checkpoint(tmp_path / "jigsaw", labels=JIGSAW_LABELS, multi_label=True)
    texts = ["you are awful", "have a nice day", "i hate all of them"]
    with run_logged_server(
        tmp_path / "server.log",
        MODEL_PROVIDER="transformer",
        MODEL_PATH=str(ckpt),
        TOXIC_THRESHOLD="0.5",
    ) as server:
        server.wait_ready(timeout_s=60)
        parsed = _client(server).moderations.create(input=texts)
        predictions = _predictions(server, texts)
    for result, prediction in zip(parsed.results, predictions, strict=True):
        flagged = prediction["label"] == "toxic"
        hate = prediction["labels"]["identity_hate"]
        assert result.flagged is flagged
        assert result.category_scores.harassment == pytest.approx(prediction["probability_toxic"])
        assert result.category_scores.hate == pytest.approx(hate)
        assert result.categories.hate is (flagged and hate >= 0.5)
        assert result.category_applied_input_types.hate == ["text"]
        # `threat` and the others are not mapped to a category: still not judged.
        assert result.categories.harassment_threatening is None
        assert result.category_scores.violence is None
