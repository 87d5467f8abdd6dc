"""The Dramatiq middleware that gives each worker process its item runtime."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware

from actors.runtime import WorkerRuntime, current_runtime, set_runtime
from actors.signals import absorb_duplicate_sigterm
from app.logs import BATCH_ID_PREFIX, bind_item, use_chosen_format
from app.outage import quiet_dramatiq_connection_errors
from app.priority import lower_priority
from app.settings import Settings
from app.store import Store, connect
from app.tasks import TaskQueue


class RuntimeMiddleware(Middleware):
    """Starts the worker runtime on Dramatiq's event loop before any message is processed, and
    stops it at shutdown after giving running items back.

    It must come after Dramatiq's AsyncIO middleware, whose `before_worker_boot` starts the
    event loop this runtime lives on (and whose `after_worker_shutdown`, run after this one's,
    stops it)."""

    def __init__(self, *, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        absorb_duplicate_sigterm()
        quiet_dramatiq_connection_errors()
        use_chosen_format()
        # Also when started by `dramatiq` itself, not batchline-worker (already at that priority then).
        lower_priority(self.settings.worker_nice, root_pid=os.getppid())
        with connect(self.redis_url) as client:
            Store(client=client).refuse_unsafe_server("worker process")

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        # Batch actors take the batch id first: lines of this message's thread carry it.
        first = message.args[0] if message.args else None
        bind_item(first if isinstance(first, str) and first.startswith(BATCH_ID_PREFIX) else None)

    def after_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message, *, result: object = None,
                              exception: BaseException | None = None) -> None:
        bind_item(None)

    after_skip_message = after_process_message

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Worker threads start consuming right after this hook: the runtime must exist by then.
        runtime = WorkerRuntime(settings=self.settings, redis_url=self.redis_url, tasks=TaskQueue(broker=broker))
        runtime.threads = worker.worker_threads
        get_event_loop_thread().run_coroutine(runtime.start())
        set_runtime(runtime)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        runtime = current_runtime()
        runtime.loop.call_soon_threadsafe(runtime.begin_shutdown)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        get_event_loop_thread().run_coroutine(current_runtime().close())
        set_runtime(None)
