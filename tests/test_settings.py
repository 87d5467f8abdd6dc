"""Settings: secrets mounted from files are cleaned, and a rejected secret is never quoted."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import Settings


def test_given_keys_with_trailing_newlines_when_read_then_they_are_stripped():
    settings = Settings(openai_api_key="sk-abc\n", anthropic_api_key="  ak-1 ", webhook_secret="whsec_x\n",
                        _env_file=None)
    assert settings.openai_api_key.get_secret_value() == "sk-abc"
    assert settings.anthropic_api_key.get_secret_value() == "ak-1"
    assert settings.webhook_secret.get_secret_value() == "whsec_x"


def test_given_a_key_with_control_characters_when_read_then_it_is_refused_without_being_quoted():
    with pytest.raises(ValidationError) as error:
        Settings(openai_api_key="sk-TOPSECRET\x00", _env_file=None)
    assert "TOPSECRET" not in str(error.value)


def test_given_a_completion_window_beyond_what_dramatiq_can_delay_then_it_is_refused():
    with pytest.raises(ValidationError):
        Settings(completion_window_s=8 * 24 * 3600, _env_file=None)


def test_given_an_unknown_appendfsync_policy_then_it_is_refused_and_the_default_is_always():
    with pytest.raises(ValidationError):
        Settings(redis_appendfsync="sometimes", _env_file=None)
    assert Settings(_env_file=None).redis_appendfsync == "always"
