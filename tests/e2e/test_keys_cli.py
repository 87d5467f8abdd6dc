"""`batchline keys` as an operator runs it (the console script in a subprocess, on the service's
Redis), against a real web process: a made key works at once and is printed only as the last
line, `list` never shows a secret, a revoked key is refused at once, and the other commands find
their key in BATCHLINE_API_KEY or else in the var directory's key file."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Service

BATCHLINE = Path(sys.executable).parent / "batchline"


def batchline(*args: str, service: Service, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The console script with the service's Redis and var directory, and no key in the environment
    unless `env` gives one."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHLINE_") and k != "REDIS_URL"}
    full_env.update({"REDIS_URL": service.env["REDIS_URL"], "BATCHLINE_URL": service.base_url,
                     "BATCHLINE_VAR_DIR": service.env["BATCHLINE_VAR_DIR"], "COLUMNS": "250", **env})
    return subprocess.run([str(BATCHLINE), *args], env=full_env, cwd=cwd, capture_output=True, text=True, timeout=60)


def _one_error_line(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 1, result
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert text in result.stderr and "Traceback" not in result.stderr + result.stdout


@pytest.fixture
def service(start_service) -> Service:
    return start_service(workers=False)


def test_given_keys_create_when_run_then_the_key_is_the_last_line_alone_and_acts_as_that_tenant_at_once(
        service, tmp_path):
    made = batchline("keys", "create", "--tenant", "acme", "--name", "nightly [/x] job", service=service, cwd=tmp_path)

    assert made.returncode == 0, made.stderr
    *before, key = made.stdout.rstrip("\n").split("\n")
    assert key.startswith("bl_") and "bl_" not in "\n".join(before) + made.stderr
    assert "acme" in before[-1] and "nightly [/x] job" in before[-1]
    answer = httpx.post(f"{service.base_url}/v1/agents/", headers={"Authorization": f"Bearer {key}"},
                        json={"model": "simulated/echo"})
    assert answer.status_code == 200 and answer.json()["created_by_id"] == "acme"


def test_given_keys_when_listed_then_ids_names_tenants_and_last_use_show_and_no_key_or_hash_does(service, tmp_path):
    made = batchline("keys", "create", "--tenant", "acme", "--name", "ci", service=service, cwd=tmp_path)
    key = made.stdout.strip().splitlines()[-1]
    assert httpx.get(f"{service.base_url}/v1/agents/", headers={"Authorization": f"Bearer {key}"}).status_code == 200

    listed = batchline("keys", "list", service=service, cwd=tmp_path)

    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[1]: line for line in listed.stdout.splitlines() if "key_" in line}
    assert set(rows) == {made.stdout.split()[1], _first_key_id(service, tmp_path)}
    acme = rows[made.stdout.split()[1]]
    assert " ci " in acme and " acme " in acme and "never" not in acme  # used once just now
    for secret in (key, service.api_key):
        assert secret not in listed.stdout and hashlib.sha256(secret.encode()).hexdigest() not in listed.stdout
        assert secret[3:20] not in listed.stdout


def _first_key_id(service: Service, cwd: Path) -> str:
    listed = batchline("keys", "list", service=service, cwd=cwd).stdout
    return next(line.split()[1] for line in listed.splitlines() if "first-start" in line)


def test_given_a_key_in_use_when_it_is_revoked_then_its_next_call_is_401_and_the_others_still_work(service, tmp_path):
    made = batchline("keys", "create", "--tenant", "acme", "--name", "leaked", service=service, cwd=tmp_path)
    key_id, key = made.stdout.split()[1], made.stdout.strip().splitlines()[-1]
    url = f"{service.base_url}/v1/messages/batches"
    assert httpx.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 200

    revoked = batchline("keys", "revoke", key_id, service=service, cwd=tmp_path)

    assert revoked.returncode == 0 and revoked.stdout.strip() == f"Key {key_id} revoked."
    refused = httpx.get(url, headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 401 and "Invalid API key" in refused.json()["detail"]
    assert httpx.get(url, headers=service.auth).status_code == 200
    _one_error_line(batchline("keys", "revoke", key_id, service=service, cwd=tmp_path), f"No key '{key_id}'")


def test_given_bad_input_when_keys_commands_run_then_one_clear_line_and_exit_1(service, tmp_path):
    _one_error_line(batchline("keys", "revoke", "key_nope", service=service, cwd=tmp_path), "No key 'key_nope'")
    _one_error_line(batchline("keys", "create", "--tenant", "Acme Corp", service=service, cwd=tmp_path),
                    "tenant 'Acme Corp' must be")
    assert "Acme" not in batchline("keys", "list", service=service, cwd=tmp_path).stdout


def test_given_no_key_in_the_environment_when_a_command_runs_then_it_uses_the_key_file_and_an_env_key_wins(
        service, tmp_path):
    acme_key = batchline("keys", "create", "--tenant", "acme", service=service, cwd=tmp_path).stdout.split()[-1]
    mine = httpx.post(f"{service.base_url}/v1/agents/", headers=service.auth,
                      json={"model": "simulated/echo", "name": "from-default"}).json()["id"]

    from_file = batchline("agents", "list", service=service, cwd=tmp_path)
    from_env = batchline("agents", "list", service=service, cwd=tmp_path, BATCHLINE_API_KEY=acme_key)
    elsewhere = batchline("agents", "list", service=service, cwd=tmp_path, BATCHLINE_VAR_DIR=str(tmp_path / "none"))
    bad_env = batchline("agents", "list", service=service, cwd=tmp_path, BATCHLINE_API_KEY="bl_" + "z" * 43)

    assert from_file.returncode == 0 and mine in from_file.stdout
    assert from_env.returncode == 0 and mine not in from_env.stdout  # acme's key: the default tenant's agent is hidden
    _one_error_line(elsewhere, "Missing API key")
    _one_error_line(bad_env, "Invalid API key")
