"""ApiSettings: keys without defaults, placeholder refusal outside development, env parsing, caching."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service import settings as settings_module
from service.settings import ApiSettings


def test_keys_are_required_and_parsed_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOWCAST_API_KEYS", raising=False)
    with pytest.raises(ValidationError, match="api_keys"):
        ApiSettings()
    monkeypatch.setenv("NOWCAST_API_KEYS", "")
    with pytest.raises(ValidationError, match="at least one API key is required"):
        ApiSettings()
    monkeypatch.setenv("NOWCAST_API_KEYS", "first-key-0123456789, second-key-0123456789")
    keys = [k.get_secret_value() for k in ApiSettings().api_keys]
    assert keys == ["first-key-0123456789", "second-key-0123456789"]
    monkeypatch.setenv("NOWCAST_API_KEYS", '["json-key-0123456789"]')
    assert [k.get_secret_value() for k in ApiSettings().api_keys] == ["json-key-0123456789"]


@pytest.mark.parametrize("key", ["changethis", "short-key"])
def test_placeholder_keys_refused_outside_development(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv("NOWCAST_API_KEYS", key)
    for environment in ("production", "staging"):
        monkeypatch.setenv("NOWCAST_ENVIRONMENT", environment)
        with pytest.raises(ValidationError, match="refused outside development") as error:
            ApiSettings()
        assert key not in str(error.value)  # the secret is not echoed into logs
    monkeypatch.setenv("NOWCAST_ENVIRONMENT", "development")
    assert ApiSettings().api_keys[0].get_secret_value() == key
    monkeypatch.setenv("NOWCAST_ENVIRONMENT", "testing")
    with pytest.raises(ValidationError, match="environment"):
        ApiSettings()


def test_get_settings_is_cached_and_inherits_worker_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOWCAST_API_KEYS", "cached-key-0123456789")
    monkeypatch.setenv("NOWCAST_MAX_UPLOAD_MB", "2")
    monkeypatch.setenv("NOWCAST_INPUT_SCANS", "7")
    settings_module.get_settings.cache_clear()
    try:
        first = settings_module.get_settings()
        assert settings_module.get_settings() is first
        assert first.max_request_bytes == 2 * 1024 * 1024 and first.input_scans == 7
        assert first.inputs_dir == first.data_dir / "inputs"
    finally:
        settings_module.get_settings.cache_clear()
