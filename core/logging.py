"""Structured logs (structlog): one JSON object per line, with the correlation id of the
update or Stripe event being handled bound through contextvars."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, cast

import structlog
from structlog.typing import Processor

if TYPE_CHECKING:
    from sentry_sdk.types import Event, Hint

_SECRET_KEYS = re.compile(r"token|secret|password|authorization|api_key|card", re.IGNORECASE)
# A Telegram bot token inside any string (e.g. a URL in an httpx log line).
_BOT_TOKEN = re.compile(r"\d{5,}:[A-Za-z0-9_-]{20,}")


def _redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if _SECRET_KEYS.search(key):
            event_dict[key] = "[redacted]"
        elif isinstance(event_dict[key], str):
            event_dict[key] = _BOT_TOKEN.sub("[bot-token]", event_dict[key])
    return event_dict


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact,
    ]
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer,
        ])
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO, and Bot API URLs contain the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def get_logger(name: str):
    return structlog.stdlib.get_logger(name)


def init_error_reporting(sentry_dsn: str | None) -> None:
    """Optional Sentry (SENTRY_DSN): exceptions from the gateway, poller and workers. No personal
    data is sent (send_default_pii off), and events pass through the same redaction as logs."""
    if not sentry_dsn:
        return
    # Imported only when Sentry is configured: with its Celery integration it adds about 0.2 s to the
    # start of every process (gateway, poller, each worker), which most deployments do not use.
    import sentry_sdk  # noqa: PLC0415
    from sentry_sdk.integrations.celery import CeleryIntegration  # noqa: PLC0415

    def scrub(event: Event, _hint: Hint) -> Event:
        # Event is a TypedDict, which mypy will not pass as a MutableMapping; at run time it is a dict.
        _redact(None, "sentry", cast("dict[str, Any]", event))  # redacts in place
        return event

    sentry_sdk.init(dsn=sentry_dsn, send_default_pii=False, integrations=[CeleryIntegration()], before_send=scrub)
