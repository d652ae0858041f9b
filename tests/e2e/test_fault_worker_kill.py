"""A worker killed with SIGKILL while a task of every queue is running: after redelivery every one
of them completes, and each has its effect exactly once.

Each task is caught at a point where it really waits on something outside the worker: Telegram out
of reach (the update's reply, the photo download, an outbox message), Stripe answering slowly
after it created the Checkout Session, and Postgres row locks that the test holds (the
reservation's hot offer row, the user row a privacy erasure takes). The stack has its own Redis and
fakes, so the kill disturbs no other test; the second worker's short visibility timeout stands in
for the hour production waits before a dead worker's messages are delivered again."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from kombu import Connection

from core import db, outbox
from core.outbox import Reply
from domain import reservations as rsv
from localenv.services import RedisServer, free_port
from models import AuditEntry, Offer, Order, PhotoStatus, User
from sandbox.stripe_fake import StripeFake
from sandbox.telegram_fake import TelegramFake, TelegramFakeClient
from tasks.app import app
from tests.e2e.conftest import new_user_id
from tests.factories import make_business, make_offer, make_user
from tests.processes import ROOT, start_gateway, start_worker
from tests.support.waiting import bot_texts, wait_until

pytestmark = pytest.mark.slow

STRIPE_SECRET = "whsec_kill_test"


def _count(client: TelegramFakeClient, chat_id: int, needle: str) -> int:
    return sum(needle in text for text in bot_texts(client, chat_id))


def _lock_waiters(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"))


@pytest.fixture(scope="module")
def kill_stack(migrated, tmp_path_factory):
    telegram = TelegramFake().start()
    stripe = StripeFake().start()
    redis = RedisServer(tmp_path_factory.mktemp("kill-redis"), free_port()).start()
    env = {"TELEGRAM_API_URL": telegram.url, "REDIS_URL": redis.url, "TELEGRAM_WEBHOOK_SECRET": "kill-secret",
           "STRIPE_API_URL": stripe.url, "STRIPE_SECRET_KEY": "sk_test_kill", "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET}
    gateway, gateway_url = start_gateway(env)
    subprocess.run([sys.executable, "-m", "bot.setup", "webhook"], cwd=ROOT,
                   env={**os.environ, **env, "PUBLIC_URL": gateway_url}, check=True, capture_output=True)
    stripe.configure_webhook(url=f"{gateway_url}/stripe/webhook", secret=STRIPE_SECRET, retry_base_delay=0.2)
    client = TelegramFakeClient(telegram.url)
    yield client, stripe, redis, env
    client.close()
    gateway.stop()
    redis.stop()
    stripe.stop()
    telegram.stop()


def test_every_queue_survives_a_sigkill_with_each_effect_once(kill_stack):
    client, stripe, redis, env = kill_stack
    owner, talker, buyer, payer, leaver, reader = (new_user_id() for _ in range(6))
    for user in (owner, talker, buyer, payer, leaver, reader):
        client.create_user(user, first_name="Kim")
    for user in (owner, buyer, payer, leaver, reader):
        make_user(user)
    business = make_business(owner)
    hot_offer = make_offer(business, "Hot bagels", quantity=5)
    paid_offer = make_offer(business, "Soup", quantity=5)
    photo = _photo_on_telegram(env["TELEGRAM_API_URL"], owner)
    draft = _draft_with_photo(business, photo)
    with db.session_scope() as session:
        held = rsv.reserve(session, paid_offer, payer, 1)
        note = outbox.record(session, f"kill-test:{reader}", reader, Reply(text="Your bag is waiting 🥐"))
    owner_messages_before = len(bot_texts(client, owner))
    calls_before = max((call["id"] for call in client.calls()), default=0)

    # Hold everything the six tasks will wait on.
    engine = sa.create_engine(db.engine().url)
    locks = engine.connect()
    locks.begin()
    locks.execute(sa.text("SELECT id FROM offers WHERE id = :id FOR UPDATE"), {"id": hot_offer})
    locks.execute(sa.text("SELECT id FROM users WHERE id = :id FOR UPDATE"), {"id": leaver})
    client.set_unreachable(True, methods=["sendMessage", "getFile", "sendPhoto"])
    stripe.add_fault("delay", path="/v1/checkout/sessions", method="POST", count=1, delay_seconds=60)

    worker = start_worker("kill-worker-a", concurrency=6, env=env)
    try:
        with Connection(redis.url) as broker:
            client.send_text(talker, "/help")  # through the gateway: updates.handle_update
            app.send_task("reservations.place_order", args=[hot_offer, buyer, 1, f"kill-{buyer}"], connection=broker)
            app.send_task("payments.create_checkout", args=[held.order_id], connection=broker)
            app.send_task("images.process_offer_photo", args=[draft, photo], connection=broker)
            app.send_task("notifications.deliver_in_order", args=[[note]], connection=broker)
            app.send_task("maintenance.delete_user_data", args=[leaver], kwargs={"actor": "kill-test"},
                          connection=broker)
        # Every one of them is in flight: Telegram holds the calls of three, two wait on row locks, and Stripe
        # has created the Checkout Session but not answered yet. Telegram calls time out after 15 s, so the
        # kill comes well before.
        wait_until(lambda: client._get("/faults")["held_calls"] == 3, 10, "three Bot API calls held")
        wait_until(lambda: _lock_waiters(engine) >= 2, 5, "two tasks waiting on row locks")
        wait_until(lambda: stripe.objects("checkout.session"), 5, "the Checkout Session created")
        worker.kill()
        worker.process.wait(10)
    finally:
        worker.stop()
        locks.rollback()
        locks.close()
        client.set_unreachable(False)
        stripe.clear_faults()

    survivor = start_worker("kill-worker-b", concurrency=2, env={**env, "BROKER_VISIBILITY_TIMEOUT": "1"})
    try:
        wait_until(lambda: _count(client, talker, "How it works"), 60, "the /help reply")
        wait_until(lambda: _count(client, buyer, "Please pay by"), 60, "the buyer's Pay button")
        wait_until(lambda: _count(client, payer, "Please pay by"), 60, "the payer's Pay button")
        wait_until(lambda: _count(client, reader, "Your bag is waiting"), 60, "the outbox message")
        wait_until(lambda: _count(client, leaver, "personal data was deleted"), 60, "the erasure notice")
        wait_until(lambda: _photo_status(draft) == PhotoStatus.READY, 60, "the deal card")
        time.sleep(2.0)  # a second delivery of anything would show up by now

        assert _count(client, talker, "How it works") == 1
        assert _count(client, buyer, "Please pay by") == 1
        assert _count(client, payer, "Please pay by") == 1
        assert _count(client, reader, "Your bag is waiting") == 1
        assert _count(client, leaver, "personal data was deleted") == 1
        with db.session_scope() as session:
            orders = session.scalars(sa.select(Order).where(Order.offer_id == hot_offer)).all()
            assert [(o.customer_id, o.quantity) for o in orders] == [(buyer, 1)]
            assert session.get(Offer, hot_offer).units_held == 1
            assert session.get(User, leaver).deleted_at is not None
            erasures = session.scalars(sa.select(AuditEntry).where(
                AuditEntry.action == "maintenance.delete_user_data", AuditEntry.target == f"user:{leaver}")).all()
            assert len(erasures) == 1
        sessions = [s for s in stripe.objects("checkout.session")
                    if s.get("metadata", {}).get("order_id") == str(held.order_id)]
        assert len(sessions) == 1
        previews = [c for c in client.calls("sendPhoto", since=calls_before)
                    if str(c["params"].get("chat_id")) == str(owner) and c["status"] == 200]
        assert len(previews) == 1
        assert len(bot_texts(client, owner)) == owner_messages_before + 1
    finally:
        survivor.stop()


def _draft_with_photo(business: int, file_id: str) -> int:
    from models import OfferStatus

    return make_offer(business, "Veggie box", status=OfferStatus.DRAFT, photo_status=PhotoStatus.PROCESSING,
                      photo_source_file_id=file_id)


def _photo_on_telegram(telegram_url: str, chat_id: int) -> str:
    """A photo Telegram keeps (the bot's own upload), as a business's photo would be."""
    import httpx

    from core.settings import SANDBOX_BOT_TOKEN

    answer = httpx.post(f"{telegram_url}/bot{SANDBOX_BOT_TOKEN}/sendPhoto", data={"chat_id": chat_id},
                        files={"photo": ("photo.jpg", _jpeg())}, timeout=10).json()
    return answer["result"]["photo"][-1]["file_id"]


def _photo_status(offer_id: int) -> PhotoStatus:
    with db.session_scope() as session:
        return session.get(Offer, offer_id).photo_status


def _jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (800, 600), (200, 120, 40)).save(buffer, "JPEG")
    return buffer.getvalue()
