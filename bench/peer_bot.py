"""The bot a team would write instead, for the flash sale's comparison: a conventional
python-telegram-bot `Application` with its webhook server and `concurrent_updates`, no Celery.

    python -m bench.peer_bot --port PORT --secret SECRET

Its "✅ Reserve and pay" handler does what ours does, with the same domain functions, Postgres,
Stripe client and wording: answer the button, refuse at sight an offer that visibly has too few
units left, else reserve (`domain.reservations.reserve`, the same statement), create the Checkout
Session (`checkout_params`, `core.stripe_api`) and turn the confirmation screen into the Pay
message, or say why not. The database and Stripe calls are synchronous, so they run in the
default thread pool (`asyncio.to_thread`), as such a bot would run them.

What it does not have: an acknowledged update lives only in this process's memory (killed, it is
gone, and Telegram does not send it again); nothing records which updates were handled, so a
redelivered one is handled twice; a chat's updates are handled concurrently in any order; a reply
that fails is not retried. The benchmark measures speed only.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, ContextTypes

import chat.messages  # noqa: F401 - the renderers (PayNow)
from chat.messages.orders import refusal
from core import outbox, stripe_api
from core.db import autocommit_connection, session_scope
from core.i18n import Translator
from core.settings import get_settings
from domain import reservations
from domain.ordering import MAX_PER_ORDER
from domain.payments.checkout import checkout_params
from domain.payments.notices import PayNow
from domain.payments.orders import offer_and_business, order_key
from domain.reservations import ReserveOutcome
from models import Offer, OfferStatus, Order, User

READY = "peer bot ready"


def _reserve(offer_id: int, customer_id: int, quantity: int, message_id: int) -> tuple[str, list | None]:
    """The text and keyboard that answer the tap (blocking: runs in a thread)."""
    with session_scope() as session:
        user = session.get(User, customer_id)
        _ = Translator(user.language if user else "en")
        offer = session.get(Offer, offer_id)
        if offer is None or offer.status not in (OfferStatus.ACTIVE, OfferStatus.SOLD_OUT):
            reply = refusal(_, ReserveOutcome.UNAVAILABLE, offer_id, "", None)
            return reply.text, reply.keyboard
        if offer.units_left < quantity and offer.pickup_end > datetime.now(UTC):  # sold out at sight
            outcome = ReserveOutcome.SOLD_OUT if offer.units_left <= 0 else ReserveOutcome.NOT_ENOUGH_LEFT
            reply = refusal(_, outcome, offer.id, offer.title, max(offer.units_left, 0))
            return reply.text, reply.keyboard
        with autocommit_connection(session) as conn:
            result = reservations.reserve(conn, offer_id, customer_id, quantity,
                                          hold_minutes=get_settings().hold_minutes, per_order_cap=MAX_PER_ORDER)
        if result.outcome not in (ReserveOutcome.RESERVED, ReserveOutcome.ALREADY_HELD):
            reply = refusal(_, result.outcome, offer.id, offer.title, result.units_left)
            return reply.text, reply.keyboard
        order = session.get_one(Order, result.order_id)
        offer, business = offer_and_business(session, order)
        params = checkout_params(order, offer, business)
        key = order_key(order)
    checkout = stripe_api.create_checkout_session(params, idempotency_key=f"checkout-{key}")
    with session_scope() as session:
        order = session.get_one(Order, result.order_id)
        order.checkout_session_id = checkout["id"]
        order.checkout_url = checkout["url"]
        offer, business = offer_and_business(session, order)
        reply = outbox.render(PayNow(order=order, offer=offer, business=business, language=_.language,
                                     message_id=message_id))
        return reply.text, reply.keyboard


async def on_buy(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None and query.message is not None
    _kind, offer_id, quantity, _price = query.data.split(":")
    await query.answer("Reserving…")
    text, keyboard = await asyncio.to_thread(_reserve, int(offer_id), query.from_user.id, int(quantity),
                                             query.message.message_id)
    await context.bot.do_api_request("editMessageText", {
        "chat_id": query.from_user.id, "message_id": query.message.message_id, "text": text, "parse_mode": "HTML",
        **({"reply_markup": {"inline_keyboard": keyboard}} if keyboard else {})})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--concurrent-updates", type=int, default=64)
    args = parser.parse_args()
    settings = get_settings()
    application = (Application.builder().token(settings.telegram_token)
                   .base_url(f"{settings.telegram_api_url}/bot").concurrent_updates(args.concurrent_updates)
                   .connection_pool_size(64).pool_timeout(30).build())
    application.add_handler(CallbackQueryHandler(on_buy, pattern=r"^buy:"))

    async def post_init(_app: Application) -> None:
        print(READY, flush=True)  # the webhook server listens a moment later

    application.post_init = post_init
    # The benchmark's load generator posts the updates; the fake's own delivery to this webhook gets
    # none (the taps were recorded before, and are dropped here) and is removed after the run.
    application.run_webhook(listen="127.0.0.1", port=args.port, url_path="telegram/webhook",
                            secret_token=args.secret, webhook_url=f"http://127.0.0.1:{args.port}/telegram/webhook",
                            drop_pending_updates=True)


if __name__ == "__main__":
    main()
