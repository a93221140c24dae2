"""Checks that depend on settings (lengths, batch size), beyond what the schema can say."""

from __future__ import annotations

from collections.abc import Sequence

from ml_prod_api.http.errors import ApiError

# "Not whitespace only", as a JSON-Schema pattern that means the same under ECMA and Python
# regex rules: Python's `str.isspace` set written out (`\S` differs between the two for
# characters such as U+001C, which schemathesis found).
_SPACE_CLASS = (
    "\\t-\\r\\u001c- \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)
NOT_ONLY_WHITESPACE = f"[^{_SPACE_CLASS}]"


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


def check_batch(texts: Sequence[str], max_batch: int, max_length: int) -> None:
    if not texts:
        raise ApiError(422, "empty_batch", "field 'texts' must hold at least one text")
    if len(texts) > max_batch:
        raise ApiError(
            422,
            "batch_too_large",
            f"field 'texts' has {len(texts)} items; the limit is {max_batch} (MAX_BATCH_SIZE)",
        )
    for i, text in enumerate(texts):
        check_text(text, f"texts[{i}]", max_length)
