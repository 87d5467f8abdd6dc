"""Each tenant's webhook signing secret, on a real Redis: generated once, then the same everywhere."""

from __future__ import annotations

import base64

from pydantic import SecretStr

from app.callbacks import new_secret, tenant_secret
from app.store import Store, connect, keys

CONFIGURED = SecretStr("whsec_" + base64.b64encode(b"operator-chosen-secret").decode())


def test_given_two_tenants_when_their_secrets_are_read_then_each_has_its_own_and_it_stays_the_same(store, redis_url):
    first = tenant_secret(store.secrets, "tenant-a", configured=None)
    second = tenant_secret(store.secrets, "tenant-b", configured=None)

    assert first != second
    for secret in (first, second):
        assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    # another process (its own client) reads the same secrets, and no new one is made
    other = Store(client=connect(redis_url))
    assert tenant_secret(other.secrets, "tenant-a", configured=None) == first
    assert tenant_secret(other.secrets, "tenant-b", configured=None) == second


def test_given_a_configured_secret_when_read_then_it_is_tenant_defaults_only(store):
    assert tenant_secret(store.secrets, "default", configured=CONFIGURED) == CONFIGURED.get_secret_value()
    other = tenant_secret(store.secrets, "tenant-a", configured=CONFIGURED)
    assert other != CONFIGURED.get_secret_value() and other.startswith("whsec_")


def test_given_an_installation_secret_made_before_tenants_when_default_reads_its_secret_then_it_is_that_one(store):
    before = new_secret()
    store.client.set(keys.WEBHOOK_SECRET, before)  # where earlier versions kept the installation's one

    assert tenant_secret(store.secrets, "default", configured=None) == before
    assert tenant_secret(store.secrets, "tenant-a", configured=None) != before
