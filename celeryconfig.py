"""Celery configuration: the queue table, routes, acks and time limits, in one place.

Loaded by `workers.app` with `config_from_object`. Reading the environment and choosing the Redis
transport is all it does at import; connections are opened by Celery when first needed.
"""

from __future__ import annotations

from datetime import timedelta

from kombu import Queue

from runtime import redis_transport
from runtime.limits import celery_limits
from runtime.settings import get_settings

_settings = get_settings()
redis_transport.register()  # one redis-py client per channel, not one per publish/ack

# The queues of DESIGN.md "Queues"; name -> (soft, hard) Celery time limits, from runtime/limits.py
# (the jobs' own limits, which the running steps enforce, come first).
QUEUES = ("critical", "interactive", "agents", "images", "local", "maintenance", "notify")
# Queues whose jobs wait on the network (remote model streams, provider polls, webhook receivers): a
# `threads` pool with hundreds of slots per process serves them. The others run on prefork pools: `local`
# is CPU-bound (the local llama.cpp model, embeddings: slots = cores), critical and maintenance are short.
IO_QUEUES = ("interactive", "agents", "images", "notify")
QUEUE_LIMITS: dict[str, tuple[int, int]] = {name: celery_limits(name, _settings) for name in QUEUES}
LONGEST_TIME_LIMIT_S = max(hard for _soft, hard in QUEUE_LIMITS.values())
# A message not acked within the visibility timeout is handed to another worker; it must outlast
# the longest task or long tasks run twice (kombu#337).
VISIBILITY_TIMEOUT_S = LONGEST_TIME_LIMIT_S + 600

broker_url = _settings.broker_url
result_backend = _settings.result_backend_url or None
broker_connection_retry_on_startup = True
# A broker link that goes silent without closing (a NAT or firewall dropping it, a hung proxy): kombu's
# Redis sockets otherwise wait for ever (socket_timeout None), and a warm shutdown then hangs in closing
# the channel, reading the reply of a BRPOP that never comes, so no supervisor ever restarts the worker.
# With a timeout every blocking read ends; the health checks drop a BRPOP overdue by brpop_timeout +
# this interval, so a consumer on a dead link reconnects within about 21 s (kombu's default: 51).
BROKER_SOCKET_TIMEOUT_S = 5.0
broker_transport_options = {
    "visibility_timeout": VISIBILITY_TIMEOUT_S,
    "queue_order_strategy": "priority",
    "priority_steps": list(range(10)),
    "sep": ":",
    "socket_timeout": BROKER_SOCKET_TIMEOUT_S,
    "socket_connect_timeout": 5.0,
    "health_check_interval": 10,
}


def transport_options_for(broker: str, options: dict[str, object]) -> dict[str, object]:
    """`options` for `broker`: on RabbitMQ a publish returns once the broker confirmed it. A quorum queue
    writes a message to its log in batches: an unconfirmed one sent just before the node stopped was gone
    after its restart (tests/integration/test_broker.py), so a saga's send after commit is not a send."""
    if broker.startswith(("amqp", "pyamqp")):
        return {**options, "confirm_publish": True}
    return options


broker_transport_options = transport_options_for(broker_url, broker_transport_options)
result_backend_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
result_expires = timedelta(days=1)

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

# At-least-once: ack after the task ran; a child killed mid-task puts the message back. Our base
# task caps redeliveries (Redis only flags `redelivered`, it does not count).
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_track_started = True
# Per-queue limits are set on each task by `workers.app.queue_task` (annotations match exact names).
task_time_limit = QUEUE_LIMITS["maintenance"][1]
task_soft_time_limit = QUEUE_LIMITS["maintenance"][0]

# On RabbitMQ with BROKER_QUORUM_QUEUES every work queue is a quorum queue (replicated, durable, a
# delivery count per message);
# Celery 5.5+ detects them and uses per-consumer prefetch and native delayed delivery for countdowns (a
# retry's backoff). RabbitMQ's consumer_timeout (30 min by default) must outlast the longest task or a
# long agent task's channel is closed at minute 30: deploy/rabbitmq/rabbitmq.conf sets it above
# LONGEST_TIME_LIMIT_S (tests/unit/test_celeryconfig.py holds the two together).
def queues_for(broker: str, *, quorum: bool = False) -> tuple[Queue, ...]:
    """The work queues as declared on `broker` (quorum queues on RabbitMQ when `quorum`); a producer whose
    broker is not this process's (orchestration/bootstrap.py) declares them the same way as the workers."""
    amqp = broker.startswith(("amqp", "pyamqp"))
    arguments = {"x-queue-type": "quorum"} if amqp and quorum else None
    return tuple(Queue(name, routing_key=name, queue_arguments=arguments) for name in QUEUES)


task_queues = queues_for(broker_url, quorum=_settings.BROKER_QUORUM_QUEUES)
task_default_queue = "maintenance"
task_create_missing_queues = False
# Routing by name only: a `queue=` on a decorator is lost on later chain steps (celery#5219).
task_routes = {f"creditflow.{name}.*": {"queue": name, "routing_key": name} for name in QUEUES}

worker_send_task_events = True  # Flower and the metrics see received/started/succeeded/failed
# A task-sent event would be a second broker write on every enqueue (the API's and each chain step's);
# a job's queue wait is already in the jobs table (enqueued_at -> started_at).
task_send_sent_event = False
worker_hijack_root_logger = False
# A running task finishes after a broker outage; a redelivered copy finds its job claimed and stops.
worker_cancel_long_running_tasks_on_connection_loss = False


def _every(task: str, seconds: float, *, expires_after: int | None = None) -> dict[str, object]:
    """A beat entry; with `expires_after`, a run still unstarted after that many periods is dropped (the
    next one does the same work), so a stopped worker does not come back to a pile of them."""
    entry: dict[str, object] = {"task": task, "schedule": seconds}
    if expires_after is not None:
        entry["options"] = {"expires": seconds * expires_after}
    return entry


beat_schedule: dict[str, dict[str, object]] = {
    "heartbeat": _every("creditflow.maintenance.heartbeat", 30.0),
    "reap": _every("creditflow.maintenance.reap", _settings.REAPER_INTERVAL_S, expires_after=3),
    "seal-ledger": _every("creditflow.maintenance.seal", _settings.SEAL_INTERVAL_S, expires_after=3),
    "purge-idempotency": _every("creditflow.maintenance.purge_idempotency", 3600.0),
    "purge-images": _every("creditflow.maintenance.purge_images", 3600.0),
    "reconcile-payments": _every(
        "creditflow.maintenance.reconcile_payments", _settings.RECONCILE_INTERVAL_S, expires_after=2
    ),
    "scan-crypto": _every(
        "creditflow.maintenance.scan_crypto", _settings.CRYPTO_SCAN_INTERVAL_S, expires_after=2
    ),
    "auto-top-up": _every(
        "creditflow.maintenance.auto_top_up_sweep", _settings.AUTO_TOP_UP_INTERVAL_S, expires_after=2
    ),
    "notify-sweep": _every(
        "creditflow.notify.sweep_outbox", _settings.NOTIFY_SWEEP_INTERVAL_S, expires_after=2
    ),
}
# A consume canary per queue (orchestration/jobs/canaries.py), at the highest priority so only a queue
# no worker takes from (or one whose every slot stayed busy) leaves it waiting. One that waited past the
# timeout is dropped unrun when a worker gets to it; a queue nobody ever consumes gathers one per
# interval, so leave such queues out of CANARY_QUEUES.
CANARY_QUEUES = _settings.canary_queues
if unknown_canaries := sorted(set(CANARY_QUEUES) - set(QUEUES)):
    raise ValueError(f"CANARY_QUEUES names unknown queues: {', '.join(unknown_canaries)}")
beat_schedule.update(
    {
        f"canary-{queue}": {
            "task": f"creditflow.{queue}.canary",
            "schedule": _settings.CANARY_INTERVAL_S,
            "options": {"expires": _settings.CANARY_TIMEOUT_S, "priority": 0},
        }
        for queue in CANARY_QUEUES
    }
)
beat_schedule_filename = str(_settings.VAR_DIR / "celerybeat-schedule")
