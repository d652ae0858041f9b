"""Outbound messages from every worker stay within Telegram's limits (the fake enforces them and
answers 429 beyond), none is lost, none is sent twice, and a user who blocked the bot is dropped."""

from __future__ import annotations

import concurrent.futures
import time

import pytest
import redis as redis_lib
import sqlalchemy as sa

from core import db, outbox
from core.outbox import Reply
from localenv.services import RedisServer, free_port
from models import Notification, NotificationStatus, User
from tasks.app import app
from tasks.notifications import deliver_in_order
from tests.conftest import CHAT_BURST_IN_TESTS, CHAT_RATE_IN_TESTS
from tests.e2e.conftest import new_user_id
from tests.factories import make_user
from tests.processes import start_worker


def _bot_texts(stack, chat_id: int) -> list[str]:
    return [m["text"] for m in stack.telegram.messages(chat_id) if m.get("from", {}).get("is_bot")]


def _wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("not reached in time")


def test_a_flood_stays_within_the_limits_and_loses_nothing(stack):
    # Telegram's 30/s overall; per chat, a little over what the workers are set to in tests
    # (tests/conftest.py), as Telegram's 1/s is a little over theirs in production.
    stack.telegram.set_rate_limit(True, per_chat_per_second=CHAT_RATE_IN_TESTS + 1,
                                  per_chat_burst=CHAT_BURST_IN_TESTS + 2)
    before = stack.telegram.stats()["too_many_requests"]
    chats = [new_user_id() for _ in range(30)]
    hot_chat = chats[0]
    hot = 2 + 3 * CHAT_BURST_IN_TESTS
    try:
        for chat in chats:
            stack.telegram.create_user(chat)
            make_user(chat)
        with db.session_scope() as session:
            for chat in chats:  # 60 messages over 30 chats ...
                for n in range(2):
                    outbox.notify(session, f"flood:{chat}:{n}", chat, Reply(text=f"deal {n}"))
            for n in range(2, hot):  # ... and more for one chat, well over its burst
                outbox.notify(session, f"flood:{hot_chat}:{n}", hot_chat, Reply(text=f"deal {n}"))
        _wait(lambda: all(len(_bot_texts(stack, c)) >= 2 for c in chats) and len(_bot_texts(stack, hot_chat)) == hot,
              timeout=40)
        assert stack.telegram.stats()["too_many_requests"] == before  # never over the limits
        # Each exactly once (separate notifications may overtake each other while throttled).
        assert sorted(_bot_texts(stack, hot_chat)) == sorted(f"deal {n}" for n in range(hot))
        assert all(len(_bot_texts(stack, c)) == 2 for c in chats[1:])
    finally:
        stack.telegram.set_rate_limit(False)


def test_a_blocked_user_stops_receiving(stack):
    chat = new_user_id()
    stack.telegram.create_user(chat)
    make_user(chat)
    stack.telegram.block(chat, True, notify=False)
    with db.session_scope() as session:
        note_id = outbox.notify(session, f"blocked:{chat}", chat, Reply(text="hello?"))
    _wait(lambda: _status(note_id) != NotificationStatus.PENDING, timeout=15)
    assert _status(note_id) == NotificationStatus.DROPPED
    with db.session_scope() as session:
        assert session.get(User, chat).reachable is False
        assert session.scalar(sa.select(Notification.last_error).where(Notification.id == note_id)).startswith("403")


def _status(note_id: int) -> NotificationStatus:
    with db.session_scope() as session:
        return session.get(Notification, note_id).status


def test_a_worker_killed_mid_fan_out_sends_nothing_twice(stack, tmp_path):
    """SIGKILL a worker while it holds a fan-out's messages; a new worker takes them over and
    every message arrives exactly once.

    The fan-out runs against a Redis of its own (the session worker consumes every queue of the
    shared one, and must not take these tasks) with the stack's Telegram fake and the test database.

    How the killed worker's messages come back (kombu's Redis transport, documented under its
    transport options `visibility_timeout` / `unacked_restore_*`): a message delivered to a worker
    is moved to the `unacked` hash with its delivery time, and removed when the worker acks it
    (acks_late: after the task ran). Nothing tells Redis that a worker died, so its messages stay
    there until some consumer restores the ones older than the visibility timeout to their queue:
    every worker does that sweep once when it starts polling (`on_poll_init`), then periodically.
    Production keeps 3600 s (longer than any retry countdown); worker B is started with
    BROKER_VISIBILITY_TIMEOUT=1, so its start-up sweep restores worker A's messages at once.
    """
    private = RedisServer(tmp_path / "redis", free_port()).start()
    broker = redis_lib.Redis.from_url(private.url)
    # DATABASE_URL and TELEGRAM_API_URL: the test's and the stack's. Per chat, half Telegram's rate:
    # the kill must land in the 2 s after the first burst, while no message is being sent.
    env = {"REDIS_URL": private.url, "TELEGRAM_CHAT_RATE": "0.5", "TELEGRAM_CHAT_BURST": "2"}
    chats = [new_user_id() for _ in range(10)]
    per_chat = 4
    expected = {chat: [f"kill test {chat} #{n}" for n in range(per_chat)] for chat in chats}
    worker_a = worker_b = None
    stack.telegram.set_rate_limit(True)
    before = stack.telegram.stats()["too_many_requests"]
    try:
        for chat in chats:
            stack.telegram.create_user(chat)
            make_user(chat)
        worker_a = start_worker("notify-kill-a", queues="notifications", env=env)
        with db.session_scope() as session:  # recorded like notify() does, but queued on our Redis
            note_ids = [outbox.record(session, f"kill:{chat}:{n}", chat, Reply(text=expected[chat][n]))
                        for n in range(per_chat) for chat in chats]
        with app.connection_for_write(private.url) as connection:
            for note_id in note_ids:
                deliver_in_order.apply_async(([note_id],), connection=connection)

        # 4 messages per chat at 0.5/s per chat (burst 2): the first 20 go at once, the rest wait
        # their turn as retries with a countdown, held (unacknowledged) by worker A. Kill it in that
        # state: the queue drained, every other message in A's hands, every message Telegram
        # received also committed as sent. (Two windows a SIGKILL can hit are not what this tests:
        # between Telegram's answer and the commit, the Bot API having no idempotency key, that one
        # message would go again; between kombu's BRPOP and its write to `unacked`, a message
        # is pushed back from its copy in `undelivered` by the sweep, 30 s later.)
        def holding_the_rest() -> bool:
            sent = _sent_count(stack, chats)
            return (sent >= 20 and sent == _sent_rows(note_ids) and broker.llen("notifications") == 0
                    and broker.hlen("unacked") >= len(note_ids) - sent)

        _wait(holding_the_rest, timeout=20)
        worker_a.kill()
        worker_a.process.wait(10)
        killed_at = time.monotonic()
        sent_before_kill = _sent_count(stack, chats)
        assert sent_before_kill < per_chat * len(chats), "the fan-out finished before the kill: nothing was tested"
        assert broker.hlen("unacked") > 0, "worker A held no unacknowledged messages when killed"

        time.sleep(max(0.0, killed_at + 1.5 - time.monotonic()))  # older than the 1 s visibility timeout
        worker_b = start_worker("notify-kill-b", queues="notifications",
                                env={**env, "BROKER_VISIBILITY_TIMEOUT": "1"})
        try:
            _wait(lambda: all(len(_bot_texts(stack, chat)) >= per_chat for chat in chats)
                  and all(_status(i) != NotificationStatus.PENDING for i in note_ids), timeout=30)
        except AssertionError:
            missing = {chat: sorted(set(expected[chat]) - set(_bot_texts(stack, chat))) for chat in chats}
            statuses = {i: _status(i).value for i in note_ids}
            raise AssertionError(f"sent before kill {sent_before_kill}; missing {missing}; statuses {statuses}; "
                                 f"unacked {broker.hlen('unacked')}; queued {broker.llen('notifications')}") from None
        time.sleep(0.5)  # a duplicate would arrive right behind the original

        for chat in chats:  # each message exactly once (retries may reorder a chat's messages)
            assert sorted(_bot_texts(stack, chat)) == sorted(expected[chat])
        assert all(_status(i) == NotificationStatus.SENT for i in note_ids)
        assert broker.hlen("unacked") == 0
        assert stack.telegram.stats()["too_many_requests"] == before
    finally:
        stack.telegram.set_rate_limit(False)
        for worker in (worker_a, worker_b):
            if worker is not None:
                worker.stop()
        broker.close()
        private.stop()


def _sent_count(stack, chats: list[int]) -> int:
    return sum(len(_bot_texts(stack, chat)) for chat in chats)


def _sent_rows(note_ids: list[int]) -> int:
    with db.session_scope() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(Notification).where(
            Notification.id.in_(note_ids), Notification.status == NotificationStatus.SENT))


def _record(chat: int, key: str, reply: Reply) -> int:
    with db.session_scope() as session:
        note_id = outbox.record(session, f"{key}:{chat}", chat, reply)
    assert note_id is not None
    return note_id


def _deliver_in_turn(note_id: int) -> outbox.Delivery:
    """Deliver as the notifications queue does: when our own limiter says "later", wait, then again."""
    while True:
        try:
            return outbox.deliver(note_id)
        except outbox.RetryLater as wait:
            time.sleep(wait.delay)


def _shown(stack, chat: int, message_id: int) -> str:
    return next(m for m in stack.telegram.messages(chat) if m["message_id"] == message_id)["text"]


@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "sent_whole"])
def test_an_earlier_edit_of_a_message_never_lands_after_a_later_one(stack, prepared, request):
    """Telegram shows whichever edit arrives last. '⏳ Reserving…' recorded before 'Sold out' must
    not overwrite it, whichever is delivered first, even while it is being sent. The same with the
    outbox's statements sent whole, as behind a pooler that drops prepared statements."""
    if not prepared:
        request.getfixturevalue("statements_sent_whole")
    chat = new_user_id()
    stack.telegram.create_user(chat)
    make_user(chat)
    screen = _record(chat, "screen", Reply(text="Reserve 1 × Last loaf?"))
    assert _deliver_in_turn(screen) == outbox.Delivery.SENT
    with db.session_scope() as session:
        message_id = session.get(Notification, screen).telegram_message_id

    # Delivered out of order: the later edit first, then the earlier one, which is dropped.
    reserving = _record(chat, "reserving", Reply(text="⏳ Reserving…", edit_message_id=message_id))
    sold_out = _record(chat, "sold-out", Reply(text="Sold out", edit_message_id=message_id))
    assert _deliver_in_turn(sold_out) == outbox.Delivery.SENT
    assert _deliver_in_turn(reserving) == outbox.Delivery.ALREADY_DONE
    assert _shown(stack, chat, message_id) == "Sold out"
    with db.session_scope() as session:
        dropped = session.get(Notification, reserving)
        assert (dropped.status, dropped.last_error) == (NotificationStatus.DROPPED, outbox.SUPERSEDED)

    # The earlier edit is in flight (Telegram holds the call, its row is locked) when the later one
    # is delivered: the later one waits for it, and so arrives after it.
    reserving = _record(chat, "reserving-again", Reply(text="⏳ Reserving…", edit_message_id=message_id))
    sold_out = _record(chat, "sold-out-again", Reply(text="Sold out, sorry", edit_message_id=message_id))
    held = lambda: stack.telegram.set_unreachable(True, methods=["editMessageText"])["held_calls"]  # noqa: E731
    held()
    pool = concurrent.futures.ThreadPoolExecutor(2)
    try:
        first = pool.submit(_deliver_in_turn, reserving)
        _wait(lambda: held() == 1 or first.done(), timeout=10)
        assert not first.done(), first.result()
        later = pool.submit(_deliver_in_turn, sold_out)
        time.sleep(1.0)  # room for the later edit to overtake, were it allowed to
        assert held() == 1 and not later.done()
        stack.telegram.set_unreachable(False)
        assert first.result(timeout=15) == outbox.Delivery.SENT
        assert later.result(timeout=15) == outbox.Delivery.SENT
    finally:
        stack.telegram.set_unreachable(False)
        pool.shutdown()
    assert _shown(stack, chat, message_id) == "Sold out, sorry"


def test_a_message_telegram_took_while_postgres_went_away_is_not_sent_again(stack, monkeypatch):
    """Telegram accepts the message, then Postgres goes away before its row is marked sent, and stays
    away longer than the sender may wait to record it (a minute's outage outlasts the task's time
    limit). The next attempt at the row (the task's retry, the sweeper) finds the send noted in
    Redis and marks the row with Telegram's message id instead of sending it a second time."""
    import psycopg2

    chat = new_user_id()
    stack.telegram.create_user(chat)
    make_user(chat)
    note_id = _record(chat, "outage", Reply(text="🔔 New near you: Bag of the day"))

    def postgres_gone(*_args, **_kwargs):
        raise sa.exc.OperationalError("UPDATE notifications", {},
                                      psycopg2.OperationalError("server closed the connection"))

    with monkeypatch.context() as outage:
        outage.setattr(outbox, "_mark", postgres_gone)
        outage.setattr(outbox, "_record_sent", postgres_gone)
        with pytest.raises(sa.exc.OperationalError):
            outbox.deliver(note_id)
    assert _bot_texts(stack, chat) == ["🔔 New near you: Bag of the day"]
    with db.session_scope() as session:
        assert session.get(Notification, note_id).status == NotificationStatus.PENDING

    assert _deliver_in_turn(note_id) == outbox.Delivery.SENT  # Postgres is back: the retry
    assert _bot_texts(stack, chat) == ["🔔 New near you: Bag of the day"]  # once
    (shown,) = [m for m in stack.telegram.messages(chat) if m.get("from", {}).get("is_bot")]
    with db.session_scope() as session:
        row = session.get(Notification, note_id)
        assert (row.status, row.telegram_message_id) == (NotificationStatus.SENT, shown["message_id"])
