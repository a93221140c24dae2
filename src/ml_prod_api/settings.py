"""The one Settings object, read from the environment (and an optional `.env` file).

Every value is validated when the app is built; an invalid value becomes one `ConfigError` line
that names the variable, the value and what is allowed. Every variable of the service, with its
check, is in this file; a provider's own variables (its model file, windows, threads) are declared
by the provider (a `ProviderSettings` model in its module), and `Settings` reads the chosen
provider's model from the same sources, as `provider_settings`. Over 300 lines on purpose: one
place for every service variable.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode

from ml_prod_api.errors import ModelLoadError
from ml_prod_api.providers.base import SETTINGS_SOURCES, ProviderSettings
from ml_prod_api.providers.registry import provider_names, provider_settings_model

# JSON may escape one character as `\uXXXX` (6 bytes); the derived body limit allows that for a
# full batch of maximal texts, plus room for the JSON structure.
_BYTES_PER_CHAR_ESCAPED = 6
_BODY_OVERHEAD_BYTES = 64 * 1024


_SECRET_SETTINGS = ("api_keys",)

# Renamed settings: the field that reads the old environment name -> the field of the new name.
_RENAMED = {
    "old_max_batch_size": "max_texts_per_request",
    "old_batch_max_size": "queue_batch_max_size",
    "old_batch_max_wait_ms": "queue_batch_max_wait_ms",
}

# Value types shared by a renamed setting and its old name, so both are checked alike.
TextsPerRequest = Annotated[int, Field(ge=1, le=10_000)]
QueueBatchMaxSize = Annotated[int, Field(ge=1, le=10_000)]
QueueBatchMaxWaitMs = Annotated[float, Field(ge=0.0, le=1000.0)]


class ConfigError(Exception):
    """A setting is invalid; the message is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SETTINGS_SOURCES

    # --- model -------------------------------------------------------------------------------
    model_provider: str = Field(
        default="tfidf", description="Model provider: a name in `providers/registry.py`."
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
    max_texts_per_request: TextsPerRequest = Field(
        default=64, description="Texts per /v1/predict_batch or /v1/moderations request."
    )
    max_body_bytes: int | None = Field(default=None, ge=1)

    # --- serving: the inference queue --------------------------------------------------------
    model_instances: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Copies of the model, each with its own inference thread, fed by one queue.",
    )
    queue_batch_max_size: QueueBatchMaxSize = Field(
        default=64, description="Texts gathered into one model call by the inference queue."
    )
    queue_batch_max_wait_ms: QueueBatchMaxWaitMs = Field(
        default=0.0, description="How long the queue waits for more requests to fill a batch."
    )
    queue_batch_max_chars: int = Field(
        default=65_536,
        ge=256,
        le=10_000_000,
        description="Characters (plus 32 a text) in one model call: a longer request is scored "
        "in several calls, with its deadline checked between them; bounds a call's memory.",
    )
    queue_max_items: int = Field(default=2048, ge=1)
    request_timeout_ms: int = Field(default=10_000, ge=1)
    body_read_timeout_seconds: float = Field(
        default=10.0, gt=0.0, le=600.0, description="A request body must arrive within this."
    )
    header_read_timeout_seconds: float = Field(
        default=10.0,
        gt=0.0,
        le=600.0,
        description="The request line and headers must arrive within this.",
    )
    max_header_bytes: int = Field(
        default=16_384,
        ge=1024,
        le=1_048_576,
        description="The request line and headers together; larger: 431 and the connection "
        "closed (uvicorn's own limit for its h11 protocol is the same 16 KiB).",
    )
    max_in_flight_requests: int = Field(
        default=256, ge=1, description="Prediction requests in flight before an immediate 429."
    )
    max_body_readers_per_client: int = Field(
        default=32,
        ge=1,
        le=100_000,
        description="Requests from one client (API key name, else address) whose body is still "
        "arriving; one more gets an immediate 429 too_many_uploads and its connection closed.",
    )

    # --- lifecycle ---------------------------------------------------------------------------
    drain_grace_seconds: float = Field(default=3.0, ge=0.0, le=300.0)
    shutdown_timeout_seconds: float = Field(default=20.0, ge=0.0, le=600.0)

    # --- security: API keys, rate limits, proxies, CORS, docs --------------------------------
    api_keys: str | None = Field(
        default=None, description="Comma-separated API keys (`name:key` gives a key a name)."
    )
    api_keys_file: Path | None = Field(
        default=None, description="File with one API key per line (e.g. a mounted Secret)."
    )
    api_keys_reload_seconds: float = Field(default=5.0, ge=0.0, le=3600.0)
    metrics_require_key: bool = False
    docs_enabled: bool = True
    rate_limit: str | None = Field(
        default=None, description="e.g. `100/minute` or `10/second;1000/hour`; unset: no limit."
    )
    rate_limit_overrides: dict[str, str] = Field(
        default_factory=dict,
        description='JSON map of key name to limit: {"partner": "1000/minute"}',
    )
    rate_limit_storage_uri: str = "memory://"
    rate_limit_strategy: Literal["fixed-window", "moving-window", "sliding-window-counter"] = (
        "sliding-window-counter"
    )
    rate_limit_fail_open: bool = True
    rate_limit_timeout_ms: int = Field(default=250, ge=1, le=10_000)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_credentials: bool = False

    # --- logging ----------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    # --- server (used by `ml-prod-api serve`) -------------------------------------------------
    # A container must listen on all interfaces; bind to 127.0.0.1 with HOST for local use.
    host: str = "0.0.0.0"  # noqa: S104  # nosec B104
    port: int = Field(default=8000, ge=1, le=65535)
    web_concurrency: int = Field(default=1, ge=1, le=64, description="Worker processes.")
    timeout_keep_alive: int = Field(default=5, ge=1, le=300)

    # --- old names of renamed settings --------------------------------------------------------
    # Read only to be moved to their new names, with a warning at start (`renamed_in_use`).
    # Fields of their own rather than `AliasChoices` on the new fields: pydantic-settings files an
    # environment value under the first alias whichever name was set, so a validator could not
    # tell an old name from a new one, nor see both set at once.
    old_max_batch_size: TextsPerRequest | None = Field(
        default=None, validation_alias="max_batch_size", exclude=True
    )
    old_batch_max_size: QueueBatchMaxSize | None = Field(
        default=None, validation_alias="batch_max_size", exclude=True
    )
    old_batch_max_wait_ms: QueueBatchMaxWaitMs | None = Field(
        default=None, validation_alias="batch_max_wait_ms", exclude=True
    )

    # The chosen provider's own settings (see `provider_settings`).
    _provider_settings: ProviderSettings | None = PrivateAttr(default=None)

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        try:
            model = provider_settings_model(self.model_provider)
        except ModelLoadError:
            # The provider cannot be imported: its load fails with that reason, as any load does.
            return
        # The same sources: these keyword arguments (source options such as `_env_file`
        # included), the environment and the `.env` file. A ValidationError names the variable.
        self._provider_settings = model(**values)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("model_provider", mode="before")
    @classmethod
    def _known_provider(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            if value not in provider_names():
                raise ValueError(f"must be one of {', '.join(provider_names())}")
        return value

    @field_validator("trusted_proxies", "cors_allow_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return value

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("rate_limit")
    @classmethod
    def _parse_limit(cls, value: str | None) -> str | None:
        if value is not None:
            _check_limit(value)
        return value

    @field_validator("rate_limit_overrides")
    @classmethod
    def _parse_overrides(cls, value: dict[str, str]) -> dict[str, str]:
        for limit in value.values():
            _check_limit(limit)
        return value

    @field_validator("api_keys_file")
    @classmethod
    def _keys_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("file not found")
        return value

    @model_validator(mode="after")
    def _cors_wildcard_with_credentials(self) -> Settings:
        if "*" in self.cors_allow_origins and self.cors_allow_credentials:
            raise ValueError(
                "CORS_ALLOW_ORIGINS='*' cannot be combined with CORS_ALLOW_CREDENTIALS=true; "
                "list the allowed origins explicitly"
            )
        return self

    @model_validator(mode="after")
    def _move_renamed(self) -> Settings:
        # Runs before `_derive`, which reads the new names.
        for old, new in _RENAMED.items():
            value = getattr(self, old)
            if value is None:
                continue
            if new in self.model_fields_set:
                old_env, new_env = _env_name(old), _env_name(new)
                raise ValueError(
                    f"{old_env} and {new_env} are both set; {old_env} is the old name of "
                    f"{new_env}: set only {new_env}"
                )
            setattr(self, new, value)
        return self

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if self.max_body_bytes is None:
            self.max_body_bytes = (
                self.max_texts_per_request * self.max_text_length * _BYTES_PER_CHAR_ESCAPED
                + _BODY_OVERHEAD_BYTES
            )
        return self

    @property
    def body_limit(self) -> int:
        assert self.max_body_bytes is not None  # set by _derive
        return self.max_body_bytes

    @property
    def renamed_in_use(self) -> list[tuple[str, str]]:
        """(old, new) environment names of the renamed settings that were set by the old name."""
        return [
            (_env_name(old), _env_name(new))
            for old, new in _RENAMED.items()
            if getattr(self, old) is not None
        ]

    @property
    def provider_settings(self) -> ProviderSettings:
        """The chosen provider's own settings, read with these settings' sources."""
        if self._provider_settings is None:
            # Built without __init__ (`model_construct`), or the provider could not be imported
            # (then this raises the ModelLoadError that says so).
            self._provider_settings = provider_settings_model(self.model_provider)()
        return self._provider_settings

    def redacted(self) -> dict[str, Any]:
        """The effective settings, the provider's own included, safe to log (secrets replaced)."""
        data = self.model_dump(mode="json")
        if self._provider_settings is not None:
            data.update(self._provider_settings.model_dump(mode="json"))
        for key in _SECRET_SETTINGS:
            if data.get(key):
                data[key] = "***"
        # A Redis URI may carry a password: redis://:secret@host:6379/0
        data["rate_limit_storage_uri"] = re.sub(
            r"//[^@/]*@", "//***@", data["rate_limit_storage_uri"]
        )
        return data


def _env_name(field: str) -> str:
    info: FieldInfo = Settings.model_fields[field]
    alias = info.validation_alias
    return (alias if isinstance(alias, str) else field).upper()


def _check_limit(value: str) -> None:
    from limits import parse_many

    try:
        parsed = parse_many(value)
    except ValueError:
        parsed = []
    if not parsed:
        raise ValueError("must be like '100/minute' or '10/second;1000/hour'")


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
        if not err["loc"]:  # a rule across settings names its variables itself
            parts.append(f"invalid settings: {reason}")
            continue
        parts.append(f"invalid setting {var}{shown}: {reason}")
    return "; ".join(parts)
