"""Redis key names. Everything Batchline stores lives under one prefix."""

from app.tenancy import DEFAULT_TENANT

PREFIX = "bl:"
SEQ = PREFIX + "seq"
AGENTS = PREFIX + "agents"
BATCHES = PREFIX + "batches"
MESSAGE_PREFIX = PREFIX + "msg:"
#: Pub/sub channel on which a batch id is published when the batch is cancelled or expired.
STOP_CHANNEL = PREFIX + "stop"
#: The webhook signing secret of tenant "default" (the installation-wide one of earlier versions,
#: so receivers set up before tenants keep verifying); other tenants' are `webhook_secret(tenant)`.
WEBHOOK_SECRET = PREFIX + "webhook_secret"
#: Batches that may still need work (running, or ended with items or a callback outstanding):
#: what a sweep visits, so that it costs O(active batches), not O(all batches ever made).
ACTIVE_BATCHES = PREFIX + "active"
#: Running batches by the end of their completion window (Redis-clock microseconds).
DEADLINES = PREFIX + "deadlines"
#: Held by the one process sweeping; its value is the sweeper's id.
SWEEP_LEASE = PREFIX + "sweep:lease"
#: When the last sweep ran and what it repaired (a hash), and what all sweeps repaired.
SWEEP_LAST = PREFIX + "sweep:last"
SWEEP_TOTALS = PREFIX + "sweep:totals"


def agent(agent_id: str) -> str:
    return f"{PREFIX}agent:{agent_id}"


def agent_blocks(agent_id: str) -> str:
    return f"{PREFIX}agent:{agent_id}:blocks"


def agent_messages(agent_id: str) -> str:
    return f"{PREFIX}agent:{agent_id}:msgs"


def message(message_id: str) -> str:
    return MESSAGE_PREFIX + message_id


def batch(batch_id: str) -> str:
    return f"{PREFIX}batch:{batch_id}"


def batch_items(batch_id: str) -> str:
    return f"{PREFIX}batch:{batch_id}:items"


def batch_requests(batch_id: str, number: int) -> str:
    """The batch's requests `number * blob_size` onwards, one JSON object a line (app/store/blobs.py)."""
    return f"{PREFIX}batch:{batch_id}:requests:{number}"


def batch_request_places(batch_id: str, number: int) -> str:
    """Where each line of blob `number` ends, and its agent ids when the batch has several (JSON):
    read instead of the blob itself, whose requests may be megabytes each."""
    return f"{PREFIX}batch:{batch_id}:requests:{number}:places"


def batch_messages(batch_id: str) -> str:
    return f"{PREFIX}batch:{batch_id}:msgs"


def batch_agent_messages(batch_id: str, agent_id: str) -> str:
    return f"{PREFIX}batch:{batch_id}:agent:{agent_id}:msgs"


def batch_chunks(batch_id: str) -> str:
    """The chunks of a batch not yet finished: first item position -> "last position:message id"."""
    return f"{PREFIX}batch:{batch_id}:chunks"


def callback_lock(batch_id: str) -> str:
    return f"{PREFIX}batch:{batch_id}:callback_lock"


def callback_attempts(batch_id: str) -> str:
    """The batch's callback delivery attempts, oldest first (a list of JSON objects, capped)."""
    return f"{PREFIX}batch:{batch_id}:callback_attempts"


def webhook_secret(tenant: str) -> str:
    return WEBHOOK_SECRET if tenant == DEFAULT_TENANT else f"{WEBHOOK_SECRET}:{tenant}"


def item(item_id: str) -> str:
    return f"{PREFIX}item:{item_id}"


#: Prefix of the rate-limit counters (written by the `limits` library's storage, app/api/rate_limits.py).
RATE_LIMITS = PREFIX + "ratelimit"


def idempotency(tenant: str, key: str) -> str:
    return f"{PREFIX}idem:{tenant}:{key}"


def agent_pending_approval(agent_id: str) -> str:
    """The id of the approval request the agent waits on ('' once answered; absent if it never
    asked for one through a commit that kept this marker)."""
    return f"{PREFIX}agent:{agent_id}:pending_approval"

#: Worker processes that sent a heartbeat (their hashes expire; readers drop the stale members).
WORKERS = PREFIX + "workers"
#: Counters for /metrics: fields `<name>` or `<name>|<label>=<value>` (app/store/monitor.py).
METRIC_COUNTERS = PREFIX + "metrics:counters"
#: Histograms for /metrics: fields `le=<bound>` (each observation counted in its bucket only; the
#: count is their sum) and `sum`.
METRIC_TTFT = PREFIX + "metrics:hist:ttft_seconds"
METRIC_DURATION = PREFIX + "metrics:hist:duration_seconds"
#: The most recent time-to-first-token samples (seconds, newest first), for percentiles.
METRIC_TTFT_RECENT = PREFIX + "metrics:ttft_recent"
#: Prefix of the per-minute hashes (`<prefix><unix minute>`: finished, failed).
METRIC_MINUTE_PREFIX = PREFIX + "metrics:minute:"


def worker(owner: str) -> str:
    return f"{PREFIX}worker:{owner}"


def metric_minute(minute: int) -> str:
    return f"{METRIC_MINUTE_PREFIX}{minute}"

#: API keys: SHA-256 hex of the key -> its record (JSON); key id -> hash; key id -> last use.
API_KEYS_BY_HASH = PREFIX + "apikeys"
API_KEY_IDS = PREFIX + "apikey_ids"
API_KEY_LAST_USED = PREFIX + "apikey_last_used"
#: Held while a process makes the installation's first key.
API_KEY_BOOTSTRAP = PREFIX + "apikey_bootstrap"


def tenant_agents(tenant: str) -> str:
    """The tenant's agents, ordered like AGENTS (for its lists)."""
    return f"{PREFIX}tenant:{tenant}:agents"


def tenant_batches(tenant: str) -> str:
    return f"{PREFIX}tenant:{tenant}:batches"


def model_limit(bucket: str, part: str) -> str:
    """A model's fleet-wide limit state (app/store/model_limits.py): `pause`, `streams`, `window`,
    `tokens`. Hash-tagged so that one model's keys stay in one Redis Cluster slot."""
    return f"{PREFIX}limit:{{{bucket}}}:{part}"
