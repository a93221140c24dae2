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
        ("MAX_TEXTS_PER_REQUEST", "lots", "valid integer"),
        ("MAX_BATCH_SIZE", "lots", "valid integer"),  # an old name is named as it was set
        ("QUEUE_BATCH_MAX_SIZE", "0", "greater than or equal to 1"),
        ("BATCH_MAX_SIZE", "0", "greater than or equal to 1"),
        ("QUEUE_BATCH_MAX_WAIT_MS", "5000", "less than or equal to 1000"),
        ("BATCH_MAX_WAIT_MS", "5000", "less than or equal to 1000"),
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
    env.write_text("MODEL_PROVIDER=stub\nMAX_TEXTS_PER_REQUEST=7\n")
    s = load_settings(_env_file=env)
    assert s.max_texts_per_request == 7


def test_body_limit_is_derived_from_the_text_limits() -> None:
    s = make_settings(max_text_length=100, max_texts_per_request=10)
    assert s.max_body_bytes == 10 * 100 * 6 + 64 * 1024
    assert make_settings(max_body_bytes=123).max_body_bytes == 123


def test_default_model_path_is_per_provider() -> None:
    s = make_settings(model_provider="tfidf")
    assert s.provider_settings.resolved_model_path == ROOT / "models" / "tfidf"  # type: ignore[attr-defined]


def test_redacted_hides_secrets() -> None:
    s = make_settings()
    data = s.redacted()
    assert data["model_provider"] == "stub"


@pytest.mark.parametrize(
    ("provider", "env", "value", "needle"),
    [
        ("stub", "STUB_DELAY_MS", "soon", "valid number"),
        ("onnx", "WINDOW_STRIDE", "-1", "greater than or equal to 0"),
        ("onnx", "INPUT_NORMALIZATION", "stem", "'none' or 'deobfuscate'"),
        ("transformer", "MAX_SEQ_LENGTH", "4", "greater than or equal to 8"),
        ("onnx", "ONNX_INTRA_OP_THREADS", "many", "valid integer"),
        ("transformer", "TORCH_THREADS", "999", "less than or equal to 256"),
    ],
)
def test_a_providers_own_settings_give_the_same_clear_line(
    monkeypatch: pytest.MonkeyPatch, provider: str, env: str, value: str, needle: str
) -> None:
    # Declared by the provider, read by the same names from the same places.
    monkeypatch.setenv("MODEL_PROVIDER", provider)
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    message = str(info.value)
    assert message.startswith(f"invalid setting {env}={value!r}: ")
    assert needle in message


def test_a_providers_own_settings_come_from_every_source(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert make_settings(stub_delay_ms=7).provider_settings.stub_delay_ms == 7  # type: ignore[attr-defined]
    monkeypatch.setenv("STUB_FAIL_MARKER", "boom")
    dotenv = tmp_path / ".env"
    dotenv.write_text("MODEL_PROVIDER=stub\nSTUB_LOAD_ERROR=broken\n")
    s = load_settings(_env_file=dotenv)
    assert s.provider_settings.stub_fail_marker == "boom"  # type: ignore[attr-defined]
    assert s.provider_settings.stub_load_error == "broken"  # type: ignore[attr-defined]
    # The start-up log's settings dump shows them beside the service's own.
    dump = s.redacted()
    assert dump["stub_fail_marker"] == "boom" and dump["max_text_length"] == 5000


def test_the_registry_imports_no_settings() -> None:
    code = (
        "import sys; import ml_prod_api.providers.registry; "
        "assert 'ml_prod_api.settings' not in sys.modules, 'registry imports settings'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr


def test_registry_lists_valid_names_for_an_unknown_one() -> None:
    assert provider_names() == ["stub", "tfidf", "transformer", "onnx", "cascade"]
    bogus = Settings.model_construct(model_provider="nope")
    with pytest.raises(UnknownProvider) as info:
        create_provider(bogus)
    assert "stub, tfidf, transformer, onnx, cascade" in str(info.value)


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
        f"must be one of {', '.join(provider_names())}"
    ]
    assert "cascade" in provider_names()


# --- renamed settings: the new names, and the old ones that still work --------------------------

RENAMED = [
    # (old name, new name, field, value)
    ("MAX_BATCH_SIZE", "MAX_TEXTS_PER_REQUEST", "max_texts_per_request", "7"),
    ("BATCH_MAX_SIZE", "QUEUE_BATCH_MAX_SIZE", "queue_batch_max_size", "3"),
    ("BATCH_MAX_WAIT_MS", "QUEUE_BATCH_MAX_WAIT_MS", "queue_batch_max_wait_ms", "2.5"),
]


@pytest.mark.parametrize(("old", "new", "field", "value"), RENAMED)
def test_a_renamed_setting_is_read_by_its_new_name(
    monkeypatch: pytest.MonkeyPatch, old: str, new: str, field: str, value: str
) -> None:
    monkeypatch.setenv(new, value)
    s = load_settings(_env_file=None)
    assert getattr(s, field) == float(value)
    assert s.renamed_in_use == []
    assert new.lower() in s.redacted() and old.lower() not in s.redacted()


@pytest.mark.parametrize(("old", "new", "field", "value"), RENAMED)
def test_a_renamed_setting_is_still_read_by_its_old_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, old: str, new: str, field: str, value: str
) -> None:
    monkeypatch.setenv(old, value)
    s = load_settings(_env_file=None)
    assert getattr(s, field) == float(value)
    assert s.renamed_in_use == [(old, new)]
    monkeypatch.delenv(old)
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"{old}={value}\n")
    s = load_settings(_env_file=dotenv)
    assert getattr(s, field) == float(value)
    assert s.renamed_in_use == [(old, new)]


def test_the_old_names_reach_the_request_limit_the_body_limit_and_the_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastapi.testclient import TestClient

    from ml_prod_api.api import create_app
    from ml_prod_api.http.state import app_state
    from tests.conftest import wait_until_loaded

    monkeypatch.setenv("MODEL_PROVIDER", "stub")
    monkeypatch.setenv("DRAIN_GRACE_SECONDS", "0")
    monkeypatch.setenv("MAX_BATCH_SIZE", "2")
    monkeypatch.setenv("BATCH_MAX_SIZE", "5")
    monkeypatch.setenv("BATCH_MAX_WAIT_MS", "1")
    s = load_settings(_env_file=None)
    assert s.max_body_bytes == 2 * s.max_text_length * 6 + 64 * 1024
    with TestClient(create_app(s)) as c:
        wait_until_loaded(c)
        service = app_state(c.app).service  # type: ignore[arg-type]
        assert service.batch_max_size == 5
        assert c.post("/v1/predict_batch", json={"texts": ["a", "b"]}).status_code == 200
        r = c.post("/v1/predict_batch", json={"texts": ["a", "b", "c"]})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "batch_too_large"
    assert "the limit is 2 (MAX_TEXTS_PER_REQUEST)" in r.json()["error"]["message"]


@pytest.mark.parametrize(("old", "new", "field", "value"), RENAMED)
def test_an_old_name_set_with_its_new_name_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, old: str, new: str, field: str, value: str
) -> None:
    # Even with equal values: which one a later edit changes would be anyone's guess.
    monkeypatch.setenv(old, value)
    monkeypatch.setenv(new, value)
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    message = str(info.value)
    assert message == (
        f"invalid settings: {old} and {new} are both set; {old} is the old name of {new}: "
        f"set only {new}"
    )
    # The same when the two come from different places (the old name from a .env file).
    monkeypatch.delenv(old)
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"{old}={value}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=dotenv)
    assert str(info.value) == message


def test_each_old_name_logs_one_deprecation_line_at_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import json

    from fastapi.testclient import TestClient

    from ml_prod_api.api import create_app
    from ml_prod_api.logs import make_formatter

    monkeypatch.setenv("MODEL_PROVIDER", "stub")
    monkeypatch.setenv("DRAIN_GRACE_SECONDS", "0")
    monkeypatch.setenv("MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("BATCH_MAX_WAIT_MS", "1")
    monkeypatch.setenv("QUEUE_BATCH_MAX_SIZE", "4")  # a new name: nothing to say
    with TestClient(create_app(load_settings(_env_file=None))):
        pass
    records = [r for r in caplog.records if getattr(r, "event", None) == "deprecated_setting"]
    lines = [json.loads(make_formatter().format(r)) for r in records]
    assert [(line["old_name"], line["new_name"]) for line in lines] == [
        ("MAX_BATCH_SIZE", "MAX_TEXTS_PER_REQUEST"),
        ("BATCH_MAX_WAIT_MS", "QUEUE_BATCH_MAX_WAIT_MS"),
    ]
    assert lines[0]["level"] == "WARNING"
    assert lines[0]["message"] == (
        "setting MAX_BATCH_SIZE is deprecated: it was renamed MAX_TEXTS_PER_REQUEST"
    )
