"""Request bodies: JSON parsing into the pydantic model, and the checks that depend on settings
(lengths, batch size), beyond what the schema can say."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from ml_prod_api.http.errors import ApiError, validation_error

Body = TypeVar("Body", bound=BaseModel)

# "Not whitespace only", as a JSON-Schema pattern that means the same under ECMA and Python
# regex rules: Python's `str.isspace` set written out (`\S` differs between the two for
# characters such as U+001C, which schemathesis found).
_SPACE_CLASS = (
    "\\t-\\r\\u001c- \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)
NOT_ONLY_WHITESPACE = f"[^{_SPACE_CLASS}]"


def is_json_content_type(value: str | None) -> bool:
    if not value:
        return False
    mime = value.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


def check_text(text: str, field: str, max_length: int) -> None:
    if not text or text.isspace():
        raise ApiError(422, "empty_text", f"field '{field}' must not be empty or whitespace only")
    if len(text) > max_length:
        raise ApiError(
            422,
            "text_too_long",
            f"field '{field}' has {len(text)} characters; the limit is {max_length} "
            "(MAX_TEXT_LENGTH)",
        )


def check_batch(
    texts: Sequence[str], max_texts: int, max_length: int, field: str = "texts"
) -> None:
    if not texts:
        raise ApiError(422, "empty_batch", f"field '{field}' must hold at least one text")
    if len(texts) > max_texts:
        raise ApiError(
            422,
            "batch_too_large",
            f"field '{field}' has {len(texts)} items; the limit is {max_texts} "
            "(MAX_TEXTS_PER_REQUEST)",
        )
    for i, text in enumerate(texts):
        check_text(text, f"{field}[{i}]", max_length)


def parse_body(raw: bytes, content_type: str | None, model: type[Body]) -> Body:
    """The request body as `model`, or the ApiError a client can act on.

    Done here rather than by FastAPI's body parameter: FastAPI's request machinery (body field,
    dependency solving) is the largest share of a prediction's cost under load. The semantics
    are FastAPI's: the stdlib JSON decoder (so a lone surrogate escape is still accepted), an
    empty or `null` body is a missing body, then pydantic validation; the bodies both accept
    and refuse are the same (tests/test_parse_body_parity.py).
    """
    if not is_json_content_type(content_type):
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
    if not raw:
        raise ApiError(422, "missing_body", "request body is required")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(
            422, "invalid_json", f"request body is not valid JSON at byte {exc.pos}"
        ) from None
    except UnicodeDecodeError:
        raise ApiError(422, "invalid_json", "request body is not valid UTF-8") from None
    except RecursionError:
        raise ApiError(422, "invalid_json", "request body JSON is nested too deeply") from None
    except ValueError:  # int() refuses numbers of over 4,300 digits
        raise ApiError(
            422, "invalid_json", "request body is not valid JSON (a number is too large to parse)"
        ) from None
    if data is None:
        raise ApiError(422, "missing_body", "request body is required")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        raise validation_error(errors, list(model.model_fields)) from None
