"""Callbacks on the real service (gunicorn, dramatiq workers, a real receiver): each tenant's
signing secret, checked by a verifier written from the Standard Webhooks specification, the same
`webhook-id` on a retry, and every attempt listed by the API and the CLI."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import httpx

from tests.e2e.conftest import WEBHOOK_SECRET, wait_until
from tests.support import webhooks
from tests.support.receiver import CallbackReceiver

BATCHLINE = Path(sys.executable).parent / "batchline"


def _cli(service, *args: str, cwd: Path, api_key: str | None = None) -> subprocess.CompletedProcess[str]:
    # the service's own environment (REDIS_URL, BATCHLINE_VAR_DIR and its key file,
    # BATCHLINE_WEBHOOK_SECRET...), as an operator on its host has it
    env = {**service.env, "BATCHLINE_URL": service.base_url, "COLUMNS": "250",
           **({"BATCHLINE_API_KEY": api_key} if api_key else {})}
    return subprocess.run([str(BATCHLINE), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def _secret(service, *args: str, cwd: Path, api_key: str | None = None) -> str:
    shown = _cli(service, "webhook-secret", *args, cwd=cwd, api_key=api_key)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("\n") == 1 and shown.stdout.startswith("whsec_")  # the secret, and nothing else
    return shown.stdout.strip()


def _auth(service, api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else service.auth


def _batch_with_callback(service, url: str, *, api_key: str | None = None) -> str:
    headers = _auth(service, api_key)
    agent_id = httpx.post(f"{service.base_url}/v1/agents/", json={"model": "simulated/echo"},
                          headers=headers).json()["id"]
    created = httpx.post(f"{service.base_url}/v1/messages/batches", headers=headers,
                         json={"requests": [{"agent_id": agent_id, "input": "q"}], "callback_url": url})
    assert created.status_code == 200, created.text
    return created.json()["id"]


def _attempts_answer(service, batch_id: str, *, api_key: str | None = None) -> httpx.Response:
    return httpx.get(f"{service.base_url}/v1/messages/batches/{batch_id}/callback-attempts",
                     headers=_auth(service, api_key))


def _attempts(service, batch_id: str, *, api_key: str | None = None) -> list[dict]:
    answer = _attempts_answer(service, batch_id, api_key=api_key)
    assert answer.status_code == 200, answer.text
    return answer.json()["attempts"]


def test_given_a_receiver_failing_once_when_a_batch_ends_then_both_deliveries_verify_with_its_secret_and_are_listed(
        start_service, tmp_path):
    # no BATCHLINE_WEBHOOK_SECRET: the tenant's secret is generated and kept in Redis
    service = start_service(BATCHLINE_WEBHOOK_SECRET="")
    with CallbackReceiver(statuses=(500, 200)) as receiver:
        batch_id = _batch_with_callback(service, receiver.url)
        calls = receiver.wait_for(2, timeout_s=60)
    assert len(calls) == 2
    secret = _secret(service, cwd=tmp_path)  # over the API, as the caller's tenant ("default")
    other_tenant = _secret(service, "--tenant", "tenant-b", cwd=tmp_path)  # from Redis, as an admin

    assert other_tenant != secret
    assert _secret(service, "--tenant", "default", cwd=tmp_path) == secret
    assert [call.headers["webhook-id"] for call in calls] == [f"msg_{batch_id}"] * 2
    for call in calls:
        assert call.json()["job_id"] == batch_id
        assert webhooks.verify(secret, headers=call.headers, body=call.body)
        assert not webhooks.verify(other_tenant, headers=call.headers, body=call.body)

    assert wait_until(lambda: len(_attempts(service, batch_id)) == 2, timeout_s=10)
    first, second = _attempts(service, batch_id)
    assert (first["attempt"], first["status_code"], first["error"]) == (1, 500, "callback endpoint answered HTTP 500")
    assert (second["attempt"], second["status_code"], second["error"]) == (2, 200, None)
    for attempt in (first, second):
        assert attempt["url"] == receiver.url and attempt["address"] == "127.0.0.1"
        assert attempt["webhook_id"] == f"msg_{batch_id}"
        assert isinstance(attempt["duration_ms"], int) and 0 <= attempt["duration_ms"] < 10_000
    assert datetime.fromisoformat(first["sent_at"]) < datetime.fromisoformat(second["sent_at"])

    shown = _cli(service, "callbacks", batch_id, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    rows = [line for line in shown.stdout.splitlines() if f"msg_{batch_id}" in line]
    assert len(rows) == 2 and "HTTP 500" in rows[0] and " 200 " in rows[1]


def test_given_a_batch_of_another_tenant_when_its_callback_is_delivered_then_that_tenants_secret_signs_it(
        start_service, tmp_path):
    service = start_service()  # BATCHLINE_WEBHOOK_SECRET set: tenant "default"'s only
    made = _cli(service, "keys", "create", "--tenant", "tenant-b", "--name", "hooks", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    key_b = made.stdout.strip().splitlines()[-1]
    with CallbackReceiver() as receiver:
        batch_id = _batch_with_callback(service, receiver.url, api_key=key_b)
        (call,) = receiver.wait_for(1, timeout_s=60)
    secret_b = _secret(service, cwd=tmp_path, api_key=key_b)  # over the API, with tenant-b's key

    assert call.headers["webhook-id"] == f"msg_{batch_id}"
    assert webhooks.verify(secret_b, headers=call.headers, body=call.body)
    assert not webhooks.verify(WEBHOOK_SECRET, headers=call.headers, body=call.body)
    assert _secret(service, "--tenant", "tenant-b", cwd=tmp_path) == secret_b  # the admin reads the same one
    assert wait_until(lambda: len(_attempts(service, batch_id, api_key=key_b)) == 1, timeout_s=10)
    # the default tenant's key sees nothing of tenant-b's batch
    hidden = _attempts_answer(service, batch_id)
    assert hidden.status_code == 404 and hidden.json() == {"detail": f"Batch {batch_id!r} not found."}


def test_given_a_configured_webhook_secret_when_a_callback_is_delivered_then_it_signs_for_the_default_tenant_only(
        start_service, tmp_path):
    service = start_service()  # BATCHLINE_WEBHOOK_SECRET=WEBHOOK_SECRET
    with CallbackReceiver() as receiver:
        batch_id = _batch_with_callback(service, receiver.url)
        (call,) = receiver.wait_for(1, timeout_s=60)

    assert call.headers["webhook-id"] == f"msg_{batch_id}"
    assert webhooks.verify(WEBHOOK_SECRET, headers=call.headers, body=call.body)
    assert _secret(service, cwd=tmp_path) == WEBHOOK_SECRET
    assert _secret(service, "--tenant", "tenant-b", cwd=tmp_path) not in (WEBHOOK_SECRET, "")


def test_given_an_unknown_batch_when_the_cli_lists_its_callback_attempts_then_it_says_so_in_one_line(
        start_service, tmp_path):
    service = start_service(workers=False)

    shown = _cli(service, "callbacks", "job-nope", cwd=tmp_path)
    anonymous = httpx.get(f"{service.base_url}/v1/messages/batches/job-nope/callback-attempts")

    assert shown.returncode == 1 and shown.stdout == ""
    assert shown.stderr == "Error: Batch 'job-nope' not found. (HTTP 404)\n"
    assert anonymous.status_code == 401
