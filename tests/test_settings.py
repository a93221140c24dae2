"""Settings validation and the provider registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ml_prod_api.providers import UnknownProvider, create_provider, provider_names
from ml_prod_api.settings import ConfigError, Settings, load_settings
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("MODEL_PROVIDER", "bert-magic", "stub, tfidf, transformer, onnx"),
        ("TOXIC_THRESHOLD", "1.5", "less than or equal to 1"),
        ("TOXIC_THRESHOLD", "-0.1", "greater than or equal to 0"),
        ("MAX_TEXT_LENGTH", "0", "greater than or equal to 1"),
        ("MAX_BATCH_SIZE", "lots", "valid integer"),
        ("LOG_LEVEL", "LOUD", "DEBUG"),
        ("STARTUP_FAIL_FAST", "perhaps", "boolean"),
        ("REQUEST_TIMEOUT_MS", "0", "greater than or equal to 1"),
        ("HEADER_READ_TIMEOUT_SECONDS", "0", "greater than 0"),
        ("MODEL_INSTANCES", "0", "greater than or equal to 1"),
    ],
)
def test_invalid_values_give_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    message = str(info.value)
    assert "\n" not in message
    assert env in message
    assert repr(value) in message
    assert needle in message


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_PROVIDER", "STUB")
    monkeypatch.setenv("MAX_TEXT_LENGTH", "100")
    monkeypatch.setenv("log_level", "debug")
    s = load_settings(_env_file=None)
    assert s.model_provider == "stub"
    assert s.max_text_length == 100
    assert s.log_level == "DEBUG"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("MODEL_PROVIDER=stub\nMAX_BATCH_SIZE=7\n")
    s = load_settings(_env_file=env)
    assert s.max_batch_size == 7


def test_body_limit_is_derived_from_the_text_limits() -> None:
    s = make_settings(max_text_length=100, max_batch_size=10)
    assert s.max_body_bytes == 10 * 100 * 6 + 64 * 1024
    assert make_settings(max_body_bytes=123).max_body_bytes == 123


def test_default_model_path_is_per_provider() -> None:
    s = make_settings(model_provider="tfidf")
    assert s.resolved_model_path == ROOT / "models" / "tfidf"


def test_redacted_hides_secrets() -> None:
    s = make_settings()
    data = s.redacted()
    assert data["model_provider"] == "stub"


def test_registry_lists_valid_names_for_an_unknown_one() -> None:
    assert provider_names() == ["stub", "tfidf", "transformer", "onnx"]
    bogus = Settings.model_construct(model_provider="nope")
    with pytest.raises(UnknownProvider) as info:
        create_provider(bogus)
    assert "stub, tfidf, transformer, onnx" in str(info.value)


def test_registry_builds_the_stub() -> None:
    provider = create_provider(make_settings(model_version="custom-9"))
    provider.load()
    assert provider.name == "stub"
    assert provider.version == "custom-9"
    assert len(provider.predict_batch(["a", "b"])) == 2


def test_invalid_env_stops_the_uvicorn_command_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import ml_prod_api.api"],
        env={"MODEL_PROVIDER": "nope", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "ml-prod-api: configuration error: invalid setting MODEL_PROVIDER='nope': "
        "must be one of stub, tfidf, transformer, onnx"
    ]
