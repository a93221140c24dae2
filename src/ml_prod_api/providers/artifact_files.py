"""Reading a model artifact's files, for every provider: a JSON object, a file's sha256.

Every failure is a `ModelLoadError` whose message names the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ml_prod_api.errors import ModelLoadError


def read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ModelLoadError(f"{what} not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{what} is not valid JSON: {path} ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{what} must hold a JSON object: {path}")
    return data


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
