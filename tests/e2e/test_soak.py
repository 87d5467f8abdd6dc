"""A soak test in the suite (about two minutes): three batches run while worker processes are
killed at random (SIGKILL and SIGTERM) and started again, and Redis is killed and restarted
once. At the end every request has ended exactly once and no batch is left unfinished.
`python -m bench.soak` runs a longer version."""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.e2e.test_sdk_end_to_end import _openai_agent
from tests.fakes.model_servers import FakeOpenAIServer, Reply
from tests.support.chaos import run_chaos
from tests.support.redis_server import RestartableRedis

RECOVERY = {"BATCHLINE_SWEEP_INTERVAL_S": "2", "BATCHLINE_ITEM_LEASE_S": "3",
            "BATCHLINE_WORKER_HEARTBEAT_TIMEOUT_S": "4", "BATCHLINE_CHUNK_SIZE": "10"}


@pytest.fixture
def own_redis(tmp_path):
    server = RestartableRedis(directory=tmp_path / "redis").start()
    yield server
    server.stop()


def test_given_workers_killed_at_random_and_a_redis_restart_when_three_batches_run_then_each_request_ends_once(
        start_service, own_redis):
    seed = int(os.environ.get("BATCHLINE_SOAK_SEED") or time.time())
    delays = random.Random(seed)
    with FakeOpenAIServer() as model:
        model.script = lambda body, n: Reply(first_token_delay_s=delays.uniform(2.0, 5.0))
        service = start_service(workers=False, on_redis=own_redis.url, **RECOVERY)
        agent = _openai_agent(service.client(), model)
        report = run_chaos(service, own_redis, agent_id=agent.id, batch_sizes=(300, 200, 100), duration_s=75,
                           redis_restarts=1, seed=seed, worker_threads=2)
    print(report)
    assert report.ok, report
    assert report.events["redis restart"] == 1 and report.events["SIGKILL"] + report.events["SIGTERM"] >= 5
    assert report.events_during_work >= 8  # the chaos struck while the batches ran, not after
