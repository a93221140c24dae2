"""A model artifact, for every provider that loads one: where it is (`MODEL_PATH`, else
`MODELS_DIR/<provider>`) and reading its files (a JSON object, a file's sha256).

Every failure to read is a `ModelLoadError` whose message names the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from ml_prod_api.errors import ModelLoadError
from ml_prod_api.providers.base import ProviderSettings

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def _default_models_dir() -> Path:
    # A checkout (or an editable install) has models/ next to src/; an installed package does
    # not, and then ./models in the working directory is used (the container's WORKDIR).
    beside_source = PROJECT_ROOT / "models"
    return beside_source if beside_source.is_dir() else Path.cwd() / "models"


class ArtifactSettings(ProviderSettings):
    """The settings of a provider that loads an artifact: where the artifact is."""

    # The folder under MODELS_DIR used when MODEL_PATH is unset: the provider's name.
    artifact_folder: ClassVar[str]

    model_path: Path | None = Field(
        default=None,
        description="Model artifact (file or folder); defaults to models/<provider> in the repo.",
    )
    models_dir: Path = Field(
        default_factory=_default_models_dir,
        description="Where models/<provider> artifacts live when MODEL_PATH is unset.",
    )

    @property
    def resolved_model_path(self) -> Path:
        if self.model_path is not None:
            return self.model_path
        return self.models_dir / self.artifact_folder


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


def head_thresholds(metadata: dict[str, Any]) -> dict[str, float]:
    """The decision threshold of each extra head (`metadata.json`'s `heads`) that records one."""
    heads = metadata.get("heads")
    if not isinstance(heads, dict):
        return {}
    return {
        str(name): float(head["threshold"])
        for name, head in heads.items()
        if isinstance(head, dict) and isinstance(head.get("threshold"), int | float)
    }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
