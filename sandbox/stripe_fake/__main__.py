"""python -m sandbox.stripe_fake [--host H] [--port P] [--webhook-url U] [--webhook-secret S] ...

Every option also reads an environment variable (STRIPE_FAKE_HOST, STRIPE_FAKE_PORT,
STRIPE_FAKE_WEBHOOK_URL, STRIPE_FAKE_WEBHOOK_SECRET, STRIPE_FAKE_API_KEY,
STRIPE_FAKE_PUBLIC_URL); a command-line option wins.
"""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn

from .app import create_app
from .state import FakeState, WebhookConfig, new_webhook_secret


def main(argv: list[str] | None = None) -> None:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m sandbox.stripe_fake", description="Local fake of the Stripe API.")
    parser.add_argument("--host", default=env("STRIPE_FAKE_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("STRIPE_FAKE_PORT", "12111")))
    parser.add_argument("--webhook-url", default=env("STRIPE_FAKE_WEBHOOK_URL"), help="where events are POSTed")
    parser.add_argument(
        "--webhook-secret",
        default=env("STRIPE_FAKE_WEBHOOK_SECRET"),
        help="whsec_... used to sign deliveries (generated and printed when omitted)",
    )
    parser.add_argument(
        "--api-key", default=env("STRIPE_FAKE_API_KEY"), help="accept only this key (default: any sk_test_...)"
    )
    parser.add_argument(
        "--public-url",
        default=env("STRIPE_FAKE_PUBLIC_URL"),
        help="base URL browsers use to reach the fake, for checkout page links (default: the request's host)",
    )
    parser.add_argument("--log-level", default=env("STRIPE_FAKE_LOG_LEVEL", "info"))
    args = parser.parse_args(argv)

    webhook = None
    if args.webhook_url:
        webhook = WebhookConfig(url=args.webhook_url, secret=args.webhook_secret or new_webhook_secret())
        print(f"stripe fake: webhooks -> {webhook.url} signed with {webhook.secret}", file=sys.stderr)
    state = FakeState(api_key=args.api_key, webhook=webhook)
    app = create_app(state, public_url=args.public_url)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, lifespan="on")


if __name__ == "__main__":
    main()
