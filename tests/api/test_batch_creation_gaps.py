"""Creating a batch leaves no gap a crash or a race could fall through: the Idempotency-Key is
written with its batch, a start message that could not be sent (or was lost) does not lose the
batch, and an idempotent retry starts a batch that never started. Real Redis, Flask's client."""

from __future__ import annotations

import threading

import pytest
import redis

from app.store import keys
from app.tasks import START_BATCH
from tests.support.queues import pending_messages


@pytest.fixture
def agent_id(client) -> str:
    return client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]


def _starts(redis_url: str) -> int:
    return sum(1 for message in pending_messages(redis_url) if message.endswith(START_BATCH))


def test_given_concurrent_posts_with_one_key_when_they_race_then_one_batch_exists_and_both_name_it(
        app, agent_id, redis_url):
    body = {"requests": [{"agent_id": agent_id, "input": "x"}] * 50}
    answers: list[str] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        client = app.test_client()
        barrier.wait()
        answers.append(client.post("/v1/messages/batches", json=body, headers={"Idempotency-Key": "race"})
                       .get_json()["id"])

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = app.extensions["batchline"].store
    assert len(set(answers)) == 1 and len(answers) == 8
    assert store.client.zcard(keys.BATCHES) == 1
    assert store.client.get(keys.idempotency("default", "race")).startswith(answers[0])


def test_given_concurrent_posts_with_one_key_and_two_bodies_when_they_race_then_one_batch_and_the_rest_409(
        app, agent_id, redis_url):
    bodies = [{"requests": [{"agent_id": agent_id, "input": text}] * 50} for text in ("a", "b")]
    answers: list[tuple[int, int, str]] = []
    barrier = threading.Barrier(8)

    def post(which: int) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post("/v1/messages/batches", json=bodies[which], headers={"Idempotency-Key": "race2"})
        answers.append((which, response.status_code, response.get_json().get("id") or response.get_json()["detail"]))

    threads = [threading.Thread(target=post, args=(index % 2,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = app.extensions["batchline"].store
    assert store.client.zcard(keys.BATCHES) == 1
    batch_id = store.client.zrange(keys.BATCHES, 0, -1)[0]
    winner = {which for which, status, _ in answers if status == 200}
    assert len(winner) == 1 and len(answers) == 8
    for which, status, said in answers:
        if which in winner:
            assert status == 200 and said == batch_id
        else:
            assert status == 409 and batch_id in said


def test_given_the_start_message_cannot_be_sent_when_posted_then_the_batch_is_kept_for_the_sweep_to_start(
        app, client, agent_id, monkeypatch, redis_url):
    tasks = app.extensions["batchline"].tasks

    def broker_down(*args, **kwargs):
        raise redis.ConnectionError("the broker went away")

    monkeypatch.setattr(tasks, "send", broker_down)
    response = client.post("/v1/messages/batches", json={"requests": [{"agent_id": agent_id, "input": "x"}]},
                           headers={"Idempotency-Key": "k-down"})
    assert response.status_code == 200 and response.get_json()["status"] == "running"
    batch_id = response.get_json()["id"]
    store = app.extensions["batchline"].store
    assert store.batches.get(batch_id) is not None and batch_id in store.progress.active_ids()


def test_given_a_batch_whose_start_was_never_sent_when_its_key_is_retried_then_it_is_started(
        app, client, agent_id, monkeypatch, redis_url):
    tasks = app.extensions["batchline"].tasks
    real_send = tasks.send
    monkeypatch.setattr(tasks, "send", lambda *a, **k: (_ for _ in ()).throw(redis.ConnectionError("down")))
    body = {"requests": [{"agent_id": agent_id, "input": "x"}]}
    first = client.post("/v1/messages/batches", json=body, headers={"Idempotency-Key": "k-retry"}).get_json()
    assert _starts(redis_url) == 0
    monkeypatch.setattr(tasks, "send", real_send)
    again = client.post("/v1/messages/batches", json=body, headers={"Idempotency-Key": "k-retry"}).get_json()
    assert again["id"] == first["id"]
    assert _starts(redis_url) == 1
    client.post("/v1/messages/batches", json=body, headers={"Idempotency-Key": "k-retry"})
    assert _starts(redis_url) == 1  # its start message is alive now: not sent a second time
