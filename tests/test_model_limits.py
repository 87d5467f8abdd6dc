"""Which limit of BATCHLINE_MODEL_LIMITS a model call meets, and which settings are refused."""

from __future__ import annotations

import os
import subprocess

import pytest
from pydantic import ValidationError

from app.model_limits import LimitTable, ModelLimit
from app.settings import Settings, invalid_settings_message
from tests.support.processes import BIN

EXACT, ENDPOINT, PROVIDER, DEFAULT = (ModelLimit(max_streams=n) for n in (1, 2, 3, 4))


def _table() -> LimitTable:
    return LimitTable({"openai/gpt-4o-mini": EXACT, "http://vllm.internal:8000/v1/": ENDPOINT,
                       "anthropic/*": PROVIDER, "*": DEFAULT})


def test_given_a_handle_an_endpoint_and_wildcards_when_matched_then_the_most_specific_key_wins():
    table = _table()
    assert table.match("openai/gpt-4o-mini", "http://vllm.internal:8000/v1").limit is EXACT
    assert table.match("openai/llama", "http://vllm.internal:8000/v1").limit is ENDPOINT
    assert table.match("anthropic/claude-3-5-haiku", None).limit is PROVIDER
    assert table.match("openai/gpt-4o", "https://api.openai.com/v1").limit is DEFAULT


def test_given_a_wildcard_when_two_models_match_it_then_each_has_its_own_pool_and_an_endpoint_is_one_pool():
    table = _table()
    assert table.match("anthropic/a", None).name == "anthropic/a"
    assert table.match("anthropic/b", None).name == "anthropic/b"
    assert table.match("openai/x", "http://vllm.internal:8000/v1/").name == "http://vllm.internal:8000/v1"
    assert table.match("openai/y", "http://vllm.internal:8000/v1").name == "http://vllm.internal:8000/v1"


def test_given_an_endpoint_key_in_other_case_when_matched_then_its_scheme_and_host_match_in_any_case():
    table = LimitTable({"HTTP://vLLM.Internal:8000/v1": ENDPOINT})
    assert table.match("openai/llama", "http://vllm.internal:8000/v1/").limit is ENDPOINT
    assert table.match("openai/llama", "http://vllm.internal:8000/V1") is None  # a path is case-sensitive


def test_given_an_endpoint_with_credentials_when_matched_then_the_pool_is_named_without_them():
    """The pool's name goes into Redis key names and the pause log line: never a secret."""
    table = LimitTable({"https://vllm.internal/v1": ENDPOINT})
    bucket = table.match("openai/llama", "https://batch:s3cret-token@vllm.internal/v1")
    assert bucket.limit is ENDPOINT
    assert bucket.name == "https://vllm.internal/v1"
    keyed = LimitTable({"https://batch:s3cret-token@vllm.internal/v1": ENDPOINT})
    assert keyed.match("openai/llama", "https://vllm.internal/v1").name == "https://vllm.internal/v1"


def test_given_no_matching_key_when_matched_then_the_call_has_no_limit():
    assert LimitTable({"openai/gpt-4o-mini": EXACT}).match("openai/gpt-4o", None) is None
    assert not LimitTable({})


def test_given_the_setting_as_json_in_the_environment_when_read_then_it_is_parsed(monkeypatch):
    monkeypatch.setenv("BATCHLINE_MODEL_LIMITS", '{"openai/gpt-4o-mini": {"max_streams": 50, '
                                                 '"requests_per_minute": 500, "tokens_per_minute": 200000}}')
    limit = Settings(_env_file=None).model_limits["openai/gpt-4o-mini"]
    assert (limit.max_streams, limit.requests_per_minute, limit.tokens_per_minute) == (50, 500, 200000)


@pytest.mark.parametrize("table", [{"gpt-4o-mini": {"max_streams": 5}}, {"openai/x": {"max_stream": 5}},
                                   {"openai/x": {"max_streams": 0}}, {"openai/gpt-4*": {"max_streams": 5}},
                                   {"*/gpt-4o-mini": {"max_streams": 5}}, {"OpenAI/gpt-4o-mini": {"max_streams": 5}},
                                   {"azure/*": {"max_streams": 5}}])
def test_given_a_key_that_can_never_match_or_an_unknown_or_zero_figure_then_the_setting_is_refused(table):
    with pytest.raises(ValidationError):
        Settings(model_limits=table, _env_file=None)


@pytest.mark.parametrize("value", ["{not json", "{'openai/*': {}}"])
def test_given_a_setting_that_is_not_json_when_read_then_it_is_a_settings_error_naming_it(monkeypatch, value):
    monkeypatch.setenv("BATCHLINE_MODEL_LIMITS", value)
    with pytest.raises(ValidationError) as error:
        Settings(_env_file=None)
    assert invalid_settings_message(error.value) == ("Invalid settings: BATCHLINE_MODEL_LIMITS; check the environment "
                                                     "and .env.")


def test_given_an_empty_setting_when_read_then_there_is_no_limit(monkeypatch):
    monkeypatch.setenv("BATCHLINE_MODEL_LIMITS", "")  # `BATCHLINE_MODEL_LIMITS=` in a .env
    assert Settings(_env_file=None).model_limits == {}


def test_given_a_setting_that_is_not_json_when_the_workers_start_then_one_line_names_it_and_none_starts(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("BATCHLINE_")}
    env.update({"BATCHLINE_MODEL_LIMITS": '{"openai/*": {"max_streams": 5}', "BATCHLINE_VAR_DIR": str(tmp_path)})
    run = subprocess.run([str(BIN / "batchline-worker"), "--processes", "1"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    output = run.stdout + run.stderr
    assert run.returncode == 2, output
    assert output.count("\n") == 1 and "Traceback" not in output
    assert "Invalid settings: BATCHLINE_MODEL_LIMITS;" in output
