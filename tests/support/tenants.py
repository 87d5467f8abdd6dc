"""A second tenant for isolation tests: a key made straight in Redis, as `batchline keys create`
does, and a Flask test client that sends it."""

from __future__ import annotations

from flask.testing import FlaskClient
from flask_openapi3 import OpenAPI

from app.store import connect
from app.store.api_keys import ApiKeyStore


def create_key(redis_url: str, *, tenant: str) -> str:
    """A new key of `tenant` (the secret itself)."""
    client = connect(redis_url)
    try:
        _, secret = ApiKeyStore(client=client).create(tenant=tenant, name=f"{tenant}-test")
    finally:
        client.close()
    return secret


def client_of(app: OpenAPI, redis_url: str, *, tenant: str) -> FlaskClient:
    """A test client of `app` that calls as `tenant`, with a key of its own."""
    client = FlaskClient(app, app.response_class, use_cookies=True)
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {create_key(redis_url, tenant=tenant)}"
    return client
