"""Servers compared by the webhook-intake benchmark, each started as its own process:

* `batched`   — the gateway as shipped (async publish, one Redis round trip and one task for the
                updates that arrive together);
* `unbatched` — the gateway publishing each update in its own round trip;
* `send_task` — what most people write first: Celery's `send_task` inside the async route;
* `ptb`       — python-telegram-bot's own webhook server with a handler that does nothing
                (updates go to an in-memory queue, nothing durable).
"""

from __future__ import annotations

import argparse

import uvicorn

from bot.gateway import create_app, tune_garbage_collector
from bot.publisher import HANDLE_UPDATE_TASK, UPDATES_QUEUE, Enqueued, UpdatePublisher
from core.settings import get_settings


class SendTaskPublisher(UpdatePublisher):
    """Celery's synchronous publish in the route: blocks the event loop for each message."""

    async def publish(self, update_id: int, raw_update: bytes) -> Enqueued:
        import orjson

        from tasks.app import app

        app.send_task(HANDLE_UPDATE_TASK, args=[orjson.loads(raw_update)], queue=UPDATES_QUEUE)
        return Enqueued(update_id, True)


def serve_gateway(variant: str, port: int) -> None:
    tune_garbage_collector()
    from tasks.app import app as celery_app

    settings = get_settings()
    publisher_class = SendTaskPublisher if variant == "send_task" else UpdatePublisher
    publisher = publisher_class(settings.redis_url, celery_app, settings.update_dedup_ttl_seconds,
                                batch=variant == "batched", window_s=settings.update_batch_window_ms / 1000,
                                max_batch=settings.update_batch_max)
    uvicorn.run(create_app(settings, publisher), host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning", backlog=2048)


def serve_ptb(port: int, api_url: str, secret: str) -> None:
    from telegram.ext import Application, TypeHandler

    async def ignore(_update, _context) -> None:
        return None

    application = (
        Application.builder().token(get_settings().telegram_token).base_url(f"{api_url}/bot")
        .base_file_url(f"{api_url}/file/bot").build()
    )
    application.add_handler(TypeHandler(object, ignore))
    application.run_webhook(listen="127.0.0.1", port=port, url_path="telegram/webhook", secret_token=secret,
                            webhook_url=f"http://127.0.0.1:{port}/telegram/webhook", close_loop=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variant", choices=["batched", "unbatched", "send_task", "ptb"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-url", default="")
    args = parser.parse_args()
    if args.variant == "ptb":
        serve_ptb(args.port, args.api_url, get_settings().telegram_webhook_secret.get_secret_value())
    else:
        serve_gateway(args.variant, args.port)


if __name__ == "__main__":
    main()
