"""Local fake of the Telegram Bot API (bot side under /bot<token>/, user side under /_sandbox/).

Example: python -m sandbox.telegram_fake --host 127.0.0.1 --port 8081 --token 123456:SANDBOX-TOKEN
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from pathlib import Path

from .server import serve_forever
from .state import DEFAULT_TOKEN
from .web import DEFAULT_ADMIN_ID, WebConfig

# Where `make run`'s fake keeps uploaded files, so the file_ids the bot stored in Postgres still work
# after the fake restarts (the supervisor restarts it, and every `make run` starts it anew).
DEFAULT_FILES_DIR = Path(__file__).resolve().parents[2] / ".run" / "telegram-fake" / "files"


def _parse_args() -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.telegram_fake",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default=env.get("TELEGRAM_FAKE_HOST", "127.0.0.1"), help="env TELEGRAM_FAKE_HOST")
    parser.add_argument(
        "--port", type=int, default=int(env.get("TELEGRAM_FAKE_PORT", "8081")), help="env TELEGRAM_FAKE_PORT"
    )
    parser.add_argument(
        "--token",
        action="append",
        dest="tokens",
        help=f"bot token '<bot id>:<secret>'; repeat for several bots "
        f"(env TELEGRAM_FAKE_TOKENS, comma separated; default {DEFAULT_TOKEN})",
    )
    parser.add_argument(
        "--webhook-retry-initial",
        type=float,
        default=float(env.get("TELEGRAM_FAKE_WEBHOOK_RETRY_INITIAL", "0.2")),
        help="first webhook retry delay in seconds, doubling up to --webhook-retry-max "
        "(env TELEGRAM_FAKE_WEBHOOK_RETRY_INITIAL)",
    )
    parser.add_argument(
        "--webhook-retry-max",
        type=float,
        default=float(env.get("TELEGRAM_FAKE_WEBHOOK_RETRY_MAX", "5")),
        help="env TELEGRAM_FAKE_WEBHOOK_RETRY_MAX",
    )
    parser.add_argument(
        "--webhook-timeout",
        type=float,
        default=float(env.get("TELEGRAM_FAKE_WEBHOOK_TIMEOUT", "10")),
        help="seconds to wait for the webhook's answer (env TELEGRAM_FAKE_WEBHOOK_TIMEOUT)",
    )
    parser.add_argument(
        "--web-admin-id",
        type=int,
        default=int(env.get("TELEGRAM_FAKE_WEB_ADMIN_ID", str(DEFAULT_ADMIN_ID))),
        help="the web chat's admin persona: one of the bot's ADMIN_IDS (env TELEGRAM_FAKE_WEB_ADMIN_ID)",
    )
    parser.add_argument(
        "--flower-url",
        default=env.get("TELEGRAM_FAKE_FLOWER_URL") or None,
        help="Flower, linked from the web chat; with env TELEGRAM_FAKE_FLOWER_AUTH=user:password the "
        "chat's tasks are shown too (env TELEGRAM_FAKE_FLOWER_URL)",
    )
    parser.add_argument(
        "--files-dir",
        default=env.get("TELEGRAM_FAKE_FILES_DIR", str(DEFAULT_FILES_DIR)),
        help="keep uploaded files here so a restart keeps them; empty: in memory only "
        f"(env TELEGRAM_FAKE_FILES_DIR; default {DEFAULT_FILES_DIR})",
    )
    parser.add_argument(
        "--log-level", default=env.get("TELEGRAM_FAKE_LOG_LEVEL", "INFO"), help="env TELEGRAM_FAKE_LOG_LEVEL"
    )
    args = parser.parse_args()
    if not args.tokens:
        env_tokens = [token.strip() for token in env.get("TELEGRAM_FAKE_TOKENS", "").split(",") if token.strip()]
        args.tokens = env_tokens or [DEFAULT_TOKEN]
    return args


def main() -> None:
    args = _parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # uvicorn re-raises the Ctrl-C it handled gracefully; that is a normal exit here.
    with contextlib.suppress(KeyboardInterrupt):
        serve_forever(
            args.tokens,
            host=args.host,
            port=args.port,
            webhook_retry_initial=args.webhook_retry_initial,
            webhook_retry_max=args.webhook_retry_max,
            webhook_timeout=args.webhook_timeout,
            web=WebConfig(
                admin_id=args.web_admin_id,
                flower_url=args.flower_url,
                flower_auth=os.environ.get("TELEGRAM_FAKE_FLOWER_AUTH") or None,
            ),
            files_dir=args.files_dir or None,
        )


if __name__ == "__main__":
    main()
