"""The one Settings object, read from the environment (and an optional `.env` file).

Every value is validated when the app is built; an invalid value becomes one `ConfigError` line
that names the variable, the value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = PROJECT_ROOT / "models"

# JSON may escape one character as `\uXXXX` (6 bytes); the derived body limit allows that for a
# full batch of maximal texts, plus room for the JSON structure.
_BYTES_PER_CHAR_ESCAPED = 6
_BODY_OVERHEAD_BYTES = 64 * 1024


class ConfigError(Exception):
    """A setting is invalid; the message is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        protected_namespaces=(),
    )

    # --- model -------------------------------------------------------------------------------
    model_provider: str = Field(
        default="stub", description="Model provider: stub, tfidf, transformer or onnx."
    )
    model_path: Path | None = Field(
        default=None,
        description="Model artifact (file or folder); defaults to models/<provider> in the repo.",
    )
    model_version: str | None = Field(
        default=None, description="Override of the model version reported in responses."
    )
    toxic_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Decision threshold for `label`; unset: the model's own, else 0.5.",
    )
    startup_fail_fast: bool = Field(
        default=False,
        description="Exit non-zero when the model fails to load, instead of staying up unready.",
    )

    # --- validation limits -------------------------------------------------------------------
    max_text_length: int = Field(default=5000, ge=1, le=1_000_000)
    max_batch_size: int = Field(default=64, ge=1, le=10_000)
    max_body_bytes: int | None = Field(default=None, ge=1)

    # --- serving: the inference queue --------------------------------------------------------
    batch_max_size: int = Field(default=64, ge=1, le=10_000)
    batch_max_wait_ms: float = Field(default=0.0, ge=0.0, le=1000.0)
    queue_max_items: int = Field(default=2048, ge=1)
    request_timeout_ms: int = Field(default=10_000, ge=1)

    # --- lifecycle ---------------------------------------------------------------------------
    drain_grace_seconds: float = Field(default=3.0, ge=0.0, le=300.0)
    shutdown_timeout_seconds: float = Field(default=20.0, ge=0.0, le=600.0)

    # --- stub provider (deterministic, for tests and fault drills) ----------------------------
    stub_delay_ms: float = Field(default=0.0, ge=0.0, le=600_000.0)
    stub_fail_marker: str | None = Field(
        default=None, description="A text containing this marker makes the stub raise."
    )
    stub_load_error: str | None = Field(
        default=None, description="Makes the stub's load() fail with this reason."
    )

    # --- logging ----------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    # --- server (used by `ml-prod-api serve`) -------------------------------------------------
    host: str = "0.0.0.0"  # noqa: S104 - a container must listen on all interfaces
    port: int = Field(default=8000, ge=1, le=65535)
    web_concurrency: int = Field(default=1, ge=1, le=64, description="Worker processes.")
    timeout_keep_alive: int = Field(default=5, ge=1, le=300)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("model_provider", mode="before")
    @classmethod
    def _known_provider(cls, value: Any) -> Any:
        from ml_prod_api.providers import provider_names

        if isinstance(value, str):
            value = value.strip().lower()
            if value not in provider_names():
                raise ValueError(f"must be one of {', '.join(provider_names())}")
        return value

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if self.max_body_bytes is None:
            self.max_body_bytes = (
                self.max_batch_size * self.max_text_length * _BYTES_PER_CHAR_ESCAPED
                + _BODY_OVERHEAD_BYTES
            )
        return self

    @property
    def body_limit(self) -> int:
        assert self.max_body_bytes is not None  # set by _derive
        return self.max_body_bytes

    @property
    def resolved_model_path(self) -> Path:
        return self.model_path if self.model_path is not None else MODELS_DIR / self.model_provider

    def redacted(self) -> dict[str, Any]:
        """The effective settings, safe to log (secrets replaced)."""
        data = self.model_dump(mode="json")
        for key in list(data):
            if any(word in key for word in ("key", "secret", "password", "token")) and data[key]:
                data[key] = "***"
        return data


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment, turning validation errors into one clear line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        var = "_".join(str(p) for p in err["loc"]).upper() or "SETTINGS"
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f"={value!r}"
        reason = err["msg"].removeprefix("Value error, ")
        parts.append(f"invalid setting {var}{shown}: {reason}")
    return "; ".join(parts)
