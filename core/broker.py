"""kombu's Redis transport with one defect of kombu 5.7 worked around, so a worker survives a Redis
restart instead of exiting (the "stops consuming after Redis restart" trap).

What goes wrong without it: when Redis goes away while a worker holds unacknowledged messages,
Celery collects the broken connection (which detaches the transport from it) and then closes it.
Closing the channel restores the unacknowledged messages, which builds a new Redis client from the
detached connection and fails with `AttributeError: 'NoneType' object has no attribute 'hostname'`.
Celery treats that as unrecoverable and the worker process exits.

What this does instead: a closed connection raises a connection error, which kombu's close path
(and the late ack of a task that was still running) already tolerates, and the messages that could
not be put back (Redis is down) are remembered and put back as soon as this worker has a channel
again. Without that they would wait in Redis's
unacked set for the whole visibility timeout. Putting a message back twice is harmless: the second
time finds nothing under its tag.
"""

from __future__ import annotations

import threading

import redis
import structlog
from kombu import transport
from kombu.transport import redis as kombu_redis

logger = structlog.get_logger(__name__)

_lock = threading.Lock()
_tags_to_restore: set[str] = set()  # per worker process: the consumer lives in the main process


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client=None):
        tags = list(self._delivered)
        try:
            return super().restore_unacked(client)
        except redis.ConnectionError:
            with _lock:
                _tags_to_restore.update(tags)
            self._delivered.clear()
            logger.warning("broker_restore_deferred", messages=len(tags))
            return None


class Channel(kombu_redis.Channel):
    QoS = QoS

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)  # raises if Redis is still unreachable
        self._restore_deferred()

    def _connparams(self, asynchronous=False):
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection is already closed")
        return super()._connparams(asynchronous=asynchronous)

    def _restore_deferred(self) -> None:
        with _lock:
            tags = sorted(_tags_to_restore)
            _tags_to_restore.clear()
        if not tags:
            return
        restored = 0
        try:
            for tag in tags:
                self.qos.restore_by_tag(tag, client=self.client)
                restored += 1
        except redis.ConnectionError:
            with _lock:
                _tags_to_restore.update(tags[restored:])
            raise
        logger.info("broker_restore_done", messages=restored)


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Make `redis://` broker URLs use this transport in every process that loads the Celery
    configuration (workers, beat, Flower), keeping the URLs themselves unchanged."""
    transport.TRANSPORT_ALIASES["redis"] = f"{__name__}:Transport"
    transport._transport_cache.pop("redis", None)
