"""Celery configuration. Each non-default choice says why in one line."""

from kombu import Queue

from core import broker
from core.queues import QUEUES
from core.settings import get_settings

_settings = get_settings()


broker_url = _settings.redis_url
# kombu's Redis transport, fixed so a worker outlives a Redis restart (core/broker.py says how).
broker.install()
result_backend = _settings.redis_url

# JSON only: pickle would let anyone who can write to Redis run code in the workers.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

# One queue per kind of work so each can be scaled and watched on its own.
task_queues = [Queue(name, routing_key=name) for name in QUEUES]
task_default_queue = "maintenance"
# Route by the task name's prefix: "payments.create_checkout" goes to the payments queue.
task_routes = ([(f"{name}.*", {"queue": name}) for name in QUEUES],)
task_create_missing_queues = False

# Tasks are idempotent, so a task is acknowledged after it ran: a killed worker loses nothing.
task_acks_late = True
task_reject_on_worker_lost = True
# One message at a time per process: slow tasks must not sit behind each other in a prefetch
# buffer. The updates worker raises this on its command line (its tasks are short).
worker_prefetch_multiplier = 1

# A stuck task is interrupted (soft) and then failed (hard), instead of holding a process forever:
# TASK_SOFT_TIME_LIMIT_SECONDS and TASK_TIME_LIMIT_SECONDS, kept by the process running the task
# (core/time_limits.py, armed in tasks/app.py). Celery's own limits stay off: they are timers in the
# worker's main process, which fire late after a broker outage and wedged workers (Celery #4789).
task_soft_time_limit = None
task_time_limit = None

# Results are rarely read (maintenance reports); the ones kept expire after a day.
task_ignore_result = True
result_expires = 24 * 3600

# A message a worker took but never acknowledged (the worker died) goes back to its queue this many
# seconds after it was delivered or, with a countdown/ETA, fell due (core/broker.py). So countdowns
# need no longer timeout; each must only exceed how long a live worker may hold a due message (the
# 90 s time limit, plus a wait in the worker when many fall due at once). A second run has one
# effect, as every task is idempotent; shorter recovers sooner. docs/redelivery.md says more.
VISIBILITY_TIMEOUTS = {
    "updates": 60,  # a tap waits: answered ≤ 60 + 5 s after its worker died; a copy finds it done
    "reservations": 60,  # a customer waits on "Reserving…"; a copy finds the order held
    "notifications": 120,  # a Pay button or pickup code waits; a row is only sent while pending
    "payments": 180,  # Stripe calls up to the time limit; a sale's holds expire at once and queue
    "images": 180,  # photo work and the preview upload; a copy repeats the CPU work
    "maintenance": 300,  # nobody waits; jobs run long, and a copy would be wasted work
}
_visibility_timeouts = {
    queue: _settings.broker_visibility_timeout or seconds for queue, seconds in VISIBILITY_TIMEOUTS.items()
} | _settings.broker_visibility_timeouts
broker_transport_options = {
    "visibility_timeouts": _visibility_timeouts,
    "visibility_timeout": max(_visibility_timeouts.values()),  # any other queue
    # Every worker sweeps for such messages when it starts and then every 5 s (kombu's default:
    # every 10th call of a 10 s timer, which would add up to 100 s to the timeouts above).
    "unacked_restore_interval": 5,
    "unacked_restore_throttle": 1,
    # The sweep's lock in Redis; a worker killed while holding it would block every sweep this long
    # (kombu's default is 300 s). A sweep takes milliseconds.
    "unacked_mutex_expire": 30,
    # A task message Redis hands over and loses before the consumer records it (Redis stopping just
    # then, or the consumer's main process killed) is pushed back by the same sweep this long after
    # it was published. Every task queue; the inbox also covers updates the gateway pushes itself.
    "recoverable_queues": QUEUES,
    "lost_message_grace": 30,
    "health_check_interval": 10,
    # A worker of several queues takes a customer's reservation or checkout before new updates.
    "queue_order_strategy": "core.broker:FollowUpsFirstCycle",
}
result_backend_transport_options = {"health_check_interval": 10}
redis_backend_health_check_interval = 10
# Keep retrying the broker at start-up and after a loss instead of exiting.
broker_connection_retry_on_startup = True
broker_connection_max_retries = None
# A task running when the broker connection drops finishes its work (the database, not the broker,
# decides what happened; a redelivered copy finds it done). Terminating it could land between a
# Telegram send and the commit that records it, and the redelivery would send that message twice.
worker_cancel_long_running_tasks_on_connection_loss = False

# Events let Flower show tasks live.
worker_send_task_events = True
task_send_sent_event = True
task_track_started = True

# Recycle worker processes now and then to bound memory (Pillow, long-lived HTTP clients).
worker_max_tasks_per_child = 5000
# We configure logging ourselves (structlog, JSON).
worker_hijack_root_logger = False
worker_redirect_stdouts = False

enable_utc = True
timezone = "UTC"

# Beat keeps its schedule and a lock in Redis, so a second beat process waits instead of
# firing every job twice. core.beat's scheduler is redbeat's, made to wait out a Redis outage
# instead of exiting (and to send nothing while another beat holds the lock).
beat_scheduler = "core.beat.Scheduler"
redbeat_redis_url = _settings.redis_url
# A Redis that stops answering (a partition rather than a stopped server) must not hang a tick past
# the lock's timeout.
redbeat_redis_options = {"socket_connect_timeout": 5, "socket_timeout": 5}
redbeat_lock_timeout = 90
beat_max_loop_interval = 15
