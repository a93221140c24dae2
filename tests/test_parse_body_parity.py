"""`parse_body` replaced FastAPI's body parameter on the prediction routes: it must accept and
refuse exactly the bodies FastAPI would, and give the same values for the ones it accepts.

A plain FastAPI app with `body: PredictRequest` (and `BatchPredictRequest`) parameters is the
reference; every body of a corpus of hostile inputs is sent to it and given to `parse_body`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel

from ml_prod_api.api import create_app
from ml_prod_api.http.errors import ApiError
from ml_prod_api.http.routes import router
from ml_prod_api.http.schemas import BatchPredictRequest, PredictRequest
from ml_prod_api.http.validation import parse_body
from tests.conftest import make_settings
from tests.test_hostile_input import CASES as HOSTILE_CASES

JSON = "application/json"
DEEP = 50_000

# (name, model, body) sent as application/json.
BODIES: list[tuple[str, type[BaseModel], bytes]] = [
    # the body as a whole
    ("empty", PredictRequest, b""),
    ("whitespace only", PredictRequest, b" \n\t "),
    ("null", PredictRequest, b"null"),
    ("true", PredictRequest, b"true"),
    ("a number", PredictRequest, b"1"),
    ("a string", PredictRequest, b'"you idiot"'),
    ("an array", PredictRequest, b"[]"),
    ("an array of the object", PredictRequest, b'[{"text": "a"}]'),
    ("an empty object", PredictRequest, b"{}"),
    ("two objects", PredictRequest, b'{"text": "a"}{"text": "b"}'),
    ("trailing garbage", PredictRequest, b'{"text": "a"} x'),
    ("trailing comma", PredictRequest, b'{"text": "a",}'),
    ("single quotes", PredictRequest, b"{'text': 'a'}"),
    ("a comment", PredictRequest, b'{"text": "a" /* hi */}'),
    ("unquoted key", PredictRequest, b'{text: "a"}'),
    ("unterminated string", PredictRequest, b'{"text": "a'),
    ("unterminated object", PredictRequest, b'{"text": "a"'),
    ("surrounding whitespace", PredictRequest, b' \r\n {"text": "a"} \n'),
    ("byte-order mark", PredictRequest, b'\xef\xbb\xbf{"text": "a"}'),
    ("UTF-16 LE", PredictRequest, '{"text": "a"}'.encode("utf-16-le")),
    ("UTF-16 with BOM", PredictRequest, '{"text": "a"}'.encode("utf-16")),
    ("UTF-32 BE", PredictRequest, '{"text": "a"}'.encode("utf-32-be")),
    ("Latin-1 text", PredictRequest, '{"text": "café"}'.encode("latin-1")),
    ("overlong UTF-8 slash", PredictRequest, b'{"text": "a\xc0\xafb"}'),
    ("UTF-8 encoded surrogate", PredictRequest, b'{"text": "a\xed\xa0\x80b"}'),
    ("a NUL before the object", PredictRequest, b'\x00{"text": "a"}'),
    # the text field
    ("text: a number", PredictRequest, b'{"text": 42}'),
    ("text: a float", PredictRequest, b'{"text": 4.2}'),
    ("text: true", PredictRequest, b'{"text": true}'),
    ("text: null", PredictRequest, b'{"text": null}'),
    ("text: a list", PredictRequest, b'{"text": ["a"]}'),
    ("text: an object", PredictRequest, b'{"text": {"text": "a"}}'),
    ("text: empty", PredictRequest, b'{"text": ""}'),
    ("text: whitespace", PredictRequest, b'{"text": " \\t\\n "}'),
    ("text: -Infinity", PredictRequest, b'{"text": -Infinity}'),
    ("text: Infinity", PredictRequest, b'{"text": Infinity}'),
    ("text: a raw tab", PredictRequest, b'{"text": "a\tb"}'),
    ("text: a raw newline", PredictRequest, b'{"text": "a\nb"}'),
    ("text: a raw DEL", PredictRequest, b'{"text": "a\x7fb"}'),
    ("text: escapes", PredictRequest, b'{"text": "\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9"}'),
    ("text: a bad escape", PredictRequest, b'{"text": "\\x41"}'),
    ("text: a short unicode escape", PredictRequest, b'{"text": "\\u12"}'),
    ("text: a surrogate pair", PredictRequest, b'{"text": "\\ud83d\\ude00"}'),
    ("text: a reversed surrogate pair", PredictRequest, b'{"text": "\\ude00\\ud83d"}'),
    ("text: emoji and combining marks", PredictRequest, '{"text": "e\u0301 \U0001f600"}'.encode()),
    ("text: 100k characters", PredictRequest, b'{"text": "' + b"x" * 100_000 + b'"}'),
    (
        "text: deeply nested object",
        PredictRequest,
        b'{"text": ' + b'{"a": ' * DEEP + b"1" + b"}" * DEEP + b"}",
    ),
    # keys
    ("no text", PredictRequest, b'{"explain": true}'),
    ("Text capitalised", PredictRequest, b'{"Text": "a"}'),
    ("text and an unknown key", PredictRequest, b'{"text": "a", "txt": "b"}'),
    ("an unknown key only", PredictRequest, b'{"colour": "red"}'),
    ("an empty key", PredictRequest, b'{"": "a", "text": "a"}'),
    ("a NUL in a key", PredictRequest, b'{"te\\u0000xt": "a"}'),
    ("an escaped key", PredictRequest, b'{"\\u0074ext": "a"}'),
    ("duplicate keys, the last wins", PredictRequest, b'{"text": 1, "text": "b"}'),
    ("duplicate keys, the last is bad", PredictRequest, b'{"text": "a", "text": 1}'),
    (
        "many unknown keys",
        PredictRequest,
        b"{" + b",".join(b'"k%d": %d' % (i, i) for i in range(5000)) + b', "text": "a"}',
    ),
    # explain
    ("explain: true", PredictRequest, b'{"text": "a", "explain": true}'),
    ("explain: false", PredictRequest, b'{"text": "a", "explain": false}'),
    ("explain: a string", PredictRequest, b'{"text": "a", "explain": "true"}'),
    ("explain: 1", PredictRequest, b'{"text": "a", "explain": 1}'),
    ("explain: 0", PredictRequest, b'{"text": "a", "explain": 0}'),
    ("explain: null", PredictRequest, b'{"text": "a", "explain": null}'),
    ("explain: a list", PredictRequest, b'{"text": "a", "explain": [true]}'),
    # batches
    ("texts: two", BatchPredictRequest, b'{"texts": ["a", "b"]}'),
    ("texts: empty", BatchPredictRequest, b'{"texts": []}'),
    ("texts: a string", BatchPredictRequest, b'{"texts": "ab"}'),
    ("texts: null", BatchPredictRequest, b'{"texts": null}'),
    ("texts: an object", BatchPredictRequest, b'{"texts": {"0": "a"}}'),
    ("texts: a null item", BatchPredictRequest, b'{"texts": ["a", null]}'),
    ("texts: a number item", BatchPredictRequest, b'{"texts": ["a", 1]}'),
    ("texts: a bool item", BatchPredictRequest, b'{"texts": [true]}'),
    ("texts: a nested list", BatchPredictRequest, b'{"texts": [["a"]]}'),
    ("texts: an empty item", BatchPredictRequest, b'{"texts": ["a", ""]}'),
    (
        "texts: many bad items",
        BatchPredictRequest,
        b'{"texts": [' + b",".join([b"1"] * 1000) + b"]}",
    ),
    (
        "texts: 100k items",
        BatchPredictRequest,
        b'{"texts": [' + b",".join([b'"a"'] * 100_000) + b"]}",
    ),
    ("texts: deeply nested", BatchPredictRequest, b'{"texts": ' + b"[" * DEEP + b"]" * DEEP + b"}"),
    ("texts and text", BatchPredictRequest, b'{"texts": ["a"], "text": "b"}'),
    ("texts and explain", BatchPredictRequest, b'{"texts": ["a"], "explain": true}'),
    ("text on the batch route", BatchPredictRequest, b'{"text": "a"}'),
    ("texts on the single route", PredictRequest, b'{"texts": ["a"]}'),
]
BODIES += [
    (f"hostile: {name}", BatchPredictRequest if b'"texts"' in body else PredictRequest, body)
    for name, (body, _, _) in HOSTILE_CASES.items()
]

# (name, content type or None for no header, model, body)
VALID = b'{"text": "a"}'
CONTENT_TYPES: list[tuple[str, str | None]] = [
    ("json", "application/json"),
    ("json with charset", "application/json; charset=utf-8"),
    ("json with another charset", "application/json; charset=latin-1"),
    ("json, spaced parameters", "application/json ; charset = utf-8"),
    ("json in capitals", "APPLICATION/JSON"),
    ("a +json type", "application/vnd.api+json"),
    ("merge-patch+json", "application/merge-patch+json"),
    ("no header", None),
    ("an empty header", ""),
    ("text/plain", "text/plain"),
    ("text/json", "text/json"),
    ("form", "application/x-www-form-urlencoded"),
    ("multipart", "multipart/form-data; boundary=x"),
    ("octet-stream", "application/octet-stream"),
    ("jsonx", "application/jsonx"),
    ("json-seq", "application/json-seq"),
    ("a +json suffix on text", "text/vnd.x+json"),
    ("no subtype", "application"),
    ("a star", "*/*"),
]


def _reference_app() -> tuple[FastAPI, list[BaseModel]]:
    """FastAPI parsing the same models itself; the bodies it accepted are kept, in order."""
    app = FastAPI()
    accepted: list[BaseModel] = []

    @app.exception_handler(RequestValidationError)
    async def refused(request: Request, exc: Exception) -> Response:
        # FastAPI's default handler echoes the input, and answers 500 when it cannot encode it
        # (`Infinity`): only whether the body was refused matters here.
        return Response(status_code=422)

    @app.post("/predict")
    async def predict(body: PredictRequest) -> Response:
        accepted.append(body)
        return Response(status_code=204)

    @app.post("/predict_batch")
    async def predict_batch(body: BatchPredictRequest) -> Response:
        accepted.append(body)
        return Response(status_code=204)

    return app, accepted


@pytest.fixture(scope="module")
def reference() -> Iterator[tuple[TestClient, list[BaseModel]]]:
    app, accepted = _reference_app()
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, accepted


def _fastapi(
    reference: tuple[TestClient, list[BaseModel]],
    model: type[BaseModel],
    body: bytes,
    content_type: str | None,
) -> tuple[bool, Any]:
    """(accepted, the parsed body or the status code)."""
    client, accepted = reference
    path = "/predict" if model is PredictRequest else "/predict_batch"
    headers = {} if content_type is None else {"content-type": content_type}
    r = client.post(path, content=body, headers=headers)
    if r.status_code == 204:
        return True, accepted[-1]
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    return False, r.status_code


def _ours(model: type[BaseModel], body: bytes, content_type: str | None) -> tuple[bool, Any]:
    try:
        return True, parse_body(body, content_type, model)
    except ApiError as exc:
        assert exc.status in (415, 422), exc.status
        return False, exc.code


def _check(
    reference: tuple[TestClient, list[BaseModel]],
    model: type[BaseModel],
    body: bytes,
    content_type: str | None,
) -> None:
    theirs_ok, theirs = _fastapi(reference, model, body, content_type)
    ours_ok, ours = _ours(model, body, content_type)
    assert ours_ok == theirs_ok, f"parse_body: {ours!r}, FastAPI: {theirs!r}"
    if ours_ok:
        assert ours == theirs


@pytest.mark.parametrize(("name", "model", "body"), BODIES, ids=[b[0] for b in BODIES])
def test_parse_body_accepts_and_refuses_what_fastapi_does(
    reference: tuple[TestClient, list[BaseModel]], name: str, model: type[BaseModel], body: bytes
) -> None:
    _check(reference, model, body, JSON)


@pytest.mark.parametrize(("name", "content_type"), CONTENT_TYPES, ids=[c[0] for c in CONTENT_TYPES])
@pytest.mark.parametrize("body", [VALID, b'{"txt": "a"}'], ids=["valid", "invalid"])
def test_parse_body_takes_the_content_types_fastapi_does(
    reference: tuple[TestClient, list[BaseModel]], name: str, content_type: str | None, body: bytes
) -> None:
    _check(reference, PredictRequest, body, content_type)


def test_the_corpus_reaches_every_refusal_of_parse_body() -> None:
    cases = [(model, body, JSON) for _, model, body in BODIES]
    cases += [(PredictRequest, VALID, content_type) for _, content_type in CONTENT_TYPES]
    answers = [_ours(model, body, content_type) for model, body, content_type in cases]
    refusals = {answer for ok, answer in answers if not ok}
    assert refusals == {
        "unsupported_media_type",
        "missing_body",
        "invalid_json",
        "invalid_body",
        "invalid_type",
        "missing_field",
        "unknown_field",
    }
    assert sum(ok for ok, _ in answers) >= 30


def test_no_route_lets_fastapi_parse_its_input() -> None:
    """So FastAPI's own 422 (which echoes the input) is never answered: `parse_body` is the one
    parser, and the routes' other parameters are only the request itself."""
    app = create_app(make_settings())
    assert not [r for r in app.routes if isinstance(r, APIRoute)]  # all of them in `router`
    routes = [r for r in router.routes if isinstance(r, APIRoute)]
    assert {r.path for r in routes} >= {"/v1/predict", "/v1/predict_batch", "/readyz"}
    for route in routes:
        assert route.body_field is None and not _inputs(route.dependant), route.path


def _inputs(dependant: Dependant) -> list[str]:
    """The request values FastAPI would validate for this endpoint and its dependencies."""
    own = (
        dependant.path_params
        + dependant.query_params
        + dependant.header_params
        + dependant.cookie_params
        + dependant.body_params
    )
    return [f.name for f in own] + [n for d in dependant.dependencies for n in _inputs(d)]
