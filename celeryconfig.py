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

# A stuck task is interrupted (soft) and then killed (hard), instead of holding a process forever.
task_soft_time_limit = 60
task_time_limit = 90

# Results are rarely read (maintenance reports); the ones kept expire after a day.
task_ignore_result = True
result_expires = 24 * 3600

# Redis redelivers an unacknowledged message after this long; it must exceed every
# countdown/eta we use (the longest retry backoff is 10 minutes) or tasks would run twice.
# (BROKER_VISIBILITY_TIMEOUT, default 3600, lets a test see a killed worker's messages come back
# quickly: a worker starting up restores every unacknowledged message older than this.)
broker_transport_options = {"visibility_timeout": _settings.broker_visibility_timeout, "health_check_interval": 10}
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
