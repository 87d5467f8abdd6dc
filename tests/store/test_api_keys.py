"""API keys on a real Redis: only hashes are stored, a tenant holds several keys, revocation is
immediate, and "last used" is written at most once a minute per process."""

from __future__ import annotations

import hashlib

import pytest
import redis

from app.store.api_keys import KEY_PREFIX, ApiKeyStore, InvalidKeyName
from app.tenancy import InvalidTenant
from tests.support.redis_dump import everything_in


def test_given_a_new_key_when_redis_is_scanned_then_only_its_sha256_is_there_never_the_key(store):
    record, secret = store.api_keys.create(tenant="acme", name="ci")

    assert secret.startswith(KEY_PREFIX) and len(secret) > 40
    everything = everything_in(store.client)
    assert secret not in everything and secret[len(KEY_PREFIX):] not in everything
    assert hashlib.sha256(secret.encode()).hexdigest() in everything
    assert store.api_keys.authenticate(secret).id == record.id


def test_given_two_keys_made_when_compared_then_they_differ_and_each_has_its_own_id(store):
    (first, one), (second, two) = (store.api_keys.create(tenant="acme", name=n) for n in ("a", "b"))
    assert one != two and first.id != second.id


def test_given_a_tenant_with_two_keys_when_one_is_revoked_then_the_other_still_acts_as_that_tenant(store):
    keys = store.api_keys
    first, one = keys.create(tenant="acme", name="laptop")
    second, two = keys.create(tenant="acme", name="ci")
    assert keys.authenticate(one).tenant == keys.authenticate(two).tenant == "acme"

    assert keys.revoke(first.id) is True

    assert keys.authenticate(one) is None
    assert keys.authenticate(two).id == second.id
    assert [key.id for key in keys.list()] == [second.id]
    assert keys.revoke(first.id) is False


@pytest.mark.parametrize("presented", ["", "bl_", "bl_short", "sk-" + "a" * 40, "bl_" + "a" * 43, "bl_" + "é" * 40,
                                       "bl_" + "a" * 300])
def test_given_something_that_is_no_stored_key_when_authenticated_then_none(store, presented):
    store.api_keys.create(tenant="acme", name="ci")
    assert store.api_keys.authenticate(presented) is None


def test_given_a_bad_tenant_name_when_a_key_is_made_then_it_is_refused_and_nothing_is_stored(store):
    with pytest.raises(InvalidTenant):
        store.api_keys.create(tenant="Acme Corp", name="x")
    assert store.api_keys.count() == 0


def test_given_a_key_used_twice_within_a_minute_when_listed_then_last_used_is_the_first_use_and_written_once(store):
    _, secret = store.api_keys.create(tenant="acme", name="ci")
    assert store.api_keys.list()[0].last_used_at is None

    store.api_keys.authenticate(secret)
    first = store.api_keys.list()[0].last_used_at
    store.api_keys.authenticate(secret)

    assert first is not None and store.api_keys.list()[0].last_used_at == first
    # another process (its own store) records its own use at once
    ApiKeyStore(client=store.client).authenticate(secret)
    assert store.api_keys.list()[0].last_used_at > first


def test_given_redis_refusing_writes_when_a_key_is_used_then_it_still_authenticates(store):
    _, secret = store.api_keys.create(tenant="acme", name="ci")
    store.client.config_set("maxmemory", "1")  # full: with noeviction, every write is refused (OOM)
    try:
        with pytest.raises(redis.ResponseError):
            store.client.set("probe", "x")
        # "last used" is bookkeeping: a read must not fail because it cannot be written
        assert ApiKeyStore(client=store.client).authenticate(secret).tenant == "acme"
    finally:
        store.client.config_set("maxmemory", "0")
    assert store.api_keys.list()[0].last_used_at is None


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "line\nbreak", "bell\x07"])
def test_given_an_empty_overlong_or_unprintable_name_when_a_key_is_made_then_it_is_refused_and_nothing_is_stored(
        store, name):
    with pytest.raises(InvalidKeyName):
        store.api_keys.create(tenant="default", name=name)
    assert store.api_keys.list() == []


def test_given_a_stored_key_when_it_is_presented_then_one_redis_read_authenticates_it(store):
    _, secret = store.api_keys.create(tenant="t", name="n")
    store.api_keys._touched.clear()
    store.client.hset("bl:apikey_last_used", "warm", "1")
    before = store.client.info("stats")["total_commands_processed"]
    assert store.api_keys.authenticate(secret).tenant == "t"
    # one HGET, plus the once-a-minute last-use write, plus the INFO call itself
    assert store.client.info("stats")["total_commands_processed"] - before == 3
