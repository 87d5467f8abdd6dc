"""No secret where it does not belong (issue 9, part 11): the whole service from the README's run
command (web, worker and embedded Redis under honcho) runs a batch with an API key made by
`batchline keys create` (for the tenant `default`, whose callbacks BATCHLINE_WEBHOOK_SECRET
signs), a provider key that the fake OpenAI server really receives, and a signed callback,
while things fail that log (a provider 401 and 500 that echo the key, a stream
error, a callback target failing once, wrong keys presented). Then the output of every process,
every file of the var directory (the embedded Redis's log and its append-only file, which holds
every Dramatiq message ever queued), what Redis holds, every API answer, `/metrics`, the
dashboard and the CLI's output are searched for the secrets: none may appear. The first start's
key may appear once, in the web output, where it was printed."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from app.embedded_redis import free_port
from app.store.keys import API_KEYS_BY_HASH
from app.vocabulary import BatchStatus, ItemStatus
from tests.fakes.model_servers import FakeOpenAIServer, Reply
from tests.support.processes import stop
from tests.support.queues import wait_for_idle_queues
from tests.support.quick_start import embedded_redis_port, start_quick_start
from tests.support.receiver import CallbackReceiver
from tests.support.redis_dump import everything_in
from tests.support.webhooks import verify

BATCHLINE = Path(sys.executable).parent / "batchline"
DASHBOARD_FILES = sorted(p.name for p in (Path(__file__).parents[2] / "app" / "static" / "dashboard").iterdir())


def _fragments(secret: str, prefix: str) -> list[str]:
    """The secret, and every 12 characters of its random part: a leak of a piece counts too."""
    body = secret.removeprefix(prefix)
    return [secret, *(body[i:i + 12] for i in range(len(body) - 11))]


class ProviderFaults:
    """Fake OpenAI answers: by the request's text, a 401 or a 500 (once) whose error message
    echoes the key as real providers do, a stream that breaks with the key in its error."""

    def __init__(self, provider_key: str) -> None:
        self.key = provider_key
        self.failed_once: set[str] = set()

    def __call__(self, body: dict, n: int) -> Reply | None:
        text = json.dumps(body.get("messages"))
        echo = f"Incorrect API key provided: {self.key}. You can find your API key at https://example.test."
        if "provider-401" in text:
            return Reply(status=401, error_message=echo)
        for trigger, reply in (("provider-500", Reply(status=500, error_message=f"upstream broke ({self.key})")),
                               ("stream-error", Reply(text="partial answer", stream_error=f"overloaded: {self.key}"))):
            if trigger in text and trigger not in self.failed_once:
                self.failed_once.add(trigger)
                return reply
        return None


def _cli(*args: str, var: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHLINE_") and k != "REDIS_URL"}
    return subprocess.run([str(BATCHLINE), *args], env={**env, "BATCHLINE_VAR_DIR": str(var), "COLUMNS": "250"},
                          cwd=cwd, capture_output=True, text=True, timeout=60, check=True)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_given_a_full_batch_with_every_kind_of_secret_when_all_output_is_scanned_then_no_secret_is_found(
        tmp_path, log_format):
    provider_key = "sk-leakcheck-" + secrets.token_hex(20)
    webhook_secret = "whsec_" + base64.b64encode(b"leakcheck-webhook-" + secrets.token_bytes(24)).decode()
    var, log, port = tmp_path / "var", tmp_path / "honcho.log", free_port()
    base = f"http://127.0.0.1:{port}"
    seen: list[str] = []  # every answer and CLI output a user or operator could see

    def call(method: str, path: str, key: str | None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        answer = httpx.request(method, base + path, headers=headers | kwargs.pop("headers", {}), timeout=30, **kwargs)
        seen.append(f"{method} {path} -> {answer.status_code} {answer.headers}\n{answer.text}")
        return answer

    faults = ProviderFaults(provider_key)
    with FakeOpenAIServer(script=faults) as model, CallbackReceiver(statuses=(500, 200)) as receiver:
        process = start_quick_start(tmp_path, var, port, log, OPENAI_API_KEY=provider_key,
                                    OPENAI_BASE_URL=model.base_url, BATCHLINE_WEBHOOK_SECRET=webhook_secret,
                                    BATCHLINE_LOG_FORMAT=log_format, BATCHLINE_WORKER_PROCESSES="1",
                                    BATCHLINE_WORKER_THREADS="8", BATCHLINE_LLM_BACKOFF_BASE_S="0.01",
                                    BATCHLINE_LLM_BACKOFF_MAX_S="0.05")
        try:
            first_key = (var / "api-key").read_text().strip()
            made = _cli("keys", "create", "--tenant", "default", "--name", "leak check", var=var, cwd=tmp_path)
            *shown, key = made.stdout.rstrip("\n").split("\n")
            seen += [*shown, made.stderr]
            # `curl -u KEY:` (Stripe's habit) sends Basic auth, whose user gunicorn's access log shows
            basic = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
            for wrong in (f"Bearer {key[:-2]}zz", f"Token {key}", basic, f"Bearer {provider_key}",
                          f"Bearer {webhook_secret}", f"Bearer {first_key}x", key):
                assert call("GET", "/v1/agents/", None, headers={"Authorization": wrong}).status_code == 401

            agent = call("POST", "/v1/agents/", key, json={"model": "openai/gpt-4o-mini", "name": "leaks"}).json()
            inputs = ["hello", "provider-401", "provider-500", "stream-error", "goodbye"]
            batch = call("POST", "/v1/messages/batches", key, json={
                "requests": [{"agent_id": agent["id"], "input": text} for text in inputs],
                "callback_url": receiver.url}).json()
            deadline = time.monotonic() + 60
            while call("GET", f"/v1/messages/batches/{batch['id']}", key).json()["status"] != BatchStatus.COMPLETED:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)
            deliveries = receiver.wait_for(2, timeout_s=30)
            redis_url = f"redis://127.0.0.1:{embedded_redis_port(var)}/0"
            wait_for_idle_queues(redis_url, timeout_s=30)

            # the secrets were really in play: the provider got its key, the callback was signed
            assert all(h.get("authorization") == f"Bearer {provider_key}" for h in model.headers)
            assert [verify(webhook_secret, headers=d.headers, body=d.body) for d in deliveries] == [True, True]
            batch_path = f"/v1/messages/batches/{batch['id']}"
            items = call("GET", f"{batch_path}/requests", key).json()
            # the 401 fails its request; the 500 and the broken stream are retried and succeed
            assert sorted(item["status"] for item in items) == sorted([ItemStatus.ERRORED] + [ItemStatus.SUCCEEDED] * 4)
            for path in (batch_path, "/v1/messages/batches", f"{batch_path}/messages", f"{batch_path}/results",
                         "/v1/agents/", f"/v1/agents/{agent['id']}",
                         f"/v1/agents/{agent['id']}/messages", "/v1/monitor", "/v1/monitor/dead-letters", "/metrics",
                         "/dashboard", *(f"/dashboard/static/{name}" for name in DASHBOARD_FILES)):
                call("GET", path, key)
            attempts = call("GET", f"{batch_path}/callback-attempts", key).json()
            assert len(attempts["attempts"]) == 2, attempts
            call("GET", "/v1/monitor", first_key)
            call("GET", "/metrics", first_key)
            listed = _cli("keys", "list", var=var, cwd=tmp_path)
            seen += [listed.stdout, listed.stderr]
            stored = everything_in(redis.Redis.from_url(redis_url, decode_responses=True))
            assert key not in stored and API_KEYS_BY_HASH in stored
        finally:
            stop(process, sig=signal.SIGINT)

    output = log.read_text()
    places = {"the output of web, worker and supervisor (honcho)": output, "what Redis held": stored,
              "API answers and CLI output": "\n".join(seen)}
    places |= {f"var/{p.relative_to(var)}": p.read_bytes().decode("latin-1")
               for p in sorted(var.rglob("*")) if p.is_file() and p.name != "api-key"}
    # the scan saw what it must: Dramatiq's messages (the append-only file keeps every one ever
    # queued), and the failures logged (the provider's errors, redacted; the failed callback)
    journal = "\n".join(text for place, text in places.items() if "appendonly" in place)
    assert '"actor_name"' in journal and batch["id"] in journal
    assert "[redacted]" in output and "Callback of batch" in output
    for name, secret, prefix in (("the API key", key, "bl_"), ("the provider key", provider_key, "sk-leakcheck-"),
                                 ("the webhook secret", webhook_secret, "whsec_"),
                                 ("the first start's key", first_key, "bl_")):
        for place, text in places.items():
            if secret == first_key and place.startswith("the output"):
                text = _without_the_line_that_shows(first_key, text)
            leaks = [piece for piece in _fragments(secret, prefix) if piece in text]
            assert not leaks, f"{name} appears in {place}"


def _without_the_line_that_shows(first_key: str, output: str) -> str:
    """The web output minus the one line where the first start printed its key (honcho puts its
    prefix before it): the line after the sentence that announces it, or with JSON logs the end
    of that sentence's line."""
    lines = output.splitlines()
    shown = [index for index, line in enumerate(lines) if first_key in line]
    assert len(shown) == 1, "the first start's key must be printed exactly once"
    line, before = lines[shown[0]], lines[shown[0] - 1]
    assert (line.endswith(f"| {first_key}") and "made an API key" in before) or (  # text
        "made an API key for tenant 'default'" in line and f'"api_key": "{first_key}"' in line)  # JSON
    return "\n".join(lines[:shown[0]] + lines[shown[0] + 1:])
