"""Schemathesis against the OpenAPI document the real service serves: every route and method,
with a bounded, reproducible number of generated requests each (valid and invalid ones). No
answer may be a 5xx, and each must match the status codes and schemas its route documents.

Run alone: `.venv/bin/pytest tests/e2e/test_fuzz_openapi.py` (see README, "Fuzzing").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import Service

#: Generated requests per operation and generation mode (valid, invalid), and per path variant
#: (the seeded objects' ids, generated ids): 2 to 5 runs an operation, under a minute in all on 2 cores.
EXAMPLES_PER_OPERATION = 25
#: The same without an API key, where every answer is the same 401.
EXAMPLES_WITHOUT_A_KEY = 8
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: Methods that destroy what the fixture seeded: they run last, so the others see live objects.
DESTRUCTIVE = ("DELETE", "PATCH")


def _seed(service: Service, headers: dict[str, str]) -> dict[str, str]:
    """A real agent, a batch that ran to its end and one still cancellable, and a dead letter id
    (none exists: its routes answer 404), so generated paths also reach live objects."""
    with httpx.Client(base_url=service.base_url, headers=headers, timeout=30) as http:
        agent = http.post("/v1/agents/", json={"model": "simulated/echo", "name": "fuzz"}).json()["id"]
        batch = http.post("/v1/messages/batches", json={"requests": [{"agent_id": agent, "input": "hi"}]}).json()
        http.post(f"/v1/agents/{agent}/messages", json={"input": "hello"}).raise_for_status()
    return {"agent_id": agent, "batch_id": batch["id"], "message_id": "1700000000000-0"}


def _valid_bodies(seeded: dict[str, str]) -> dict[tuple[str, str], dict[str, Any]]:
    """Bodies that pass every check the schema cannot express (a known model, one of `input` or
    `messages`, a live agent), so that the routes' successful answers are checked too."""
    return {
        ("POST", "/v1/agents/"): {"model": "simulated/echo", "name": "fuzzed", "tags": ["a"], "metadata": {"k": 1},
                                  "memory_blocks": [{"label": "human", "value": "Ann"}]},
        ("POST", "/v1/messages/batches"): {"requests": [{"agent_id": seeded["agent_id"], "input": "hi"}] * 2,
                                           "metadata": {"k": "v"}},
        ("POST", "/v1/agents/{agent_id}/messages"): {"messages": [{"role": "user", "content": "hello"}]},
    }


def _with_real_agent(agent_id: str) -> Callable[[Any], Any]:
    """Points the generated batch requests at the seeded agent, so that valid ones get through."""

    def rewrite(case: Any) -> Any:
        if isinstance(case.body, dict) and isinstance(case.body.get("requests"), list):
            for each in case.body["requests"]:
                if isinstance(each, dict) and "agent_id" in each:
                    each["agent_id"] = agent_id
        return case

    return rewrite


def _fuzz(strategy: st.SearchStrategy, *, headers: dict[str, str], checks: list, examples: int) -> None:
    @given(case=strategy)
    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck),
              print_blob=True)
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=checks, timeout=30)

    run()


def _variants(operation: Any, seeded: dict[str, str] | None) -> list[tuple[GenerationMode, Any, Any]]:
    """(mode, fixed path parameters, fixed body) of each run of one operation: valid and invalid
    requests on generated paths and, with seeded objects, on theirs, plus a valid body if needed."""
    names = {parameter.name for parameter in operation.path_parameters}
    paths: list[dict[str, str] | None] = [None]
    if seeded is not None and names:
        paths.insert(0, {name: seeded[name] for name in names})
    found = [(mode, path, None) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) for path in paths]
    if seeded is not None and (body := _valid_bodies(seeded).get((operation.method.upper(), operation.path))):
        found.append((GenerationMode.POSITIVE, paths[0], body))
    return found


def _run_all(service: Service, *, headers: dict[str, str], checks: list, seeded: dict[str, str] | None,
             examples: int = EXAMPLES_PER_OPERATION) -> list[str]:
    """Fuzzes every operation of the served document; returns one report per failed run."""
    schema = schemathesis.openapi.from_url(f"{service.base_url}/docs/openapi.json", headers=headers)
    schema.config.base_url = service.base_url
    results = list(schema.get_all_operations())
    invalid = [str(result.err()) for result in results if not isinstance(result, Ok)]
    assert not invalid, "the served OpenAPI document is invalid:\n" + "\n".join(invalid[:1])
    operations = [result.ok() for result in results]
    assert len(operations) >= 20, [operation.label for operation in operations]
    operations.sort(key=lambda operation: operation.method.upper() in DESTRUCTIVE)
    failures: list[str] = []
    for operation in operations:
        for mode, path, body in _variants(operation, seeded):
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=path,
                                             **({"body": body} if body is not None else {}))
            if seeded is not None and mode is GenerationMode.POSITIVE:
                strategy = strategy.map(_with_real_agent(seeded["agent_id"]))
            try:
                _fuzz(strategy, headers=headers, checks=checks, examples=examples)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.label  # nothing there to make invalid
            except (Exception, BaseExceptionGroup) as exc:  # every run goes on; all failures are reported
                failures.append(f"{operation.label} ({mode.value}, path {'seeded' if path else 'generated'}"
                                f"{', valid body' if body else ''}):\n{exc}")
    return failures


#: Paths that answer a caller without a key (the rest answer 401).
OPEN_PATHS = ("/", "/healthz", "/readyz")


def only_401_without_a_key(ctx: Any, response: Any, case: Any) -> bool | None:
    """Without a key, every protected route answers 401 with a Bearer challenge, whatever was sent
    (bar a URL too long for gunicorn, which refuses it before the app sees it)."""
    if case.path in OPEN_PATHS or response.status_code == 414:
        return None
    assert response.status_code == 401, f"{case.method} {case.path} answered {response.status_code} without a key"
    assert response.headers["www-authenticate"][0].startswith("Bearer")
    return True


def test_given_the_served_openapi_document_when_every_route_is_fuzzed_with_a_key_then_no_5xx_and_all_documented(
        start_service):
    service = start_service(BATCHLINE_LLM_MAX_ATTEMPTS="1")
    failures = _run_all(service, headers=service.auth, checks=CHECKS, seeded=_seed(service, service.auth))
    assert not failures, "\n\n".join(failures)


def test_given_the_served_openapi_document_when_every_route_is_fuzzed_without_a_key_then_only_401s(start_service):
    service = start_service(workers=False)
    seeded = _seed(service, service.auth)
    failures = _run_all(service, headers={}, checks=[*CHECKS, only_401_without_a_key], seeded=seeded,
                        examples=EXAMPLES_WITHOUT_A_KEY)
    assert not failures, "\n\n".join(failures)
    with httpx.Client(base_url=service.base_url, headers=service.auth) as http:  # nothing was changed
        assert http.get(f"/v1/agents/{seeded['agent_id']}").status_code == 200
        assert http.get(f"/v1/messages/batches/{seeded['batch_id']}").json()["status"] == "running"
