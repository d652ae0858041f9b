"""One Redis client per process for small commands (flood counts, the inbox), made anew after a fork."""

from __future__ import annotations

import os

import redis

from core.settings import get_settings

_client: redis.Redis | None = None
_client_pid: int | None = None


def client() -> redis.Redis:
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=2, socket_connect_timeout=2)
        _client_pid = os.getpid()
    return _client
