"""Deal alerts: a customer who asked to hear about new deals near them gets one message when a
business within their radius publishes an offer; customers farther away, or who never asked, get
none; the alert can be switched off from the message itself."""

from __future__ import annotations

import io
import time

import httpx
from PIL import Image

from core import db
from core.settings import SANDBOX_BOT_TOKEN
from models import OfferStatus, PhotoStatus, User
from tests.e2e.conftest import new_user_id
from tests.e2e.test_business_flows import answers, bot_messages, buttons, datas, last, say, tap, text_of
from tests.factories import make_business, make_offer

BAKERY = (52.5200, 13.4050)  # Berlin Mitte
AROUND_THE_CORNER = (52.5230, 13.4120)  # about 600 m away
MUNICH = (48.1371, 11.5754)


def _card_on_telegram(stack, chat_id: int) -> str:
    """A deal card Telegram keeps (uploaded once by the bot), as the photo pipeline leaves it."""
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (230, 170, 90)).save(buffer, "JPEG")
    answer = httpx.post(f"{stack.telegram_url}/bot{SANDBOX_BOT_TOKEN}/sendPhoto", data={"chat_id": chat_id},
                        files={"photo": ("card.jpg", buffer.getvalue())}, timeout=10).json()
    return answer["result"]["photo"][-1]["file_id"]


def _share_location(stack, user: int, where: tuple[float, float]) -> dict:
    stack.telegram.create_user(user, "Kim")
    sent = stack.telegram.send_location(user, *where)
    return last(answers(stack, user, sent["update_id"]))


def _switch_alerts_on(stack, user: int, where: tuple[float, float]) -> None:
    deals = _share_location(stack, user, where)
    assert "alerts:on" in datas(deals), text_of(deals)
    replies = tap(stack, user, deals, "alerts:on")
    assert "alerts:off" in datas(last(replies))
    with db.session_scope() as session:
        assert session.get(User, user).deal_alerts_km == 5.0


def _answer(stack, callback_query_id: str) -> dict | None:
    for query in stack.telegram.callback_answers():
        if query["callback_query_id"] == callback_query_id:
            return query["answer"]
    return None


def _announcements(stack, user: int) -> list[dict]:
    return [m for m in bot_messages(stack, user) if "Pastry surprise" in text_of(m)]


def test_customers_near_a_new_deal_who_asked_are_told_once(stack):
    owner, near, far, silent = (new_user_id() for _ in range(4))
    stack.telegram.create_user(owner, "Owner")
    business = make_business(owner, name=f"Bakery {owner}", latitude=BAKERY[0], longitude=BAKERY[1])
    offer = make_offer(business, "Pastry surprise", status=OfferStatus.DRAFT, photo_status=PhotoStatus.READY,
                       photo_card_file_id=_card_on_telegram(stack, owner))

    _switch_alerts_on(stack, near, AROUND_THE_CORNER)
    _switch_alerts_on(stack, far, MUNICH)
    _share_location(stack, silent, AROUND_THE_CORNER)  # saw the deals, never asked for alerts

    home = last(say(stack, owner, "/start"))
    replies = tap(stack, owner, home, f"bizoffer:publish:{offer}", forge=True)
    assert "0 followers and 1 customer nearby" in " ".join(text_of(m) for m in replies)  # plurals (#19)

    deadline = time.monotonic() + 15
    while not _announcements(stack, near) and time.monotonic() < deadline:
        time.sleep(0.1)
    (told,) = _announcements(stack, near)
    messages_before = len(bot_messages(stack, near))
    assert text_of(told).startswith("🔔 New near you (5") and " m):" in text_of(told)  # about 580 m
    assert buttons(told) == {"View": f"offer:{offer}", "🔕 Stop alerts": "alerts:off"}
    time.sleep(1.0)  # the others would have had theirs by now
    assert _announcements(stack, far) == [] and _announcements(stack, silent) == []
    assert len(_announcements(stack, near)) == 1

    # Off, from the message itself; the message stays as it was.
    pressed = stack.telegram.press_button(near, told["message_id"], "alerts:off")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not _answer(stack, pressed["callback_query_id"]):
        time.sleep(0.1)
    assert "Alerts off" in _answer(stack, pressed["callback_query_id"])["text"]
    with db.session_scope() as session:
        assert session.get(User, near).deal_alerts_km is None
    assert len(_announcements(stack, near)) == 1 and len(bot_messages(stack, near)) == messages_before
