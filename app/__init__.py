"""Batchline: batches of LLM-agent requests over the Letta Batches API, run by Dramatiq workers."""

from __future__ import annotations

from dramatiq.brokers.redis import RedisBroker
from flask_openapi3 import Info, OpenAPI

from app.api import auth, body_guard, errors, gc_pause, rate_limits
from app.api.agents import agents
from app.api.batches import batches
from app.api.dashboard import dashboard
from app.api.health import health
from app.api.monitor import metrics, monitor
from app.api.results import results
from app.api.webhooks import callback_attempts, webhook_secret
from app.embedded_redis import ensure_embedded_redis
from app.first_key import ensure_first_key
from app.logs import configure_web_logging, install_web_context
from app.message_ledger import MessageLedger
from app.services import Services
from app.settings import Settings
from app.store import Store, connect
from app.store.migrations import migrate_at_start
from app.tasks import TaskQueue

__version__ = "0.1.0"


def create_app(settings: Settings | None = None) -> OpenAPI:
    """Build the web app. Without `settings`, they are read from the environment (and `.env`)."""
    settings = settings or Settings()
    configure_web_logging()
    app = OpenAPI(
        __name__,
        info=Info(title="Batchline", version=__version__,
                  description="Batches of LLM-agent requests, run in the background (Letta Batches API)."),
        validation_error_status=422,
        validation_error_callback=errors.validation_error_response,
        doc_prefix="/docs",
        doc_url="/openapi.json",
        security_schemes=auth.SECURITY_SCHEMES,
    )
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    redis_url = settings.redis_url or ensure_embedded_redis(settings.var_dir, appendfsync=settings.redis_appendfsync)
    store = Store(client=connect(redis_url))
    store.refuse_unsafe_server("web process")
    app.extensions["batchline"] = Services(
        settings=settings,
        store=store,
        tasks=TaskQueue(broker=RedisBroker(url=settings.broker_url or redis_url,
                                           middleware=[MessageLedger(store=store)])),
    )
    migrate_at_start(store)
    if settings.auth == "on":
        ensure_first_key(store, var_dir=settings.var_dir)
    for blueprint in (batches, results, agents, health, monitor, metrics, dashboard):
        app.register_api(blueprint)
    for blueprint in (callback_attempts, webhook_secret):
        app.register_api(blueprint)
    auth.install(app)
    rate_limits.install(app, redis_url=redis_url)
    gc_pause.install(app)
    body_guard.install(app)
    install_web_context(app)
    errors.register(app)
    return app
