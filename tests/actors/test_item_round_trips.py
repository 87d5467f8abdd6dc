"""What one batch item costs the worker in Redis round trips (counted at the client's socket) and
commands (INFO commandstats): a chunk reads its items once, then the items ready together are
claimed, with everything their runs read, in one round trip, and committed together in one more."""

from __future__ import annotations

from typing import Any

from redis.connection import AbstractConnection

from actors.runtime import WorkerRuntime
from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import keys
from tests.fakes.model_servers import FakeOpenAIServer
from tests.support.runtime import openai_agent, run_chunk, worker_runtime

ITEMS = 20
#: Sent once per connection or per process, whatever the item count: not counted.
ONCE = (b"HELLO", b"CLIENT", b"PING", b"SCRIPT", b"SUBSCRIBE")


def _runtime(redis_url: str, tmp_path, **settings: Any) -> WorkerRuntime:
    return worker_runtime(redis_url, tmp_path, simulated_ttft_ms=0, simulated_token_ms=0, **settings)


def test_given_a_chunk_of_items_when_it_runs_then_each_item_costs_about_two_round_trips(
        store, redis_url, tmp_path, monkeypatch):
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    requests = [LettaBatchRequest(agent_id=agent["id"], input=f"q{i}") for i in range(ITEMS)]
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None, completion_window_s=60)
    runtime = _runtime(redis_url, tmp_path)
    sent: list[Any] = []
    real_send = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        # One request (a whole pipeline is one) written to Redis: one round trip.
        first = command[0] if isinstance(command, list) else command
        if not any(word in bytes(first)[:40] for word in ONCE):
            sent.append(first)
        return real_send(self, command, check_health)

    run_chunk(runtime, batch_id, 0, ITEMS - 1, on_start=lambda: monkeypatch.setattr(
        AbstractConnection, "send_packed_command", counting))
    assert store.batches.get(batch_id)["request_counts"]["succeeded"] == ITEMS
    # At most claim + loads, then commit, per item (batched, far fewer: see the next test); the
    # chunk's own reads and the runtime's background work (heartbeat, the first call of each
    # script) take a few more. Before: six per item (claim, item, agent, history index, request,
    # commit).
    assert len(sent) <= 2 * ITEMS + 16, f"{len(sent)} round trips for {ITEMS} items: {[bytes(c)[:60] for c in sent]}"


def test_given_items_of_one_agent_run_one_after_another_then_each_prompt_holds_all_that_was_committed_before(
        store, redis_url, tmp_path):
    with FakeOpenAIServer() as model:
        agent_id = openai_agent(store, model)
        requests = [LettaBatchRequest(agent_id=agent_id, input=f"question {i}") for i in range(3)]
        batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None,
                                           completion_window_s=60)
        run_chunk(_runtime(redis_url, tmp_path, worker_max_streams=1), batch_id, 0, 2)
        prompts = [[message["content"] for message in request["messages"] if message["role"] == "user"]
                   for request in model.requests]
    assert store.batches.get(batch_id)["request_counts"]["succeeded"] == 3
    assert prompts == [["question 0"], ["question 0", "question 1"], ["question 0", "question 1", "question 2"]]
    assert store.client.zcard(keys.agent_messages(agent_id)) == 6


CHUNK = 50


def test_given_a_chunk_of_fifty_items_when_it_runs_then_each_item_costs_at_most_twelve_redis_commands(
        store, redis_url, tmp_path):
    # INFO commandstats counts every command Redis runs, those inside Lua scripts too (the figure
    # `python -m bench` reports). Claims and commits go to Redis many items at a time
    # (actors/batching.py): before, an item cost about 45.
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    requests = [LettaBatchRequest(agent_id=agent["id"], input=f"q{i}") for i in range(CHUNK)]
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None, completion_window_s=60)
    runtime = _runtime(redis_url, tmp_path)
    run_chunk(runtime, batch_id, 0, CHUNK - 1, on_start=store.client.config_resetstat)
    assert store.batches.get(batch_id)["request_counts"]["succeeded"] == CHUNK
    stats = store.client.info("commandstats")
    once = ("cmdstat_config", "cmdstat_info", "cmdstat_script", "cmdstat_client", "cmdstat_hello")
    commands = sum(value["calls"] for name, value in stats.items() if not name.startswith(once))
    # Measured: about 5.4 (the goal is 12); before, 44.8.
    assert commands <= 8 * CHUNK, f"{commands / CHUNK:.1f} commands per item: {stats}"
    # Measured: 43 round trips in all, the runtime's background work included; before, 132.
    reads = store.client.info("stats")["total_reads_processed"]
    assert reads <= CHUNK, f"{reads} round trips for {CHUNK} items"
